package brotli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	cbr "github.com/andybalholm/brotli"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	br "github.com/sluice-gw/sluice/internal/plugins/brotli"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

var page = strings.Repeat("<p>hello, compressed world</p>\n", 100)

func upstream(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/all") {
		case "/html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `"v1"`)
			io.WriteString(w, page)
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"data":"`+strings.Repeat("x", 200)+`"}`)
		case "/short":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "tiny")
		case "/encoded":
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, page)
		case "/chunked":
			w.Header().Set("Content-Type", "text/html")
			for i := 0; i < 5; i++ {
				io.WriteString(w, page)
				w.(http.Flusher).Flush()
			}
		case "/error":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(500)
			io.WriteString(w, page)
		}
	}))
	t.Cleanup(s.Close)
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, strings.TrimPrefix(s.URL, "http://"))
}

func unbrotli(t *testing.T, s string) string {
	t.Helper()
	b, err := io.ReadAll(cbr.NewReader(strings.NewReader(s)))
	if err != nil {
		t.Fatalf("brotli decode: %v", err)
	}
	return string(b)
}

func TestConfig(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{br.Def()}, nil)
	for _, tc := range []struct {
		name, conf string
		ok         bool
		field      string
	}{
		{"empty", `{}`, true, ""},
		{"all", `{"types":"*","min_length":1,"mode":1,"comp_level":11,"lgwin":24,"lgblock":16,"http_version":1.0,"vary":true}`, true, ""},
		{"lgwin 0", `{"lgwin":0,"comp_level":0}`, true, ""},
		{"bad level", `{"comp_level":12}`, false, "comp_level"},
		{"bad lgwin", `{"lgwin":9}`, false, "lgwin"},
		{"bad lgblock", `{"lgblock":15}`, false, "lgblock"},
		{"bad mode", `{"mode":3}`, false, "mode"},
		{"bad types", `{"types":"text/html"}`, false, "types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/c", `{"uri":"/c","plugins":{"brotli":`+tc.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			if tc.ok != (r.Status == 200 || r.Status == 201) {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if !tc.ok && (!strings.Contains(r.Body, "failed to check the configuration of plugin brotli err: ") || !strings.Contains(r.Body, tc.field)) {
				t.Fatalf("body %s", r.Body)
			}
		})
	}
}

func TestCompression(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{br.Def()}, nil)
	up := upstream(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/*","plugins":{"brotli":{}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/all/*","plugins":{"brotli":{"types":"*","vary":true,"comp_level":1}},"upstream":`+up+`}`)
	ae := map[string]string{"Accept-Encoding": "gzip, deflate, br"}
	for _, tc := range []struct {
		name, path string
		hdr        map[string]string
		br, vary   bool
		want       string
	}{
		{"html", "/html", ae, true, false, page},
		{"star accept", "/html", map[string]string{"Accept-Encoding": "*"}, true, false, page},
		{"no accept", "/html", map[string]string{"Accept-Encoding": "gzip"}, false, false, page},
		{"q=0", "/html", map[string]string{"Accept-Encoding": "br;q=0"}, false, false, page},
		{"type mismatch", "/json", ae, false, false, ""},
		{"short", "/short", ae, false, false, "tiny"},
		{"already encoded", "/encoded", ae, false, false, ""},
		{"chunked", "/chunked", ae, true, false, strings.Repeat(page, 5)},
		{"any status", "/error", ae, true, false, page},
		{"star json vary", "/all/json", ae, true, true, ""},
		{"no vary without accept", "/all/html", map[string]string{"Accept-Encoding": "identity"}, false, false, page},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Do("GET", tc.path, tc.hdr, "")
			body := r.Body
			ce := r.Header.Get("Content-Encoding")
			if tc.br {
				if ce != "br" {
					t.Fatalf("status %d Content-Encoding %q", r.Status, ce)
				}
				body = unbrotli(t, body)
			} else if ce == "br" {
				t.Fatal("compressed")
			}
			if tc.want != "" && body != tc.want {
				t.Fatalf("body %q", body[:min(80, len(body))])
			}
			if got := r.Header.Get("Vary") == "Accept-Encoding"; got != tc.vary {
				t.Fatalf("Vary %q", r.Header.Get("Vary"))
			}
		})
	}
	t.Run("etag", func(t *testing.T) {
		if r := g.Do("GET", "/html", ae, ""); r.Header.Get("Etag") != `W/"v1"` {
			t.Fatalf("ETag %q", r.Header.Get("Etag"))
		}
	})
}

// Gateway-made responses (the 404 of a global rule) are compressed too.
func TestGatewayResponse(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{br.Def()}, nil)
	g.MustAdmin("PUT", "/apisix/admin/global_rules/1", `{"plugins":{"brotli":{"types":"*","min_length":1}}}`)
	r := g.Do("GET", "/nope", map[string]string{"Accept-Encoding": "br"}, "")
	if r.Status != 404 || r.Header.Get("Content-Encoding") != "br" {
		t.Fatalf("status %d headers %v", r.Status, r.Header)
	}
	if got := unbrotli(t, r.Body); got != "{\"error_msg\":\"404 Route Not Found\"}\n" {
		t.Fatalf("body %q", got)
	}
}

type writer struct{ h engine.Header }

func (w *writer) Header() engine.Header       { return w.h }
func (w *writer) WriteHeader(int)             {}
func (w *writer) Write(p []byte) (int, error) { return len(p), nil }
func (w *writer) Flush() error                { return nil }

func BenchmarkBrotli(b *testing.B) {
	for _, level := range []int{1, 6} {
		b.Run(fmt.Sprintf("q%d_4KiB", level), func(b *testing.B) {
			inst, err := br.New(json.RawMessage(fmt.Sprintf(`{"comp_level":%d}`, level)), &plugin.BuildEnv{Shared: new(plugin.Shared)})
			if err != nil {
				b.Fatal(err)
			}
			p := inst.(*br.Plugin)
			c := engine.AcquireCtx()
			defer engine.ReleaseCtx(c)
			c.Method, c.Proto = "GET", "HTTP/1.1"
			c.Header = engine.Header{"Accept-Encoding": {"gzip, deflate, br"}}
			w := &writer{h: engine.Header{}}
			c.W = w
			r := &plugin.Request{Ctx: c}
			chunk := []byte(strings.Repeat(page, 2)[:4096])
			var out bytes.Buffer
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				w.h["Content-Type"] = []string{"text/html"}
				r.RespStatus = 200
				p.HeaderFilter(r)
				out.Write(p.BodyFilter(r, chunk, false))
				out.Write(p.BodyFilter(r, nil, true))
				out.Reset()
			}
		})
	}
}
