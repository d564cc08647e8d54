package fast

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// scriptOrigin runs serve for every connection and remembers how many
// request body bytes it saw (serve reports them).
type scriptOrigin struct {
	ln        net.Listener
	mu        sync.Mutex
	bodyBytes int64
	heads     int
}

func startScriptOrigin(t *testing.T, serve func(o *scriptOrigin, c net.Conn, br *bufio.Reader, req *http.Request)) *scriptOrigin {
	o := &scriptOrigin{ln: listen(t)}
	t.Cleanup(func() { o.ln.Close() })
	go func() {
		for {
			c, err := o.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				o.mu.Lock()
				o.heads++
				o.mu.Unlock()
				serve(o, c, br, req)
			}()
		}
	}()
	return o
}

func (o *scriptOrigin) saw(n int64) {
	o.mu.Lock()
	o.bodyBytes += n
	o.mu.Unlock()
}

func (o *scriptOrigin) counts() (heads int, body int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.heads, o.bodyBytes
}

// enginePair is one origin script behind each engine.
type enginePair struct {
	name  string
	addr  string
	up    *scriptOrigin
	isStd bool
}

func startEnginePair(t *testing.T, send time.Duration, serve func(o *scriptOrigin, c net.Conn, br *bufio.Reader, req *http.Request)) []enginePair {
	opt := proxy.Options{Timeouts: proxy.Timeouts{Connect: time.Second, Send: send, Read: 5 * time.Second}}
	su, fu := startScriptOrigin(t, serve), startScriptOrigin(t, serve)
	lim := std.DefaultLimits()
	return []enginePair{
		{"std", startStd(t, forwardTo(proxy.NewForwarder(nil), su.ln.Addr().String(), opt), lim), su, true},
		{"fast", startFast(t, forwardTo(NewForwarder(nil, nil), fu.ln.Addr().String(), opt), lim), fu, false},
	}
}

// echo answers 200 with the request body.
func echo(o *scriptOrigin, c net.Conn, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	o.saw(int64(len(body)))
	if err != nil {
		return
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// readFull reads one response and its body.
func readFull(br *bufio.Reader, method string) (int, string, error) {
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// dialClient connects to a proxy under test, with deadline bounding the
// whole exchange.
func dialClient(t *testing.T, addr string, deadline time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(deadline))
	return c, bufio.NewReader(c)
}

// wantResponse reads one response and fails unless it has status and body.
func wantResponse(t *testing.T, br *bufio.Reader, method string, status int, body string) {
	t.Helper()
	st, b, err := readFull(br, method)
	if err != nil || st != status || b != body {
		t.Fatalf("got %d %q, %v; want %d %q", st, b, err, status, body)
	}
}

// wantCounts fails unless the origin saw heads request heads and body
// request body bytes.
func (o *scriptOrigin) wantCounts(t *testing.T, heads int, body int64) {
	t.Helper()
	if h, n := o.counts(); h != heads || n != body {
		t.Fatalf("upstream saw %d heads, %d body bytes; want %d, %d", h, n, heads, body)
	}
}

const expectHead = "POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"

// TestExpectContinue compares both engines on "Expect: 100-continue"
// requests: the body goes upstream only after the upstream's 100 (or the
// 1 s timeout), and a final answer instead of 100 reaches the client
// without any body byte going upstream.
func TestExpectContinue(t *testing.T) {
	// The client gets a 100 (the upstream's, or the proxy's own once it
	// gives up waiting after 1 s and reads the body), then the echo.
	for _, tc := range []struct {
		name string
		// upstream100: the upstream sends 100 Continue, 100 ms late,
		// before it reads the body; the client must not get its 100
		// before that.
		upstream100 bool
		// eager: the client sends its body 300 ms after the head without
		// waiting for a 100 (the fast engine's disconnect watch may read
		// it meanwhile), then another request on the same connection.
		eager bool
	}{
		{"100 then 200", true, false},
		{"no 100 from upstream", false, false},
		{"no 100 from upstream, eager client", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upSent := make(chan struct{}, 2) // the engines run one after the other
			for _, e := range startEnginePair(t, 2*time.Second, func(o *scriptOrigin, c net.Conn, br *bufio.Reader, req *http.Request) {
				if tc.upstream100 {
					time.Sleep(100 * time.Millisecond)
					upSent <- struct{}{}
					io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
				}
				echo(o, c, req)
			}) {
				t.Run(e.name, func(t *testing.T) {
					c, br := dialClient(t, e.addr, 10*time.Second)
					io.WriteString(c, expectHead)
					if tc.eager {
						time.Sleep(300 * time.Millisecond)
						io.WriteString(c, "hello")
					}
					wantResponse(t, br, "POST", 100, "")
					if tc.upstream100 {
						select {
						case <-upSent:
						default:
							t.Fatal("the client got 100 Continue before the upstream sent its 100")
						}
					}
					if !tc.eager {
						io.WriteString(c, "hello")
					}
					wantResponse(t, br, "POST", 200, "hello")
					e.up.wantCounts(t, 1, 5)
					if tc.eager {
						// The connection goes on.
						io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
						wantResponse(t, br, "GET", 200, "")
					}
				})
			}
		})
	}

	// A final answer instead of 100. The client behaves like curl: it
	// waits a while for an answer, then sends its body anyway. The fast
	// engine forwards the answer without reading the body and closes the
	// client connection (its 100 is never owed). http.Transport sends the
	// body when the answer keeps the connection open (Go's rule), which
	// makes net/http send the client a 100 first; when the answer closes
	// the connection it sends nothing either.
	for _, close := range []bool{false, true} {
		name := "417 keep-alive"
		resp := "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\nnope"
		if close {
			name = "417 close"
			resp = "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
		}
		t.Run(name, func(t *testing.T) {
			for _, e := range startEnginePair(t, 2*time.Second, func(o *scriptOrigin, c net.Conn, br *bufio.Reader, req *http.Request) {
				io.WriteString(c, resp)
				// Count whatever body bytes still come.
				c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
				n, _ := io.Copy(io.Discard, br)
				o.saw(n)
			}) {
				t.Run(e.name, func(t *testing.T) {
					c, br := dialClient(t, e.addr, 15*time.Second) // reads set their own deadlines
					io.WriteString(c, expectHead)
					var statuses []int
					st, body, err := 0, "", error(nil)
					for st < 200 {
						c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
						st, body, err = readFull(br, "POST")
						if ne, ok := err.(net.Error); ok && ne.Timeout() && len(statuses) == 0 {
							statuses = append(statuses, 0) // no answer: send the body
							io.WriteString(c, "hello")
							continue
						}
						if err != nil {
							t.Fatalf("after %v: %v", statuses, err)
						}
						statuses = append(statuses, st)
						if st == 100 {
							io.WriteString(c, "hello")
						}
					}
					if st != 417 || body != "nope" {
						t.Fatalf("got %v %q; want 417 nope", statuses, body)
					}
					time.Sleep(2600 * time.Millisecond)
					h, n := e.up.counts()
					t.Logf("client saw %v, upstream %d heads, %d body bytes", statuses, h, n)
					if e.isStd {
						return
					}
					if fmt.Sprint(statuses) != "[417]" || h != 1 || n != 0 {
						t.Fatalf("client saw %v, upstream %d heads, %d body bytes; want [417], 1, 0", statuses, h, n)
					}
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					if _, err := br.ReadByte(); err == nil {
						t.Fatal("connection still open after an unanswered 100-continue")
					}
				})
			}
		})
	}

	t.Run("other 1xx then 100", func(t *testing.T) {
		for _, e := range startEnginePair(t, 2*time.Second, func(o *scriptOrigin, c net.Conn, br *bufio.Reader, req *http.Request) {
			io.WriteString(c, "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n")
			echo(o, c, req)
		}) {
			t.Run(e.name, func(t *testing.T) {
				// An eager client: the body follows the head at once.
				head := strings.Replace(expectHead, "Host: a\r\n", "Host: a\r\nConnection: close\r\n", 1)
				got := rawExchange(t, e.addr, head+"hello", 5*time.Second)
				if st := responses(got, "POST"); fmt.Sprint(st) != "[100 200]" || !strings.HasSuffix(got, "\r\n\r\nhello") {
					t.Fatalf("statuses %v in %q; want [100 200] and the echo", st, got)
				}
				e.up.wantCounts(t, 1, 5)
			})
		}
	})
}

// TestEarlyResponseDuringUpload: an upstream that answers (413) while the
// request body still flows, and closes without reading it, must reach the
// client on both engines instead of a 502 for the failed write.
func TestEarlyResponseDuringUpload(t *testing.T) {
	const size = 8 << 20
	big := bytes.Repeat([]byte("x"), 64<<10)
	cases := []struct {
		name    string
		chunked bool
		linger  time.Duration // between the 413 and the close
		keep    bool          // the upstream keeps the connection open, unread
		stdRace bool          // http.Transport may see the failed write first (502)
	}{
		{"content-length", false, 100 * time.Millisecond, false, false},
		{"chunked", true, 100 * time.Millisecond, false, false},
		{"close at once", false, 0, false, true},
		{"chunked, close at once", true, 0, false, true},
		{"upstream keeps the connection", false, 0, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range startEnginePair(t, time.Second, func(o *scriptOrigin, c net.Conn, br *bufio.Reader, req *http.Request) {
				io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
				time.Sleep(tc.linger)
				if tc.keep {
					// Longer than the send timeout: the fast client
					// finds the answer when its write times out.
					time.Sleep(4 * time.Second)
				}
				// Closing with unread bytes resets the connection.
			}) {
				t.Run(e.name, func(t *testing.T) {
					c, br := dialClient(t, e.addr, 15*time.Second)
					go func() {
						if tc.chunked {
							io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
						} else {
							fmt.Fprintf(c, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
						}
						for n := 0; n < size; n += len(big) {
							var err error
							if tc.chunked {
								_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(big), big)
							} else {
								_, err = c.Write(big)
							}
							if err != nil {
								return
							}
						}
						if tc.chunked {
							io.WriteString(c, "0\r\n\r\n")
						}
					}()
					st, body, err := readFull(br, "PUT")
					if e.isStd && tc.stdRace && st == 502 {
						t.Logf("std: 502 (the write failure won the race)")
						return
					}
					if err != nil || st != 413 || body != "big" {
						t.Fatalf("got %d %q, %v; want 413 big", st, body, err)
					}
				})
			}
		})
	}
}
