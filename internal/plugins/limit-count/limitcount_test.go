package limitcount_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	limitcount "github.com/sluice-gw/sluice/internal/plugins/limit-count"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

const prefix = `{"error_msg":"failed to check the configuration of plugin limit-count err: `

func route(uri, conf, upstream string) string {
	return `{"uri":"` + uri + `","plugins":{"limit-count":` + conf + `},"upstream":` + upstream + `}`
}

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	up := `{"nodes":{"127.0.0.1:1":1}}`
	tests := []struct {
		name, conf string
		status     int
		want       string
	}{
		{"minimal", `{"count":2,"time_window":60}`, 201, ""},
		{"all local fields", `{"count":2,"time_window":60,"window_type":"sliding","key":"http_x","key_type":"var","rejected_code":429,"rejected_msg":"no","policy":"local","allow_degradation":true,"show_limit_quota_header":false}`, 201, ""},
		{"var count", `{"count":"${http_count}","time_window":"$http_tw"}`, 201, ""},
		{"rules", `{"rules":[{"count":1,"time_window":10,"key":"${http_a}"},{"count":2,"time_window":10,"key":"${http_b}","header_prefix":"b"}]}`, 201, ""},
		{"missing time_window", `{"count":2}`, 400, prefix + `value should match only one schema, but matches none"}`},
		{"count zero", `{"count":0,"time_window":60}`, 400, prefix + `property \"count\" validation failed: value should match only one schema, but matches none"}`},
		{"count float", `{"count":1.5,"time_window":60}`, 400, prefix + `property \"count\" validation failed: value should match only one schema, but matches none"}`},
		{"bad key_type", `{"count":2,"time_window":60,"key_type":"x"}`, 400, prefix + `property \"key_type\" validation failed: matches none of the enum values"}`},
		{"rejected_code range", `{"count":2,"time_window":60,"rejected_code":600}`, 400, prefix + `property \"rejected_code\" validation failed: expected 600 to be at most 599"}`},
		{"empty rejected_msg", `{"count":2,"time_window":60,"rejected_msg":""}`, 400, prefix + `property \"rejected_msg\" validation failed: string too short, expected at least 1, got 0"}`},
		{"count and rules", `{"count":2,"time_window":5,"rules":[{"count":1,"time_window":10,"key":"${http_company}"}]}`, 400, prefix + `count/time_window and rules cannot be specified at the same time"}`},
		{"group and rules", `{"group":"g","rules":[{"count":1,"time_window":10,"key":"${http_company}"}]}`, 400, prefix + `group and rules cannot be specified at the same time"}`},
		{"duplicate rule keys", `{"rules":[{"count":5,"time_window":10,"key":"${http_company}"},{"count":8,"time_window":20,"key":"${http_company}"}]}`, 400, prefix + `duplicate key '${http_company}' in rules"}`},
		{"redis needs host", `{"count":2,"time_window":60,"policy":"redis"}`, 400, prefix + `then clause did not match"}`},
		{"redis sentinel refused", `{"count":2,"time_window":60,"policy":"redis-sentinel","redis_sentinels":[{"host":"127.0.0.1","port":26379}],"redis_master_name":"m"}`, 400, prefix + `policy redis-sentinel is not supported yet"}`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", fmt.Sprintf("/apisix/admin/routes/v%d", i), route("/v", tc.conf, up))
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		conf, err string
	}{
		{`{"count":1,"time_window":1}`, ""},
		{`{"rules":[]}`, "no rule"},
		{`{"count":1}`, "value should match only one schema, but matches none"},
		{`{"count":1,"time_window":1,"policy":"redis-sentinel"}`, "policy redis-sentinel is not supported yet"},
	}
	def := limitcount.Def()
	for _, tc := range tests {
		t.Run(tc.conf, func(t *testing.T) {
			_, err := def.New(json.RawMessage(tc.conf), nil)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.err == "no rule" && err != nil:
				t.Fatalf("empty rules must validate (it fails at request time): %v", err)
			case tc.err != "" && tc.err != "no rule" && (err == nil || err.Error() != tc.err):
				t.Fatalf("err = %v, want %s", err, tc.err)
			}
		})
	}
}

// TestParallelExactCount fires requests in parallel and checks exactly
// count of them reach the upstream.
func TestParallelExactCount(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"count":10,"time_window":60,"rejected_code":429,"rejected_msg":"slow down"}`, rec.Upstream()))
	const n = 60
	var wg sync.WaitGroup
	statuses := make([]int, n)
	bodies := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := g.Do("GET", "/a", nil, "")
			statuses[i], bodies[i] = r.Status, r.Body
		}(i)
	}
	wg.Wait()
	ok, rejected := 0, 0
	for i, s := range statuses {
		switch s {
		case 200:
			ok++
		case 429:
			rejected++
			if bodies[i] != `{"error_msg":"slow down"}`+"\n" {
				t.Fatalf("reject body %q", bodies[i])
			}
		default:
			t.Fatalf("status %d", s)
		}
	}
	if ok != 10 || rejected != n-10 || rec.Count() != 10 {
		t.Fatalf("ok=%d rejected=%d upstream=%d, want 10/%d/10", ok, rejected, rec.Count(), n-10)
	}
}

var fraction = regexp.MustCompile(`^(59(\.\d{1,2})?|60)$`)

func TestHeaders(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"count":2,"time_window":60}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/quiet", `{"count":1,"time_window":60,"show_limit_quota_header":false}`, rec.Upstream()))

	r := g.Do("GET", "/a", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "2" || r.Header.Get("X-RateLimit-Remaining") != "1" || r.Header.Get("X-RateLimit-Reset") != "60" {
		t.Fatalf("first: %d %v", r.Status, r.Header)
	}
	r = g.Do("GET", "/a", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "0" || !fraction.MatchString(r.Header.Get("X-RateLimit-Reset")) {
		t.Fatalf("second: %d %v", r.Status, r.Header)
	}
	r = g.Do("GET", "/a", nil, "")
	if r.Status != 503 || r.Header.Get("X-RateLimit-Limit") != "2" || r.Header.Get("X-RateLimit-Remaining") != "0" || !fraction.MatchString(r.Header.Get("X-RateLimit-Reset")) {
		t.Fatalf("third: %d %v", r.Status, r.Header)
	}
	if !strings.Contains(r.Body, "503 Service Temporarily Unavailable") {
		t.Fatalf("reject body %q", r.Body)
	}
	if rec.Count() != 2 {
		t.Fatalf("upstream saw %d", rec.Count())
	}
	// Counts past the small-number table are formatted per request (one
	// text per request, not one kept from the last).
	g.MustAdmin("PUT", "/apisix/admin/routes/3", route("/big", `{"count":5000,"time_window":60}`, rec.Upstream()))
	for _, want := range []string{"4999", "4998"} {
		if r := g.Do("GET", "/big", nil, ""); r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "5000" || r.Header.Get("X-RateLimit-Remaining") != want {
			t.Fatalf("big count: %d %v, want remaining %s", r.Status, r.Header, want)
		}
	}

	r = g.Do("GET", "/quiet", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "" {
		t.Fatalf("quiet: %d %v", r.Status, r.Header)
	}

	// Header names from plugin_metadata; missing fields keep defaults.
	g.MustAdmin("PUT", "/apisix/admin/plugin_metadata/limit-count", `{"limit_header":"X-Limit-Quota","remaining_header":"X-Limit-Left"}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/3", route("/m", `{"count":5,"time_window":30}`, rec.Upstream()))
	r = g.Do("GET", "/m", nil, "")
	if r.Header.Get("X-Limit-Quota") != "5" || r.Header.Get("X-Limit-Left") != "4" || r.Header.Get("X-RateLimit-Reset") != "30" || r.Header.Get("X-RateLimit-Limit") != "" {
		t.Fatalf("metadata names: %v", r.Header)
	}
}

func TestCountersSurviveUnrelatedChanges(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"count":3,"time_window":60}`, rec.Upstream()))
	for i := 0; i < 2; i++ {
		if r := g.Do("GET", "/a", nil, ""); r.Status != 200 {
			t.Fatalf("request %d: %d", i, r.Status)
		}
	}
	// An unrelated Admin API change builds a new snapshot.
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/b", `{"count":1,"time_window":60}`, rec.Upstream()))
	r := g.Do("GET", "/a", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("after unrelated change: %d remaining %s", r.Status, r.Header.Get("X-RateLimit-Remaining"))
	}
	if r := g.Do("GET", "/a", nil, ""); r.Status != 503 {
		t.Fatalf("want 503, got %d", r.Status)
	}
	// Changing the route but not the plugin conf keeps the counter too.
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","desc":"changed","plugins":{"limit-count":{"count":3,"time_window":60}},"upstream":`+rec.Upstream()+`}`)
	if r := g.Do("GET", "/a", nil, ""); r.Status != 503 {
		t.Fatalf("after route edit: want 503, got %d", r.Status)
	}
	// A changed plugin conf starts a fresh counter.
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"count":4,"time_window":60}`, rec.Upstream()))
	r = g.Do("GET", "/a", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "3" {
		t.Fatalf("after conf change: %d remaining %s", r.Status, r.Header.Get("X-RateLimit-Remaining"))
	}
}

func TestKeys(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/var", `{"count":1,"time_window":60,"key":"http_user"}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/comb", `{"count":1,"time_window":60,"key":"$http_a-$http_b","key_type":"var_combination"}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/3", route("/const", `{"count":1,"time_window":60,"key":"k","key_type":"constant"}`, rec.Upstream()))
	steps := []struct {
		path    string
		headers map[string]string
		status  int
	}{
		{"/var", map[string]string{"User": "jack"}, 200},
		{"/var", map[string]string{"User": "jack"}, 503},
		{"/var", map[string]string{"User": "rose"}, 200},
		{"/var", nil, 200}, // no header: falls back to remote_addr
		{"/var", nil, 503},
		{"/comb", map[string]string{"A": "1", "B": "2"}, 200},
		{"/comb", map[string]string{"A": "1", "B": "2"}, 503},
		{"/comb", map[string]string{"A": "1"}, 200},
		{"/comb", nil, 200}, // nothing resolved: remote_addr
		{"/const", map[string]string{"User": "x"}, 200},
		{"/const", map[string]string{"User": "y"}, 503},
	}
	for i, s := range steps {
		if r := g.Do("GET", s.path, s.headers, ""); r.Status != s.status {
			t.Fatalf("step %d %s %v: %d, want %d", i, s.path, s.headers, r.Status, s.status)
		}
	}
}

func TestGroup(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	conf := `{"count":2,"time_window":60,"rejected_code":503,"group":"services_1"}`
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", conf, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/b", conf, rec.Upstream()))
	got := []int{}
	for _, p := range []string{"/a", "/b", "/a", "/b"} {
		got = append(got, g.Do("GET", p, nil, "").Status)
	}
	if fmt.Sprint(got) != "[200 200 503 503]" {
		t.Fatalf("group statuses %v", got)
	}
	r := g.Admin("PUT", "/apisix/admin/routes/3", route("/c", `{"count":1,"time_window":60,"rejected_code":503,"group":"services_1"}`, rec.Upstream()))
	if r.Status != 400 || strings.TrimSpace(r.Body) != prefix+`group conf mismatched"}` {
		t.Fatalf("mismatch: %d %s", r.Status, r.Body)
	}
}

func TestRules(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"rejected_msg":"rejected","rules":[
		{"key":"${http_user}","count":"${http_jack_count}","time_window":60,"header_prefix":"jack"},
		{"key":"${http_project}","count":"${http_apisix_count}","time_window":60}]}`, rec.Upstream()))
	r := g.Do("GET", "/a", map[string]string{"User": "jack", "Jack-Count": "2"}, "")
	if r.Status != 200 || r.Header.Get("X-Jack-RateLimit-Limit") != "2" || r.Header.Get("X-Jack-RateLimit-Remaining") != "1" || r.Header.Get("X-Jack-RateLimit-Reset") != "60" {
		t.Fatalf("jack: %d %v", r.Status, r.Header)
	}
	r = g.Do("GET", "/a", map[string]string{"Project": "apisix", "Apisix-Count": "3"}, "")
	if r.Status != 200 || r.Header.Get("X-2-RateLimit-Limit") != "3" || r.Header.Get("X-2-RateLimit-Remaining") != "2" {
		t.Fatalf("bar: %d %v", r.Status, r.Header)
	}
	// No rule applies: 500.
	if r := g.Do("GET", "/a", nil, ""); r.Status != 500 {
		t.Fatalf("no rule: %d", r.Status)
	}
	// A variable count that is not a number: 500.
	if r := g.Do("GET", "/a", map[string]string{"User": "jack", "Jack-Count": "x"}, ""); r.Status != 500 {
		t.Fatalf("bad count: %d", r.Status)
	}
	g.Do("GET", "/a", map[string]string{"User": "jack", "Jack-Count": "2"}, "")
	r = g.Do("GET", "/a", map[string]string{"User": "jack", "Jack-Count": "2"}, "")
	if r.Status != 503 || r.Body != `{"error_msg":"rejected"}`+"\n" {
		t.Fatalf("jack over: %d %q", r.Status, r.Body)
	}
}

func TestWindowExpiresAndSliding(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/fixed", `{"count":1,"time_window":1}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/sliding", `{"count":2,"time_window":2,"window_type":"sliding"}`, rec.Upstream()))
	if r := g.Do("GET", "/fixed", nil, ""); r.Status != 200 {
		t.Fatal(r.Status)
	}
	if r := g.Do("GET", "/fixed", nil, ""); r.Status != 503 {
		t.Fatal(r.Status)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := g.Do("GET", "/fixed", nil, ""); r.Status != 200 {
		t.Fatalf("after window: %d", r.Status)
	}
	// The burst runs in one window: a boundary during it would let a third
	// request through (the previous window's weight starts just below the
	// limit).
	earlyInWindow(2*time.Second, time.Second)
	ok := 0
	for i := 0; i < 5; i++ {
		r := g.Do("GET", "/sliding", nil, "")
		if r.Status == 200 {
			ok++
			if rem := r.Header.Get("X-RateLimit-Remaining"); rem != "1" && rem != "0" {
				t.Fatalf("sliding remaining %q", rem)
			}
		}
	}
	if ok != 2 {
		t.Fatalf("sliding allowed %d, want 2", ok)
	}
}

// earlyInWindow returns early in a sliding window of size w: windows are
// numbered by the wall clock (now/w), so if less than need of the current
// one is left it sleeps until just past the next boundary.
func earlyInWindow(w, need time.Duration) {
	if left := w - time.Duration(time.Now().UnixNano()%int64(w)); left < need {
		time.Sleep(left + 10*time.Millisecond)
	}
}

// respWriter is a minimal engine.ResponseWriter for unit-level calls.
type respWriter struct {
	h      engine.Header
	status int
}

func (w *respWriter) Header() engine.Header       { return w.h }
func (w *respWriter) WriteHeader(s int)           { w.status = s }
func (w *respWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *respWriter) Flush() error                { return nil }

func newInstance(tb testing.TB, conf string, shared *plugin.Shared) *limitcount.Plugin {
	inst, err := limitcount.Def().New(json.RawMessage(conf), &plugin.BuildEnv{Parent: "/routes/1", ConfHash: "h", Shared: shared})
	if err != nil {
		tb.Fatal(err)
	}
	return inst.(*limitcount.Plugin)
}

func newRequest(ip string) (*plugin.Request, *respWriter) {
	c := engine.AcquireCtx()
	w := &respWriter{h: engine.Header{}}
	c.W = w
	c.Method = "GET"
	c.RemoteAddr = netip.MustParseAddrPort(ip + ":5000")
	return &plugin.Request{Ctx: c}, w
}

// TestSweepBoundsMemory checks that expired windows and empty tables are
// dropped and that a counter recreated afterwards starts fresh.
func TestSweepBoundsMemory(t *testing.T) {
	shared := &plugin.Shared{}
	p := newInstance(t, `{"count":1,"time_window":1,"show_limit_quota_header":false}`, shared)
	for i := 0; i < 100; i++ {
		r, _ := newRequest(fmt.Sprintf("10.0.0.%d", i))
		p.Access(r)
		if r.Exited() {
			t.Fatalf("request %d rejected", i)
		}
	}
	if p.Counters() != 100 {
		t.Fatalf("counters %d", p.Counters())
	}
	limitcount.SweepForTest(p, time.Now().Add(2*time.Second))
	if n := limitcount.TablesForTest(p); n != 0 {
		t.Fatalf("tables after sweep: %d", n)
	}
	r, _ := newRequest("10.0.0.1")
	p.Access(r)
	if r.Exited() || p.Counters() != 1 {
		t.Fatalf("fresh counter: exited=%v counters=%d", r.Exited(), p.Counters())
	}
}

func BenchmarkLimitCount(b *testing.B) {
	p := newInstance(b, `{"count":1000000000,"time_window":60}`, &plugin.Shared{})
	r, w := newRequest("10.0.0.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		p.Access(r)
	}
}

// BenchmarkLimitCountParallel runs many goroutines on distinct keys and
// on one shared key: throughput should scale without a table-wide lock.
func BenchmarkLimitCountParallel(b *testing.B) {
	for _, mode := range []string{"distinct-keys", "one-key"} {
		b.Run(mode, func(b *testing.B) {
			p := newInstance(b, `{"count":1000000000,"time_window":60,"show_limit_quota_header":false}`, &plugin.Shared{})
			var mu sync.Mutex
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				n++
				ip := fmt.Sprintf("10.0.%d.%d", n/250, n%250)
				mu.Unlock()
				if mode == "one-key" {
					ip = "10.1.1.1"
				}
				r, _ := newRequest(ip)
				for pb.Next() {
					p.Access(r)
				}
			})
		})
	}
}
