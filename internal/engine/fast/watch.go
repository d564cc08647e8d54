package fast

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// connCtx is the Ctx.Context of a fast request. It is one value per
// connection, re-armed per request, so serving a request allocates no
// context; its Done channel is made only when someone asks for it. It is
// cancelled when the disconnect watcher sees the client go away, and when
// the request ends (as net/http cancels a request's context after
// ServeHTTP returns).
//
// Because the value is reused, nobody may observe it between one request's
// cancellation and the next request's start: a context derived from it
// (context.WithTimeout in a plugin, or one wrapping it first, whose
// watcher goroutine reads Err() after Done() closes) would find the next
// request's nil. So a request whose context was observed (Done or
// AfterFunc called) leaves it cancelled for good and the next request
// gets a new one (one allocation, never on the plain proxy path); only a
// value nobody observed is re-armed. It also implements AfterFunc, which
// the context package uses instead of a watching goroutine for contexts
// derived from it directly: cancel runs their callbacks synchronously.
type connCtx struct {
	mu       sync.Mutex
	observed bool // Done or AfterFunc was called (see used)
	done     chan struct{}
	err      error
	onCancel func()
	afters   []afterFunc // registered by AfterFunc, not yet run
	seq      uint64
}

type afterFunc struct {
	id uint64
	f  func()
}

// start re-arms a context nobody observed (so it has no Done channel and
// no callbacks) for the next request.
func (x *connCtx) start() {
	x.mu.Lock()
	x.err, x.onCancel = nil, nil
	x.mu.Unlock()
}

func (x *connCtx) finish() { x.cancel(context.Canceled) }

// Deadline reports no deadline.
func (x *connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// used reports whether the request's context was observed (Done or
// AfterFunc called): then it must not be re-armed for another request.
func (x *connCtx) used() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.observed
}

// Done returns a channel closed when the request is cancelled.
func (x *connCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.observed = true
	if x.done == nil {
		x.done = make(chan struct{})
		if x.err != nil {
			close(x.done)
		}
	}
	return x.done
}

// Err returns context.Canceled once the request is cancelled.
func (x *connCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Value returns nil: the engine stores nothing in the context.
func (x *connCtx) Value(any) any { return nil }

// AfterFunc arranges for f to run once the request is cancelled (at once,
// in its own goroutine, if it already is); the returned stop unregisters
// f and reports whether it did. The context package finds this method and
// uses it for contexts derived from this one.
func (x *connCtx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.observed = true
	if x.err != nil {
		go f()
		return func() bool { return false }
	}
	x.seq++
	id := x.seq
	x.afters = append(x.afters, afterFunc{id, f})
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		for i, a := range x.afters {
			if a.id == id {
				x.afters = slices.Delete(x.afters, i, i+1)
				return true
			}
		}
		return false
	}
}

func (x *connCtx) cancel(err error) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = err
	if x.done != nil {
		close(x.done)
	}
	f, run := x.onCancel, x.afters
	x.onCancel, x.afters = nil, nil
	x.mu.Unlock()
	if f != nil {
		f()
	}
	// Callbacks run without the lock: a derived context's cancel calls
	// back into Err and into its stop function.
	for _, a := range run {
		a.f()
	}
}

// setOnCancel registers f to run on cancellation (the upstream client uses
// it to unblock its socket); it runs f at once if already cancelled.
func (x *connCtx) setOnCancel(f func()) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		f()
		return
	}
	x.onCancel = f
	x.mu.Unlock()
}

func (x *connCtx) clearOnCancel() {
	x.mu.Lock()
	x.onCancel = nil
	x.mu.Unlock()
}

// watcher detects a client that disconnects while its request waits for
// a slow upstream. The upstream client arms it only once the upstream has
// been silent for watchDelay, so fast requests never pay for it; it reads
// the client socket from a goroutine that lives as long as the connection
// (started on first use) and parks what it reads for the connection's
// reader, as net/http's background read does.
type watcher struct {
	arm     chan struct{}
	done    chan struct{}
	active  bool
	running bool
	buf     [512]byte
}

// watchDelay is how long the upstream may take before the client socket
// is watched for a disconnect.
const watchDelay = 50 * time.Millisecond

var aLongTimeAgo = time.Unix(1, 0)

// start begins watching; false when it cannot (pipelined bytes buffered:
// the client is evidently still there, and a read would not tell).
func (w *watcher) start(cn *conn) bool {
	if w.active {
		return true
	}
	if cn.br.Buffered() > 0 || len(cn.src.stash) > 0 || cn.src.err != nil || cn.hijacked {
		return false
	}
	if !w.running {
		w.arm = make(chan struct{})
		w.done = make(chan struct{}, 1)
		w.running = true
		go w.loop(cn)
	}
	cn.setReadDeadline(time.Time{})
	w.active = true
	w.arm <- struct{}{}
	return true
}

func (w *watcher) loop(cn *conn) {
	for range w.arm {
		n, err := cn.nc.Read(w.buf[:])
		if n > 0 {
			cn.src.stash = w.buf[:n]
		}
		if err != nil {
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				cn.src.err = err
				cn.cctx.cancel(context.Canceled)
			}
		}
		w.done <- struct{}{}
	}
}

// stop ends an active watch and waits for the reader goroutine to let go
// of the socket.
func (w *watcher) stop(cn *conn) {
	if !w.active {
		return
	}
	_ = cn.nc.SetReadDeadline(aLongTimeAgo)
	<-w.done
	cn.setReadDeadline(time.Time{})
	w.active = false
}

// close ends the reader goroutine with the connection.
func (w *watcher) close(cn *conn) {
	w.stop(cn)
	if w.running {
		close(w.arm)
		w.running = false
	}
}

// WatchClient arms the disconnect watcher for a wait outside the upstream
// client (engine.Ctx.Wait: limit-req delays, fault-injection); it
// implements engine.ClientWatcher.
func (cn *conn) WatchClient() bool { return cn.watch.start(cn) }

// UnwatchClient ends a watch armed by WatchClient.
func (cn *conn) UnwatchClient() { cn.watch.stop(cn) }
