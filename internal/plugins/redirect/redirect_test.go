package redirect

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestNewValidation(t *testing.T) {
	tests := []struct{ name, conf, err string }{
		{"uri", `{"uri":"/a"}`, ""},
		{"regex", `{"regex_uri":["^/test/(.*)","http://test.com/${1}"]}`, ""},
		{"bad regex", `{"regex_uri":["[","/x"]}`, "invalid regex_uri ([, /x), err:"},
		{"bad template", "{\"regex_uri\":[\"^/(.*)\",\"/$`1\"]}", "invalid capturing variable name found"},
		{"both https and query", `{"http_to_https":true,"append_query_string":true}`, "only one of `http_to_https` and `append_query_string` can be configured."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tc.conf), nil)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	for _, conf := range []string{`{"uri":"/a","http_to_https":true}`, `{"ret_code":302}`, `{"uri":"/a","ret_code":100}`, `{"http_to_https":true,"append_query_string":true}`} {
		r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"redirect":`+conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
		if r.Status != 400 || !strings.Contains(r.Body, "failed to check the configuration of plugin redirect err: ") {
			t.Errorf("%s: got %d %s", conf, r.Status, r.Body)
		}
	}
}

func TestRedirect(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name, route, conf, method, path string
		headers                         map[string]string
		status                          int
		location                        string
	}{
		{"static", "/hello", `{"uri":"/test/add","ret_code":301}`, "GET", "/hello", nil, 301, "/test/add"},
		{"default 302", "/hello", `{"uri":"/test/add"}`, "GET", "/hello", nil, 302, "/test/add"},
		{"vars", "/hello", `{"uri":"$uri/test/a${arg_name}c"}`, "GET", "/hello?name=json", nil, 302, "/hello/test/ajsonc"},
		{"dollar literal", "/hello", `{"uri":"/foo$$uri"}`, "GET", "/hello", nil, 302, "/foo$/hello"},
		{"escaped var", "/hello", `{"uri":"\\$uri/foo$uri\\$uri/bar","ret_code":301}`, "GET", "/hello", nil, 301, `\$uri/foo/hello\$uri/bar`},
		{"unknown var", "/hello", `{"uri":"$uri/$bad_var/bar"}`, "GET", "/hello", nil, 302, "/hello//bar"},
		{"host var", "/hello", `{"uri":"https://$host$request_uri","ret_code":301}`, "GET", "/hello?a=1", map[string]string{"Host": "foo.com"}, 301, "https://foo.com/hello?a=1"},
		{"https GET", "/hello", `{"http_to_https":true,"ret_code":302}`, "GET", "/hello?a=1", map[string]string{"Host": "foo.com"}, 301, "https://foo.com/hello?a=1"},
		{"https POST", "/hello", `{"http_to_https":true}`, "POST", "/hello", map[string]string{"Host": "test.com"}, 308, "https://test.com/hello"},
		{"already https", "/hello", `{"http_to_https":true}`, "GET", "/hello", map[string]string{"X-Forwarded-Proto": "https"}, 200, ""},
		{"regex", "/test/*", `{"regex_uri":["^/test/(.*)","http://test.com/${1}"],"ret_code":301}`, "GET", "/test/1", nil, 301, "http://test.com/1"},
		{"regex no match", "/*", `{"regex_uri":["^/test/(.*)","http://test.com/${1}"],"ret_code":301}`, "GET", "/hello", nil, 200, ""},
		{"encode", "/test/*", `{"regex_uri":["^/test/(.*)","http://test.com/${1}"],"encode_uri":true}`, "GET", "/test/with%20space", nil, 302, "http://test.com/with%20space"},
		{"encode splits at decoded ?", "/test/*", `{"regex_uri":["^/test/(.*)","http://test.com/${1}"],"encode_uri":true}`, "GET", "/test/a%20b%3Fc", nil, 302, "http://test.com/a%20b?c"},
		{"encode keeps query", "/test/*", `{"uri":"/x y?a=b c","encode_uri":true}`, "GET", "/test/1", nil, 302, "/x%20y?a=b c"},
		{"append query", "/test/*", `{"uri":"/new","append_query_string":true}`, "GET", "/test/1?a=1&b=2", nil, 302, "/new?a=1&b=2"},
		{"append query with &", "/test/*", `{"uri":"/new?x=y","append_query_string":true}`, "GET", "/test/1?a=1", nil, 302, "/new?x=y&a=1"},
		{"append without query", "/test/*", `{"uri":"/new","append_query_string":true}`, "GET", "/test/1", nil, 302, "/new"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"`+tc.route+`","plugins":{"redirect":`+tc.conf+`},"upstream":`+rec.Upstream()+`}`)
			before := rec.Count()
			resp := do(t, g, tc.method, tc.path, tc.headers)
			if resp.Status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", resp.Status, tc.status, resp.Body)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location = %q, want %q", got, tc.location)
			}
			reached := rec.Count() - before
			if tc.status == 200 && reached != 1 || tc.status != 200 && reached != 0 {
				t.Errorf("upstream got %d requests", reached)
			}
		})
	}
}

// response is what do returns.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// do sends a request without following redirects (plugintest's client
// follows them).
func do(t *testing.T, g *plugintest.Gateway, method, path string, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, g.ProxyURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func TestHTTPSPort(t *testing.T) {
	for _, tc := range []struct {
		attr map[string]any
		want string
	}{
		{map[string]any{"https_port": 8443}, "https://foo.com:8443/hello"},
		{map[string]any{"https_port": float64(443)}, "https://foo.com/hello"},
		{map[string]any{"https_port": 70000}, "https://foo.com/hello"},
		{nil, "https://foo.com/hello"},
	} {
		inst, err := New(json.RawMessage(`{"http_to_https":true}`), &plugin.BuildEnv{Attr: tc.attr})
		if err != nil {
			t.Fatal(err)
		}
		w := newWriter()
		c := engine.AcquireCtx()
		c.Method, c.Path, c.RequestURI, c.Host, c.Scheme, c.W = "GET", "/hello", "/hello", "foo.com", "http", w
		r := &plugin.Request{Ctx: c}
		inst.(*Plugin).Rewrite(r)
		if got := w.h.Get("Location"); got != tc.want || w.status != 301 || !r.Exited() {
			t.Errorf("attr %v: Location %q status %d, want %q", tc.attr, got, w.status, tc.want)
		}
		engine.ReleaseCtx(c)
	}
}

type writer struct {
	h      engine.Header
	status int
}

func newWriter() *writer                      { return &writer{h: engine.Header{}} }
func (w *writer) Header() engine.Header       { return w.h }
func (w *writer) WriteHeader(s int)           { w.status = s }
func (w *writer) Write(p []byte) (int, error) { return len(p), nil }
func (w *writer) Flush() error                { return nil }

func BenchmarkRedirect(b *testing.B) {
	for _, bc := range []struct{ name, conf string }{
		{"static", `{"uri":"/new"}`},
		{"vars", `{"uri":"https://$host$request_uri"}`},
		{"http_to_https", `{"http_to_https":true}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			inst, err := New(json.RawMessage(bc.conf), nil)
			if err != nil {
				b.Fatal(err)
			}
			p := inst.(*Plugin)
			w := newWriter()
			c := engine.AcquireCtx()
			defer engine.ReleaseCtx(c)
			c.Method, c.Path, c.RequestURI, c.Host, c.Scheme, c.W = "GET", "/hello", "/hello?a=1", "foo.com", "http", w
			c.Header = engine.Header{}
			r := &plugin.Request{Ctx: c}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p.Rewrite(r)
				r.Reset()
				r.Ctx = c
			}
		})
	}
}
