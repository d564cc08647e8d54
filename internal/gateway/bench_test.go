package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/all"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/resource"
)

// decodeInto decodes a JSON resource into the snapshot as the builder does.
func decodeInto(b testing.TB, s *Snapshot, kind, id, raw string) {
	b.Helper()
	k, _ := resource.ByName(kind)
	obj, err := resource.Decode(k, []byte(raw))
	if err != nil {
		b.Fatalf("%s %s: %v", kind, id, err)
	}
	m := s.Objects[kind]
	if m == nil {
		m = map[string]any{}
		s.Objects[kind] = m
	}
	m[id] = obj
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// BenchmarkSnapshotBuild10000 measures compiling a snapshot of 10,000
// routes (router, upstreams, plugin chains) from decoded objects.
func BenchmarkSnapshotBuild10000(b *testing.B) {
	reg, _ := plugin.NewRegistry(all.Defs(), nil)
	s := &Snapshot{Objects: map[string]map[string]any{}}
	decodeInto(b, s, "upstreams", "u", `{"nodes":{"127.0.0.1:8080":1}}`)
	for i := 0; i < 10000; i++ {
		decodeInto(b, s, "routes", fmt.Sprint(i), fmt.Sprintf(`{"uri":"/r/%d/*","hosts":["h%d.example.com"],"upstream_id":"u"}`, i, i%50))
	}
	compile := compileFunc("radixtree_host_uri", healthEnv{}, reg, &plugin.Shared{}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, errs := compile(s, nil); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// discardWriter is a ResponseWriter that drops the body.
type discardWriter struct {
	h      engine.Header
	status int
}

func (w *discardWriter) Header() engine.Header       { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) Flush() error                { return nil }

// benchServe runs the whole request path through the engine-neutral
// context (router, plugin phases, balancer, forwarder to a loopback
// upstream), without a client-side engine.
func benchServe(b *testing.B, routePlugins string, hdr map[string]string) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer up.Close()
	reg, _ := plugin.NewRegistry(all.Defs(), nil)
	s := &Snapshot{Objects: map[string]map[string]any{}}
	addr := strings.TrimPrefix(up.URL, "http://")
	decodeInto(b, s, "consumers", "jack", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}}`)
	plugins := ""
	if routePlugins != "" {
		plugins = `"plugins":` + routePlugins + `,`
	}
	decodeInto(b, s, "routes", "1", fmt.Sprintf(`{"uri":"/api/v1/orders/*",%s"upstream":{"nodes":{"%s":1}}}`, plugins, addr))
	shared := &plugin.Shared{}
	data, errs := compileFunc("radixtree_host_uri", healthEnv{}, reg, shared, nil)(s, nil)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	s.Data = data
	bld := &Builder{}
	bld.current.Store(s)
	dp := &dataPlane{builder: bld, fwd: proxy.NewForwarder(quietLogger()), logger: quietLogger()}
	remote := netip.MustParseAddrPort("10.0.0.1:40000")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := engine.AcquireCtx()
		w := &discardWriter{h: engine.Header{}}
		c.Method, c.Proto, c.Scheme = "GET", "HTTP/1.1", "http"
		c.RequestURI, c.Path, c.RawPath = "/api/v1/orders/42", "/api/v1/orders/42", "/api/v1/orders/42"
		c.Host, c.RawHost = "example.com", "example.com"
		c.Header = engine.Header{}
		for k, v := range hdr {
			c.Header.Set(k, v)
		}
		c.RemoteAddr = remote
		c.W = w
		dp.Serve(c)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
		engine.ReleaseCtx(c)
	}
}

// BenchmarkServePlain is the request path with no plugins.
func BenchmarkServePlain(b *testing.B) { benchServe(b, "", nil) }

// BenchmarkServeSeed is the request path with the seed's gateway plugins
// (profile c): key-auth + limit-count + proxy-rewrite.
func BenchmarkServeSeed(b *testing.B) {
	plugins, _ := json.Marshal(map[string]any{
		"key-auth":      map[string]any{},
		"limit-count":   map[string]any{"count": 1 << 30, "time_window": 60, "key_type": "var", "key": "consumer_name"},
		"proxy-rewrite": map[string]any{"regex_uri": []string{"^/api/v1/orders/(.*)", "/orders/$1"}},
	})
	benchServe(b, string(plugins), map[string]string{"apikey": "jack-key"})
}
