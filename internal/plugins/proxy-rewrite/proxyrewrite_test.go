package proxyrewrite

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name, conf, err string
	}{
		{"uri", `{"uri":"/a"}`, ""},
		{"regex pairs", `{"regex_uri":["^/a/(.*)","/b/$1","^/c","/d"]}`, ""},
		{"odd regex_uri", `{"regex_uri":["^/a/(.*)","/b/$1","^/c"]}`, "The length of regex_uri should be an even number"},
		{"bad regex", `{"regex_uri":["[^/test/(.*)","/$1"]}`, "invalid regex_uri([^/test/(.*), /$1): "},
		{"bad template", "{\"regex_uri\":[\"^/test/(.*)\",\"/$`1\"]}", "invalid capturing variable name found"},
		{"unclosed bracket", `{"regex_uri":["^/test/(.*)","/${1"]}`, "the closing bracket in \"1\" variable is missing"},
		{"flat headers", `{"headers":{"X-Api":"v","X-N":1}}`, ""},
		{"flat bad field", `{"headers":{"X Api":"v"}}`, "invalid field character in header"},
		{"flat bad value", `{"headers":{"X-Api":"a\nb"}}`, "invalid value character in header"},
		{"new headers", `{"headers":{"add":{"X-A":["1",2]},"set":{"X-B":"$uri"},"remove":["X-C"]}}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tc.conf), nil)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	tests := []struct {
		name, conf, want string
	}{
		{"odd regex_uri", `{"regex_uri":["^/a","/b","^/c"]}`, `failed to check the configuration of plugin proxy-rewrite err: The length of regex_uri should be an even number`},
		{"empty conf", `{}`, `failed to check the configuration of plugin proxy-rewrite err: `},
		{"bad method", `{"method":"FOO"}`, `failed to check the configuration of plugin proxy-rewrite err: `},
		{"bad host", `{"host":"a b"}`, `failed to check the configuration of plugin proxy-rewrite err: `},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"proxy-rewrite":`+tc.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			if r.Status != 400 || !strings.Contains(r.Body, tc.want) {
				t.Fatalf("got %d %s, want 400 containing %q", r.Status, r.Body, tc.want)
			}
		})
	}
}

// rawGet sends a request line verbatim, for request-targets Go's client
// would normalise.
func rawGet(t *testing.T, proxyURL, target string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(proxyURL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	line := string(buf[:n])
	if len(line) < 12 {
		t.Fatalf("short response %q", line)
	}
	var code int
	for _, ch := range line[9:12] {
		code = code*10 + int(ch-'0')
	}
	return code
}

func TestRewrite(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name    string
		route   string // uri of the route
		conf    string
		path    string // request
		raw     bool   // send the request line verbatim
		headers map[string]string
		want    string // RequestURI the upstream received
		method  string
		host    string
		check   func(t *testing.T, got *http.Request)
	}{
		{name: "seed regex_uri", route: "/api/v1/orders/*", conf: `{"regex_uri":["^/api/v1/orders/(.*)","/orders/$1"]}`,
			path: "/api/v1/orders/42?expand=items", want: "/orders/42?expand=items"},
		{name: "regex no match keeps path", route: "/api/*", conf: `{"regex_uri":["^/nope/(.*)","/x/$1"]}`,
			path: "/api/a?b=1", want: "/api/a?b=1"},
		{name: "regex second pair", route: "/test/*", conf: `{"regex_uri":["^/nope/(.*)","/x/$1","^/test/(.*)/(.*)/(.*)","/${1}_$2_$3"]}`,
			path: "/test/plugin/proxy/rewrite", want: "/plugin_proxy_rewrite"},
		{name: "regex template with args", route: "/test/*", conf: `{"regex_uri":["^/test/(.*)/(.*)/(.*)","/$1_$2_$3?a=c"]}`,
			path: "/test/plugin/proxy/rewrite?x=1", want: "/plugin_proxy_rewrite?a=c&x=1"},
		{name: "static uri", route: "/hello", conf: `{"uri":"/plugin_proxy_rewrite"}`,
			path: "/hello?q=apisix&a=iresty", want: "/plugin_proxy_rewrite?q=apisix&a=iresty"},
		{name: "uri with query merges", route: "/hello", conf: `{"uri":"/plugin_proxy_rewrite_args?q=apisix"}`,
			path: "/hello?a=iresty", want: "/plugin_proxy_rewrite_args?q=apisix&a=iresty"},
		{name: "uri wins over regex_uri", route: "/test/*", conf: `{"uri":"/hello","regex_uri":["^/test/(.*)","/${1}1"]}`,
			path: "/test/x", want: "/hello"},
		{name: "uri with var", route: "/test", conf: `{"uri":"/$arg_new_uri"}`,
			path: "/test?new_uri=hello", want: "/hello?new_uri=hello"},
		{name: "uri var question escaped", route: "/hello*", conf: `{"uri":"/$uri/remain"}`, raw: true,
			path: "/hello%3f0z=700%26a=c%20HTTP/1.1%0D%0AHost:google.com%0d%0a%0d%0a",
			want: "//hello%253F0z=700&a=c%20HTTP/1.1%0D%0AHost:google.com%0D%0A%0D%0A/remain"},
		{name: "host only re-encodes path", route: "/hello*", conf: `{"host":"test.xxxx.com"}`, raw: true,
			path: "/hello%3f0z=700%26a=c%20HTTP/1.1%0D%0AHost:google.com%0d%0a%0d%0a",
			want: "/hello%3F0z=700&a=c%20HTTP/1.1%0D%0AHost:google.com%0D%0A%0D%0A", host: "test.xxxx.com"},
		{name: "safe path normalised", route: "/print_uri_detailed", conf: `{"headers":{"X-A":"1"}}`, raw: true,
			path: "/print%5Furi%5Fdetailed", want: "/print_uri_detailed"},
		{name: "unsafe keeps raw", route: "/print_uri_detailed", conf: `{"use_real_request_uri_unsafe":true}`, raw: true,
			path: "/print%5Furi%5Fdetailed?a=b", want: "/print%5Furi%5Fdetailed?a=b"},
		{name: "unsafe with uri merges query", route: "/hello", conf: `{"uri":"/plugin_proxy_rewrite_args?x=1","use_real_request_uri_unsafe":true}`,
			path: "/hello?q=apisix", want: "/plugin_proxy_rewrite_args?x=1&q=apisix"},
		{name: "method", route: "/m", conf: `{"method":"POST"}`, path: "/m", want: "/m", method: "POST"},
		{name: "host", route: "/h", conf: `{"host":"example.org:8080"}`, path: "/h", want: "/h", host: "example.org:8080"},
		{name: "header ops", route: "/echo", conf: `{"headers":{"add":{"Test":"123","X-Multi":["a","$arg_v"]},"set":{"Test2":"2233","X-Uri":"$uri","X-Def":"${http_x_missing ?? dflt}"},"remove":["hello"]}}`,
			path: "/echo?v=b", headers: map[string]string{"Test": "sssss", "Hello": "world"}, want: "/echo?v=b",
			check: func(t *testing.T, got *http.Request) {
				if v := got.Header.Values("Test"); strings.Join(v, ",") != "sssss,123" {
					t.Errorf("Test = %q", v)
				}
				if v := got.Header.Values("X-Multi"); strings.Join(v, ",") != "a,b" {
					t.Errorf("X-Multi = %q", v)
				}
				if got.Header.Get("Test2") != "2233" || got.Header.Get("X-Uri") != "/echo" || got.Header.Get("X-Def") != "dflt" {
					t.Errorf("set headers = %v", got.Header)
				}
				if _, ok := got.Header["Hello"]; ok {
					t.Errorf("Hello not removed")
				}
			}},
		{name: "set wins over add", route: "/echo", conf: `{"headers":{"add":{"test":"test_in_add"},"set":{"test":"test_in_set"}}}`,
			path: "/echo", want: "/echo",
			check: func(t *testing.T, got *http.Request) {
				if v := got.Header.Values("Test"); len(v) != 1 || v[0] != "test_in_set" {
					t.Errorf("Test = %q", v)
				}
			}},
		{name: "flat headers set and empty removes", route: "/echo", conf: `{"headers":{"X-Custom":"test.com","X-Drop":"","X-Num":5.5}}`,
			path: "/echo", headers: map[string]string{"X-Custom": "apisix.ai", "X-Drop": "x"}, want: "/echo",
			check: func(t *testing.T, got *http.Request) {
				if got.Header.Get("X-Custom") != "test.com" || got.Header.Get("X-Num") != "5.5" {
					t.Errorf("headers = %v", got.Header)
				}
				if _, ok := got.Header["X-Drop"]; ok {
					t.Errorf("X-Drop not removed")
				}
			}},
		{name: "captures in headers", route: "/test/*", conf: `{"regex_uri":["^/test/(.*)/(.*)/(.*)","/echo"],"headers":{"add":{"X-Request-ID":"$1/$2/$3"}}}`,
			path: "/test/plugin/proxy/rewrite", want: "/echo",
			check: func(t *testing.T, got *http.Request) {
				if got.Header.Get("X-Request-Id") != "plugin/proxy/rewrite" {
					t.Errorf("X-Request-ID = %q", got.Header.Get("X-Request-Id"))
				}
			}},
		{name: "unmatched captures empty", route: "/test/*", conf: `{"regex_uri":["^/test/(not_matched)?.*","/echo"],"headers":{"add":{"X-Request-ID":"test1/$1/$2/test2"}}}`,
			path: "/test/plugin/proxy/rewrite", want: "/echo",
			check: func(t *testing.T, got *http.Request) {
				if got.Header.Get("X-Request-Id") != "test1///test2" {
					t.Errorf("X-Request-ID = %q", got.Header.Get("X-Request-Id"))
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"`+tc.route+`","plugins":{"proxy-rewrite":`+tc.conf+`},"upstream":`+rec.Upstream()+`}`)
			before := rec.Count()
			if tc.raw {
				if code := rawGet(t, g.ProxyURL, tc.path); code != 200 {
					t.Fatalf("status %d", code)
				}
			} else {
				resp := g.Do("GET", tc.path, tc.headers, "")
				if resp.Status != 200 || resp.Body != "ok" {
					t.Fatalf("got %d %q", resp.Status, resp.Body)
				}
			}
			if rec.Count() != before+1 {
				t.Fatalf("upstream got %d requests", rec.Count()-before)
			}
			got := rec.Last()
			if got.RequestURI != tc.want {
				t.Errorf("upstream RequestURI = %q, want %q", got.RequestURI, tc.want)
			}
			if tc.method != "" && got.Method != tc.method {
				t.Errorf("method = %q, want %q", got.Method, tc.method)
			}
			if tc.host != "" && got.Host != tc.host {
				t.Errorf("host = %q, want %q", got.Host, tc.host)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func BenchmarkProxyRewrite(b *testing.B) {
	for _, bc := range []struct{ name, conf string }{
		{"regex_uri", `{"regex_uri":["^/api/v1/orders/(.*)","/orders/$1"]}`},
		{"static_uri", `{"uri":"/orders"}`},
		{"headers", `{"headers":{"set":{"X-A":"1"},"remove":["X-B"]}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			inst, err := New(json.RawMessage(bc.conf), nil)
			if err != nil {
				b.Fatal(err)
			}
			p := inst.(*Plugin)
			c := engine.AcquireCtx()
			defer engine.ReleaseCtx(c)
			r := &plugin.Request{Ctx: c}
			hdr := engine.Header{"X-B": {"x"}}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.Method, c.Path, c.RequestURI, c.Query = "GET", "/api/v1/orders/42", "/api/v1/orders/42", ""
				c.Header = hdr
				p.Rewrite(r)
			}
		})
	}
}
