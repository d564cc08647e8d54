package fast

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// listen returns a loopback listener.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startFast serves h with the fast engine and returns its address.
func startFast(t testing.TB, h engine.Handler, lim std.Limits) string {
	t.Helper()
	_, addr := startFastServer(t, h, lim)
	return addr
}

// startFastServer is startFast that also returns the Server.
func startFastServer(t testing.TB, h engine.Handler, lim std.Limits) (*Server, string) {
	t.Helper()
	ln := listen(t)
	s := New(h, lim, nil, nil)
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, ln.Addr().String()
}

// startStd serves h with the net/http engine and returns its address.
func startStd(t testing.TB, h engine.Handler, lim std.Limits) string {
	t.Helper()
	ln := listen(t)
	s := std.New(h, lim, nil)
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// forwardTo returns a handler that proxies every request to addr with fwd.
func forwardTo(fwd proxy.Forwarding, addr string, opt proxy.Options) engine.Handler {
	pick := func(n int) (proxy.Target, bool) {
		if n > 0 {
			return proxy.Target{}, false
		}
		return proxy.Target{Scheme: "http", Addr: addr}, true
	}
	o := &opt
	return engine.HandlerFunc(func(c *engine.Ctx) { fwd.Forward(c, pick, o) })
}

// upstream is a recording HTTP/1.1 origin on a raw socket: it parses each
// request leniently enough to see what a proxy sent (head and body as
// bytes) and answers with a fixed response.
type upstream struct {
	t    testing.TB
	ln   net.Listener
	mu   sync.Mutex
	reqs []string // normalised request: request line, sorted headers, body
	resp func(req *http.Request) string
	// accepted counts the connections accepted.
	accepted atomic.Int64
}

func startUpstream(t testing.TB, resp func(*http.Request) string) *upstream {
	u := &upstream{t: t, ln: listen(t), resp: resp}
	if u.resp == nil {
		u.resp = func(*http.Request) string {
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok"
		}
	}
	go u.serve()
	t.Cleanup(func() { u.ln.Close() })
	return u
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.accepted.Add(1)
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				body, err := io.ReadAll(req.Body)
				if err != nil {
					u.record("BODY-ERROR " + req.Method + " " + req.RequestURI)
					return
				}
				u.record(strings.ReplaceAll(normalise(req, body), u.addr(), "UPSTREAM"))
				if _, err := io.WriteString(c, u.resp(req)); err != nil {
					return
				}
				if req.Close {
					return
				}
			}
		}()
	}
}

func (u *upstream) record(s string) {
	u.mu.Lock()
	u.reqs = append(u.reqs, s)
	u.mu.Unlock()
}

// take returns and forgets the requests recorded so far. Requests whose
// body broke off are left out: the std engine streams the head before it
// finds a malformed chunk, the fast engine finds it before sending
// anything (stricter; the client gets 502 from both).
func (u *upstream) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var r []string
	for _, s := range u.reqs {
		if !strings.HasPrefix(s, "BODY-ERROR") {
			r = append(r, s)
		}
	}
	u.reqs = nil
	return r
}

// normalise renders what the upstream received independent of header
// order (net/http writes headers in sorted order, the fast client in map
// order) and of the connection-level fields that legitimately differ.
func normalise(req *http.Request, body []byte) string {
	var b strings.Builder
	uri := req.RequestURI
	if strings.HasPrefix(uri, "//") {
		// proxy.Forwarder re-escapes a path that starts with "//"
		// (url.URL.EscapedPath: `"` becomes %22); the fast client sends
		// the target verbatim, as nginx does. Compare them decoded
		// (docs/engine.md, deliberate differences).
		path, q, hasQ := strings.Cut(uri, "?")
		if p, err := url.PathUnescape(path); err == nil {
			path = p
		}
		uri = path
		if hasQ {
			uri += "?" + q
		}
	}
	b.WriteString(req.Method + " " + uri + " " + req.Proto + "\n")
	b.WriteString("Host: " + req.Host + "\n")
	var keys []string
	for k := range req.Header {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		if k == "User-Agent" && req.Header.Get(k) == "Go-http-client/1.1" {
			continue // http.Transport's default; the fast client adds none
		}
		if k == "X-Forwarded-Port" {
			continue // the engines listen on different ports
		}
		for _, v := range req.Header[k] {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	if len(req.TransferEncoding) > 0 {
		b.WriteString("TE: " + strings.Join(req.TransferEncoding, ",") + "\n")
	}
	for k, vv := range req.Trailer {
		for _, v := range vv {
			b.WriteString("Trailer " + k + ": " + v + "\n")
		}
	}
	b.WriteString("\n")
	b.Write(body)
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// rawExchange writes req on a fresh connection and reads until the server
// closes or the deadline passes.
func rawExchange(t testing.TB, addr, req string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

// responses splits a byte stream of HTTP/1.1 responses into status codes.
func responses(raw string, method string) []int {
	var out []int
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		req, _ := http.NewRequest(method, "/", nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return out
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
}
