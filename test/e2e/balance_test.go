package e2e

// Balancing through the real binary (issue 3, "Upstream resolution and
// balancing" and the state items of "Health checks" and "Config
// changes"): chash by header, cookie, vars and consumer, least_conn,
// ewma, the weighted roundrobin order, node priority failover, and health
// verdicts and keep-alive pools that survive unrelated Admin API writes.

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// strNode is an upstream node that waits delay, then answers 200 with its
// name as the body and in X-Upstream.
func strNode(t *testing.T, name string, delay time.Duration) *plUpstream {
	t.Helper()
	return newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		w.Header().Set("X-Upstream", name)
		w.Write([]byte(name))
	})
}

// strArray renders array-form nodes from alternating address and weight
// arguments; an address may end in "@<priority>". (Sluice orders nodes by
// host and port whatever the form, so the order here carries no meaning.)
func strArray(kv ...any) string {
	var parts []string
	for i := 0; i < len(kv); i += 2 {
		addr, prio := kv[i].(string), "0"
		if at := strings.IndexByte(addr, '@'); at >= 0 {
			addr, prio = addr[:at], addr[at+1:]
		}
		h, p, _ := net.SplitHostPort(addr)
		parts = append(parts, fmt.Sprintf(`{"host":%q,"port":%s,"weight":%v,"priority":%s}`, h, p, kv[i+1], prio))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// strPort is the numeric port of a host:port address.
func strPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// strServed sends one request and returns the serving node's name.
func strServed(t *testing.T, g *gw, path string, hdr map[string]string) string {
	t.Helper()
	r := g.plDo("GET", path, "", hdr)
	if r.Status != 200 {
		t.Fatalf("GET %s %v: %d %s", path, hdr, r.Status, r.Body)
	}
	return string(r.Body)
}

// TestBalanceCHash: for every hash_on, one key always reaches the same
// node, and different keys spread over the nodes.
func TestBalanceCHash(t *testing.T) {
	g := startDefault(t, "")
	a, b, c := strNode(t, "a", 0), strNode(t, "b", 0), strNode(t, "c", 0)
	nodes := dpcNodes(a.addr(), 1, b.addr(), 1, c.addr(), 1)
	route := func(uri, hashOn, key, plugins string) string {
		k := ""
		if key != "" {
			k = fmt.Sprintf(`,"key":%q`, key)
		}
		return fmt.Sprintf(`{"uri":%q,"plugins":{%s},"upstream":{"type":"chash","hash_on":%q%s,"nodes":%s}}`, uri, plugins, hashOn, k, nodes)
	}
	// Each node owns about a third of the ring (160 points each): 60 keys
	// miss a node with probability about 3*(2/3)^60, 1e-10.
	const keys = 60
	for i := 0; i < keys; i++ {
		plPut(t, g, "/apisix/admin/consumers", fmt.Sprintf(`{"username":"user%d","plugins":{"key-auth":{"key":"key-%d"}}}`, i, i))
	}
	dpcPutAll(t, g,
		"/apisix/admin/routes/header", route("/header", "header", "X-User", ""),
		"/apisix/admin/routes/cookie", route("/cookie", "cookie", "sid", ""),
		"/apisix/admin/routes/arg", route("/arg", "vars", "arg_x", ""),
		"/apisix/admin/routes/consumer", route("/consumer", "consumer", "", `"key-auth":{}`),
	)
	cases := []struct {
		name string
		req  func(k int) (string, map[string]string)
	}{
		{"header", func(k int) (string, map[string]string) {
			return "/header", map[string]string{"X-User": fmt.Sprintf("user-%d", k)}
		}},
		{"cookie", func(k int) (string, map[string]string) {
			return "/cookie", map[string]string{"Cookie": fmt.Sprintf("theme=dark; sid=session-%d; lang=en", k)}
		}},
		{"vars arg_x", func(k int) (string, map[string]string) {
			return fmt.Sprintf("/arg?y=1&x=value-%d", k), nil
		}},
		{"consumer", func(k int) (string, map[string]string) {
			return "/consumer", map[string]string{"apikey": fmt.Sprintf("key-%d", k)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, hdr := tc.req(0)
			first := strServed(t, g, path, hdr)
			for i := 1; i < 20; i++ {
				if got := strServed(t, g, path, hdr); got != first {
					t.Fatalf("request %d for the same key went to %s, first to %s", i, got, first)
				}
			}
			seen := map[string]int{}
			for k := 0; k < keys; k++ {
				path, hdr := tc.req(k)
				node := strServed(t, g, path, hdr)
				for i := 0; i < 2; i++ {
					if got := strServed(t, g, path, hdr); got != node {
						t.Fatalf("key %d: %s then %s", k, node, got)
					}
				}
				seen[node]++
			}
			if len(seen) != 3 {
				t.Fatalf("%d keys reached only %v", keys, seen)
			}
		})
	}
}

// TestBalanceLeastConnAndEWMA: least_conn sends fewer requests to a node
// that holds its connections longer; ewma prefers the node that answers
// faster.
func TestBalanceLeastConnAndEWMA(t *testing.T) {
	g := startDefault(t, "")
	slow, fast := strNode(t, "slow", 300*time.Millisecond), strNode(t, "fast", 0)
	slowE, fastE := strNode(t, "slow", 60*time.Millisecond), strNode(t, "fast", 0)
	dpcPutAll(t, g,
		"/apisix/admin/routes/lc", fmt.Sprintf(`{"uri":"/lc","upstream":{"type":"least_conn","nodes":%s}}`, strArray(slow.addr(), 1, fast.addr(), 1)),
		"/apisix/admin/routes/ewma", fmt.Sprintf(`{"uri":"/ewma","upstream":{"type":"ewma","nodes":%s}}`, strArray(slowE.addr(), 1, fastE.addr(), 1)),
	)

	t.Run("least_conn", func(t *testing.T) {
		// Four clients keep requests going for a second. Roundrobin would
		// give the slow node every other request, so the clients would
		// spend most of the time waiting on it and both nodes would end
		// up with about the same count; least_conn picks the slow node
		// only when the fast one is at least as busy.
		const workers = 4
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < time.Second {
					r := g.plDo("GET", "/lc", "", nil)
					mu.Lock()
					seen[fmt.Sprintf("%d %s", r.Status, r.Body)]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		s, f := seen["200 slow"], seen["200 fast"]
		total := 0
		for _, n := range seen {
			total += n
		}
		if s+f != total {
			t.Fatalf("answers %v", seen)
		}
		if f < 4*s || f < 20 {
			t.Fatalf("slow node got %d, fast node %d: want the fast one to get several times more", s, f)
		}
		t.Logf("least_conn: slow %d, fast %d", s, f)
	})

	t.Run("ewma", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			seen[strServed(t, g, "/ewma", nil)]++
		}
		// Both start unmeasured; once each node has a sample the slow one
		// (60 ms, decaying with a 10 s time constant) loses every
		// comparison for the rest of the run.
		if seen["slow"] > 3 || seen["fast"] < 27 {
			t.Fatalf("ewma: %v, want nearly all on the fast node", seen)
		}
		t.Logf("ewma: %v", seen)
	})
}

// TestBalanceRoundRobinAndPriority: weights 3:1 give APISIX's interleaved
// order (AAAB), and a higher-priority node that goes down fails over to
// the backup, within the same request.
func TestBalanceRoundRobinAndPriority(t *testing.T) {
	// Every attempt shows in X-APISIX-Upstream-Status, so an unexpected
	// retry (which takes a second pick) is told apart from a wrong order.
	g := dpcStart(t, 0, "  show_upstream_status_in_response_header: true\n")
	a, b := strNode(t, "A", 0), strNode(t, "B", 0)
	primary, backup := strNode(t, "primary", 0), strNode(t, "backup", 0)
	dpcPutAll(t, g,
		"/apisix/admin/routes/wrr", fmt.Sprintf(`{"uri":"/wrr","upstream":{"type":"roundrobin","nodes":%s}}`, strArray(a.addr(), 3, b.addr(), 1)),
		"/apisix/admin/routes/prio", fmt.Sprintf(`{"uri":"/prio","upstream":{"type":"roundrobin","nodes":%s}}`,
			strArray(primary.addr()+"@1", 1, backup.addr()+"@0", 1)),
	)

	t.Run("weights 3:1 in interleaved order", func(t *testing.T) {
		var got strings.Builder
		for i := 0; i < 40; i++ {
			r := g.plDo("GET", "/wrr", "", nil)
			if st := r.Header.Get("X-APISIX-Upstream-Status"); r.Status != 200 || st != "200" {
				t.Fatalf("request %d: %d, attempts %q, %s\n%s", i, r.Status, st, r.Body, g.output())
			}
			got.Write(r.Body)
		}
		// internal/balancer TestRoundRobinOrder: resty.roundrobin walks
		// the nodes with a current weight stepping down from the maximum
		// by the weights' gcd, handing out each node whose weight is >= it.
		// APISIX walks a Lua hash table (no fixed order); Sluice walks the
		// nodes sorted by host, then port (resource.Decode), so with A
		// first the cycle is cw=3 A, cw=2 A, cw=1 A B, and with B first
		// cw=3 A, cw=2 A, cw=1 B A.
		cycle := "AAAB"
		if strPort(t, b.addr()) < strPort(t, a.addr()) {
			cycle = "AABA"
		}
		if want := strings.Repeat(cycle, 10); got.String() != want {
			t.Fatalf("order %s, want %s", got.String(), want)
		}
	})

	t.Run("priority failover", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			if got := strServed(t, g, "/prio", nil); got != "primary" {
				t.Fatalf("request %d with the primary up went to %s", i, got)
			}
		}
		primary.Close()
		for i := 0; i < 4; i++ {
			r := g.plDo("GET", "/prio", "", nil)
			if r.Status != 200 || string(r.Body) != "backup" {
				t.Fatalf("request %d with the primary down: %d %s", i, r.Status, r.Body)
			}
		}
	})
}

// strCounting wraps a listener and counts the connections it accepts.
type strCounting struct {
	net.Listener
	n atomic.Int64
}

func (l *strCounting) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestBalanceStateSurvivesConfigChange: an Admin API write that does not
// touch an upstream keeps its health verdicts and its keep-alive
// connections.
func TestBalanceStateSurvivesConfigChange(t *testing.T) {
	g := startDefault(t, "")
	good := strNode(t, "good", 0)
	bad := newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		w.Write([]byte("bad"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counting := &strCounting{Listener: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ka")) })}
	go srv.Serve(counting)
	t.Cleanup(func() { srv.Close() })

	// Passive checks mark the bad node down on its first 500; active
	// probes alone would need three failed probes a second apart, so a
	// reset checker would send traffic to it again at once.
	checks := `{"active":{"http_path":"/status","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"http_failures":3}},` +
		`"passive":{"healthy":{"http_statuses":[200],"successes":3},"unhealthy":{"http_statuses":[500],"http_failures":1}}}`
	dpcPutAll(t, g,
		"/apisix/admin/upstreams/hc", fmt.Sprintf(`{"type":"roundrobin","nodes":%s,"checks":%s}`, strArray(bad.addr(), 1, good.addr(), 1), checks),
		"/apisix/admin/routes/hc", `{"uri":"/hc","upstream_id":"hc"}`,
		"/apisix/admin/routes/ka", fmt.Sprintf(`{"uri":"/ka","upstream":{"nodes":{"%s":1}}}`, counting.Addr()),
	)
	unrelated := 0
	write := func(t *testing.T) {
		t.Helper()
		unrelated++
		dpcPutAll(t, g, fmt.Sprintf("/apisix/admin/routes/other-%d", unrelated),
			fmt.Sprintf(`{"uri":"/other-%d","plugins":{"mocking":{"response_example":"x"}}}`, unrelated))
	}

	t.Run("health verdict", func(t *testing.T) {
		sawBad := false
		for i := 0; i < 10 && !sawBad; i++ {
			sawBad = g.plDo("GET", "/hc", "", nil).Status == 500
		}
		if !sawBad {
			t.Fatal("the bad node never served")
		}
		for i := 0; i < 6; i++ {
			if got := strServed(t, g, "/hc", nil); got != "good" {
				t.Fatalf("after the passive failure: %s", got)
			}
		}
		for round := 0; round < 2; round++ {
			write(t)
			for i := 0; i < 6; i++ {
				r := g.plDo("GET", "/hc", "", nil)
				if r.Status != 200 || string(r.Body) != "good" {
					t.Fatalf("after unrelated write %d, request %d reached the unhealthy node: %d %s", round+1, i, r.Status, r.Body)
				}
			}
		}
	})

	t.Run("keep-alive pool", func(t *testing.T) {
		get := func() {
			t.Helper()
			if got := strServed(t, g, "/ka", nil); got != "ka" {
				t.Fatalf("body %q", got)
			}
			// Let the upstream connection go back to the pool before the
			// next request asks for one.
			time.Sleep(30 * time.Millisecond)
		}
		get()
		get()
		if n := counting.n.Load(); n != 1 {
			t.Fatalf("%d upstream connections for two sequential requests, want 1 (keep-alive)", n)
		}
		for round := 0; round < 2; round++ {
			write(t)
			get()
			if n := counting.n.Load(); n != 1 {
				t.Fatalf("after unrelated write %d the gateway opened a new upstream connection (%d in all)", round+1, n)
			}
		}
	})
}
