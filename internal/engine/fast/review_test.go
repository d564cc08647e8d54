package fast

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// hotConn dials addr and makes the connection hot (requests that follow
// their responses closely), so the next response takes flush-then-wait.
func hotConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	br := bufio.NewReader(nc)
	for i := 0; i < 5; i++ {
		fmt.Fprintf(nc, "GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
		readOK(t, nc, br, "warm-up")
	}
	return nc, br
}

func readOK(t *testing.T, nc net.Conn, br *bufio.Reader, what string) string {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d", what, resp.StatusCode)
	}
	return string(b)
}

// echoBody answers with the request body.
var echoBody = engine.HandlerFunc(func(c *engine.Ctx) {
	b, err := io.ReadAll(c.Body)
	if err != nil {
		c.Reply(400, "text/plain", []byte(err.Error()))
		return
	}
	c.Reply(200, "text/plain", b)
})

// The short read deadline of a flush-then-wait must not bound what comes
// after the first byte of the next request: a body sent slowly (longer
// than ftwWait) on a hot connection is read whole, with and without a
// read-header timeout, chunked or with a length.
func TestReviewFTWSlowBody(t *testing.T) {
	for _, lim := range []std.Limits{{IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second}, {}} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("rht=%v/chunked=%v", lim.ReadHeaderTimeout, chunked), func(t *testing.T) {
				_, addr := startFastServer(t, echoBody, lim)
				nc, br := hotConn(t, addr)
				if chunked {
					fmt.Fprintf(nc, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
					time.Sleep(4 * ftwWait)
					fmt.Fprintf(nc, "3\r\ndef\r\n0\r\n\r\n")
				} else {
					fmt.Fprintf(nc, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
					time.Sleep(4 * ftwWait)
					fmt.Fprintf(nc, "def")
				}
				if got := readOK(t, nc, br, "slow body"); got != "abcdef" {
					t.Fatalf("body %q", got)
				}
				fmt.Fprintf(nc, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
				readOK(t, nc, br, "after")
			})
		}
	}
}

// A slow head on a hot connection, under a read-header timeout, is
// bounded by that timeout, not by ftwWait.
func TestReviewFTWSlowHeadWithTimeout(t *testing.T) {
	_, addr := startFastServer(t, okHandler, std.Limits{IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second})
	nc, br := hotConn(t, addr)
	fmt.Fprintf(nc, "GET /slow HTTP/1.1\r\n")
	time.Sleep(4 * ftwWait)
	fmt.Fprintf(nc, "Host: x\r\n\r\n")
	readOK(t, nc, br, "slow head")
}

// A hijacked connection (WebSocket tunnel) from a hot connection carries
// no read deadline left over from the flush-then-wait.
func TestReviewFTWHijackNoDeadline(t *testing.T) {
	_, addr := startFastServer(t, engine.HandlerFunc(func(c *engine.Ctx) {
		if c.Path != "/ws" {
			c.Reply(200, "text/plain", []byte("ok"))
			return
		}
		conn, brw, err := c.W.(engine.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		b := make([]byte, 4)
		if _, err := io.ReadFull(brw, b); err != nil {
			brw.WriteString("ERR " + err.Error())
		} else {
			brw.WriteString("GOT " + string(b))
		}
		brw.Flush()
	}), std.Limits{IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second})
	nc, br := hotConn(t, addr)
	fmt.Fprintf(nc, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	time.Sleep(4 * ftwWait)
	io.WriteString(nc, "ping")
	rest, _ := io.ReadAll(br)
	if string(rest) != "GOT ping" {
		t.Fatalf("tunnel read: %q", rest)
	}
}

// A response pending in a hot connection's buffer when Shutdown begins
// (the request was read, the handler is running) is still delivered, and
// Shutdown completes.
func TestReviewFTWShutdown(t *testing.T) {
	for i := 0; i < 20; i++ {
		started := make(chan struct{}, 1)
		s, addr := startFastServer(t, engine.HandlerFunc(func(c *engine.Ctx) {
			if c.Path == "/last" {
				started <- struct{}{}
				time.Sleep(time.Duration(i%4) * time.Millisecond)
			}
			c.Reply(200, "text/plain", []byte("ok"))
		}), std.Limits{IdleTimeout: time.Minute})
		nc, br := hotConn(t, addr)
		fmt.Fprintf(nc, "GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
		<-started
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			done <- s.Shutdown(ctx)
		}()
		readOK(t, nc, br, "last")
		if err := <-done; err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	}
}

// The client half-closes (or closes) a hot connection after its last
// request: the last response still arrives and the server lets go.
func TestReviewFTWClientHalfClose(t *testing.T) {
	_, addr := startFastServer(t, okHandler, std.Limits{IdleTimeout: time.Minute})
	nc, br := hotConn(t, addr)
	fmt.Fprintf(nc, "GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	nc.(*net.TCPConn).CloseWrite()
	readOK(t, nc, br, "last")
	nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if b, err := io.ReadAll(br); err != nil || len(b) != 0 {
		t.Fatalf("after close: %q %v", b, err)
	}
}

// A hot connection whose next request comes with Expect: 100-continue
// gets the interim response and the final one.
func TestReviewFTWExpectContinue(t *testing.T) {
	_, addr := startFastServer(t, echoBody, std.Limits{IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second})
	nc, br := hotConn(t, addr)
	fmt.Fprintf(nc, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("interim: %q %v", line, err)
	}
	br.ReadString('\n')
	time.Sleep(2 * ftwWait)
	io.WriteString(nc, "abc")
	if got := readOK(t, nc, br, "final"); got != "abc" {
		t.Fatalf("body %q", got)
	}
}

// More heads through the direct path and through the header map: every
// one must reach the client identically, including a handler that adds a
// field after forwarding (the head not yet committed: a short body of
// unknown length is buffered) and HTTP/1.0 clients.
func TestReviewDirectHeadMatchesMap(t *testing.T) {
	cases := []struct {
		name, req, resp string
		after           bool // the handler sets X-After after forwarding
	}{
		{"empty chunked with trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 9\r\n\r\n", false},
		{"head chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n", false},
		{"interleaved set-cookie", "GET", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A: 1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok", false},
		{"304 with type and length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n", false},
		{"205", "GET", "HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n", false},
		{"upstream 500", "GET", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad", false},
		{"empty body no type", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"after forward chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n", true},
		{"after forward empty chunked", "GET", "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"http/1.0 client chunked", "GET10", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"http/1.0 client length", "GET10", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, func(*http.Request) string { return tc.resp })
			var after func(*engine.Ctx)
			if tc.after {
				after = func(c *engine.Ctx) { c.W.Header().Set("X-After", "1") }
			}
			req := tc.req + " / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
			if tc.req == "GET10" {
				req = "GET / HTTP/1.0\r\nHost: x\r\n\r\n"
			}
			a, b := headsBothWays(t, up.addr(), proxy.Options{}, req, nil, after)
			if a != b {
				t.Fatalf("direct head differs from the map's:\ndirect:\n%s\nmap:\n%s", a, b)
			}
			if !strings.HasPrefix(a, "HTTP/1.") {
				t.Fatalf("no response: %q", a)
			}
		})
	}
}
