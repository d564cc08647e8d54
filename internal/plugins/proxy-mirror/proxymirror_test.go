package proxymirror

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	const prefix = `{"error_msg":"failed to check the configuration of plugin proxy-mirror err: `
	tests := []struct {
		name, conf string
		status     int
		want       string
	}{
		{"host only", `{"host":"http://127.0.0.1:1999"}`, 201, ""},
		{"all fields", `{"host":"https://mirror.example","path":"/m","path_concat_mode":"prefix","sample_ratio":0.5}`, 201, ""},
		{"grpc ipv6", `{"host":"grpc://[::1]:50051"}`, 201, ""},
		{"missing host", `{}`, 400, prefix + `property \"host\" is required"}`},
		{"host with path", `{"host":"http://127.0.0.1:1999/a"}`, 400, ""},
		{"host scheme", `{"host":"ftp://127.0.0.1"}`, 400, ""},
		{"path with query", `{"host":"http://127.0.0.1","path":"/a?b=1"}`, 400, ""},
		{"concat mode", `{"host":"http://127.0.0.1","path_concat_mode":"append"}`, 400, ""},
		{"sample ratio too small", `{"host":"http://127.0.0.1","sample_ratio":0}`, 400,
			prefix + `property \"sample_ratio\" validation failed: expected 0 to be at least 1e-05"}`},
		{"sample ratio too big", `{"host":"http://127.0.0.1","sample_ratio":2}`, 400,
			prefix + `property \"sample_ratio\" validation failed: expected 2 to be at most 1"}`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/"+string(rune('a'+i)), `{"uri":"/a","plugins":{"proxy-mirror":`+tc.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
			if tc.status == 400 && !strings.HasPrefix(r.Body, prefix) {
				t.Fatalf("body %s", r.Body)
			}
		})
	}
}

// copyReq is what the mirror received.
type copyReq struct {
	method, uri, host, body string
	header                  http.Header
}

// mirror is a mirror server that records what it receives; delay makes it
// slow.
type mirror struct {
	*httptest.Server
	got  chan copyReq
	stop chan struct{}
}

func newMirror(t *testing.T, delay time.Duration) *mirror {
	m := &mirror{got: make(chan copyReq, 100), stop: make(chan struct{})}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		m.got <- copyReq{method: r.Method, uri: r.RequestURI, host: r.Host, body: string(b), header: r.Header.Clone()}
		select {
		case <-time.After(delay):
		case <-m.stop:
		}
		io.WriteString(w, "mirror")
	}))
	t.Cleanup(func() { close(m.stop); m.Close() })
	return m
}

func (m *mirror) wait(t *testing.T) copyReq {
	t.Helper()
	select {
	case c := <-m.got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("mirror received nothing")
	}
	return copyReq{}
}

func TestMirrorReceivesCopies(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	m := newMirror(t, 0)
	big := strings.Repeat("x", 300<<10)
	tests := []struct {
		name, conf, method, path, body string
		hdr                            map[string]string
		wantURI                        string
	}{
		{"get", `{"host":"` + m.URL + `"}`, "GET", "/a?x=1", "", map[string]string{"X-Trace": "t1"}, "/a?x=1"},
		{"post body", `{"host":"` + m.URL + `"}`, "POST", "/a", "hello body", map[string]string{"Content-Type": "text/plain"}, "/a"},
		{"big body", `{"host":"` + m.URL + `"}`, "PUT", "/a", big, nil, "/a"},
		{"path replace", `{"host":"` + m.URL + `","path":"/m"}`, "GET", "/a?x=1&y=2", "", nil, "/m?x=1&y=2"},
		{"path replace without args", `{"host":"` + m.URL + `","path":"/m"}`, "GET", "/a", "", nil, "/m"},
		{"path prefix", `{"host":"` + m.URL + `","path":"/m","path_concat_mode":"prefix"}`, "GET", "/a?x=1", "", nil, "/m/a?x=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"proxy-mirror":`+tc.conf+`},"upstream":`+rec.Upstream()+`}`)
			resp := g.Do(tc.method, tc.path, tc.hdr, tc.body)
			if resp.Status != 200 || resp.Body != "ok" {
				t.Fatalf("main: %d %q", resp.Status, resp.Body)
			}
			c := m.wait(t)
			if c.method != tc.method || c.uri != tc.wantURI || c.body != tc.body {
				t.Fatalf("mirror got %s %s body %d bytes, want %s %s %d bytes", c.method, c.uri, len(c.body), tc.method, tc.wantURI, len(tc.body))
			}
			for k, v := range tc.hdr {
				if c.header.Get(k) != v {
					t.Fatalf("mirror header %s = %q", k, c.header.Get(k))
				}
			}
			if c.host != strings.TrimPrefix(g.ProxyURL, "http://") {
				t.Fatalf("mirror Host %q", c.host)
			}
		})
	}
}

func TestSlowOrDeadMirrorDoesNotSlowTheMainRequest(t *testing.T) {
	slow := newMirror(t, 10*time.Second)
	g := plugintest.Start(t, []*plugin.Def{Def()}, func(c *config.Config) {
		c.PluginAttr = map[string]map[string]any{"proxy-mirror": {"timeout": map[string]any{"connect": "1s", "read": "20s", "send": "1s"}}}
	})
	rec := plugintest.NewRecorder(t)
	// 192.0.2.1 (TEST-NET-1) never answers: connects hang until the timeout.
	for name, host := range map[string]string{"slow": slow.URL, "blackhole": "http://192.0.2.1:9"} {
		t.Run(name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"proxy-mirror":{"host":"`+host+`"}},"upstream":`+rec.Upstream()+`}`)
			for i := 0; i < 20; i++ {
				start := time.Now()
				resp := g.Do("POST", "/a", nil, "payload")
				// The mirror answers after 10 s (or never): a main request
				// that waited for it would take that long; the bound leaves
				// room for a loaded CI machine.
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("request %d took %v", i, d)
				}
				if resp.Status != 200 || resp.Body != "ok" {
					t.Fatalf("main: %d %q", resp.Status, resp.Body)
				}
			}
		})
	}
	slow.wait(t)
}

func TestSampleRatio(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	m := newMirror(t, 0)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"proxy-mirror":{"host":"`+m.URL+`","sample_ratio":0.00001}},"upstream":`+rec.Upstream()+`}`)
	for i := 0; i < 50; i++ {
		g.Do("GET", "/a", nil, "")
	}
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"proxy-mirror":{"host":"`+m.URL+`","sample_ratio":1}},"upstream":`+rec.Upstream()+`}`)
	g.Do("GET", "/a?last=1", nil, "")
	// Mirrors arrive in order per worker but not overall; the sampled-out
	// ones must simply not be there.
	n := 0
	for {
		c := m.wait(t)
		n++
		if c.uri == "/a?last=1" {
			break
		}
	}
	if n > 2 {
		t.Fatalf("%d mirrors with sample_ratio 0.00001", n-1)
	}
}

func TestPoolDropsWhenFull(t *testing.T) {
	m := newMirror(t, 10*time.Second)
	p := NewPool(PoolConfig{Queue: 2, Workers: 1, Timeouts: Timeouts{Connect: time.Second, Send: time.Second, Read: 20 * time.Second}})
	start := time.Now()
	accepted := 0
	for i := 0; i < 10; i++ {
		if p.Submit(&Job{Method: "GET", URL: m.URL + "/x", Host: "h"}) {
			accepted++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Submit blocked for %v", d)
	}
	m.wait(t)
	_, _, dropped := p.Stats()
	if dropped == 0 || accepted > 3 {
		t.Fatalf("accepted %d dropped %d", accepted, dropped)
	}
}

func TestParseTimeouts(t *testing.T) {
	tests := []struct {
		in   map[string]any
		want Timeouts
		err  bool
	}{
		{nil, Timeouts{60 * time.Second, 60 * time.Second, 60 * time.Second}, false},
		{map[string]any{"timeout": map[string]any{"connect": "500ms", "send": 2, "read": "1m"}}, Timeouts{500 * time.Millisecond, 2 * time.Second, time.Minute}, false},
		{map[string]any{"timeout": map[string]any{"connect": "x"}}, Timeouts{}, true},
	}
	for _, tc := range tests {
		got, err := ParseTimeouts(tc.in)
		if (err != nil) != tc.err || (err == nil && got != tc.want) {
			t.Errorf("ParseTimeouts(%v) = %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseNginxTime(f *testing.F) {
	for _, s := range []string{"60s", "1m", "500ms", "2", "-1s", "1e3h", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseNginxTime(s); err == nil && d < 0 {
			t.Fatalf("negative %v for %q", d, s)
		}
	})
}

// BenchmarkProxyMirror measures rewrite + before_proxy of a mirrored
// request without a body (the copy's send happens on the pool's workers;
// the queue is large so nothing blocks).
func BenchmarkProxyMirror(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	inst, err := New(json.RawMessage(`{"host":"`+srv.URL+`","sample_ratio":0.001}`), &plugin.BuildEnv{})
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Reset()
		c.Method, c.RequestURI, c.Path, c.RawHost = "GET", "/a?x=1", "/a", "example.com"
		c.Header = engine.Header{"X-A": {"1"}}
		c.ContentLength = 0
		p.Rewrite(r)
		p.BeforeProxy(r)
	}
}
