package faultinjection

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	"github.com/sluice-gw/sluice/internal/plugins/redirect"
)

func TestNewValidation(t *testing.T) {
	tests := []struct{ name, conf, err string }{
		{"abort", `{"abort":{"http_status":403,"body":"x"}}`, ""},
		{"delay", `{"delay":{"duration":0.1}}`, ""},
		{"vars", `{"abort":{"http_status":403,"vars":[[["arg_name","==","jack"]],[["arg_age","!","<",18]]]}}`, ""},
		{"flat vars", `{"abort":{"http_status":403,"vars":[["arg_name","==","jack"]]}}`, "rule should be wrapped inside brackets"},
		{"bad operator", `{"delay":{"duration":1,"vars":[[["arg_name","=","jack"]]]}}`, "invalid operator '='"},
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
	for _, tc := range []struct{ conf, want string }{
		{`{"abort":{"http_status":100}}`, "failed to check the configuration of plugin fault-injection err: "},
		{`{"abort":{"body":"x"}}`, "failed to check the configuration of plugin fault-injection err: "},
		{`{}`, "failed to check the configuration of plugin fault-injection err: "},
		{`{"delay":{"duration":"1"}}`, "failed to check the configuration of plugin fault-injection err: "},
		{`{"abort":{"http_status":403,"vars":[["arg_name","==","jack"]]}}`, "failed to check the configuration of plugin fault-injection err: rule should be wrapped inside brackets"},
	} {
		r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"fault-injection":`+tc.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
		if r.Status != 400 || !strings.Contains(r.Body, tc.want) {
			t.Errorf("%s: got %d %s", tc.conf, r.Status, r.Body)
		}
	}
}

func TestFaultInjection(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def(), redirect.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name, plugins, path string
		headers             map[string]string
		status              int
		body                string
		respHeaders         map[string]string
		minDelay            time.Duration
		reached             bool
	}{
		{name: "abort with body", plugins: `{"fault-injection":{"abort":{"http_status":200,"body":"Fault Injection!\n"}}}`,
			path: "/hello", status: 200, body: "Fault Injection!\n"},
		{name: "abort 405", plugins: `{"fault-injection":{"abort":{"http_status":405,"body":"Fault Injection!\n"}}}`,
			path: "/hello", status: 405, body: "Fault Injection!\n"},
		{name: "abort without body", plugins: `{"fault-injection":{"abort":{"http_status":503}}}`,
			path: "/hello", status: 503, body: string(engine.ErrorPage(503))},
		{name: "body and headers with vars", plugins: `{"fault-injection":{"abort":{"http_status":403,"body":"client $remote_addr, ${arg_name}","headers":{"X-Fault":"$arg_name","X-Num":42}}}}`,
			path: "/hello?name=jack", status: 403, body: "client 127.0.0.1, jack", respHeaders: map[string]string{"X-Fault": "jack", "X-Num": "42"}},
		{name: "content type kept", plugins: `{"fault-injection":{"abort":{"http_status":200,"body":"{\"a\":1}","headers":{"Content-Type":"application/json"}}}}`,
			path: "/hello", status: 200, body: `{"a":1}`, respHeaders: map[string]string{"Content-Type": "application/json"}},
		{name: "vars match", plugins: `{"fault-injection":{"abort":{"http_status":403,"body":"no","vars":[[["arg_name","==","jack"]],[["arg_age","==","18"]]]}}}`,
			path: "/hello?age=18", status: 403, body: "no"},
		{name: "vars miss", plugins: `{"fault-injection":{"abort":{"http_status":403,"body":"no","vars":[[["arg_name","==","jack"]]]}}}`,
			path: "/hello?name=jill", status: 200, body: "ok", reached: true},
		{name: "vars not", plugins: `{"fault-injection":{"abort":{"http_status":403,"body":"no","vars":[[["!AND",["arg_name","==","jack"],["arg_age","!","<",18]]]]}}}`,
			path: "/hello?name=jack&age=20", status: 200, body: "ok", reached: true},
		{name: "empty vars never", plugins: `{"fault-injection":{"abort":{"http_status":403,"body":"no","vars":[]}}}`,
			path: "/hello", status: 200, body: "ok", reached: true},
		{name: "percentage 0", plugins: `{"fault-injection":{"abort":{"http_status":403,"percentage":0}}}`,
			path: "/hello", status: 200, body: "ok", reached: true},
		{name: "percentage 100", plugins: `{"fault-injection":{"abort":{"http_status":403,"body":"x","percentage":100}}}`,
			path: "/hello", status: 403, body: "x"},
		{name: "delay", plugins: `{"fault-injection":{"delay":{"duration":0.2}}}`,
			path: "/hello", status: 200, body: "ok", minDelay: 200 * time.Millisecond, reached: true},
		{name: "delay then abort", plugins: `{"fault-injection":{"delay":{"duration":0.1},"abort":{"http_status":429,"body":"slow no"}}}`,
			path: "/hello", status: 429, body: "slow no", minDelay: 100 * time.Millisecond},
		{name: "delay vars miss", plugins: `{"fault-injection":{"delay":{"duration":5,"vars":[[["arg_slow","==","1"]]]}}}`,
			path: "/hello", status: 200, body: "ok", reached: true},
		{name: "beats redirect", plugins: `{"fault-injection":{"abort":{"http_status":418,"body":"tea"}},"redirect":{"uri":"/elsewhere"}}`,
			path: "/hello", status: 418, body: "tea"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":`+tc.plugins+`,"upstream":`+rec.Upstream()+`}`)
			before := rec.Count()
			start := time.Now()
			resp := g.Do("GET", tc.path, tc.headers, "")
			if d := time.Since(start); d < tc.minDelay {
				t.Errorf("took %v, want >= %v", d, tc.minDelay)
			}
			if resp.Status != tc.status || resp.Body != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tc.status, tc.body)
			}
			for k, v := range tc.respHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if got := rec.Count() - before; (got == 1) != tc.reached {
				t.Errorf("upstream got %d requests, reached=%v", got, tc.reached)
			}
		})
	}
}

type writer struct{ h engine.Header }

func (w *writer) Header() engine.Header       { return w.h }
func (w *writer) WriteHeader(int)             {}
func (w *writer) Write(p []byte) (int, error) { return len(p), nil }
func (w *writer) Flush() error                { return nil }

func BenchmarkFaultInjection(b *testing.B) {
	for _, bc := range []struct{ name, conf string }{
		{"vars_miss", `{"abort":{"http_status":403,"body":"x","vars":[[["arg_name","==","jack"]]]}}`},
		{"abort", `{"abort":{"http_status":403,"body":"x"}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			inst, err := New(json.RawMessage(bc.conf), nil)
			if err != nil {
				b.Fatal(err)
			}
			p := inst.(*Plugin)
			c := engine.AcquireCtx()
			defer engine.ReleaseCtx(c)
			c.Method, c.Path, c.RequestURI, c.Query = "GET", "/hello", "/hello?name=jill", "name=jill"
			c.W = &writer{h: engine.Header{}}
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
