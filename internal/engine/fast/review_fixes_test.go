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
	"github.com/sluice-gw/sluice/internal/proxy"
)

// Contexts derived from the request context through a wrapper the context
// package does not know (context.WithValue, as httptrace and many client
// libraries do) are cancelled by a watching goroutine that reads the
// parent's Err after Done closes; with the reused connection context that
// Err may already be the next request's nil.
func TestReviewDerivedViaValueAcrossKeepAlive(t *testing.T) {
	type key struct{}
	var bad atomic.Int64
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		ctx, cancel := context.WithTimeout(context.WithValue(c.Context, key{}, 1), time.Minute)
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
	const conns, reqs = 4, 500
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		go func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			// Pipelined: the next request starts right after the
			// previous one's context is cancelled.
			var b strings.Builder
			for j := 0; j < reqs; j++ {
				fmt.Fprintf(&b, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", j)
			}
			go io.WriteString(nc, b.String())
			br := bufio.NewReader(nc)
			for j := 0; j < reqs; j++ {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
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

// net/http reads a request head without a deadline when there is no
// read-header timeout; on a hot keep-alive connection the fast engine
// leaves flush-then-wait's ftwWait deadline in place for the rest of the
// head, so a head sent in two parts more than ftwWait apart is dropped.
func TestReviewFTWSlowHeadNoTimeout(t *testing.T) {
	for _, eng := range []string{"std", "fast"} {
		t.Run(eng, func(t *testing.T) {
			var addr string
			if eng == "std" {
				addr = startStd(t, okHandler, std.Limits{})
			} else {
				_, addr = startFastServer(t, okHandler, std.Limits{})
			}
			nc, br := hotConn(t, addr)
			fmt.Fprintf(nc, "GET /slow HTTP/1.1\r\n")
			time.Sleep(4 * ftwWait)
			fmt.Fprintf(nc, "Host: x\r\n\r\n")
			readOK(t, nc, br, "slow head")
		})
	}
}

// Two Content-Encoding fields, the first empty: the header map judges the
// first value (as net/http does: Header.Get), the direct head the last.
func TestReviewDirectContentEncodingFirstValue(t *testing.T) {
	for _, resp := range []string{
		"HTTP/1.1 200 OK\r\nContent-Encoding: \r\nContent-Encoding: gzip\r\nContent-Length: 6\r\n\r\n<html>",
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: \r\nContent-Length: 6\r\n\r\n<html>",
	} {
		up := startUpstream(t, func(*http.Request) string { return resp })
		inner := forwardTo(NewForwarder(nil, nil), up.addr(), proxy.Options{})
		direct := startFast(t, inner, std.Limits{})
		viaMap := startFast(t, engine.HandlerFunc(func(c *engine.Ctx) {
			w := c.W
			c.W = wrappedW{w}
			inner.Serve(c)
			c.W = w
		}), std.Limits{})
		req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		a := normaliseResponse(rawExchange(t, direct, req, 3*time.Second))
		b := normaliseResponse(rawExchange(t, viaMap, req, 3*time.Second))
		if a != b {
			t.Errorf("direct head differs from the map's:\ndirect:\n%s\nmap:\n%s", a, b)
		}
	}
}
