package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoUpstream answers with what it received, so tests can see what the
// gateway forwarded.
func echoUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		w.Header().Set("Server", "upstream-server")
		fmt.Fprintf(w, "%s %s host=%s xff=%s xrip=%s xfp=%s", r.Method, r.RequestURI, r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Real-IP"), r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(s.Close)
	return s
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// waitRoute polls until a request is answered by something other than the
// 404 of an unknown route (the snapshot has caught up).
func (g *gw) waitRoute(path string, hdr map[string]string) resp {
	g.t.Helper()
	var r resp
	for i := 0; i < 100; i++ {
		r = g.proxy("GET", path, hdr)
		if r.Status != 404 || !strings.Contains(string(r.Body), "404 Route Not Found") {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

func TestProxyBasics(t *testing.T) {
	g := startDefault(t, "")
	up := echoUpstream(t, "a")
	r := g.admin("PUT", "/apisix/admin/upstreams/1", fmt.Sprintf(`{"nodes":{"%s":1}}`, hostPort(up)))
	if r.Status != 201 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	g.admin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello/*","upstream_id":"1"}`)

	r = g.waitRoute("/hello/world?x=1", map[string]string{"Host": "example.com", "X-Forwarded-For": "1.2.3.4"})
	if r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	body := string(r.Body)
	for _, want := range []string{"GET /hello/world?x=1", "host=example.com", "xff=1.2.3.4, 127.0.0.1", "xrip=127.0.0.1", "xfp=http"} {
		if !strings.Contains(body, want) {
			t.Errorf("upstream saw %q, want %q in it", body, want)
		}
	}
	if s := r.Header.Get("Server"); !strings.HasPrefix(s, "APISIX") {
		t.Errorf("Server %q", s)
	}

	t.Run("no route", func(t *testing.T) {
		r := g.proxy("GET", "/nope", nil)
		if r.Status != 404 || string(r.Body) != "{\"error_msg\":\"404 Route Not Found\"}\n" {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
	})

	t.Run("upstream down is 502", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		ln.Close()
		g.admin("PUT", "/apisix/admin/routes/dead", fmt.Sprintf(`{"uri":"/dead","upstream":{"nodes":{"%s":1}}}`, dead))
		r := g.waitRoute("/dead", nil)
		if r.Status != 502 || !strings.Contains(string(r.Body), "502 Bad Gateway") {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	t.Run("service inheritance and hosts", func(t *testing.T) {
		b := echoUpstream(t, "b")
		g.admin("PUT", "/apisix/admin/services/s1", fmt.Sprintf(`{"hosts":["svc.example.com"],"upstream":{"nodes":{"%s":1}}}`, hostPort(b)))
		g.admin("PUT", "/apisix/admin/routes/svc", `{"uri":"/svc","service_id":"s1"}`)
		r := g.waitRoute("/svc", map[string]string{"Host": "svc.example.com"})
		if r.Status != 200 || r.Header.Get("X-Upstream") != "b" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if r := g.proxy("GET", "/svc", map[string]string{"Host": "other.example.com"}); r.Status != 404 {
			t.Fatalf("host mismatch must not match: %d", r.Status)
		}
	})

	t.Run("route deleted stops matching", func(t *testing.T) {
		g.admin("DELETE", "/apisix/admin/routes/svc", "")
		for i := 0; i < 100; i++ {
			if r := g.proxy("GET", "/svc", map[string]string{"Host": "svc.example.com"}); r.Status == 404 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("deleted route still served")
	})
}

func TestProxyRoundRobin(t *testing.T) {
	g := startDefault(t, "")
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/rr","upstream":{"type":"roundrobin","nodes":{"%s":1,"%s":1}}}`, hostPort(a), hostPort(b)))
	g.waitRoute("/rr", nil)
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		seen[g.proxy("GET", "/rr", nil).Header.Get("X-Upstream")]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Fatalf("distribution %v", seen)
	}
}

func TestRemoteAddrsWithRealIP(t *testing.T) {
	g := startDefault(t, "")
	up := echoUpstream(t, "a")
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/ra","remote_addrs":["10.0.0.0/8"],"upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.admin("PUT", "/apisix/admin/routes/2", fmt.Sprintf(`{"uri":"/ok","upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.waitRoute("/ok", nil)
	// 127.0.0.1 is a trusted real_ip_from peer by default, as in APISIX.
	if r := g.proxy("GET", "/ra", map[string]string{"X-Real-IP": "10.1.2.3"}); r.Status != 200 || !strings.Contains(string(r.Body), "xrip=10.1.2.3") {
		t.Fatalf("X-Real-IP from a trusted peer: %d %s", r.Status, r.Body)
	}
	if r := g.proxy("GET", "/ra", nil); r.Status != 404 {
		t.Fatalf("127.0.0.1 is not in 10/8: %d", r.Status)
	}
	if r := g.proxy("GET", "/ra", map[string]string{"X-Forwarded-For": "10.1.2.3"}); r.Status != 404 {
		t.Fatalf("X-Forwarded-For must not set the client address: %d", r.Status)
	}
}

func TestNodeHostname(t *testing.T) {
	g := startDefault(t, "")
	up := echoUpstream(t, "named")
	port := strings.Split(hostPort(up), ":")[1]
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/named","upstream":{"pass_host":"node","nodes":[{"host":"localhost","port":%s,"weight":1}]}}`, port))
	r := g.waitRoute("/named", nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), "host=localhost:"+port) {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

// TestForwardedPathMatchesRoutedPath: a path that decodes to another path
// (dot segments, encoded slashes) is forwarded as the path the router
// matched, never as the raw form (hardening.md §F); ordinary encodings are
// forwarded verbatim.
func TestForwardedPathMatchesRoutedPath(t *testing.T) {
	g := startDefault(t, "")
	up := newPathRecorder(t)
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/admin/*","upstream":{"nodes":{"%s":1}}}`, hostPort(up.Server)))
	g.waitRoute("/admin/x", nil)
	cases := []struct{ raw, want string }{
		{"/public/%2e%2e/admin/x?a=1", "/admin/x?a=1"},
		{"/public%2f..%2fadmin/x", "/admin/x"},
		{"//admin//x", "/admin/x"},
		{"/admin/a%20b?q=%20", "/admin/a%20b?q=%20"},
		{"/admin/x", "/admin/x"},
	}
	for _, c := range cases {
		t.Run(c.raw, func(t *testing.T) {
			conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.httpPort))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", c.raw)
			buf := make([]byte, 4096)
			n, _ := io.ReadFull(conn, buf[:12])
			if n < 12 || string(buf[9:12]) != "200" {
				t.Fatalf("status line %q", buf[:n])
			}
			got, _, _ := up.last()
			if got != c.want {
				t.Fatalf("upstream saw %q, want %q", got, c.want)
			}
		})
	}
}

// TestServerTokensOff checks apisix.enable_server_tokens: false on the data
// plane: proxied responses (whose upstream sets its own Server), the
// gateway's own 404 and the Admin API say just "APISIX", and the engine's
// rejection of a malformed request never shows the version.
func TestServerTokensOff(t *testing.T) {
	a, h := freePort(t), freePort(t)
	cfg := strings.Replace(defaultConfig(a, h, ""), "apisix:\n", "apisix:\n  enable_server_tokens: false\n", 1)
	g := start(t, newDir(t), a, h, cfg)
	up := echoUpstream(t, "one")
	if r := g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/tok","upstream":{"nodes":{"%s":1}}}`, hostPort(up))); r.Status >= 300 {
		t.Fatalf("route: %d %s", r.Status, r.Body)
	}
	g.waitRoute("/tok", nil)
	for _, tc := range []struct {
		name string
		r    resp
	}{
		{"proxied", g.proxy("GET", "/tok", nil)},
		{"no route", g.proxy("GET", "/nowhere", nil)},
		{"admin", g.admin("GET", "/apisix/admin/routes", "")},
	} {
		if s := tc.r.Header.Get("Server"); s != "APISIX" {
			t.Errorf("%s: Server %q, want APISIX", tc.name, s)
		}
	}
	raw := rawRequest(t, fmt.Sprintf("127.0.0.1:%d", h), "GET /tok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	// The fast engine answers it itself (Server: APISIX); net/http's own
	// 400 carries no Server header at all (docs/engine.md).
	if !strings.HasPrefix(raw, "HTTP/1.1 400") || strings.Contains(raw, "APISIX/") {
		t.Errorf("rejected request: %q", raw)
	}
}

// rawRequest writes req on a fresh connection and returns what comes back
// until the server closes or 3 s pass.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}
