package limitcount_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gw/sluice/internal/plugin"
	limitcount "github.com/sluice-gw/sluice/internal/plugins/limit-count"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func redisConf(addr, extra string) string {
	host, port, _ := strings.Cut(addr, ":")
	return `"policy":"redis","redis_host":"` + host + `","redis_port":` + port + extra
}

func TestRedisConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	up := `{"nodes":{"127.0.0.1:1":1}}`
	tests := []struct {
		name, conf string
		status     int
		want       string
	}{
		{"redis minimal", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1"}`, 201, ""},
		{"redis all fields", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1","redis_port":6380,"redis_username":"u","redis_password":"","redis_database":3,"redis_timeout":500,"redis_ssl":true,"redis_ssl_verify":true,"redis_keepalive_timeout":20000,"redis_keepalive_pool":10,"sync_interval":0.5}`, 201, ""},
		{"redis-cluster", `{"count":2,"time_window":60,"policy":"redis-cluster","redis_cluster_nodes":["127.0.0.1:7000","127.0.0.1:7001"],"redis_cluster_name":"c","redis_password":"p","redis_timeout":300,"redis_cluster_ssl":true,"redis_cluster_ssl_verify":false}`, 201, ""},
		{"redis needs host", `{"count":2,"time_window":60,"policy":"redis"}`, 400, prefix + `then clause did not match"}`},
		{"redis host too short", `{"count":2,"time_window":60,"policy":"redis","redis_host":"a"}`, 400, prefix + `then clause did not match"}`},
		{"redis_port 0", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1","redis_port":0}`, 400, prefix + `then clause did not match"}`},
		{"redis_timeout 0", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1","redis_timeout":0}`, 400, prefix + `then clause did not match"}`},
		{"keepalive too short", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1","redis_keepalive_timeout":999}`, 400, prefix + `then clause did not match"}`},
		{"cluster needs name", `{"count":2,"time_window":60,"policy":"redis-cluster","redis_cluster_nodes":["127.0.0.1:7000"]}`, 400, prefix + `else clause did not match"}`},
		{"cluster needs nodes", `{"count":2,"time_window":60,"policy":"redis-cluster","redis_cluster_name":"c","redis_cluster_nodes":[]}`, 400, prefix + `else clause did not match"}`},
		{"sync_interval too small", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1","sync_interval":0.05}`, 400, prefix + `sync_interval should not be smaller than 0.1"}`},
		{"sync_interval not below window", `{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1","sync_interval":60}`, 400, prefix + `sync_interval should be smaller than time_window"}`},
		{"sync_interval ignored for local", `{"count":2,"time_window":60,"sync_interval":0.01}`, 201, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", fmt.Sprintf("/apisix/admin/routes/r%d", i), route("/v", tc.conf, up))
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
		})
	}
}

// fire sends n requests in parallel, request i to gws[split(i)], and
// returns the statuses.
func fire(gws []*plugintest.Gateway, n int, path string, split func(i int) int) []int {
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			statuses[i] = gws[split(i)].Do("GET", path, nil, "").Status
		}(i)
	}
	wg.Wait()
	return statuses
}

// TestRedisClusterWideLimit runs two gateways on one Redis: however the
// traffic is split between them, exactly count requests pass.
func TestRedisClusterWideLimit(t *testing.T) {
	srv := startRedis(t)
	g1 := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	g2 := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	gws := []*plugintest.Gateway{g1, g2}
	splits := []struct {
		name  string
		split func(i int) int
	}{
		{"alternate", func(i int) int { return i % 2 }},
		{"90-10", func(i int) int {
			if i%10 == 0 {
				return 1
			}
			return 0
		}},
		{"all-on-second", func(int) int { return 1 }},
		{"halves", func(i int) int { return i * 2 / 80 }},
	}
	const count, n = 25, 80
	for i, sp := range splits {
		t.Run(sp.name, func(t *testing.T) {
			rec := plugintest.NewRecorder(t)
			path := fmt.Sprintf("/c%d", i)
			body := route(path, `{"count":`+fmt.Sprint(count)+`,"time_window":60,"rejected_code":429,`+redisConf(srv.Addr(), "")+`}`, rec.Upstream())
			for _, g := range gws {
				g.MustAdmin("PUT", fmt.Sprintf("/apisix/admin/routes/%d", i), body)
			}
			ok, rejected := 0, 0
			for _, s := range fire(gws, n, path, sp.split) {
				switch s {
				case 200:
					ok++
				case 429:
					rejected++
				default:
					t.Fatalf("status %d", s)
				}
			}
			if ok != count || rejected != n-count || rec.Count() != count {
				t.Fatalf("ok=%d rejected=%d upstream=%d, want %d/%d/%d", ok, rejected, rec.Count(), count, n-count, count)
			}
		})
	}
}

func TestRedisHeadersAndKeys(t *testing.T) {
	srv := startRedis(t)
	cli := srv.Client("")
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/a", `{"count":2,"time_window":60,"rejected_msg":"slow",`+redisConf(srv.Addr(), "")+`}`, rec.Upstream()))

	r := g.Do("GET", "/a", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "2" || r.Header.Get("X-RateLimit-Remaining") != "1" || r.Header.Get("X-RateLimit-Reset") != "60" {
		t.Fatalf("first: %d %v", r.Status, r.Header)
	}
	r = g.Do("GET", "/a", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "0" || !fraction.MatchString(r.Header.Get("X-RateLimit-Reset")) {
		t.Fatalf("second: %d %v", r.Status, r.Header)
	}
	r = g.Do("GET", "/a", nil, "")
	if r.Status != 503 || r.Body != `{"error_msg":"slow"}`+"\n" || r.Header.Get("X-RateLimit-Limit") != "2" ||
		r.Header.Get("X-RateLimit-Remaining") != "0" || !fraction.MatchString(r.Header.Get("X-RateLimit-Reset")) {
		t.Fatalf("third: %d %q %v", r.Status, r.Body, r.Header)
	}
	if rec.Count() != 2 {
		t.Fatalf("upstream saw %d", rec.Count())
	}
	// The counter key follows APISIX's layout and expires with the window.
	keys, err := cli.Keys(context.Background(), "plugin-limit-count:v1:/apisix/routes/1:*").Result()
	if err != nil || len(keys) != 1 || !strings.HasSuffix(keys[0], ":127.0.0.1") {
		t.Fatalf("keys %v %v", keys, err)
	}
	if ttl := cli.TTL(context.Background(), keys[0]).Val(); ttl <= 0 || ttl > 60*time.Second {
		t.Fatalf("ttl %v", ttl)
	}
	if v := cli.Get(context.Background(), keys[0]).Val(); v != "3" {
		t.Fatalf("counter %q (rejected requests count too)", v)
	}

	// A group shares one key across routes: plugin-limit-count:v1:<group>:<key>.
	conf := `{"count":3,"time_window":60,"group":"services_1",` + redisConf(srv.Addr(), "") + `}`
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/g1", conf, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/3", route("/g2", conf, rec.Upstream()))
	got := []int{}
	for _, p := range []string{"/g1", "/g2", "/g1", "/g2"} {
		got = append(got, g.Do("GET", p, nil, "").Status)
	}
	if fmt.Sprint(got) != "[200 200 200 503]" {
		t.Fatalf("group statuses %v", got)
	}
	if v := cli.Get(context.Background(), "plugin-limit-count:v1:services_1:127.0.0.1").Val(); v != "4" {
		t.Fatalf("group counter %q", v)
	}

	// Rules with header prefixes.
	g.MustAdmin("PUT", "/apisix/admin/routes/4", route("/rules", `{"rules":[{"key":"${http_user}","count":2,"time_window":30,"header_prefix":"u"},{"key":"${http_project}","count":5,"time_window":30}],`+redisConf(srv.Addr(), "")+`}`, rec.Upstream()))
	r = g.Do("GET", "/rules", map[string]string{"User": "jack", "Project": "p"}, "")
	if r.Status != 200 || r.Header.Get("X-U-RateLimit-Remaining") != "1" || r.Header.Get("X-2-RateLimit-Remaining") != "4" || r.Header.Get("X-2-RateLimit-Reset") != "30" {
		t.Fatalf("rules: %d %v", r.Status, r.Header)
	}

	// Database selection: keys land in redis_database.
	g.MustAdmin("PUT", "/apisix/admin/routes/5", route("/db", `{"count":2,"time_window":60,"key":"db-key","key_type":"constant",`+redisConf(srv.Addr(), `,"redis_database":2`)+`}`, rec.Upstream()))
	if r := g.Do("GET", "/db", nil, ""); r.Status != 200 {
		t.Fatalf("db: %d", r.Status)
	}
	db2 := redis.NewClient(&redis.Options{Addr: srv.Addr(), DB: 2, Protocol: 2, DisableIdentity: true})
	defer db2.Close()
	if keys, _ := db2.Keys(context.Background(), "*:db-key").Result(); len(keys) != 1 {
		t.Fatalf("db 2 keys %v", keys)
	}
}

func TestRedisSlidingWindow(t *testing.T) {
	srv := startRedis(t)
	g1 := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	g2 := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	body := route("/s", `{"count":10,"time_window":60,"window_type":"sliding","rejected_code":429,`+redisConf(srv.Addr(), "")+`}`, rec.Upstream())
	g1.MustAdmin("PUT", "/apisix/admin/routes/1", body)
	g2.MustAdmin("PUT", "/apisix/admin/routes/1", body)
	// All 31 requests fall in one 60 s window: after a boundary the previous
	// window's weight is just below the limit and lets one more through.
	earlyInWindow(60*time.Second, 5*time.Second)
	r := g1.Do("GET", "/s", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "9" {
		t.Fatalf("first: %d %v", r.Status, r.Header)
	}
	ok := 1
	for _, s := range fire([]*plugintest.Gateway{g1, g2}, 30, "/s", func(i int) int { return i % 2 }) {
		if s == 200 {
			ok++
		} else if s != 429 {
			t.Fatalf("status %d", s)
		}
	}
	// Rejected requests are not counted in a sliding window, so the limit
	// is exact however requests interleave.
	if ok != 10 || rec.Count() != 10 {
		t.Fatalf("ok=%d upstream=%d, want 10", ok, rec.Count())
	}
}

// TestRedisDown covers an unreachable, a hung and a restarted Redis.
func TestRedisDown(t *testing.T) {
	srv := startRedis(t)
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/strict", `{"count":100,"time_window":60,`+redisConf(srv.Addr(), `,"redis_timeout":200`)+`}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/lenient", `{"count":100,"time_window":60,"allow_degradation":true,`+redisConf(srv.Addr(), `,"redis_timeout":200`)+`}`, rec.Upstream()))
	for _, p := range []string{"/strict", "/lenient"} {
		if r := g.Do("GET", p, nil, ""); r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "99" {
			t.Fatalf("%s up: %d %v", p, r.Status, r.Header)
		}
	}
	check := func(t *testing.T, state string) {
		for i := 0; i < 5; i++ {
			before := rec.Count()
			start := time.Now()
			r := g.Do("GET", "/strict", nil, "")
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("%s strict took %v with redis_timeout 200ms", state, el)
			}
			if r.Status != 500 || r.Body != `{"error_msg":"failed to limit count"}`+"\n" || r.Header.Get("X-RateLimit-Limit") != "" || rec.Count() != before {
				t.Fatalf("%s strict: %d %q %v", state, r.Status, r.Body, r.Header)
			}
			start = time.Now()
			r = g.Do("GET", "/lenient", nil, "")
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("%s lenient took %v", state, el)
			}
			if r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "" || rec.Count() != before+1 {
				t.Fatalf("%s lenient: %d %v", state, r.Status, r.Header)
			}
		}
	}
	t.Run("hung", func(t *testing.T) {
		srv.Pause()
		defer srv.Resume()
		check(t, "hung")
	})
	t.Run("killed", func(t *testing.T) {
		srv.Stop()
		check(t, "killed")
	})
	t.Run("restarted", func(t *testing.T) {
		srv.Start()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := g.Do("GET", "/strict", nil, "")
			if r.Status == 200 {
				// The restarted Redis kept nothing: a fresh window.
				if r.Header.Get("X-RateLimit-Remaining") != "99" {
					t.Fatalf("after restart: %v", r.Header)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis restarted but requests still get %d", r.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if r := g.Do("GET", "/lenient", nil, ""); r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "99" {
			t.Fatalf("lenient after restart: %d %v", r.Status, r.Header)
		}
	})
}

func TestRedisAuth(t *testing.T) {
	srv := startRedis(t, "--requirepass", "foobared")
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	steps := []struct {
		name, extra string
		status      int
	}{
		{"password", `,"redis_password":"foobared"`, 200},
		{"username and password", `,"redis_username":"default","redis_password":"foobared"`, 200},
		{"wrong password", `,"redis_password":"wrong"`, 500},
		{"no password", ``, 500},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			path := fmt.Sprintf("/p%d", i)
			g.MustAdmin("PUT", fmt.Sprintf("/apisix/admin/routes/%d", i), route(path, `{"count":5,"time_window":60,`+redisConf(srv.Addr(), s.extra)+`}`, rec.Upstream()))
			if r := g.Do("GET", path, nil, ""); r.Status != s.status {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, s.status)
			}
		})
	}
}

// startRedisCluster runs a one-node Redis Cluster owning every slot.
func startRedisCluster(t *testing.T) *redisServer {
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	cli := srv.Client("")
	ctx := context.Background()
	if err := cli.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(cli.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatal("cluster did not become ok")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv
}

func TestRedisClusterPolicy(t *testing.T) {
	srv := startRedisCluster(t)
	g1 := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	g2 := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	cluster := `"policy":"redis-cluster","redis_cluster_name":"test","redis_cluster_nodes":["` + srv.Addr() + `"]`
	for i, wt := range []string{"fixed", "sliding"} {
		t.Run(wt, func(t *testing.T) {
			path := "/" + wt
			body := route(path, `{"count":7,"time_window":60,"window_type":"`+wt+`","rejected_code":429,`+cluster+`}`, rec.Upstream())
			for _, g := range []*plugintest.Gateway{g1, g2} {
				g.MustAdmin("PUT", fmt.Sprintf("/apisix/admin/routes/%d", i), body)
			}
			if wt == "sliding" {
				// One window for the burst, as in TestRedisSlidingWindow.
				earlyInWindow(60*time.Second, 5*time.Second)
			}
			before := rec.Count()
			ok := 0
			for _, s := range fire([]*plugintest.Gateway{g1, g2}, 30, path, func(i int) int { return i % 2 }) {
				if s == 200 {
					ok++
				} else if s != 429 {
					t.Fatalf("status %d", s)
				}
			}
			if ok != 7 || rec.Count()-before != 7 {
				t.Fatalf("ok=%d upstream=%d, want 7", ok, rec.Count()-before)
			}
		})
	}
	t.Run("bad node address", func(t *testing.T) {
		g1.MustAdmin("PUT", "/apisix/admin/routes/9", route("/bad", `{"count":7,"time_window":60,"policy":"redis-cluster","redis_cluster_name":"x","redis_cluster_nodes":["no-port"]}`, rec.Upstream()))
		if r := g1.Do("GET", "/bad", nil, ""); r.Status != 500 || strings.Contains(r.Body, "error_msg") {
			t.Fatalf("bad node: %d %s", r.Status, r.Body)
		}
	})
	t.Run("cluster down", func(t *testing.T) {
		g1.MustAdmin("PUT", "/apisix/admin/routes/10", route("/deg", `{"count":7,"time_window":60,"allow_degradation":true,`+cluster+`,"redis_timeout":200}`, rec.Upstream()))
		srv.Stop()
		start := time.Now()
		if r := g1.Do("GET", "/deg", nil, ""); r.Status != 200 || time.Since(start) > 2*time.Second {
			t.Fatalf("degraded: %d after %v", r.Status, time.Since(start))
		}
		if r := g1.Do("GET", "/fixed", nil, ""); r.Status != 500 || r.Body != `{"error_msg":"failed to limit count"}`+"\n" {
			t.Fatalf("strict: %d %q", r.Status, r.Body)
		}
	})
}

func BenchmarkLimitCountRedis(b *testing.B) {
	srv := startRedis(b)
	p := newInstance(b, `{"count":1000000000,"time_window":60,`+redisConf(srv.Addr(), "")+`}`, &plugin.Shared{})
	r, w := newRequest("10.0.0.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		p.Access(r)
		if r.Exited() {
			b.Fatal("rejected")
		}
	}
}

// TestRedisFailureLogging checks that an outage logs at warn (degraded) or
// error, at most once a second, not once per request.
func TestRedisFailureLogging(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	for _, tc := range []struct {
		degrade bool
		level   string
		status  int
	}{{true, "level=WARN", 0}, {false, "level=ERROR", 500}} {
		t.Run(tc.level, func(t *testing.T) {
			var buf syncBuffer
			env := &plugin.Env{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
			p := newInstance(t, fmt.Sprintf(`{"count":5,"time_window":60,"allow_degradation":%v,%s}`, tc.degrade, redisConf(addr, `,"redis_timeout":100`)), &plugin.Shared{})
			for i := 0; i < 50; i++ {
				r, w := newRequest("10.0.0.1")
				r.Env = env
				p.Access(r)
				if r.Exited() != (tc.status != 0) || (tc.status != 0 && w.status != tc.status) {
					t.Fatalf("request %d: exited=%v status=%d", i, r.Exited(), w.status)
				}
			}
			out := buf.String()
			if n := strings.Count(out, "failed to limit count"); n != 1 || !strings.Contains(out, tc.level) {
				t.Fatalf("want one %s line, got %d:\n%s", tc.level, n, out)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRedisKilledMidLoad kills and hangs Redis while requests run in
// parallel: strict requests get 200 or 500, degraded ones always 200, and
// no request waits much longer than redis_timeout.
func TestRedisKilledMidLoad(t *testing.T) {
	srv := startRedis(t)
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	const timeout = 100 * time.Millisecond
	extra := fmt.Sprintf(`,"redis_timeout":%d`, timeout.Milliseconds())
	g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/strict", `{"count":1000000,"time_window":60,`+redisConf(srv.Addr(), extra)+`}`, rec.Upstream()))
	g.MustAdmin("PUT", "/apisix/admin/routes/2", route("/lenient", `{"count":1000000,"time_window":60,"allow_degradation":true,`+redisConf(srv.Addr(), extra)+`}`, rec.Upstream()))

	type result struct {
		path   string
		status int
		took   time.Duration
		at     time.Time
	}
	t0 := time.Now()
	stop := make(chan struct{})
	results := make(chan result, 100000)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			path := []string{"/strict", "/lenient"}[w%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				r := g.Do("GET", path, nil, "")
				results <- result{path, r.Status, time.Since(start), start}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	srv.Pause() // hung
	time.Sleep(500 * time.Millisecond)
	srv.Stop() // killed
	time.Sleep(500 * time.Millisecond)
	srv.Start()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(results)

	counts := map[string]map[int]int{"/strict": {}, "/lenient": {}}
	var slowest time.Duration
	var last result
	slow := 0
	for r := range results {
		counts[r.path][r.status]++
		slowest = max(slowest, r.took)
		if r.took > timeout+50*time.Millisecond && slow < 5 {
			slow++
			t.Logf("slow: %s %d took %v at +%v", r.path, r.status, r.took, r.at.Sub(t0).Round(time.Millisecond))
		}
		if r.path == "/strict" {
			last = r
		}
	}
	t.Logf("statuses %v, slowest request %v (redis_timeout %v)", counts, slowest, timeout)
	for s := range counts["/strict"] {
		if s != 200 && s != 500 {
			t.Fatalf("strict status %d", s)
		}
	}
	if len(counts["/lenient"]) != 1 || counts["/lenient"][200] == 0 {
		t.Fatalf("lenient statuses %v", counts["/lenient"])
	}
	if counts["/strict"][500] == 0 || counts["/strict"][200] == 0 {
		t.Fatalf("strict statuses %v: the outage was not seen", counts["/strict"])
	}
	// redis_timeout bounds the Redis call; the rest is proxying, the race
	// detector and a busy CI machine (stalls of several hundred ms hit
	// every request at once, including ones that never touch Redis). The
	// bound stays well below go-redis's own 3-5 s defaults, so a timeout
	// that is not applied still fails the test.
	if slowest > timeout+2*time.Second {
		t.Fatalf("slowest request %v with redis_timeout %v", slowest, timeout)
	}
	if last.status != 200 {
		t.Fatalf("strict requests did not recover after the restart: last %d", last.status)
	}
}
