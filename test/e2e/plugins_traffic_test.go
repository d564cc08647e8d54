package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// plParallel sends n copies of a GET at once and returns the responses
// with how long each took.
func plParallel(g *gw, n int, path string, hdr map[string]string) ([]resp, []time.Duration) {
	out := make([]resp, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			out[i] = g.plDo("GET", path, "", hdr)
			took[i] = time.Since(t0)
		}()
	}
	close(start)
	wg.Wait()
	return out, took
}

// TestPluginsTraffic drives limit-count, limit-req, limit-conn,
// api-breaker, traffic-split, proxy-mirror and fault-injection through the
// binary.
func TestPluginsTraffic(t *testing.T) {
	t.Parallel()
	g := startDefault(t, "")
	up := newPlUpstream(t, nil)
	a := up.addr()

	runPlRefused(t, g, []plRefused{
		{"limit-count without time_window", "", plRoute("/r", `"limit-count":{"count":1}`, a),
			`failed to check the configuration of plugin limit-count err: value should match only one schema, but matches none`},
		{"limit-count count and rules", "", plRoute("/r", `"limit-count":{"count":1,"time_window":1,"rules":[{"count":1,"time_window":1,"key":"a"}]}`, a),
			`failed to check the configuration of plugin limit-count err: count/time_window and rules cannot be specified at the same time`},
		{"limit-req without burst", "", plRoute("/r", `"limit-req":{"rate":1}`, a),
			`failed to check the configuration of plugin limit-req err: property "burst" is required`},
		{"limit-req rate 0", "", plRoute("/r", `"limit-req":{"rate":0,"burst":0,"key":"remote_addr"}`, a),
			`failed to check the configuration of plugin limit-req err: property "rate" validation failed: expected 0 to be greater than 0`},
		{"limit-conn without burst", "", plRoute("/r", `"limit-conn":{"conn":1}`, a),
			`failed to check the configuration of plugin limit-conn err: value should match only one schema, but matches none`},
		{"limit-conn rejected_code 100", "", plRoute("/r", `"limit-conn":{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","rejected_code":100}`, a),
			`failed to check the configuration of plugin limit-conn err: property "rejected_code" validation failed: expected 100 to be at least 200`},
		{"api-breaker without code", "", plRoute("/r", `"api-breaker":{}`, a),
			`failed to check the configuration of plugin api-breaker err: property "break_response_code" is required`},
		{"api-breaker healthy status as unhealthy", "", plRoute("/r", `"api-breaker":{"break_response_code":502,"unhealthy":{"http_statuses":[200]}}`, a),
			`failed to check the configuration of plugin api-breaker err: property "unhealthy" validation failed: property "http_statuses" validation failed: failed to validate item 1: expected 200 to be at least 500`},
		{"traffic-split negative weight", "", plRoute("/r", `"traffic-split":{"rules":[{"weighted_upstreams":[{"weight":-1}]}]}`, a),
			`failed to check the configuration of plugin traffic-split err: property "rules" validation failed: failed to validate item 1: property "weighted_upstreams" validation failed: failed to validate item 1: property "weight" validation failed: expected -1 to be at least 0`},
		{"traffic-split bad vars", "", plRoute("/r", `"traffic-split":{"rules":[{"match":[{"vars":[["arg_x","~~","("]]}]}]}`, a),
			"failed to check the configuration of plugin traffic-split err: failed to validate the 'vars' expression: invalid regex '(': error parsing regexp: missing closing ): `(`"},
		{"proxy-mirror without host", "", plRoute("/r", `"proxy-mirror":{}`, a),
			`failed to check the configuration of plugin proxy-mirror err: property "host" is required`},
		{"proxy-mirror host without scheme", "", plRoute("/r", `"proxy-mirror":{"host":"127.0.0.1:1"}`, a),
			`failed to check the configuration of plugin proxy-mirror err: property "host" validation failed: failed to match pattern "^(http(s)?|grpc(s)?):\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?$" with "127.0.0.1:1"`},
		{"fault-injection empty", "", plRoute("/r", `"fault-injection":{}`, a),
			`failed to check the configuration of plugin fault-injection err: expect object to have at least 1 properties`},
		{"fault-injection abort without status", "", plRoute("/r", `"fault-injection":{"abort":{}}`, a),
			`failed to check the configuration of plugin fault-injection err: property "abort" validation failed: property "http_status" is required`},
		{"fault-injection flat vars", "", plRoute("/r", `"fault-injection":{"abort":{"http_status":403,"vars":[["arg_name","==","jack"]]}}`, a),
			`failed to check the configuration of plugin fault-injection err: rule should be wrapped inside brackets`},
	})

	// limit-conn's upstream holds /tr/conn/slow until released.
	entered, release := make(chan struct{}, 1), make(chan struct{})
	connUp := newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/tr/conn/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "conn-ok")
	})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	named := func(name string) *plUpstream {
		return newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Upstream", name) })
	}
	upA, upB := named("a"), named("b")
	mirror := newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
	})

	plPut(t, g, "/apisix/admin/upstreams/ts-b", fmt.Sprintf(`{"nodes":{"%s":1}}`, upB.addr()))
	for id, r := range map[string]string{
		"lc":      plRoute("/tr/lc", `"limit-count":{"count":5,"time_window":60,"rejected_code":429,"rejected_msg":"slow down"}`, a),
		"lc-def":  plRoute("/tr/lc-def", `"limit-count":{"count":1,"time_window":60}`, a),
		"lc-key":  plRoute("/tr/lc-key", `"limit-count":{"count":1,"time_window":60,"key":"http_x_user","rejected_code":429}`, a),
		"lr":      plRoute("/tr/lr", `"limit-req":{"rate":1,"burst":0,"key":"remote_addr","rejected_code":429,"rejected_msg":"rate"}`, a),
		"lr-b":    plRoute("/tr/lr-burst", `"limit-req":{"rate":2,"burst":1,"key":"remote_addr"}`, a),
		"lconn":   plRoute("/tr/conn/*", `"limit-conn":{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","rejected_code":429,"rejected_msg":"busy"}`, connUp.addr()),
		"brk":     plRoute("/tr/brk", `"api-breaker":{"break_response_code":502,"break_response_body":"broken","break_response_headers":[{"key":"X-Breaker","value":"open"}],"unhealthy":{"http_statuses":[500],"failures":2},"healthy":{"successes":1},"max_breaker_sec":3}`, a),
		"brk-def": plRoute("/tr/brk-def", `"api-breaker":{"break_response_code":503,"unhealthy":{"failures":1}}`, a),
		"ts": plRoute("/tr/ts", fmt.Sprintf(`"traffic-split":{"rules":[
			{"match":[{"vars":[["http_release","==","canary"]]}],"weighted_upstreams":[{"upstream_id":"ts-b"}]},
			{"weighted_upstreams":[{"upstream":{"type":"roundrobin","nodes":{"%s":1}},"weight":1},{"weight":2}]}]}`, upB.addr()), upA.addr()),
		"ts-nomatch": plRoute("/tr/ts-nomatch", `"traffic-split":{"rules":[{"match":[{"vars":[["arg_x","==","1"]]}],"weighted_upstreams":[{"upstream_id":"ts-b"}]}]}`, upA.addr()),
		"mirror":     plRoute("/tr/mirror", fmt.Sprintf(`"proxy-mirror":{"host":%q,"path":"/shadow"}`, mirror.URL), a),
		"mirror-s":   plRoute("/tr/mirror-slow", fmt.Sprintf(`"proxy-mirror":{"host":%q,"path":"/slow"}`, mirror.URL), a),
		"fi-abort":   plRoute("/tr/fi-abort", `"fault-injection":{"abort":{"http_status":418,"body":"injected for $remote_addr","headers":{"X-Fault":"yes"},"vars":[[["arg_name","==","jack"]]]}}`, a),
		"fi-page":    plRoute("/tr/fi-page", `"fault-injection":{"abort":{"http_status":503}}`, a),
		"fi-delay":   plRoute("/tr/fi-delay", `"fault-injection":{"delay":{"duration":0.4}}`, a),
	} {
		plPut(t, g, "/apisix/admin/routes/"+id, r)
	}
	plSync(t, g)

	t.Run("limit-count", func(t *testing.T) {
		before := up.count()
		rs, _ := plParallel(g, 20, "/tr/lc", nil)
		ok, rejected := 0, 0
		for _, r := range rs {
			switch {
			case r.Status == 200:
				ok++
			case r.Status == 429 && string(r.Body) == "{\"error_msg\":\"slow down\"}\n" && r.Header.Get("X-RateLimit-Remaining") == "0":
				rejected++
			default:
				t.Errorf("unexpected %d %q %v", r.Status, r.Body, r.Header)
			}
			if r.Header.Get("X-RateLimit-Limit") != "5" {
				t.Errorf("X-RateLimit-Limit %q", r.Header.Get("X-RateLimit-Limit"))
			}
		}
		if ok != 5 || rejected != 15 {
			t.Errorf("20 parallel requests, count 5: %d passed, %d rejected", ok, rejected)
		}
		if n := up.count() - before; n != 5 {
			t.Errorf("upstream received %d requests, want 5", n)
		}
		runPlCases(t, g, []plCase{
			{name: "first of window", path: "/tr/lc-def", status: 200, up: up, reach: true,
				wantHdr: map[string]string{"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "60"}},
			{name: "default rejection is 503 page", path: "/tr/lc-def", status: 503, bodyHas: "<title>503 Service Temporarily Unavailable</title>",
				wantHdr: map[string]string{"X-RateLimit-Remaining": "0"}, up: up},
			{name: "key a", path: "/tr/lc-key", hdr: map[string]string{"X-User": "a"}, status: 200, up: up, reach: true},
			{name: "key a again", path: "/tr/lc-key", hdr: map[string]string{"X-User": "a"}, status: 429, up: up},
			{name: "key b has its own counter", path: "/tr/lc-key", hdr: map[string]string{"X-User": "b"}, status: 200, up: up, reach: true},
		})
	})

	t.Run("limit-req", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "first", path: "/tr/lr", status: 200, up: up, reach: true, wantHdr: map[string]string{"X-RateLimit-Limit": ""}},
			{name: "second within the second", path: "/tr/lr", status: 429, wantBody: plJSON("error_msg", "rate"), up: up},
		})
		rs, took := plParallel(g, 3, "/tr/lr-burst", nil)
		var ok, rejected int
		var slowest time.Duration
		for i, r := range rs {
			switch r.Status {
			case 200:
				ok++
				slowest = max(slowest, took[i])
			case 503:
				rejected++
			default:
				t.Errorf("unexpected %d %q", r.Status, r.Body)
			}
		}
		if ok != 2 || rejected != 1 {
			t.Errorf("rate 2 burst 1, 3 at once: %d passed, %d rejected", ok, rejected)
		}
		if slowest < 300*time.Millisecond {
			t.Errorf("the request within burst was not delayed (slowest %v, want ~500ms)", slowest)
		}
	})

	t.Run("limit-conn", func(t *testing.T) {
		done := make(chan resp, 1)
		go func() { done <- g.plDo("GET", "/tr/conn/slow", "", nil) }()
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow request never reached the upstream")
		}
		runPlCases(t, g, []plCase{
			{name: "second while one in flight", path: "/tr/conn/fast", status: 429, wantBody: plJSON("error_msg", "busy"), up: connUp},
		})
		releaseOnce.Do(func() { close(release) })
		if r := <-done; r.Status != 200 || string(r.Body) != "conn-ok" {
			t.Fatalf("held request: %d %q", r.Status, r.Body)
		}
		runPlCases(t, g, []plCase{
			{name: "slot freed after the response", path: "/tr/conn/fast", status: 200, wantBody: plStr("conn-ok"), up: connUp, reach: true},
			{name: "and again", path: "/tr/conn/fast", status: 200, up: connUp, reach: true},
		})
	})

	t.Run("api-breaker", func(t *testing.T) {
		open := map[string]string{"X-Breaker": "open"}
		runPlCases(t, g, []plCase{
			{name: "healthy", path: "/tr/brk", status: 200, up: up, reach: true},
			{name: "failure 1", path: "/tr/brk?status=500", status: 500, up: up, reach: true},
			{name: "failure 2 trips", path: "/tr/brk?status=500", status: 500, up: up, reach: true},
			{name: "open", path: "/tr/brk", status: 502, wantBody: plStr("broken"), wantHdr: open, up: up},
			{name: "still open", path: "/tr/brk?status=200", status: 502, wantBody: plStr("broken"), up: up},
			{name: "default page", path: "/tr/brk-def?status=500", status: 500, up: up, reach: true},
			{name: "default page open", path: "/tr/brk-def", status: 503, bodyHas: "<title>503 Service Temporarily Unavailable</title>", up: up},
		})
		// Open for 2^1 = 2 s, then a healthy answer closes it.
		deadline := time.Now().Add(6 * time.Second)
		for {
			r := g.plDo("GET", "/tr/brk", "", nil)
			if r.Status == 200 {
				break
			}
			if r.Status != 502 || time.Now().After(deadline) {
				t.Fatalf("breaker did not close: %d %q", r.Status, r.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		runPlCases(t, g, []plCase{{name: "closed again", path: "/tr/brk", status: 200, up: up, reach: true}})
	})

	t.Run("traffic-split", func(t *testing.T) {
		a0, b0 := upA.count(), upB.count()
		var seq []string
		for i := 0; i < 6; i++ {
			r := g.plDo("GET", "/tr/ts", "", nil)
			if r.Status != 200 {
				t.Fatalf("%d %q", r.Status, r.Body)
			}
			seq = append(seq, r.Header.Get("X-Upstream"))
		}
		if na, nb := upA.count()-a0, upB.count()-b0; na != 4 || nb != 2 {
			t.Errorf("weights route 2 : inline 1, 6 requests: a=%d b=%d (%v)", na, nb, seq)
		}
		for i := 0; i < 3; i++ {
			if r := g.plDo("GET", "/tr/ts", "", map[string]string{"release": "canary"}); r.Status != 200 || r.Header.Get("X-Upstream") != "b" {
				t.Fatalf("canary rule → upstream_id ts-b: %d %q", r.Status, r.Header.Get("X-Upstream"))
			}
		}
		runPlCases(t, g, []plCase{
			{name: "no rule matches: route upstream", path: "/tr/ts-nomatch", status: 200, wantHdr: map[string]string{"X-Upstream": "a"}, up: upA, reach: true},
			{name: "rule matches", path: "/tr/ts-nomatch?x=1", status: 200, wantHdr: map[string]string{"X-Upstream": "b"}, up: upA},
		})
	})

	t.Run("proxy-mirror", func(t *testing.T) {
		waitMirror := func(n int) plReq {
			t.Helper()
			for i := 0; i < 250 && mirror.count() < n; i++ {
				time.Sleep(20 * time.Millisecond)
			}
			if mirror.count() < n {
				t.Fatalf("mirror received %d requests, want %d", mirror.count(), n)
			}
			return mirror.last()
		}
		m0 := mirror.count()
		runPlCases(t, g, []plCase{
			{name: "GET", path: "/tr/mirror?x=1", hdr: map[string]string{"X-Trace": "t1"}, status: 200, wantBody: plStr("upstream-body"),
				up: up, reach: true, upURI: "/tr/mirror?x=1"},
		})
		if m := waitMirror(m0 + 1); m.Method != "GET" || m.URI != "/shadow?x=1" || m.Header.Get("X-Trace") != "t1" {
			t.Errorf("mirror saw %s %s X-Trace=%q", m.Method, m.URI, m.Header.Get("X-Trace"))
		}
		runPlCases(t, g, []plCase{
			{name: "POST body copied", method: "POST", path: "/tr/mirror", body: "hello mirror", status: 200, up: up, reach: true, upBody: plStr("hello mirror")},
		})
		if m := waitMirror(m0 + 2); m.Method != "POST" || m.Body != "hello mirror" {
			t.Errorf("mirror saw %s body %q", m.Method, m.Body)
		}
		runPlCases(t, g, []plCase{
			{name: "slow mirror does not slow the client", path: "/tr/mirror-slow", status: 200, up: up, reach: true,
				elapsed: [2]time.Duration{0, time.Second}},
		})
	})

	t.Run("fault-injection", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "abort when vars match", path: "/tr/fi-abort?name=jack", status: 418, wantBody: plStr("injected for 127.0.0.1"),
				wantHdr: map[string]string{"X-Fault": "yes", "Content-Type": "text/plain; charset=utf-8"}, up: up},
			{name: "no abort otherwise", path: "/tr/fi-abort?name=rose", status: 200, wantHdr: map[string]string{"X-Fault": ""}, up: up, reach: true},
			{name: "abort without body", path: "/tr/fi-page", status: 503, bodyHas: "<title>503 Service Temporarily Unavailable</title>", up: up},
			{name: "delay", path: "/tr/fi-delay", status: 200, up: up, reach: true, elapsed: [2]time.Duration{400 * time.Millisecond, 5 * time.Second}},
		})
	})
	if t.Failed() {
		t.Log(strings.TrimSpace(g.output()))
	}
}
