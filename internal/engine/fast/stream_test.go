package fast

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// scriptedOrigin answers every connection's first request head with the
// given script: strings are written, durations slept. closed receives
// when the proxy closes the connection.
func scriptedOrigin(t *testing.T, script ...any) (addr string, closed chan struct{}) {
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	closed = make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				for _, step := range script {
					switch v := step.(type) {
					case string:
						if _, err := io.WriteString(c, v); err != nil {
							return
						}
					case time.Duration:
						time.Sleep(v)
					}
				}
				// Wait for the proxy to close (or the test to end).
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := br.ReadByte(); err != nil {
					closed <- struct{}{}
				}
			}()
		}
	}()
	return ln.Addr().String(), closed
}

// TestStreamedBodyAfterFastHead: an upstream that sends its head at once
// and the next chunk well after the disconnect-watch delay must not have
// its body cut by the watch deadline.
func TestStreamedBodyAfterFastHead(t *testing.T) {
	tests := []struct {
		name   string
		script []any
		want   string
	}{
		{"chunked", []any{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", 150 * time.Millisecond, "1\r\nb\r\n0\r\n\r\n"}, "ab"},
		{"sse", []any{"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\na", 150 * time.Millisecond, "b"}, "ab"},
		{"content-length", []any{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\na", 150 * time.Millisecond, "b"}, "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, _ := scriptedOrigin(t, tt.script...)
			opt := proxy.Options{Timeouts: proxy.Timeouts{Connect: time.Second, Send: time.Second, Read: 2 * time.Second}}
			addr := startFast(t, forwardTo(NewForwarder(nil, nil), up, opt), std.DefaultLimits())
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != tt.want {
				t.Fatalf("body %q, %v; want %q", b, err, tt.want)
			}
		})
	}
}

// TestDisconnectDuringStreamedBody: a client that leaves while the
// upstream is between chunks (only the CRLF after a chunk buffered) cancels
// the upstream request.
func TestDisconnectDuringStreamedBody(t *testing.T) {
	up, closed := scriptedOrigin(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
	opt := proxy.Options{Timeouts: proxy.Timeouts{Connect: time.Second, Send: time.Second, Read: 10 * time.Second}}
	addr := startFast(t, forwardTo(NewForwarder(nil, nil), up, opt), std.DefaultLimits())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got strings.Builder
	for !strings.Contains(got.String(), "first") {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("no first chunk: %q, %v", got.String(), err)
		}
		got.WriteByte(b)
	}
	c.Close()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("upstream connection not closed after the client left")
	}
}

// TestConcurrentPoolReuse hammers one upstream pool from many client
// connections, so pooled connections change hands between requests at
// once (run with -race: nothing of a response may touch its upstream
// connection after putting it back).
func TestConcurrentPoolReuse(t *testing.T) {
	up := startUpstream(t, nil)
	opt := proxy.Options{Timeouts: proxy.Timeouts{Connect: time.Second, Send: time.Second, Read: 2 * time.Second},
		KeepalivePool: proxy.Pool{Size: 4}}
	addr := startFast(t, forwardTo(NewForwarder(nil, nil), up.addr(), opt), std.DefaultLimits())
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for i := 0; i < 50; i++ {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	up.take()
}
