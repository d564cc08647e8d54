package fast

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

// A context derived from a request's context is cancelled when the request
// ends, synchronously, and never sees the next request's state: the
// connection reuses one context value, so a derived context that read its
// parent's Err after the reset would find nil (the context package panics
// with "missing cancel error"; CI hit it through limit-count's Redis
// timeout context).
func TestConnCtxDerivedContexts(t *testing.T) {
	var x connCtx
	for gen := 0; gen < 3; gen++ {
		x.start(nil)
		kept, cancelKept := context.WithTimeout(&x, time.Hour)
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
		x.finish()
		// Cancelled by the time finish returns, not by some later goroutine.
		if kept.Err() != context.Canceled {
			t.Fatalf("gen %d: derived context not cancelled by finish: %v", gen, kept.Err())
		}
		cancelKept()
	}
	// Deriving from an already-cancelled request cancels at once.
	x.start(nil)
	x.finish()
	d, cancel := context.WithCancel(&x)
	defer cancel()
	if d.Err() != context.Canceled {
		t.Fatalf("derived from cancelled: %v", d.Err())
	}
	// A callback registered after cancellation runs, and start waits for it
	// (the context package takes this path when the request is cancelled
	// between its own Done check and its AfterFunc call).
	ran := make(chan struct{})
	release := make(chan struct{})
	if x.AfterFunc(func() { close(ran); <-release })() {
		t.Fatal("stop reported a callback that runs at once as stopped")
	}
	<-ran
	started := make(chan struct{})
	go func() { x.start(nil); close(started) }()
	select {
	case <-started:
		t.Fatal("start did not wait for a running callback")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-started
	if x.Err() != nil {
		t.Fatal("restarted context is cancelled")
	}
}

// Through the server: every request derives a timeout context that
// outlives it (as a plugin's Redis call would) and checks its error once
// it fires; many keep-alive requests on a few connections must never see a
// derived context cancelled without an error, nor panic.
func TestDerivedContextAcrossKeepAlive(t *testing.T) {
	var bad atomic.Int64
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		ctx, cancel := context.WithTimeout(c.Context, time.Minute)
		go func() {
			<-ctx.Done()
			if ctx.Err() == nil {
				bad.Add(1)
			}
			cancel()
		}()
		c.Reply(200, "text/plain", []byte("ok"))
	})
	addr := startFast(t, h, std.Limits{})
	const conns, reqs = 4, 300
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		go func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			for j := 0; j < reqs; j++ {
				if _, err := fmt.Fprintf(nc, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", j); err != nil {
					errs <- err
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
			}
			errs <- nil
		}()
	}
	for i := 0; i < conns; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d derived contexts were done without an error", n)
	}
}
