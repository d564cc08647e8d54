package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/version"
)

// gateway starts the std engine on 127.0.0.1 with a handler that forwards
// every request to the targets addrs (in order, one per attempt).
func gateway(t testing.TB, opt *Options, addrs ...string) (string, *Forwarder) {
	t.Helper()
	f := NewForwarder(nil)
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		f.Forward(c, func(n int) (Target, bool) {
			if n >= len(addrs) {
				return Target{}, false
			}
			return Target{Scheme: "http", Addr: addrs[n]}, true
		}, opt)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := std.New(h, std.DefaultLimits(), nil)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		f.CloseIdle()
	})
	return ln.Addr().String(), f
}

func upstream(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// refusedAddr returns an address nothing listens on.
func refusedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestHeadersSentUpstream(t *testing.T) {
	got := make(chan *http.Request, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.Header().Set("Server", "nginx")
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	})
	gw, _ := gateway(t, &Options{}, up)
	resp := rawRequest(t, gw, "GET /a/../b%2Fc?x=1&y=%20 HTTP/1.1\r\nHost: Example.com:8080\r\n"+
		"Connection: close, X-Secret, X-Real-IP, X-Forwarded-For\r\nX-Secret: s\r\nKeep-Alive: 1\r\n"+
		"Proxy-Authorization: p\r\nTE: gzip\r\nUpgrade: websocket\r\nForwarded: for=1.2.3.4\r\n"+
		"X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil\r\nX-Keep: k\r\n\r\n")
	r := <-got
	checks := []struct{ name, got, want string }{
		{"request uri raw", r.RequestURI, "/a/../b%2Fc?x=1&y=%20"},
		{"host pass", r.Host, "Example.com:8080"},
		{"x-real-ip", r.Header.Get("X-Real-IP"), "127.0.0.1"},
		{"xff", r.Header.Get("X-Forwarded-For"), ""}, // named in Connection: client's value removed, ours set below
		{"x-forwarded-proto", r.Header.Get("X-Forwarded-Proto"), "http"},
		{"x-forwarded-host", r.Header.Get("X-Forwarded-Host"), "Example.com:8080"},
		{"x-forwarded-port", r.Header.Get("X-Forwarded-Port"), "8080"},
		{"connection-listed", r.Header.Get("X-Secret"), ""},
		{"keep-alive", r.Header.Get("Keep-Alive"), ""},
		{"proxy-*", r.Header.Get("Proxy-Authorization"), ""},
		{"te", r.Header.Get("Te"), ""},
		{"upgrade", r.Header.Get("Upgrade"), ""},
		{"forwarded", r.Header.Get("Forwarded"), ""},
		{"end-to-end kept", r.Header.Get("X-Keep"), "k"},
	}
	// The client listed X-Forwarded-For in Connection, so its own value is
	// gone, but the gateway's always arrives.
	checks[3].want = "127.0.0.1"
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %q, want %q", c.got, c.want)
			}
		})
	}
	t.Run("response headers", func(t *testing.T) {
		if !strings.Contains(resp, "Server: "+version.Server+"\r\n") {
			t.Errorf("server header not replaced:\n%s", resp)
		}
		for _, h := range []string{"X-Up-Hop", "Keep-Alive: timeout"} {
			if strings.Contains(resp, h) {
				t.Errorf("hop-by-hop %q forwarded:\n%s", h, resp)
			}
		}
	})
}

func TestXFFAppendAndTrust(t *testing.T) {
	got := make(chan http.Header, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) { got <- r.Header })
	tests := []struct {
		name             string
		opt              *Options
		wantXFF, wantXFP string
	}{
		{"no trusted list appends", &Options{}, "1.1.1.1, 2.2.2.2, 127.0.0.1", "http"},
		{"untrusted peer drops", &Options{TrustedProxy: func(a netip.Addr) bool { return false }}, "127.0.0.1", "http"},
		{"trusted peer keeps", &Options{TrustedProxy: func(a netip.Addr) bool { return a.IsLoopback() }}, "1.1.1.1, 2.2.2.2, 127.0.0.1", "https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw, _ := gateway(t, tc.opt, up)
			req, _ := http.NewRequest("GET", "http://"+gw+"/", nil)
			req.Header.Add("X-Forwarded-For", "1.1.1.1")
			req.Header.Add("X-Forwarded-For", "2.2.2.2")
			req.Header.Set("X-Forwarded-Proto", "https")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := <-got
			if x := h.Get("X-Forwarded-For"); x != tc.wantXFF {
				t.Errorf("xff %q, want %q", x, tc.wantXFF)
			}
			if x := h.Get("X-Forwarded-Proto"); x != tc.wantXFP {
				t.Errorf("xfp %q, want %q", x, tc.wantXFP)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	slow := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	five := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, "upstream says no")
	})
	ok := upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "second") })
	refused := refusedAddr(t)
	tests := []struct {
		name       string
		opt        *Options
		addrs      []string
		wantStatus int
		wantUS     string
		wantBody   string
	}{
		{"refused 502", &Options{}, []string{refused}, 502, "502", string(engine.ErrorPage(502))},
		{"no target 503", &Options{}, nil, 503, "", string(engine.ErrorPage(503))},
		{"timeout 504", &Options{Timeouts: Timeouts{Read: 200 * time.Millisecond}}, []string{slow}, 504, "504", string(engine.ErrorPage(504))},
		{"retry to second node", &Options{Retries: 1}, []string{refused, ok}, 200, "", "second"},
		{"retries exhausted", &Options{Retries: 3}, []string{refused, refused}, 502, "502, 502", string(engine.ErrorPage(502))},
		{"5xx passed through", &Options{Retries: 1}, []string{five, ok}, 500, "500", "upstream says no"},
		{"retry then 5xx", &Options{Retries: 1}, []string{refused, five}, 500, "502, 500", "upstream says no"},
		{"no retry when 0", &Options{Retries: 0}, []string{refused, ok}, 502, "502", string(engine.ErrorPage(502))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw, _ := gateway(t, tc.opt, tc.addrs...)
			resp, err := http.Get("http://" + gw + "/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if us := resp.Header.Get("X-Apisix-Upstream-Status"); us != tc.wantUS {
				t.Errorf("X-APISIX-Upstream-Status %q, want %q", us, tc.wantUS)
			}
			if string(b) != tc.wantBody {
				t.Errorf("body %q, want %q", b, tc.wantBody)
			}
			if s := resp.Header.Get("Server"); s != version.Server {
				t.Errorf("server %q", s)
			}
			if tc.wantStatus >= 502 && resp.Header.Get("Content-Type") != engine.ErrorPageContentType {
				t.Errorf("content-type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestNoRetryAfterPOSTBodySent(t *testing.T) {
	var hits atomic.Int32
	// The first upstream reads the body and then drops the connection.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			bufio.NewReader(c).ReadString('x')
			c.Close()
		}
	}()
	ok := upstream(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(100) })
	gw, _ := gateway(t, &Options{Retries: 1}, ln.Addr().String(), ok)
	resp, err := http.Post("http://"+gw+"/", "text/plain", strings.NewReader("body-x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || hits.Load() >= 100 {
		t.Errorf("status %d hits %d: POST must not be retried after its body was sent", resp.StatusCode, hits.Load())
	}
}

func TestSSEStreaming(t *testing.T) {
	release := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: two\n\n")
	})
	gw, _ := gateway(t, &Options{}, up)
	resp, err := http.Get("http://" + gw + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); got <- l }()
	select {
	case l := <-got:
		if l != "data: one\n" {
			t.Errorf("got %q", l)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("first event not delivered before upstream finished")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Errorf("rest %q", rest)
	}
}

// genReader yields n bytes without holding them.
type genReader struct{ left int64 }

func (g *genReader) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	for i := range p {
		p[i] = 'a'
	}
	g.left -= int64(len(p))
	return len(p), nil
}

func TestLargeBodyBoundedMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 256 << 20
	}
	var got atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		fmt.Fprint(w, n)
	})
	gw, _ := gateway(t, &Options{}, up)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+gw+"/up", &genReader{left: size})
			if !chunked {
				req.ContentLength = size
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got.Load() != size {
				t.Fatalf("upstream got %d, want %d", got.Load(), size)
			}
		})
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapSys) - int64(before.HeapSys); grown > 64<<20 {
		t.Errorf("heap grew by %d MiB for a %d MiB upload", grown>>20, size>>20)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(5 * time.Second):
		}
	})
	gw, _ := gateway(t, &Options{}, up)
	c, err := net.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("upstream request not cancelled after client disconnect")
	}
}

func TestTrailersAndExpect(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, string(b)+r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set("X-Sum", "42")
	})
	gw, _ := gateway(t, &Options{}, up)
	t.Run("trailers", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "http://"+gw+"/", io.MultiReader(strings.NewReader("abc")))
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Req-Trailer": nil}
		req.Body = io.NopCloser(&trailerSetter{r: strings.NewReader("abc"), req: req})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "abcT" || resp.Trailer.Get("X-Sum") != "42" {
			t.Errorf("body %q trailer %q", b, resp.Trailer.Get("X-Sum"))
		}
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		c, err := net.Dial("tcp", gw)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("got %q, want 100 Continue", line)
		}
		br.ReadString('\n')
		io.WriteString(c, "hello")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Errorf("status %d body %q", resp.StatusCode, b)
		}
	})
}

// trailerSetter sets the request trailer when its body ends.
type trailerSetter struct {
	r   io.Reader
	req *http.Request
}

func (s *trailerSetter) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.req.Trailer.Set("X-Req-Trailer", "T")
	}
	return n, err
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func TestWebSocketEcho(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		io.Copy(conn, brw) // echo the raw bytes
	})
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("enabled=%v", enabled), func(t *testing.T) {
			gw, _ := gateway(t, &Options{WebSocket: enabled}, up)
			c, err := net.Dial("tcp", gw)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !enabled {
				if resp.StatusCode != 400 {
					t.Errorf("status %d, want upstream's 400 (upgrade stripped)", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != wsAccept("dGhlIHNhbXBsZSBub25jZQ==") {
				t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
			}
			if resp.Header.Get("Server") != version.Server {
				t.Errorf("server %q", resp.Header.Get("Server"))
			}
			for _, msg := range []string{"ping-1", "ping-2"} {
				io.WriteString(c, msg)
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo %q err %v", buf, err)
				}
			}
		})
	}
}

func BenchmarkForward(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := upstream(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	gw, _ := gateway(b, &Options{}, up)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	url := "http://" + gw + "/bench?x=1"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := cl.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
