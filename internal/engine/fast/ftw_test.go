package fast

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

var okHandler = engine.HandlerFunc(func(c *engine.Ctx) { c.Reply(200, "text/plain", []byte("ok")) })

// A keep-alive client that sends each request once it has the previous
// response takes the flush-then-wait path (no read attempt before the
// wait) and gets every response.
func TestFlushThenWaitKeepAlive(t *testing.T) {
	s, addr := startFastServer(t, okHandler, std.Limits{IdleTimeout: time.Minute})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	const n = 300
	for i := 0; i < n; i++ {
		fmt.Fprintf(nc, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	nc.Close() // the count is added when the connection ends
	// A request counts as hot only when it comes within hotGap of the
	// response: on a loaded machine many do not (15 of 300 seen), so the
	// test asks only that the path was taken.
	deadline := time.Now().Add(5 * time.Second)
	for s.ftw.waits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if w := s.ftw.waits.Load(); w == 0 {
		t.Fatalf("flush-then-wait never used in %d keep-alive requests", n)
	}
}

// A client that sends its next request before it has read the response
// (pipelining, but not in the same packet) can have its readiness
// forgotten by the flush-then-wait: here the next request arrives while
// the handler waits, when the poller has nothing else to do. The wait
// gives up after ftwWait, the request is served, and the connection is
// never put on that path again, so it stalls at most once.
func TestFlushThenWaitPipelining(t *testing.T) {
	release := make(chan struct{})
	s, addr := startFastServer(t, engine.HandlerFunc(func(c *engine.Ctx) {
		if c.Path == "/hold" {
			<-release
		}
		c.Reply(200, "text/plain", []byte("ok"))
	}), std.Limits{IdleTimeout: time.Minute})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	read := func(what string) {
		t.Helper()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := 0; i < 5; i++ { // hot
		fmt.Fprintf(nc, "GET /w HTTP/1.1\r\nHost: x\r\n\r\n")
		read("warm-up")
	}
	for round := 0; round < 3; round++ {
		fmt.Fprintf(nc, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(5 * time.Millisecond) // the server has read it
		fmt.Fprintf(nc, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(5 * time.Millisecond) // the poller has seen it
		release <- struct{}{}
		read("held")
		read("next")
		for i := 0; i < 5; i++ {
			fmt.Fprintf(nc, "GET /w HTTP/1.1\r\nHost: x\r\n\r\n")
			read("after")
		}
	}
	t.Logf("flush-then-wait timeouts: %d", s.ftw.timeouts.Load())
	if to := s.ftw.timeouts.Load(); to > 1 {
		t.Fatalf("flush-then-wait timed out %d times on one pipelining connection (want at most 1)", to)
	}
}

// A connection that goes idle after a hot request waits out ftwWait, then
// waits as usual: its next request, much later, is served.
func TestFlushThenWaitIdle(t *testing.T) {
	_, addr := startFastServer(t, okHandler, std.Limits{IdleTimeout: time.Minute})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	get := func() {
		t.Helper()
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := 0; i < 5; i++ {
		get()
	}
	time.Sleep(3 * ftwWait)
	get()
	get()
}
