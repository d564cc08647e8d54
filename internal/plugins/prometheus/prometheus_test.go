package prometheus

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// start runs a gateway whose prometheus export server listens on a free
// port; attr entries are added to plugin_attr.prometheus.
func start(t *testing.T, attr map[string]any) (*plugintest.Gateway, string) {
	port := plugintest.FreePort(t)
	a := map[string]any{"export_addr": map[string]any{"ip": "127.0.0.1", "port": port}}
	for k, v := range attr {
		a[k] = v
	}
	g := plugintest.Start(t, []*plugin.Def{Def()}, func(c *config.Config) {
		if c.PluginAttr == nil {
			c.PluginAttr = map[string]map[string]any{}
		}
		c.PluginAttr["prometheus"] = a
	})
	uri := DefaultExportURI
	if u, ok := attr["export_uri"].(string); ok {
		uri = u
	}
	return g, fmt.Sprintf("http://127.0.0.1:%d%s", port, uri)
}

// sample is one exposition line.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func scrape(t *testing.T, url string) []sample {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %s", resp.StatusCode, b)
	}
	var out []sample
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		s := sample{labels: map[string]string{}, value: v}
		head := line[:i]
		if j := strings.IndexByte(head, '{'); j >= 0 {
			s.name = head[:j]
			for _, m := range labelRE.FindAllStringSubmatch(head[j:], -1) {
				s.labels[m[1]] = m[2]
			}
		} else {
			s.name = head
		}
		out = append(out, s)
	}
	return out
}

// find returns the samples of name whose labels include want.
func find(ss []sample, name string, want map[string]string) []sample {
	var out []sample
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

func value(t *testing.T, ss []sample, name string, want map[string]string) float64 {
	t.Helper()
	got := find(ss, name, want)
	if len(got) != 1 {
		t.Fatalf("%s%v: %d series: %+v", name, want, len(got), got)
	}
	return got[0].value
}

func TestConfigValidation(t *testing.T) {
	g, _ := start(t, nil)
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"empty", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"prometheus":{}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 201, ""},
		{"prefer_name", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"prometheus":{"prefer_name":true}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 201, ""},
		{"prefer_name type", "/apisix/admin/routes/3", `{"uri":"/c","plugins":{"prometheus":{"prefer_name":"yes"}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 400,
			`{"error_msg":"failed to check the configuration of plugin prometheus err: property \"prefer_name\" validation failed: wrong type: expected boolean, got string"}`},
		{"metadata ok", "/apisix/admin/plugin_metadata/prometheus", `{"disabled_labels":{"http_status":["node","consumer"],"bandwidth":["node"]}}`, 201, ""},
		{"metadata structural label", "/apisix/admin/plugin_metadata/prometheus", `{"disabled_labels":{"http_status":["code"]}}`, 400, ""},
		{"metadata unknown metric", "/apisix/admin/plugin_metadata/prometheus", `{"disabled_labels":{"nope":["node"]}}`, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", tc.path, tc.body)
			if r.Status != tc.status && !(tc.status == 201 && r.Status == 200) {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
		})
	}
}

func TestMetricsThroughRealRequests(t *testing.T) {
	g, url := start(t, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/services/s1", `{"upstream":`+rec.Upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"prometheus":{}},"service_id":"s1"}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/plain","upstream":`+rec.Upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/3", `{"uri":"/dead","plugins":{"prometheus":{}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
	for i := 0; i < 3; i++ {
		if r := g.Do("POST", "/hello", nil, "0123456789"); r.Status != 200 {
			t.Fatalf("hello: %d", r.Status)
		}
	}
	g.Do("GET", "/plain", nil, "")
	if r := g.Do("GET", "/dead", nil, ""); r.Status != 502 {
		t.Fatalf("dead: %d", r.Status)
	}
	ss := scrape(t, url)
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		check  func(float64) bool
	}{
		{"status 200 route 1", "apisix_http_status", map[string]string{"code": "200", "route": "1", "service": "s1", "node": "127.0.0.1",
			"consumer": "", "matched_uri": "/hello", "request_type": "traditional_http", "response_source": "upstream"}, func(v float64) bool { return v == 3 }},
		{"status 502 route 3", "apisix_http_status", map[string]string{"code": "502", "route": "3", "service": "", "response_source": "nginx"}, func(v float64) bool { return v == 1 }},
		{"request latency count", "apisix_http_latency_count", map[string]string{"type": "request", "route": "1"}, func(v float64) bool { return v == 3 }},
		{"upstream latency count", "apisix_http_latency_count", map[string]string{"type": "upstream", "route": "1"}, func(v float64) bool { return v == 3 }},
		{"apisix latency count", "apisix_http_latency_count", map[string]string{"type": "apisix", "route": "1"}, func(v float64) bool { return v == 3 }},
		{"request latency le=60000", "apisix_http_latency_bucket", map[string]string{"type": "request", "route": "1", "le": "60000"}, func(v float64) bool { return v == 3 }},
		{"ingress counts the bodies", "apisix_bandwidth", map[string]string{"type": "ingress", "route": "1"}, func(v float64) bool { return v >= 3*(10+20) }},
		{"egress", "apisix_bandwidth", map[string]string{"type": "egress", "route": "1"}, func(v float64) bool { return v >= 3*(2+20) }},
		{"requests total", "apisix_http_requests_total", nil, func(v float64) bool { return v == 4 }},
		{"node info", "apisix_node_info", nil, func(v float64) bool { return v == 1 }},
		{"connections active", "apisix_nginx_http_current_connections", map[string]string{"state": "active"}, func(v float64) bool { return v == 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v := value(t, ss, tc.metric, tc.labels); !tc.check(v) {
				t.Fatalf("%s%v = %v", tc.metric, tc.labels, v)
			}
		})
	}
	t.Run("route without the plugin is not counted", func(t *testing.T) {
		if got := find(ss, "apisix_http_status", map[string]string{"route": "2"}); len(got) != 0 {
			t.Fatalf("route 2 series: %+v", got)
		}
	})
	t.Run("latency buckets are APISIX's", func(t *testing.T) {
		got := find(ss, "apisix_http_latency_bucket", map[string]string{"type": "request", "route": "1"})
		if len(got) != len(DefaultBuckets)+1 {
			t.Fatalf("%d buckets", len(got))
		}
	})
	t.Run("other paths are 404", func(t *testing.T) {
		resp, err := http.Get(strings.TrimSuffix(url, DefaultExportURI) + "/other")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestGlobalRuleAndPreferRoute(t *testing.T) {
	g, url := start(t, map[string]any{"export_uri": "/m", "metric_prefix": "gw_"})
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/global_rules/1", `{"plugins":{"prometheus":{}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/with","plugins":{"prometheus":{}},"upstream":`+rec.Upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/without","upstream":`+rec.Upstream()+`}`)
	g.Do("GET", "/with", nil, "")
	g.Do("GET", "/without", nil, "")
	g.Do("GET", "/nowhere", nil, "")
	ss := scrape(t, url)
	for _, tc := range []struct {
		code, route string
		want        float64
	}{{"200", "1", 1}, {"200", "2", 1}, {"404", "", 1}} {
		if v := value(t, ss, "gw_http_status", map[string]string{"code": tc.code, "route": tc.route}); v != tc.want {
			t.Fatalf("code %s route %q = %v, want %v", tc.code, tc.route, v, tc.want)
		}
	}
	if v := value(t, ss, "gw_http_requests_total", nil); v != 3 {
		t.Fatalf("requests %v", v)
	}
	if len(find(ss, "apisix_http_status", nil)) != 0 {
		t.Fatal("default prefix used")
	}
}

func TestDisabledLabels(t *testing.T) {
	g, url := start(t, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"prometheus":{}},"upstream":`+rec.Upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/plugin_metadata/prometheus", `{"disabled_labels":{"http_status":["node","route"],"bandwidth":["node"]}}`)
	g.Do("GET", "/a", nil, "")
	ss := scrape(t, url)
	if v := value(t, ss, "apisix_http_status", map[string]string{"code": "200", "route": "", "node": ""}); v != 1 {
		t.Fatalf("status = %v", v)
	}
	if v := value(t, ss, "apisix_bandwidth", map[string]string{"type": "egress", "route": "1", "node": ""}); v <= 0 {
		t.Fatalf("bandwidth = %v", v)
	}
	if v := value(t, ss, "apisix_http_latency_count", map[string]string{"type": "request", "route": "1", "node": "127.0.0.1"}); v != 1 {
		t.Fatalf("latency = %v", v)
	}
}

func TestParseAttr(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]any
		want Attr
		err  bool
	}{
		{"defaults", nil, Attr{ExportURI: DefaultExportURI, ExportAddr: "127.0.0.1:9091", EnableExportServer: true, MetricPrefix: "apisix_", DefaultBuckets: DefaultBuckets}, false},
		{"all", map[string]any{"export_uri": "/m", "metric_prefix": "x_", "enable_export_server": false,
			"export_addr": map[string]any{"ip": "0.0.0.0", "port": 9100}, "default_buckets": []any{1, 2.5, "10"}},
			Attr{ExportURI: "/m", ExportAddr: "0.0.0.0:9100", MetricPrefix: "x_", DefaultBuckets: []float64{1, 2.5, 10}}, false},
		{"bad port", map[string]any{"export_addr": map[string]any{"port": 70000}}, Attr{}, true},
		{"bad bucket", map[string]any{"default_buckets": []any{true}}, Attr{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAttr(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err %v", err)
			}
			if err == nil && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %+v want %+v", got, tc.want)
			}
		})
	}
}

func TestOneServerPerShared(t *testing.T) {
	port := plugintest.FreePort(t)
	shared := &plugin.Shared{}
	attr := map[string]any{"export_addr": map[string]any{"ip": "127.0.0.1", "port": port}}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := New(json.RawMessage(`{}`), &plugin.BuildEnv{Parent: "/routes/1", Shared: shared, Attr: attr}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	e, s, err := EnsureServer(shared, attr)
	if err != nil || e == nil || s.Addr() != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("server %v %v", s.Addr(), err)
	}
	defer s.Close()
	inst, _ := New(json.RawMessage(`{}`), &plugin.BuildEnv{Parent: "/routes/2", Shared: shared, Attr: attr})
	if inst.(*Plugin).Exporter() != e {
		t.Fatal("second instance has another exporter")
	}
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{"": "", "127.0.0.1:80": "127.0.0.1", "[::1]:80": "::1", "example.com": "example.com", "::1": "::1"} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// benchRequest is a proxied request as the log phase sees it.
func benchRequest(route string) (*plugin.Request, func()) {
	c := engine.AcquireCtx()
	c.Method, c.RequestURI, c.Proto = "GET", "/hello", "HTTP/1.1"
	c.Header = engine.Header{"Host": {"example.com"}, "User-Agent": {"bench"}}
	c.StartTime = time.Now()
	c.Status, c.RouteID, c.UpstreamAddr, c.BytesSent = 200, route, "127.0.0.1:1980", 2
	c.UpstreamStatus = append(c.UpstreamStatus, 200)
	c.W = &nopWriter{h: engine.Header{"Content-Type": {"text/plain"}}}
	r := &plugin.Request{Ctx: c}
	return r, func() { engine.ReleaseCtx(c) }
}

// BenchmarkPrometheus measures before_proxy + log per request, serially
// and in parallel over a few routes (the children cache must not
// serialise recording).
func BenchmarkPrometheus(b *testing.B) {
	inst, err := New(json.RawMessage(`{}`), &plugin.BuildEnv{Parent: "/routes/1"})
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	b.Run("serial", func(b *testing.B) {
		r, done := benchRequest("1")
		defer done()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			delete(r.Values, valuesKey)
			p.BeforeProxy(r)
			p.Log(r)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var n int64
		var mu sync.Mutex
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			n++
			route := strconv.FormatInt(n%4, 10)
			mu.Unlock()
			r, done := benchRequest(route)
			defer done()
			for pb.Next() {
				delete(r.Values, valuesKey)
				p.BeforeProxy(r)
				p.Log(r)
			}
		})
	})
}

// nopWriter discards a response.
type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

// TestRecentSlots: the per-instance slots in front of the exporter give
// every label set its own children, also with more label sets than slots
// (the first ones seen keep the slots; the rest go to the exporter).
func TestRecentSlots(t *testing.T) {
	e, err := NewExporter(Attr{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Plugin{exp: e}
	var first [7]*children
	for round := 0; round < 3; round++ {
		for i := range first {
			k := childKey{code: 200 + i, route: "r"}
			ch := p.childFor(e, &k)
			if ch.key != k {
				t.Fatalf("label set %d: children of %+v", i, ch.key)
			}
			if round == 0 {
				first[i] = ch
			} else if ch != first[i] {
				t.Fatalf("label set %d: other children on round %d", i, round)
			}
		}
	}
	for i := range p.recent {
		if ch := p.recent[i].Load(); ch != first[i] {
			t.Fatalf("slot %d holds %v, want the label set seen %d-th", i, ch, i)
		}
	}
}

// Many requests filling the slots at once: every caller gets its own
// label set's children, and the slots end up holding distinct label
// sets (a CAS lost to another goroutine tries the next slot).
func TestRecentSlotsConcurrent(t *testing.T) {
	e, err := NewExporter(Attr{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Plugin{exp: e}
	var wg sync.WaitGroup
	errs := make(chan string, 8*100)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := childKey{code: 200 + g, route: "r"}
			for i := 0; i < 100; i++ {
				if ch := p.childFor(e, &k); ch.key != k {
					errs <- fmt.Sprintf("label set %d got the children of %+v", g, ch.key)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
	seen := map[*children]bool{}
	for i := range p.recent {
		ch := p.recent[i].Load()
		if ch == nil || seen[ch] {
			t.Fatalf("slot %d holds %v: want 4 distinct label sets", i, ch)
		}
		seen[ch] = true
	}
}
