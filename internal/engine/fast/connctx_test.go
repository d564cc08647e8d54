package fast

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

// A context derived from a request's context is cancelled when the request
// ends, synchronously; deriving marks the value observed, so the server
// never re-arms it for the next request (a derived context that read its
// parent's Err after a reset would find nil: the context package panics
// with "missing cancel error"; CI hit it through limit-count's Redis
// timeout context).
func TestConnCtxDerivedContexts(t *testing.T) {
	var x connCtx
	x.start()
	if x.used() {
		t.Fatal("a fresh context counts as observed")
	}
	kept, cancelKept := context.WithTimeout(&x, time.Hour)
	defer cancelKept()
	dropped, cancelDropped := context.WithCancel(&x)
	cancelDropped() // unregisters its callback
	if dropped.Err() != context.Canceled {
		t.Fatalf("dropped: %v", dropped.Err())
	}
	if kept.Err() != nil {
		t.Fatalf("kept cancelled early: %v", kept.Err())
	}
	if n := len(x.afters); n != 1 {
		t.Fatalf("registered callbacks = %d, want 1 (the stopped one removed)", n)
	}
	if !x.used() {
		t.Fatal("a context with derived contexts is not marked observed: it would be re-armed")
	}
	x.finish()
	// Cancelled by the time finish returns, not by some later goroutine.
	if kept.Err() != context.Canceled {
		t.Fatalf("derived context not cancelled by finish: %v", kept.Err())
	}
	// Deriving from an already-cancelled request cancels at once.
	d, cancel := context.WithCancel(&x)
	defer cancel()
	if d.Err() != context.Canceled {
		t.Fatalf("derived from cancelled: %v", d.Err())
	}
	// A callback registered after cancellation still runs.
	ran := make(chan struct{})
	if x.AfterFunc(func() { close(ran) })() {
		t.Fatal("stop reported a callback that runs at once as stopped")
	}
	<-ran
}

// Through the server: every request derives a timeout context that
// outlives it (as a plugin's Redis call would) and checks its error once
// it fires. Many keep-alive requests on a few connections, sequential or
// pipelined (the next request starts right after the previous one's
// context is cancelled), must never see a derived context done without an
// error, nor panic — whether the context is a direct child (AfterFunc) or
// wraps the request's context in a type the context package does not know
// (context.WithValue, as httptrace and client libraries do: a watching
// goroutine reads the parent's Err after Done closes).
func TestDerivedContextAcrossKeepAlive(t *testing.T) {
	type key struct{}
	for _, tc := range []struct {
		name     string
		wrap     bool
		pipeline bool
	}{
		{"direct child", false, false},
		{"via WithValue, pipelined", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const conns, reqs = 4, 400
			var bad atomic.Int64
			// Every request's watcher reports here once it has looked. (Not
			// a WaitGroup: its Add in the handler and Wait in the test are
			// ordered only through the socket, which the race detector
			// does not see, so it reports Add-concurrent-with-Wait.)
			looked := make(chan struct{}, conns*reqs)
			h := engine.HandlerFunc(func(c *engine.Ctx) {
				parent := c.Context
				if tc.wrap {
					parent = context.WithValue(parent, key{}, 1)
				}
				ctx, cancel := context.WithTimeout(parent, time.Minute)
				go func() {
					<-ctx.Done()
					if ctx.Err() == nil {
						bad.Add(1)
					}
					cancel()
					looked <- struct{}{}
				}()
				c.Reply(200, "text/plain", []byte("ok"))
			})
			addr := startFast(t, h, std.Limits{})
			errs := make(chan error, conns)
			for i := 0; i < conns; i++ {
				go func() { errs <- keepAliveGets(addr, reqs, tc.pipeline) }()
			}
			for i := 0; i < conns; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			// One handler ran per response read, so conns*reqs watchers.
			for i := 0; i < conns*reqs; i++ {
				select {
				case <-looked:
				case <-time.After(10 * time.Second):
					t.Fatalf("%d of %d watchers never saw their context end", conns*reqs-i, conns*reqs)
				}
			}
			if n := bad.Load(); n != 0 {
				t.Fatalf("%d derived contexts were done without an error", n)
			}
		})
	}
}

// keepAliveGets sends n GETs on one connection, each after the previous
// response or all at once (pipeline), and reads the n responses.
func keepAliveGets(addr string, n int, pipeline bool) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if pipeline {
		var b strings.Builder
		for j := 0; j < n; j++ {
			fmt.Fprintf(&b, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", j)
		}
		go io.WriteString(nc, b.String())
	}
	for j := 0; j < n; j++ {
		if !pipeline {
			if _, err := fmt.Fprintf(nc, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", j); err != nil {
				return err
			}
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil
}
