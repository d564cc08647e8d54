package mocking

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	"github.com/sluice-gw/sluice/internal/version"
)

func TestNewValidation(t *testing.T) {
	tests := []struct{ name, conf, err string }{
		{"example", `{"response_example":"x"}`, ""},
		{"json with charset", `{"response_example":"x","content_type":"application/json; charset=utf-8"}`, ""},
		{"xml", `{"response_schema":{"type":"object"},"content_type":"text/xml"}`, ""},
		{"unsupported", `{"response_example":"x","content_type":"image/png"}`, "unsupported content type!"},
		{"unsupported params", `{"response_example":"x","content_type":"text/plain;a=b;c=d"}`, "unsupported content type!"},
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
			if err == nil || err.Error() != tc.err {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	for _, tc := range []struct{ conf, want string }{
		{`{"response_example":"x","content_type":"image/png"}`, `failed to check the configuration of plugin mocking err: unsupported content type!`},
		{`{"delay":1}`, `failed to check the configuration of plugin mocking err: `},
		{`{"response_example":"x","response_status":99}`, `failed to check the configuration of plugin mocking err: `},
	} {
		r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"mocking":`+tc.conf+`}}`)
		if r.Status != 400 || !strings.Contains(r.Body, tc.want) {
			t.Errorf("%s: got %d %s", tc.conf, r.Status, r.Body)
		}
	}
}

func TestMocking(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	mockBy := "APISIX/" + version.APISIXVersion
	tests := []struct {
		name, conf, path string
		status           int
		body             string
		bodyRE           string
		headers          map[string]string
		minDelay         time.Duration
	}{
		{name: "example", conf: `{"response_example":"{\"field1\":\"hello\"}"}`, path: "/hello",
			status: 200, body: `{"field1":"hello"}`,
			headers: map[string]string{"Content-Type": "application/json;charset=utf8", "X-Mock-By": mockBy}},
		{name: "status and type", conf: `{"response_example":"nope","response_status":418,"content_type":"text/plain","with_mock_header":false}`, path: "/hello",
			status: 418, body: "nope", headers: map[string]string{"Content-Type": "text/plain", "X-Mock-By": ""}},
		{name: "example vars", conf: `{"response_example":"remote_addr:$remote_addr empty_var:$foo","content_type":"text/plain"}`, path: "/hello",
			status: 200, body: "remote_addr:127.0.0.1 empty_var:"},
		{name: "schema string example", conf: `{"content_type":"text/plain","response_schema":{"type":"object","properties":{"field1":{"type":"string","example":"hello"}}}}`, path: "/hello",
			status: 200, body: `{"field1":"hello"}`},
		{name: "schema integer", conf: `{"content_type":"text/plain","response_schema":{"type":"object","properties":{"field1":{"type":"integer","example":4}}}}`, path: "/hello",
			status: 200, body: `{"field1":4}`},
		{name: "schema number", conf: `{"response_schema":{"type":"object","properties":{"field1":{"type":"number","example":5.5}}}}`, path: "/hello",
			status: 200, body: `{"field1":5.5}`},
		{name: "schema boolean", conf: `{"response_schema":{"type":"object","properties":{"field1":{"type":"boolean","example":true}}}}`, path: "/hello",
			status: 200, body: `{"field1":true}`},
		{name: "schema object", conf: `{"response_schema":{"type":"object","properties":{"field1":{"type":"object"}}}}`, path: "/hello",
			status: 200, body: `{"field1":{}}`},
		{name: "schema random", conf: `{"response_schema":{"type":"object","properties":{"s":{"type":"string"},"n":{"type":"integer"},"a":{"type":"array","items":{"type":"string","example":"x"}}}}}`, path: "/hello",
			status: 200, bodyRE: `^\{"a":\["x"(,"x"){0,2}\],"n":\d+,"s":"[a-z]{1,10}"\}$`},
		{name: "schema xml", conf: `{"content_type":"application/xml","response_schema":{"type":"object","properties":{"field1":{"type":"string","example":"hello"},"obj":{"type":"object","properties":{"n":{"type":"integer","example":1}}}}}}`, path: "/hello",
			status: 200, body: "<data>\n  <field1>hello</field1>\n  <obj>\n    <n>1</n>\n  </obj>\n</data>\n"},
		{name: "headers", conf: `{"response_example":"hello world","response_headers":{"X-Apisix":"is, cool","X-Route-Id":"$route_id","X-Num":7}}`, path: "/hello",
			status: 200, body: "hello world", headers: map[string]string{"X-Apisix": "is, cool", "X-Route-Id": "1", "X-Num": "7"}},
		{name: "delay", conf: `{"response_example":"late","delay":1}`, path: "/hello",
			status: 200, body: "late", minDelay: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"mocking":`+tc.conf+`},"upstream":`+rec.Upstream()+`}`)
			start := time.Now()
			resp := g.Do("GET", tc.path, nil, "")
			if d := time.Since(start); d < tc.minDelay {
				t.Errorf("took %v, want >= %v", d, tc.minDelay)
			}
			if resp.Status != tc.status {
				t.Fatalf("status %d, want %d", resp.Status, tc.status)
			}
			if tc.bodyRE != "" {
				if !regexp.MustCompile(tc.bodyRE).MatchString(resp.Body) {
					t.Errorf("body %q does not match %s", resp.Body, tc.bodyRE)
				}
			} else if resp.Body != tc.body {
				t.Errorf("body %q, want %q", resp.Body, tc.body)
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if rec.Count() != 0 {
				t.Errorf("upstream was called")
			}
		})
	}
	t.Run("no upstream needed", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/mock-only","plugins":{"mocking":{"response_example":"m"}}}`)
		if resp := g.Do("GET", "/mock-only", nil, ""); resp.Status != 200 || resp.Body != "m" {
			t.Fatalf("got %d %q", resp.Status, resp.Body)
		}
	})
}

type writer struct{ h engine.Header }

func (w *writer) Header() engine.Header       { return w.h }
func (w *writer) WriteHeader(int)             {}
func (w *writer) Write(p []byte) (int, error) { return len(p), nil }
func (w *writer) Flush() error                { return nil }

func BenchmarkMocking(b *testing.B) {
	inst, err := New(json.RawMessage(`{"response_example":"{\"ok\":true}"}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.Method, c.Path, c.RequestURI = "GET", "/hello", "/hello"
	w := &writer{h: engine.Header{}}
	c.W = w
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.Access(r)
		p.HeaderFilter(r)
		r.Reset()
		r.Ctx = c
		clear(w.h)
	}
}
