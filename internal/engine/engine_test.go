package engine

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/a/b", "/a/b", true},
		{"/a/b/", "/a/b/", true},
		{"/public/../admin/x", "/admin/x", true},
		{"/public/%2e%2e/admin/x", "/admin/x", true},
		{"/public/.%2E/admin/x", "/admin/x", true},
		{"/public%2f..%2fadmin/x", "/admin/x", true},
		{"/public/%252e%252e/admin", "/public/%2e%2e/admin", true},
		{"//admin/x", "/admin/x", true},
		{"/public//../admin", "/admin", true},
		{"/a/./b/.", "/a/b/", true},
		{"/a/b/..", "/a/", true},
		{"/a%20b", "/a b", true},
		{"/caf%C3%A9", "/café", true},
		{"/admin;x=1/", "/admin;x=1/", true},
		{"/..", "", false},
		{"/a/../..", "", false},
		{"/admin%00.json", "", false},
		{"/a%zz", "", false},
		{"/a%2", "", false},
		{"/a#b", "", false},
		{"/%c0%ae", "", false},
		{"a/b", "", false},
		{"", "", false},
		{"*", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := NormalizePath(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { NormalizePath("/api/v1/users/123") }); n != 0 {
		t.Errorf("clean path allocates %v times", n)
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/", "//x//y/", "/a%2fb", "/%c0%ae"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := NormalizePath(in)
		if !ok {
			return
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || strings.Contains(out, "\x00") ||
			!utf8.ValidString(out) {
			t.Fatalf("%q -> %q", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q keeps a dot segment", in, out)
			}
		}
		// Normalising again must be stable for paths without '%'.
		if !strings.Contains(out, "%") {
			if again, ok := NormalizePath(out); !ok || again != out {
				t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
			}
		}
	})
}

func TestErrorPage(t *testing.T) {
	if n := len(ErrorPage(400)); n != 229 {
		t.Errorf("400 page is %d bytes, want 229 (APISIX docs)", n)
	}
	tests := map[int]string{502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable",
		504: "504 Gateway Time-out", 404: "404 Not Found", 403: "403 Forbidden", 500: "500 Internal Server Error"}
	for code, title := range tests {
		p := string(ErrorPage(code))
		want := "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title +
			"</h1></center>\r\n<hr><center>openresty</center>\r\n"
		if !strings.HasPrefix(p, want) {
			t.Errorf("%d: %q", code, p)
		}
	}
}

func TestVar(t *testing.T) {
	c := AcquireCtx()
	defer ReleaseCtx(c)
	c.Method, c.Path, c.RequestURI, c.Query, c.Host, c.Scheme = "GET", "/a", "/a?x=1&Y=2&z", "x=1&Y=2&z", "ex.com", "https"
	c.Header = Header{"X-Api-Key": {"k"}, "Cookie": {"a=1; sess=abc"}, "Content-Type": {"text/plain"}}
	c.RemoteAddr = netip.MustParseAddrPort("10.0.0.1:5555")
	c.LocalAddr = netip.MustParseAddrPort("127.0.0.1:9080")
	c.UpstreamStatus = append(c.UpstreamStatus, 502, 200)
	c.RouteID = "r1"
	c.SetVar("custom", "v")
	tests := map[string]string{
		"uri": "/a", "request_uri": "/a?x=1&Y=2&z", "host": "ex.com", "request_method": "GET",
		"remote_addr": "10.0.0.1", "remote_port": "5555", "server_port": "9080", "server_addr": "127.0.0.1",
		"scheme": "https", "args": "x=1&Y=2&z", "http_x_api_key": "k", "arg_x": "1", "arg_y": "2", "arg_z": "",
		"cookie_sess": "abc", "content_type": "text/plain", "route_id": "r1",
		"upstream_status": "502, 200", "custom": "v",
	}
	for name, want := range tests {
		if got, ok := c.Var(name); !ok || got != want {
			t.Errorf("Var(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"http_missing", "arg_nope", "cookie_none", "consumer_name"} {
		if _, ok := c.Var(name); ok {
			t.Errorf("Var(%q) set", name)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.Var("http_x_api_key"); c.Var("arg_y"); c.Var("uri") }); n != 0 {
		t.Errorf("Var allocates %v times", n)
	}
}

func TestRemoveConnectionListed(t *testing.T) {
	h := Header{"Connection": {"close, X-Secret", "upgrade"}, "X-Secret": {"s"}, "Upgrade": {"websocket"}, "X-Keep": {"k"}}
	h.RemoveConnectionListed()
	if h.Get("X-Secret") != "" || h.Get("Upgrade") == "" || h.Get("X-Keep") != "k" {
		t.Errorf("got %v", h)
	}
}

func BenchmarkVarHeader(b *testing.B) {
	c := AcquireCtx()
	c.Header = Header{"X-Api-Key": {"k"}, "User-Agent": {"ua"}}
	b.ReportAllocs()
	for b.Loop() {
		c.Var("http_x_api_key")
	}
}

func TestIsHopByHop(t *testing.T) {
	for _, k := range hopByHop {
		if !IsHopByHop(k) {
			t.Errorf("IsHopByHop(%q) = false", k)
		}
	}
	for _, k := range []string{"Proxy-Foo", "Proxy-"} {
		if !IsHopByHop(k) {
			t.Errorf("IsHopByHop(%q) = false", k)
		}
	}
	for _, k := range []string{"Content-Type", "Connectionx", "te", "Host", "X-Proxy-A", ""} {
		if IsHopByHop(k) {
			t.Errorf("IsHopByHop(%q) = true", k)
		}
	}
}

func TestOriginFormAndNormHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a?b", "/a?b"}, {"http://h/p?q", "/p?q"}, {"http://h?q", "/?q"}, {"http://h", "/"}, {"*", "*"},
	} {
		if got := OriginForm(tc.in); got != tc.want {
			t.Errorf("OriginForm(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"Example.COM:8080", "example.com"}, {"a.b.", "a.b"}, {"[::1]:80", "[::1]"}, {"host", "host"},
	} {
		if got := NormHost(tc.in); got != tc.want {
			t.Errorf("NormHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { NormHost("example.com:80") }); n != 0 {
		t.Errorf("NormHost of a lowercase host allocates %v times", n)
	}
}
