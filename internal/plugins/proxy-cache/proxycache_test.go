package proxycache_test

import (
	stdgzip "compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	gz "github.com/sluice-gw/sluice/internal/plugins/gzip"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	proxycache "github.com/sluice-gw/sluice/internal/plugins/proxy-cache"
)

// origin counts requests and shapes responses from query arguments: cc
// (Cache-Control), vary, cookie, status, big (body size).
type origin struct {
	*httptest.Server
	hits atomic.Int64
}

func newOrigin(t *testing.T) *origin {
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.hits.Add(1)
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Ratelimit-Remaining", strconv.FormatInt(n, 10))
		if v := q.Get("cc"); v != "" {
			w.Header().Set("Cache-Control", v)
		}
		if v := q.Get("vary"); v != "" {
			w.Header().Set("Vary", v)
		}
		if q.Get("cookie") != "" {
			w.Header().Set("Set-Cookie", "a=b")
		}
		if s := q.Get("status"); s != "" {
			code, _ := strconv.Atoi(s)
			w.WriteHeader(code)
		}
		if b := q.Get("big"); b != "" {
			size, _ := strconv.Atoi(b)
			io.WriteString(w, strings.Repeat("x", size))
			return
		}
		fmt.Fprintf(w, `{"n":%d,"lang":%q}`, n, r.Header.Get("Accept-Language"))
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) upstream() string {
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, strings.TrimPrefix(o.URL, "http://"))
}

func TestConfig(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{proxycache.Def()}, nil)
	for _, tc := range []struct {
		name, conf string
		ok         bool
		msg        string
	}{
		{"default disk", `{}`, true, ""},
		{"memory zone", `{"cache_strategy":"memory","cache_zone":"memory_cache"}`, true, ""},
		{"custom memory zone", `{"cache_strategy":"memory","cache_zone":"my_zone","cache_ttl":5}`, true, ""},
		{"memory on disk zone", `{"cache_strategy":"memory"}`, false, "invalid or empty cache_zone for cache_strategy: memory"},
		{"disk on memory zone", `{"cache_strategy":"disk","cache_zone":"memory_cache"}`, false, "invalid or empty cache_zone for cache_strategy: disk"},
		{"request_method key", `{"cache_key":["$host","$request_method"]}`, false, "cache_key variable $request_method unsupported"},
		{"bad strategy", `{"cache_strategy":"network"}`, false, "cache_strategy"},
		{"bad method", `{"cache_method":["PUT"]}`, false, "cache_method"},
		{"bad status", `{"cache_http_status":[100]}`, false, "cache_http_status"},
		{"bad key", `{"cache_key":["$"]}`, false, "cache_key"},
		{"bad ttl", `{"cache_ttl":0}`, false, "cache_ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/c", `{"uri":"/c","plugins":{"proxy-cache":`+tc.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			if tc.ok != (r.Status == 200 || r.Status == 201) {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if !tc.ok && (!strings.Contains(r.Body, "failed to check the configuration of plugin proxy-cache err: ") || !strings.Contains(r.Body, tc.msg)) {
				t.Fatalf("body %s", r.Body)
			}
		})
	}
}

type step struct {
	method, path string
	hdr          map[string]string
	status       int
	cache        string // Apisix-Cache-Status, "-" = absent
	upstream     bool   // whether the origin was reached
}

func run(t *testing.T, g *plugintest.Gateway, o *origin, steps []step) []*plugintest.Response {
	t.Helper()
	var out []*plugintest.Response
	for i, s := range steps {
		before := o.hits.Load()
		r := g.Do(s.method, s.path, s.hdr, "")
		out = append(out, r)
		if r.Status != s.status {
			t.Fatalf("step %d %s %s: status %d, want %d (%s)", i, s.method, s.path, r.Status, s.status, r.Body)
		}
		got := r.Header.Get("Apisix-Cache-Status")
		if s.cache == "-" && got != "" || s.cache != "-" && got != s.cache {
			t.Fatalf("step %d %s %s: Apisix-Cache-Status %q, want %q", i, s.method, s.path, got, s.cache)
		}
		if reached := o.hits.Load() > before; reached != s.upstream {
			t.Fatalf("step %d %s %s: upstream reached %v", i, s.method, s.path, reached)
		}
	}
	return out
}

func TestMemory(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{proxycache.Def()}, nil)
	o := newOrigin(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello*","plugins":{"proxy-cache":{
		"cache_strategy":"memory","cache_zone":"memory_cache","cache_key":["$host","$uri"],
		"cache_bypass":["$arg_bypass"],"no_cache":["$arg_no_cache"],"cache_http_status":[200,404]}},"upstream":`+o.upstream()+`}`)
	rs := run(t, g, o, []step{
		{"GET", "/hello", nil, 200, "MISS", true},
		{"GET", "/hello", nil, 200, "HIT", false},
		{"GET", "/hello?bypass=1", nil, 200, "BYPASS", true},
		{"GET", "/hello?bypass=0", nil, 200, "HIT", false},
		{"PURGE", "/hello", nil, 200, "-", false},
		{"PURGE", "/hello", nil, 404, "-", false},
		{"GET", "/hello?no_cache=1", nil, 200, "MISS", true},
		{"GET", "/hello", nil, 200, "MISS", true},
		{"GET", "/hello", nil, 200, "HIT", false},
		{"POST", "/hello", nil, 200, "MISS", true},
		{"HEAD", "/hello-head", nil, 200, "MISS", true},
		{"HEAD", "/hello-head", nil, 200, "MISS", true},
		{"GET", "/hello-404?status=404", nil, 404, "MISS", true},
		{"GET", "/hello-404?status=404", nil, 404, "HIT", false},
		{"GET", "/hello-500?status=500", nil, 500, "MISS", true},
		{"GET", "/hello-500?status=500", nil, 500, "MISS", true},
		{"GET", "/hello-private?cc=private", nil, 200, "MISS", true},
		{"GET", "/hello-private?cc=private", nil, 200, "MISS", true},
		{"GET", "/hello-nostore?cc=no-store", nil, 200, "MISS", true},
		{"GET", "/hello-nostore?cc=no-store", nil, 200, "MISS", true},
		{"GET", "/hello-cookie?cookie=1", nil, 200, "MISS", true},
		{"GET", "/hello-cookie?cookie=1", nil, 200, "MISS", true},
		{"GET", "/hello-vary-star?vary=*", nil, 200, "MISS", true},
		{"GET", "/hello-vary-star?vary=*", nil, 200, "MISS", true},
	})
	miss, hit := rs[7], rs[8]
	if hit.Body != miss.Body || hit.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("hit %q %v, miss %q", hit.Body, hit.Header, miss.Body)
	}
	if hit.Header.Get("Age") == "" || miss.Header.Get("Age") != "" {
		t.Fatalf("Age: hit %q miss %q", hit.Header.Get("Age"), miss.Header.Get("Age"))
	}
	if hit.Header.Get("X-Ratelimit-Remaining") != "" {
		t.Fatalf("rate-limit header replayed: %v", hit.Header)
	}
	if hit.Header.Get("Content-Length") != strconv.Itoa(len(hit.Body)) {
		t.Fatalf("Content-Length %q for %d bytes", hit.Header.Get("Content-Length"), len(hit.Body))
	}

	t.Run("vary variants", func(t *testing.T) {
		en := map[string]string{"Accept-Language": "en"}
		fr := map[string]string{"Accept-Language": "fr"}
		rs := run(t, g, o, []step{
			{"GET", "/hello-vary?vary=Accept-Language", en, 200, "MISS", true},
			{"GET", "/hello-vary?vary=Accept-Language", en, 200, "HIT", false},
			{"GET", "/hello-vary?vary=Accept-Language", fr, 200, "MISS", true},
			{"GET", "/hello-vary?vary=Accept-Language", fr, 200, "HIT", false},
			{"GET", "/hello-vary?vary=Accept-Language", en, 200, "HIT", false},
			{"PURGE", "/hello-vary", nil, 200, "-", false},
			{"GET", "/hello-vary?vary=Accept-Language", fr, 200, "MISS", true},
		})
		if !strings.Contains(rs[3].Body, `"fr"`) || !strings.Contains(rs[4].Body, `"en"`) {
			t.Fatalf("variants mixed: %q %q", rs[3].Body, rs[4].Body)
		}
	})

	t.Run("survives unrelated config change", func(t *testing.T) {
		run(t, g, o, []step{{"GET", "/hello", nil, 200, "HIT", false}})
		g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/other","upstream":`+o.upstream()+`}`)
		run(t, g, o, []step{{"GET", "/hello", nil, 200, "HIT", false}})
	})
}

func TestMemoryTTLAndCacheControl(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{proxycache.Def()}, nil)
	o := newOrigin(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/ttl","plugins":{"proxy-cache":{
		"cache_strategy":"memory","cache_zone":"memory_cache","cache_ttl":1}},"upstream":`+o.upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/cc","plugins":{"proxy-cache":{
		"cache_strategy":"memory","cache_zone":"memory_cache","cache_control":true,"hide_cache_headers":true}},"upstream":`+o.upstream()+`}`)
	run(t, g, o, []step{
		{"GET", "/ttl", nil, 200, "MISS", true},
		{"GET", "/ttl", nil, 200, "HIT", false},
	})
	time.Sleep(1100 * time.Millisecond)
	run(t, g, o, []step{
		{"GET", "/ttl", nil, 200, "EXPIRED", true},
		{"GET", "/ttl", nil, 200, "HIT", false},
	})
	rs := run(t, g, o, []step{
		{"GET", "/cc?cc=max-age%3D60", nil, 200, "MISS", true},
		{"GET", "/cc?cc=max-age%3D60", nil, 200, "HIT", false},
		{"GET", "/cc?cc=max-age%3D60", map[string]string{"Cache-Control": "min-fresh=120"}, 200, "STALE", true},
		{"GET", "/cc?cc=max-age%3D60", map[string]string{"Cache-Control": "no-store"}, 200, "BYPASS", true},
		{"GET", "/cc?cc=max-age%3D60", map[string]string{"Cache-Control": "no-cache"}, 200, "BYPASS", true},
		{"GET", "/cc?cc=max-age%3D0", map[string]string{"Cache-Control": "only-if-cached"}, 504, "MISS", false},
		{"GET", "/cc", nil, 200, "MISS", true}, // no max-age: ttl 0, not stored
		{"GET", "/cc", nil, 200, "MISS", true},
	})
	for i, r := range rs[:2] {
		if r.Header.Get("Cache-Control") != "" {
			t.Fatalf("response %d: Cache-Control not hidden: %v", i, r.Header)
		}
	}
}

func TestConsumerIsolationAndSizeCap(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{proxycache.Def()}, nil)
	o := newOrigin(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/big","plugins":{"proxy-cache":{
		"cache_strategy":"memory","cache_zone":"memory_cache","max_resp_body_size":1000}},"upstream":`+o.upstream()+`}`)
	run(t, g, o, []step{
		{"GET", "/big?big=999", nil, 200, "MISS", true},
		{"GET", "/big?big=999", nil, 200, "HIT", false},
		{"GET", "/big?big=1000", nil, 200, "MISS", true},
		{"GET", "/big?big=1000", nil, 200, "MISS", true},
	})
}

func TestDisk(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{proxycache.Def()}, nil)
	o := newOrigin(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/d*","plugins":{"proxy-cache":{"cache_bypass":["$arg_bypass"]}},"upstream":`+o.upstream()+`}`)
	rs := run(t, g, o, []step{
		{"GET", "/d", nil, 200, "MISS", true},
		{"GET", "/d", nil, 200, "HIT", false},
		{"GET", "/d?bypass=1", nil, 200, "BYPASS", true},
		{"POST", "/d", nil, 200, "BYPASS", true},
		{"PURGE", "/d", nil, 200, "-", false},
		{"PURGE", "/d", nil, 404, "-", false},
		{"GET", "/d2?cc=max-age%3D0", nil, 200, "MISS", true},
		{"GET", "/d2?cc=max-age%3D0", nil, 200, "MISS", true},
	})
	if rs[1].Header.Get("Age") != "" {
		t.Fatalf("disk hit has Age: %v", rs[1].Header)
	}
}

func TestStoreLRU(t *testing.T) {
	s := proxycache.NewStore(32 * 4096)
	// Each shard holds 4096 bytes: fill well past that.
	for i := 0; i < 2000; i++ {
		proxycache.SetForTest(s, fmt.Sprintf("k%d", i), make([]byte, 500))
	}
	if b := s.Bytes(); b > 32*4096 {
		t.Fatalf("store holds %d bytes, budget %d", b, 32*4096)
	}
	if proxycache.SetForTest(s, "huge", make([]byte, 5000)) {
		t.Fatal("stored an object larger than a shard")
	}
	if !proxycache.HasForTest(s, "k1999") {
		t.Fatal("most recent entry evicted")
	}
	if proxycache.HasForTest(s, "k0") {
		t.Fatal("oldest entry survived")
	}
}

type writer struct {
	h      engine.Header
	status int
}

func (w *writer) Header() engine.Header       { return w.h }
func (w *writer) WriteHeader(s int)           { w.status = s }
func (w *writer) Write(p []byte) (int, error) { return len(p), nil }
func (w *writer) Flush() error                { return nil }

func BenchmarkProxyCache(b *testing.B) {
	inst, err := proxycache.New(json.RawMessage(`{"cache_strategy":"memory","cache_zone":"memory_cache"}`), &plugin.BuildEnv{Shared: new(plugin.Shared)})
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*proxycache.Plugin)
	prep := func() (*plugin.Request, *writer) {
		c := engine.AcquireCtx()
		c.Method, c.Host, c.RequestURI, c.Path, c.Proto = "GET", "example.com", "/a?b=1", "/a", "HTTP/1.1"
		c.Header = engine.Header{}
		w := &writer{h: engine.Header{}}
		c.W = w
		return &plugin.Request{Ctx: c}, w
	}
	// Fill the cache with one miss.
	r, w := prep()
	p.Access(r)
	w.h["Content-Type"] = []string{"application/json"}
	r.RespStatus = 200
	p.HeaderFilter(r)
	p.BodyFilter(r, []byte(`{"hello":"world"}`), false)
	p.BodyFilter(r, nil, true)
	b.Run("hit", func(b *testing.B) {
		r, w := prep()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			clear(w.h)
			p.Access(r)
			if w.status != 200 {
				b.Fatalf("status %d", w.status)
			}
			p.BodyFilter(r, nil, true)
		}
	})
	b.Run("hit_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r, w := prep()
			for pb.Next() {
				clear(w.h)
				p.Access(r)
				p.BodyFilter(r, nil, true)
			}
		})
	})
}

// The cache stores the uncompressed body (proxy-cache's filters run before
// gzip's) and a HIT is compressed again on the way out, as in APISIX.
func TestWithGzip(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{proxycache.Def(), gz.Def()}, nil)
	o := newOrigin(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/z","plugins":{"gzip":{"types":"*"},"proxy-cache":{
		"cache_strategy":"memory","cache_zone":"memory_cache"}},"upstream":`+o.upstream()+`}`)
	ae := map[string]string{"Accept-Encoding": "gzip"}
	rs := run(t, g, o, []step{
		{"GET", "/z?big=500", ae, 200, "MISS", true},
		{"GET", "/z?big=500", ae, 200, "HIT", false},
		{"GET", "/z?big=500", map[string]string{"Accept-Encoding": "identity"}, 200, "HIT", false},
	})
	for _, r := range rs[:2] {
		if r.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("not compressed: %v", r.Header)
		}
		zr, err := stdgzip.NewReader(strings.NewReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(zr)
		if string(b) != strings.Repeat("x", 500) {
			t.Fatalf("body %q", b)
		}
	}
	if rs[2].Body != strings.Repeat("x", 500) || rs[2].Header.Get("Content-Encoding") != "" {
		t.Fatalf("identity hit: %v %q", rs[2].Header, rs[2].Body[:20])
	}
}
