package std

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/version"
)

// echo answers with what the engine parsed.
var echo = engine.HandlerFunc(func(c *engine.Ctx) {
	n, _ := io.Copy(io.Discard, c.Body)
	body := fmt.Sprintf("%s %s path=%s host=%s scheme=%s body=%d under=%q proto=%s",
		c.Method, c.RequestURI, c.Path, c.Host, c.Scheme, n, c.Header.Get("X_api_key"), c.Proto)
	c.Reply(200, "text/plain", []byte(body))
})

func start(t *testing.T, lim Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(echo, lim, nil)
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c) // returns when the server closes (or the deadline)
	return string(b)
}

const probe = "GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"

// TestFraming sends each hardening.md §2.A case followed by a pipelined
// probe. "Go" notes what plain net/http does with the case.
func TestFraming(t *testing.T) {
	addr := start(t, DefaultLimits())
	many := strings.Repeat("X-H: a\r\n", 101)
	tests := []struct {
		name       string
		req        string
		wantFirst  string // status line prefix of the first response
		wantProbed bool   // the pipelined probe must be served
	}{
		{"plain keep-alive", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200", true},
		{"CL body then probe", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 200", true},
		{"chunked body then probe", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "HTTP/1.1 200", true},
		// Go: TE wins, keep-alive, next request served. We: 400 + close.
		{"A1 CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", "HTTP/1.1 400", false},
		{"A2 TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", "HTTP/1.1 400", false},
		// Go already rejects these.
		{"A3 duplicate differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "HTTP/1.1 400", false},
		{"A5 CL +5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", "HTTP/1.1 400", false},
		{"A6 space before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", "HTTP/1.1 400", false},
		{"A7 TE obfuscation", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "HTTP/1.1 501", false},
		// Go: HTTP/1.0 TE ignored. We: 400.
		{"A9 TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.0 400", false},
		// Go: accepted. We: 400 (AllowBareLF off).
		{"A13 bare LF", "GET / HTTP/1.1\nHost: a\n\n", "HTTP/1.1 400", false},
		{"A14 bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "HTTP/1.1 400", false},
		// Go: unfolded. We: 400.
		{"A15 obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "HTTP/1.1 400", false},
		{"B1 NUL", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "HTTP/1.1 400", false},
		{"B3 invalid header name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", "HTTP/1.1 400", false},
		{"B3 no colon", "GET / HTTP/1.1\r\nHost: a\r\nfoo\r\n\r\n", "HTTP/1.1 400", false},
		// Go: no cap. We: 431 above 100.
		{"B5 too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + many + "\r\n", "HTTP/1.1 431", false},
		// Go: up to 1 MiB. We: 414 above 8 KiB.
		{"C1 long URI", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 414", false},
		{"F1 above root", "GET /../etc HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400", false},
		{"F8 NUL escape", "GET /admin%00.json HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400", false},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := raw(t, addr, tc.req+probe)
			if !strings.HasPrefix(out, tc.wantFirst) {
				t.Fatalf("first response %q, want %q", firstLine(out), tc.wantFirst)
			}
			probed := strings.Contains(out, "GET /probe")
			if probed != tc.wantProbed {
				t.Errorf("probe served = %v, want %v\n%s", probed, tc.wantProbed, out)
			}
		})
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func TestRequestFields(t *testing.T) {
	addr := start(t, DefaultLimits())
	out := raw(t, addr, "GET http://Other.Example:8080/a/%2e%2e/b//c?q=1 HTTP/1.1\r\nHost: x\r\nX_API_KEY: k\r\nConnection: close\r\n\r\n")
	for _, want := range []string{
		"Server: " + version.Server + "\r\n",
		"GET /a/%2e%2e/b//c?q=1 path=/b/c host=other.example scheme=http",
		`under=""`, // underscore header dropped like nginx
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxBodyBytes = 10
	addr := start(t, lim)
	out := raw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000000\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 413") {
		t.Errorf("got %q", firstLine(out))
	}
}

func TestTLSAndH2(t *testing.T) {
	cert := httptest.NewUnstartedServer(nil)
	cert.StartTLS() // borrow httptest's self-signed certificate
	tlsCert := cert.TLS.Certificates[0]
	cert.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(echo, DefaultLimits(), nil)
	go s.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{tlsCert}})
	defer s.Shutdown(context.Background())
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantProto := "HTTP/1.1"
			if h2 {
				wantProto = "HTTP/2.0"
			}
			if !strings.Contains(string(b), "scheme=https") || !strings.Contains(string(b), "proto="+wantProto) {
				t.Errorf("body %q", b)
			}
			if resp.Header.Get("Server") != version.Server {
				t.Errorf("server %q", resp.Header.Get("Server"))
			}
		})
	}
}

func BenchmarkServe(b *testing.B) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := New(engine.HandlerFunc(func(c *engine.Ctx) { c.Reply(200, "text/plain", []byte("ok")) }), DefaultLimits(), nil)
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	cl := &http.Client{Transport: &http.Transport{}}
	url := "http://" + ln.Addr().String() + "/x"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := cl.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
