package cors_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/cors"
	"github.com/sluice-gw/sluice/internal/plugins/csrf"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestNew(t *testing.T) {
	const credErr = "you can not set '*' for other option when 'allow_credential' is true"
	tests := []struct {
		name, conf, err string
	}{
		{"empty", `{}`, ""},
		{"apisix sanity", `{"allow_origins":"http://test.com","allow_methods":"","allow_headers":"","expose_headers":"","max_age":600,"allow_credential":true}`, ""},
		{"force wildcard with credentials", `{"allow_origins":"**","allow_methods":"**","allow_headers":"**","expose_headers":"x","allow_credential":true}`, ""},
		{"origins * with credentials", `{"allow_credential":true,"allow_methods":"GET","allow_headers":"h"}`, credErr},
		{"methods * with credentials", `{"allow_credential":true,"allow_origins":"http://a.com","allow_headers":"h"}`, credErr},
		{"headers * with credentials", `{"allow_credential":true,"allow_origins":"http://a.com","allow_methods":"GET"}`, credErr},
		{"expose * with credentials", `{"allow_credential":true,"allow_origins":"http://a.com","allow_methods":"GET","allow_headers":"h","expose_headers":"*"}`, credErr},
		{"timing * with credentials", `{"allow_credential":true,"allow_origins":"http://a.com","allow_methods":"GET","allow_headers":"h","timing_allow_origins":"*"}`, credErr},
		{"bad regex", `{"allow_origins_by_regex":["("]}`, "error parsing regexp: missing closing ): `(`"},
		{"bad timing regex", `{"timing_allow_origins_by_regex":["[a"]}`, "error parsing regexp: missing closing ]: `[a`"},
		{"good regex", `{"allow_origins_by_regex":[".*\\.test\\.com$"]}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cors.New(json.RawMessage(tc.conf))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("err = %q, want %q", got, tc.err)
			}
		})
	}
}

// TestAdminSchema checks the schema and check messages through the Admin
// API, as APISIX's cors.t, cors2.t and cors3.t do.
func TestAdminSchema(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{cors.Def()}, nil)
	good := []string{"*", "**", "null", "http://y.com.uk", "https://x.com", "https://x.com,http://y.com.uk",
		"https://x.com,http://y.com.uk,http://c.tv", "https://x.com,http://y.com.uk:12000,http://c.tv"}
	bad := []string{"", "*a", "*,http://y.com", "nulll", "http//y.com.uk", "x.com", "https://x.com,y.com.uk",
		"https://x.com,*,https://y.com.uk", "https://x.com,http://y.com.uk,http:c.tv"}
	put := func(conf string) *plugintest.Response {
		return g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"cors":`+conf+`},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}}`)
	}
	for _, field := range []string{"allow_origins", "timing_allow_origins"} {
		for _, v := range good {
			if r := put(fmt.Sprintf(`{%q:%q}`, field, v)); r.Status != 200 && r.Status != 201 {
				t.Errorf("%s %q rejected: %d %s", field, v, r.Status, r.Body)
			}
		}
		for _, v := range bad {
			if r := put(fmt.Sprintf(`{%q:%q}`, field, v)); r.Status != 400 {
				t.Errorf("%s %q accepted: %d %s", field, v, r.Status, r.Body)
			}
		}
	}
	for _, v := range good {
		if r := g.Admin("PUT", "/apisix/admin/plugin_metadata/cors", fmt.Sprintf(`{"allow_origins":{"k":%q}}`, v)); r.Status != 200 && r.Status != 201 {
			t.Errorf("metadata %q rejected: %d %s", v, r.Status, r.Body)
		}
	}
	for _, v := range bad {
		if r := g.Admin("PUT", "/apisix/admin/plugin_metadata/cors", fmt.Sprintf(`{"allow_origins":{"k":%q}}`, v)); r.Status != 400 {
			t.Errorf("metadata %q accepted: %d %s", v, r.Status, r.Body)
		}
	}
	r := put(`{"max_age":"600"}`)
	if want := `{"error_msg":"failed to check the configuration of plugin cors err: property \"max_age\" validation failed: wrong type: expected integer, got string"}`; r.Status != 400 || strings.TrimSpace(r.Body) != want {
		t.Errorf("max_age string: %d %s", r.Status, r.Body)
	}
	r = put(`{"allow_credential":true}`)
	if want := `{"error_msg":"failed to check the configuration of plugin cors err: you can not set '*' for other option when 'allow_credential' is true"}`; r.Status != 400 || strings.TrimSpace(r.Body) != want {
		t.Errorf("credential: %d %s", r.Status, r.Body)
	}
}

// upstream answers like APISIX's test server: it echoes the resp-vary
// request header as Vary and sets CORS headers of its own, which the
// plugin must overwrite.
func upstream(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("Resp-Vary"); v != "" {
			w.Header().Set("Vary", v)
		}
		w.Header().Set("Access-Control-Allow-Origin", "http://upstream.example")
		w.Header().Set("Access-Control-Allow-Methods", "upstream")
		w.Header().Set("Access-Control-Max-Age", "999")
		_, _ = w.Write([]byte("hello world\n"))
	}))
	t.Cleanup(s.Close)
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, strings.TrimPrefix(s.URL, "http://"))
}

// want maps header names to values; "" means the header must be absent.
type want map[string]string

func check(t *testing.T, r *plugintest.Response, status int, w want) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %d, want %d (body %q)", r.Status, status, r.Body)
	}
	for k, v := range w {
		got := strings.Join(r.Header.Values(k), ", ")
		if got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestBehaviour(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{cors.Def()}, nil)
	up := upstream(t)
	route := func(conf string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"cors":`+conf+`},"upstream":`+up+`}`)
	}
	g.MustAdmin("PUT", "/apisix/admin/plugin_metadata/cors", `{"allow_origins":{"key_1":"https://domain.com","key_2":"https://sub.domain.com,https://sub2.domain.com","key_3":"*"},"inactive_timeout":1}`)

	type req struct {
		method  string
		headers map[string]string
		status  int
		want    want
	}
	specified := `{"allow_origins":"http://sub.domain.com,http://sub2.domain.com","allow_methods":"GET,POST","allow_headers":"headr1,headr2","expose_headers":"ex-headr1,ex-headr2","max_age":50,"allow_credential":true}`
	full := want{"Access-Control-Allow-Origin": "http://sub2.domain.com", "Vary": "Via, Origin",
		"Access-Control-Allow-Methods": "GET,POST", "Access-Control-Allow-Headers": "headr1,headr2",
		"Access-Control-Expose-Headers": "ex-headr1,ex-headr2", "Access-Control-Max-Age": "50",
		"Access-Control-Allow-Credentials": "true"}
	none := want{"Access-Control-Allow-Origin": "http://upstream.example", "Access-Control-Allow-Methods": "upstream",
		"Access-Control-Allow-Headers": "", "Access-Control-Expose-Headers": "", "Access-Control-Max-Age": "999",
		"Access-Control-Allow-Credentials": ""}
	tests := []struct {
		name string
		conf string
		reqs []req
	}{
		{"default", `{}`, []req{{"GET", nil, 200, want{"Access-Control-Allow-Origin": "*", "Vary": "",
			"Access-Control-Allow-Methods": "*", "Access-Control-Allow-Headers": "*", "Access-Control-Expose-Headers": "",
			"Access-Control-Max-Age": "5", "Access-Control-Allow-Credentials": ""}}}},
		{"specified", specified, []req{
			{"GET", map[string]string{"Origin": "http://sub2.domain.com", "Resp-Vary": "Via"}, 200, full},
			{"GET", map[string]string{"Origin": "http://sub3.domain.com"}, 200, mergeWant(none, want{"Vary": "Origin"})},
			{"GET", nil, 200, mergeWant(none, want{"Vary": "Origin"})},
		}},
		{"single origin", `{"allow_origins":"http://a.com"}`, []req{
			{"GET", map[string]string{"Origin": "http://a.com"}, 200, want{"Access-Control-Allow-Origin": "http://a.com", "Vary": "Origin"}},
			{"GET", map[string]string{"Origin": "http://b.com"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example"}},
		}},
		{"force wildcard", `{"allow_origins":"**","allow_methods":"**","allow_headers":"**","expose_headers":"*"}`, []req{
			{"GET", map[string]string{"Origin": "https://sub.domain.com", "Access-Control-Request-Headers": "req-header1,req-header2"}, 200, want{
				"Access-Control-Allow-Origin": "https://sub.domain.com", "Vary": "Origin",
				"Access-Control-Allow-Methods":  "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE",
				"Access-Control-Allow-Headers":  "req-header1,req-header2",
				"Access-Control-Expose-Headers": "*", "Access-Control-Max-Age": "5", "Access-Control-Allow-Credentials": ""}},
			{"GET", nil, 200, want{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "",
				"Access-Control-Allow-Methods": "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"}},
			{"OPTIONS", map[string]string{"Origin": "https://sub.domain.com"}, 200, want{"Access-Control-Allow-Origin": "https://sub.domain.com", "X-Upstream": ""}},
		}},
		{"regex", `{"allow_origins":"http://sub.domain.com","allow_origins_by_regex":[".*\\.test\\.com"],"allow_methods":"GET,POST","allow_headers":"headr1,headr2","max_age":50,"allow_credential":true}`, []req{
			{"GET", map[string]string{"Origin": "http://a.test.com"}, 200, want{"Access-Control-Allow-Origin": "http://a.test.com", "Access-Control-Allow-Credentials": "true"}},
			// With regexes, allow_origins is not consulted.
			{"GET", map[string]string{"Origin": "http://sub.domain.com"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example", "Vary": "Origin"}},
			{"GET", map[string]string{"Origin": "http://a.test2.org"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example"}},
			{"GET", nil, 200, want{"Access-Control-Allow-Origin": "http://upstream.example"}},
		}},
		{"regex with default origins", `{"allow_origins":"*","allow_origins_by_regex":[".*\\.domain.com$"]}`, []req{
			{"GET", map[string]string{"Origin": "http://sub.test.com"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example"}},
			{"GET", map[string]string{"Origin": "http://sub.domain.com", "Resp-Vary": "Via"}, 200, want{"Access-Control-Allow-Origin": "http://sub.domain.com", "Vary": "Via"}},
		}},
		{"metadata", `{"allow_origins":"https://test.com","allow_origins_by_metadata":["key_1","key_2"]}`, []req{
			{"GET", map[string]string{"Origin": "http://foo.example.org"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example", "Vary": "Origin"}},
			{"GET", map[string]string{"Origin": "https://test.com", "Resp-Vary": "Via"}, 200, want{"Access-Control-Allow-Origin": "https://test.com", "Vary": "Via, Origin"}},
			{"GET", map[string]string{"Origin": "https://domain.com"}, 200, want{"Access-Control-Allow-Origin": "https://domain.com"}},
			{"GET", map[string]string{"Origin": "https://sub.domain.com"}, 200, want{"Access-Control-Allow-Origin": "https://sub.domain.com"}},
		}},
		{"metadata wildcard", `{"allow_origins":"https://test.com","allow_origins_by_metadata":["key_3"]}`, []req{
			{"GET", map[string]string{"Origin": "http://foo.example.org"}, 200, want{"Access-Control-Allow-Origin": "http://foo.example.org", "Vary": "Origin"}},
		}},
		{"metadata with default origins", `{"allow_origins":"*","allow_origins_by_metadata":["key_1","missing"]}`, []req{
			{"GET", map[string]string{"Origin": "http://foo.example.org"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example"}},
			{"GET", map[string]string{"Origin": "https://domain.com"}, 200, want{"Access-Control-Allow-Origin": "https://domain.com"}},
		}},
		{"timing", `{"allow_origins":"http://one.domain.com,http://two.domain.com","timing_allow_origins":"http://one.domain.com,http://three.domain.com"}`, []req{
			{"GET", map[string]string{"Origin": "http://one.domain.com"}, 200, want{"Access-Control-Allow-Origin": "http://one.domain.com", "Timing-Allow-Origin": "http://one.domain.com"}},
			{"GET", map[string]string{"Origin": "http://two.domain.com"}, 200, want{"Access-Control-Allow-Origin": "http://two.domain.com", "Timing-Allow-Origin": ""}},
			{"GET", map[string]string{"Origin": "http://three.domain.com"}, 200, want{"Access-Control-Allow-Origin": "http://upstream.example", "Timing-Allow-Origin": "http://three.domain.com"}},
		}},
		{"timing default origins", `{"timing_allow_origins":"http://sub.domain.com"}`, []req{
			{"GET", map[string]string{"Origin": "http://sub.domain.com"}, 200, want{"Access-Control-Allow-Origin": "*", "Timing-Allow-Origin": "http://sub.domain.com"}},
			{"GET", map[string]string{"Origin": "http://other.domain.com"}, 200, want{"Access-Control-Allow-Origin": "*", "Timing-Allow-Origin": ""}},
		}},
		{"timing regex wins", `{"allow_origins_by_regex":["http://.*?\\.domain\\.com"],"timing_allow_origins_by_regex":["http://test.*?\\.domain\\.com"],"timing_allow_origins":"http://nonexistent.newdomain.com"}`, []req{
			{"GET", map[string]string{"Origin": "http://testurl.domain.com"}, 200, want{"Access-Control-Allow-Origin": "http://testurl.domain.com", "Timing-Allow-Origin": "http://testurl.domain.com"}},
			{"GET", map[string]string{"Origin": "http://nonexistent.newdomain.com"}, 200, want{"Timing-Allow-Origin": ""}},
		}},
		{"null origin", `{"allow_origins":"null"}`, []req{
			{"GET", map[string]string{"Origin": "null"}, 200, want{"Access-Control-Allow-Origin": "null", "Vary": "Origin"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			route(tc.conf)
			for i, rq := range tc.reqs {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					check(t, g.Do(rq.method, "/hello", rq.headers, ""), rq.status, rq.want)
				})
			}
		})
	}
}

func mergeWant(a, b want) want {
	out := want{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestPreflightNotProxied checks that OPTIONS is answered by the gateway
// with an empty 200 and never reaches the upstream.
func TestPreflightNotProxied(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{cors.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"cors":{}},"upstream":`+rec.Upstream()+`}`)
	r := g.Do("OPTIONS", "/hello", map[string]string{"Origin": "http://x.com", "Access-Control-Request-Method": "PUT"}, "")
	check(t, r, 200, want{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*", "Access-Control-Max-Age": "5"})
	if r.Body != "" {
		t.Errorf("body = %q, want empty", r.Body)
	}
	if rec.Count() != 0 {
		t.Errorf("upstream got %d requests", rec.Count())
	}
}

// TestGatewayErrors checks CORS headers on responses the gateway makes:
// an unreachable upstream (502) and a rejection by another plugin (401).
func TestGatewayErrors(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{cors.Def(), csrf.Def()}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	conf := `{"allow_origins":"**","allow_methods":"**","allow_headers":"*","expose_headers":"*"}`
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/down","plugins":{"cors":`+conf+`},"upstream":{"type":"roundrobin","nodes":{"`+dead+`":1}}}`)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/csrf","plugins":{"cors":`+conf+`,"csrf":{"key":"k"}},"upstream":`+rec.Upstream()+`}`)
	cw := want{"Access-Control-Allow-Origin": "https://sub.domain.com", "Vary": "Origin",
		"Access-Control-Allow-Methods": "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE",
		"Access-Control-Allow-Headers": "*", "Access-Control-Expose-Headers": "*", "Access-Control-Max-Age": "5",
		"Access-Control-Allow-Credentials": ""}
	hdr := map[string]string{"Origin": "https://sub.domain.com"}
	t.Run("502", func(t *testing.T) {
		r := g.Do("GET", "/down", hdr, "")
		check(t, r, 502, cw)
		if !strings.Contains(r.Body, "502 Bad Gateway") {
			t.Errorf("body = %q", r.Body)
		}
	})
	t.Run("401 from plugin", func(t *testing.T) {
		r := g.Do("POST", "/csrf", hdr, "x")
		check(t, r, 401, cw)
		if strings.TrimSpace(r.Body) != `{"error_msg":"no csrf token in headers"}` {
			t.Errorf("body = %q", r.Body)
		}
		if rec.Count() != 0 {
			t.Errorf("upstream got %d requests", rec.Count())
		}
	})
	t.Run("preflight before csrf", func(t *testing.T) {
		check(t, g.Do("OPTIONS", "/csrf", hdr, ""), 200, cw)
	})
}

func BenchmarkCORS(b *testing.B) {
	p, err := cors.New(json.RawMessage(`{"allow_origins":"http://a.com,http://b.com","allow_methods":"GET,POST","allow_headers":"x-h","expose_headers":"x-e","max_age":50,"allow_credential":true}`))
	if err != nil {
		b.Fatal(err)
	}
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	rw := &nopWriter{h: engine.Header{}}
	hdr := engine.Header{"Origin": {"http://b.com"}}
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	for b.Loop() {
		clear(rw.h)
		r.Reset()
		r.Ctx = c
		c.Reset()
		c.Method = "GET"
		c.Header = hdr
		c.W = rw
		p.Rewrite(r)
		p.HeaderFilter(r)
	}
	if rw.h.Get("Access-Control-Allow-Origin") != "http://b.com" {
		b.Fatal("no CORS header")
	}
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }
