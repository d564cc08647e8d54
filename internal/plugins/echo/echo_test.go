package echo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	for _, tc := range []struct {
		conf string
		ok   bool
	}{
		{`{"body":"x"}`, true},
		{`{"before_body":"x","headers":{"A":"b"}}`, true},
		{`{"headers":{"A":"b"}}`, false},
		{`{}`, false},
		{`{"body":1}`, false},
	} {
		r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"echo":`+tc.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
		if tc.ok && r.Status >= 300 || !tc.ok && (r.Status != 400 || !strings.Contains(r.Body, "failed to check the configuration of plugin echo err: ")) {
			t.Errorf("%s: got %d %s", tc.conf, r.Status, r.Body)
		}
	}
}

// chunked is an upstream that streams its body in three flushed chunks
// and sends validators that a changed body must drop.
func chunked(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Etag", `"abc"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		for _, part := range []string{"one ", "two ", "three"} {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(s.Close)
	return `{"type":"roundrobin","nodes":{"` + strings.TrimPrefix(s.URL, "http://") + `":1}}`
}

func TestEcho(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	up := chunked(t)
	tests := []struct {
		name, conf, body string
		headers          map[string]string
	}{
		{"before", `{"before_body":"before "}`, "before one two three", nil},
		{"after", `{"after_body":" after"}`, "one two three after", nil},
		{"wrap", `{"before_body":"<",  "after_body":">"}`, "<one two three>", nil},
		{"body", `{"body":"hello upstream\n"}`, "hello upstream\n", nil},
		{"body wrapped", `{"before_body":"[","body":"x","after_body":"]"}`, "[x]", nil},
		{"headers", `{"after_body":"!","headers":{"X-Echo":"yes","X-Num":3}}`, "one two three!", map[string]string{"X-Echo": "yes", "X-Num": "3", "Etag": "", "Last-Modified": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"echo":`+tc.conf+`},"upstream":`+up+`}`)
			resp := g.Do("GET", "/hello", nil, "")
			if resp.Status != 200 || resp.Body != tc.body {
				t.Fatalf("got %d %q, want %q", resp.Status, resp.Body, tc.body)
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
	t.Run("gateway error page", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"echo":{"before_body":"E:"}},"upstream":{"nodes":{"127.0.0.1:1":1},"type":"roundrobin"}}`)
		resp := g.Do("GET", "/hello", nil, "")
		if resp.Status != 502 || !strings.HasPrefix(resp.Body, "E:<html>") {
			t.Fatalf("got %d %q", resp.Status, resp.Body)
		}
	})
}

func BenchmarkEcho(b *testing.B) {
	for _, bc := range []struct{ name, conf string }{
		{"body", `{"body":"hello"}`},
		{"wrap", `{"before_body":"<","after_body":">"}`},
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
			chunk := []byte("upstream body chunk")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p.BodyFilter(r, chunk, false)
				p.BodyFilter(r, chunk, false)
				p.BodyFilter(r, nil, true)
				clear(c.Values)
			}
		})
	}
}
