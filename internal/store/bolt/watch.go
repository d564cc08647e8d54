package bolt

import (
	"context"
	"sort"
	"sync"

	"github.com/sluice-gw/sluice/internal/store"
)

// hub holds the in-memory event history and the live watchers. Writers
// only ever append under mu and never wait on a watcher, so a stalled
// consumer cannot hold up commits; it is cut off instead once its queue
// exceeds the buffer limit.
type hub struct {
	mu sync.Mutex
	// rev is the last published revision.
	rev int64
	// start: every event with a revision greater than start is in ring.
	start     int64
	ring      []store.Event
	ringBytes int // keys and values held by ring
	ringCap   int
	byteCap   int
	bufLimit  int
	watchers  map[*watcher]struct{}
}

type watcher struct {
	fromRev  int64
	pending  []store.Event
	overflow bool
	notify   chan struct{} // capacity 1: "pending changed"
}

func (h *hub) init(rev int64, ringCap, byteCap, bufLimit int) {
	h.rev = rev
	h.start = rev
	h.ringCap = ringCap
	h.byteCap = byteCap
	h.bufLimit = bufLimit
	h.watchers = make(map[*watcher]struct{})
}

// eventBytes is what an event in the history costs beyond its slot.
func eventBytes(ev store.Event) int { return len(ev.KV.Key) + len(ev.KV.Value) }

func (h *hub) revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// publish records the events of one committed transaction (in revision
// order) and advances the published revision to rev.
func (h *hub) publish(evs []store.Event, rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = rev
	if len(evs) == 0 {
		return
	}
	if len(h.ring)+len(evs) > cap(h.ring) && len(h.ring) > 0 {
		// Move to a new array with room for ringCap more events rather
		// than let append grow a slice whose head is sliced off below:
		// the history then costs at most twice its cap, and a copy
		// happens once per ringCap events.
		ring := make([]store.Event, len(h.ring), len(h.ring)+h.ringCap+len(evs))
		copy(ring, h.ring)
		h.ring = ring
	}
	h.ring = append(h.ring, evs...)
	for _, ev := range evs {
		h.ringBytes += eventBytes(ev)
	}
	if len(h.ring) > h.ringCap || h.ringBytes > h.byteCap {
		cut, bytes := 0, h.ringBytes
		for cut < len(h.ring) && (len(h.ring)-cut > h.ringCap || bytes > h.byteCap) {
			bytes -= eventBytes(h.ring[cut])
			cut++
		}
		// Drop whole revisions only, so that start stays exact even when
		// a range delete put several events at one revision.
		for cut < len(h.ring) && h.ring[cut].KV.ModRev == h.ring[cut-1].KV.ModRev {
			bytes -= eventBytes(h.ring[cut])
			cut++
		}
		h.start = h.ring[cut-1].KV.ModRev
		clear(h.ring[:cut])
		h.ring = h.ring[cut:]
		h.ringBytes = bytes
	}
	for w := range h.watchers {
		if w.overflow {
			continue
		}
		added := false
		for _, ev := range evs {
			// A watcher may have started from a revision read from disk
			// (List) before this transaction was published; skip what it
			// already has.
			if ev.KV.ModRev > w.fromRev {
				w.pending = append(w.pending, ev)
				added = true
			}
		}
		if len(w.pending) > h.bufLimit {
			w.overflow = true
			w.pending = nil
			added = true
		}
		if added {
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
	}
}

// Watch implements store.Store. History reaches back to the revision at
// which the store was opened (at most Options.WatchHistory events); older
// fromRev values get a single ErrCompacted. Event values are shared between
// watchers and the history and must be treated as read-only.
func (s *Store) Watch(ctx context.Context, fromRev int64) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 1)
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		out <- store.WatchResponse{Err: store.ErrClosed}
		close(out)
		return out
	}
	s.bg.Add(1)
	s.closeMu.RUnlock()

	h := &s.hub
	h.mu.Lock()
	if fromRev < h.start {
		cur := h.rev
		h.mu.Unlock()
		s.bg.Done()
		out <- store.WatchResponse{Revision: cur, Err: store.ErrCompacted}
		close(out)
		return out
	}
	w := &watcher{fromRev: fromRev, notify: make(chan struct{}, 1)}
	i := sort.Search(len(h.ring), func(i int) bool { return h.ring[i].KV.ModRev > fromRev })
	if i < len(h.ring) {
		w.pending = append([]store.Event(nil), h.ring[i:]...)
		w.notify <- struct{}{}
	}
	h.watchers[w] = struct{}{}
	h.mu.Unlock()

	go s.serveWatch(ctx, w, out)
	return out
}

// serveWatch moves a watcher's pending events to its channel, one batch per
// wake-up, until the context ends, the store closes or the watcher
// overflows.
func (s *Store) serveWatch(ctx context.Context, w *watcher, out chan store.WatchResponse) {
	h := &s.hub
	defer func() {
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
		close(out)
		s.bg.Done()
	}()
	send := func(r store.WatchResponse) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
		case <-s.closing:
		}
		return false
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			// Best effort: tell a reader that is keeping up why the stream
			// ends, but never block Close on one that is not.
			select {
			case out <- store.WatchResponse{Revision: h.revision(), Err: store.ErrClosed}:
			default:
			}
			return
		case <-w.notify:
		}
		h.mu.Lock()
		evs, overflow, rev := w.pending, w.overflow, h.rev
		w.pending = nil
		h.mu.Unlock()
		if overflow {
			s.log.Warn("watcher fell behind; ending it with ErrCompacted", "buffer", s.opts.WatchBuffer)
			send(store.WatchResponse{Revision: rev, Err: store.ErrCompacted})
			return
		}
		if len(evs) == 0 {
			continue
		}
		if !send(store.WatchResponse{Events: evs, Revision: rev}) {
			return
		}
	}
}
