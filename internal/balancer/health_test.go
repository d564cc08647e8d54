package balancer

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// statusServer is a real HTTP upstream whose status the test can change.
type statusServer struct {
	*httptest.Server
	status atomic.Int32
	delay  atomic.Int64
	mu     sync.Mutex
	seen   []string // "METHOD host path x-probe"
}

func newStatusServer(t *testing.T, tlsServer bool) *statusServer {
	s := &statusServer{}
	s.status.Store(200)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.Host+" "+r.URL.Path+" "+r.Header.Get("X-Probe"))
		s.mu.Unlock()
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(int(s.status.Load()))
	})
	if tlsServer {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *statusServer) node() Node {
	host, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	var p int
	fmt.Sscanf(port, "%d", &p)
	return Node{Host: host, Port: p, Weight: 1, Addr: s.Listener.Addr().String()}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fastActive probes often; its timeout is long enough that a probe slowed
// by a loaded machine does not count as a timeout (TestActiveTimeout sets
// its own).
func fastActive(typ string) *Active {
	return &Active{
		Type: typ, Timeout: 2,
		Healthy:   ActiveHealthy{Interval: 0.03, Successes: 2},
		Unhealthy: ActiveUnhealthy{Interval: 0.03, HTTPFailures: 2, TCPFailures: 2, Timeouts: 2},
	}
}

func statusOf(c *Checker, addr string) NodeStatus {
	for _, s := range c.Status() {
		if s.Addr == addr {
			return s
		}
	}
	return NodeStatus{}
}

func TestActiveHTTP(t *testing.T) {
	a, b := newStatusServer(t, false), newStatusServer(t, false)
	ns := []Node{a.node(), b.node()}
	ck := NewChecker(ns, Checks{Active: fastActive("http")}, nil)
	bal := mustNew(t, Config{Nodes: ns})
	bal.SetHealth(ck)
	ck.Start(context.Background())
	defer ck.Stop()

	a.status.Store(500)
	waitFor(t, "a unhealthy", func() bool { return !ck.Healthy(a.node().Addr) })
	if st := statusOf(ck, a.node().Addr); st.State != StateUnhealthy || st.Counters.HTTPFailure < 2 {
		t.Fatalf("status = %v", st)
	}
	for range 20 {
		if p := bal.Pick(nil, ""); p.Addr != b.node().Addr {
			t.Fatalf("picked unhealthy %s", p.Addr)
		}
	}
	a.status.Store(200)
	waitFor(t, "a healthy again", func() bool { return ck.Healthy(a.node().Addr) })
	seen := map[string]bool{}
	for range 4 {
		seen[bal.Pick(nil, "").Addr] = true
	}
	if len(seen) != 2 {
		t.Fatalf("after recovery saw %v", seen)
	}
	// Statuses in neither list (418) are ignored.
	a.status.Store(418)
	time.Sleep(150 * time.Millisecond)
	if st := statusOf(ck, a.node().Addr); st.State != StateHealthy {
		t.Fatalf("ignored status changed state: %v", st)
	}
}

func TestActiveTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go acceptAll(ln)
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscanf(port, "%d", &p)
	other := newStatusServer(t, false)
	ns := []Node{{Host: "127.0.0.1", Port: p, Weight: 1, Addr: addr}, other.node()}
	ck := NewChecker(ns, Checks{Active: fastActive("tcp")}, nil)
	ck.Start(context.Background())
	defer ck.Stop()

	ln.Close()
	waitFor(t, "down node unhealthy", func() bool { return !ck.Healthy(addr) })
	if st := statusOf(ck, addr); st.Counters.TCPFailure < 2 {
		t.Fatalf("status = %v", st)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot rebind %s: %v", addr, err)
	}
	defer ln2.Close()
	go acceptAll(ln2)
	waitFor(t, "node healthy after restart", func() bool { return ck.Healthy(addr) })
	if !ck.Healthy(other.node().Addr) {
		t.Fatal("other node marked unhealthy")
	}
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func TestActiveTimeout(t *testing.T) {
	s := newStatusServer(t, false)
	s.delay.Store(int64(time.Second))
	a := fastActive("http")
	a.Timeout = 0.05
	ck := NewChecker([]Node{s.node()}, Checks{Active: a}, nil)
	ck.Start(context.Background())
	defer ck.Stop()
	waitFor(t, "slow node unhealthy", func() bool { return !ck.Healthy(s.node().Addr) })
	if st := statusOf(ck, s.node().Addr); st.Counters.TimeoutFailure < 2 {
		t.Fatalf("status = %v", st)
	}
}

func TestActiveProbeShape(t *testing.T) {
	s := newStatusServer(t, false)
	// The node's own port is closed; checks.active.port redirects probes.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr)
	ln.Close()
	n := Node{Host: "127.0.0.1", Port: closed.Port, Weight: 1}
	a := fastActive("http")
	a.Port = s.node().Port
	a.Host = "probe.example"
	a.HTTPPath = "/status"
	a.HTTPMethod = http.MethodHead
	a.ReqHeaders = []string{"X-Probe: yes"}
	ck := NewChecker([]Node{n}, Checks{Active: a}, nil)
	ck.Start(context.Background())
	waitFor(t, "a probe", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.seen) >= 3 })
	ck.Stop()
	s.mu.Lock()
	got := s.seen[0]
	s.mu.Unlock()
	if got != "HEAD probe.example /status yes" {
		t.Fatalf("probe = %q", got)
	}
	if !ck.Healthy(joinHostPort("127.0.0.1", closed.Port)) {
		t.Fatal("node judged by its own (closed) port")
	}
	ck.Stop() // idempotent
}

func TestActiveHTTPS(t *testing.T) {
	tests := []struct {
		name    string
		verify  bool
		healthy bool
	}{
		{"no verify", false, true},
		{"verify self-signed", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStatusServer(t, true)
			a := fastActive("https")
			a.HTTPSVerifyCertificate = &tt.verify
			ck := NewChecker([]Node{s.node()}, Checks{Active: a}, nil)
			ck.Start(context.Background())
			defer ck.Stop()
			if tt.healthy {
				waitFor(t, "probe", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.seen) >= 3 })
				if !ck.Healthy(s.node().Addr) {
					t.Fatalf("status = %v", ck.Status())
				}
			} else {
				waitFor(t, "unhealthy", func() bool { return !ck.Healthy(s.node().Addr) })
			}
		})
	}
}

func TestPassive(t *testing.T) {
	type report struct {
		status           int
		connErr, timeout bool
		times            int
	}
	def := DefaultPassive()
	noRevive := DefaultPassive()
	noRevive.Healthy.Successes = 0
	tests := []struct {
		name    string
		passive Passive
		reports []report
		want    string // final NodeStatus.String() suffix after "addr="
	}{
		{"500s to unhealthy", def, []report{{status: 500, times: 5}}, "unhealthy(0/5/0/0)"},
		{"4 500s mostly healthy", def, []report{{status: 500, times: 4}}, "mostly_healthy(0/4/0/0)"},
		{"success resets failures", def, []report{{status: 500, times: 4}, {status: 200, times: 1}}, "mostly_healthy(1/0/0/0)"},
		{"ignored statuses", def, []report{{status: 404, times: 10}, {status: 502, times: 10}}, "healthy(0/0/0/0)"},
		{"tcp failures", def, []report{{connErr: true, times: 2}}, "unhealthy(0/0/2/0)"},
		{"timeouts", def, []report{{timeout: true, times: 6}}, "mostly_healthy(0/0/0/6)"},
		{"timeouts limit", def, []report{{timeout: true, times: 7}}, "unhealthy(0/0/0/7)"},
		{"recovery", def, []report{{connErr: true, times: 2}, {status: 200, times: 4}}, "mostly_unhealthy(4/0/0/0)"},
		{"recovered", def, []report{{connErr: true, times: 2}, {status: 200, times: 5}}, "healthy(5/0/0/0)"},
		{"successes 0 cannot revive", noRevive, []report{{connErr: true, times: 2}, {status: 200, times: 50}}, "unhealthy(0/0/2/0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := Node{Host: "10.0.0.1", Port: 80, Weight: 1}
			p := tt.passive
			ck := NewChecker([]Node{n}, Checks{Passive: &p}, nil)
			for _, r := range tt.reports {
				for range r.times {
					ck.Report("10.0.0.1:80", r.status, r.connErr, r.timeout)
				}
			}
			if got := ck.Status()[0].String(); got != "10.0.0.1:80="+tt.want {
				t.Fatalf("status = %s, want %s", got, tt.want)
			}
		})
	}
	// No passive section: reports are ignored; unknown addresses too.
	ck := NewChecker([]Node{{Host: "h", Port: 1, Weight: 1}}, Checks{}, nil)
	ck.Report("h:1", 500, true, false)
	ck.Report("nope:1", 500, true, false)
	if !ck.Healthy("h:1") || !ck.Healthy("nope:1") {
		t.Fatal("report without passive config changed health")
	}
}

func TestPassiveThenActiveRevives(t *testing.T) {
	s := newStatusServer(t, false)
	p := DefaultPassive()
	ck := NewChecker([]Node{s.node()}, Checks{Active: fastActive("http"), Passive: &p}, nil)
	ck.Report(s.node().Addr, 0, true, false)
	ck.Report(s.node().Addr, 0, true, false)
	if ck.Healthy(s.node().Addr) {
		t.Fatal("passive failures did not mark unhealthy")
	}
	v := ck.HealthVersion()
	ck.Start(context.Background())
	defer ck.Stop()
	waitFor(t, "active revival", func() bool { return ck.Healthy(s.node().Addr) })
	if ck.HealthVersion() == v {
		t.Fatal("version did not change")
	}
}

func TestAllUnhealthyAllUsed(t *testing.T) {
	ns := nodes("10.0.0.1:80", 1, "10.0.0.2:80", 1, "10.0.0.3:80", 1)
	p := DefaultPassive()
	ck := NewChecker(ns, Checks{Passive: &p}, nil)
	b := mustNew(t, Config{Nodes: ns})
	b.SetHealth(ck)
	for _, n := range ns[:2] {
		ck.Report(n.Addr, 0, true, false)
		ck.Report(n.Addr, 0, true, false)
	}
	for range 6 {
		if p := b.Pick(nil, ""); p.Addr != "10.0.0.3:80" {
			t.Fatalf("picked %s", p.Addr)
		}
	}
	ck.Report("10.0.0.3:80", 0, true, false)
	ck.Report("10.0.0.3:80", 0, true, false)
	seen := map[string]int{}
	for range 6 {
		seen[b.Pick(nil, "").Addr]++
	}
	if len(seen) != 3 {
		t.Fatalf("all unhealthy should use all nodes, saw %v", seen)
	}
}

func TestChecksJSONDefaults(t *testing.T) {
	var c Checks
	err := json.Unmarshal([]byte(`{"active":{"type":"tcp","healthy":{"successes":3}},
		"passive":{"unhealthy":{"tcp_failures":0,"http_statuses":[502]}}}`), &c)
	if err != nil {
		t.Fatal(err)
	}
	a, p := c.Active, c.Passive
	checks := []struct {
		name      string
		got, want any
	}{
		{"active type", a.Type, "tcp"},
		{"active timeout", a.Timeout, 1.0},
		{"active concurrency", a.Concurrency, 10},
		{"active path", a.HTTPPath, "/"},
		{"active verify", *a.HTTPSVerifyCertificate, true},
		{"active successes", a.Healthy.Successes, 3},
		{"active healthy statuses", fmt.Sprint(a.Healthy.HTTPStatuses), "[200 302]"},
		{"active interval", a.Unhealthy.Interval, 1.0},
		{"active http_failures", a.Unhealthy.HTTPFailures, 5},
		{"active tcp_failures", a.Unhealthy.TCPFailures, 2},
		{"active timeouts", a.Unhealthy.Timeouts, 3},
		{"active unhealthy statuses", fmt.Sprint(a.Unhealthy.HTTPStatuses), "[429 404 500 501 502 503 504 505]"},
		{"passive type", p.Type, "http"},
		{"passive successes", p.Healthy.Successes, 5},
		{"passive tcp_failures explicit 0", p.Unhealthy.TCPFailures, 0},
		{"passive timeouts", p.Unhealthy.Timeouts, 7},
		{"passive http_failures", p.Unhealthy.HTTPFailures, 5},
		{"passive unhealthy statuses", fmt.Sprint(p.Unhealthy.HTTPStatuses), "[502]"},
		{"passive healthy statuses", len(p.Healthy.HTTPStatuses), 19},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Fatalf("got %v, want %v", c.got, c.want)
			}
		})
	}
	// Round trip keeps explicit zeros.
	out, _ := json.Marshal(c)
	var c2 Checks
	if err := json.Unmarshal(out, &c2); err != nil || c2.Passive.Unhealthy.TCPFailures != 0 {
		t.Fatalf("round trip: %v %+v", err, c2.Passive)
	}
	if strings.Contains(string(out), `"active":null`) {
		t.Fatal("marshal")
	}
}

func FuzzChecksJSON(f *testing.F) {
	f.Add([]byte(`{"active":{"healthy":{"http_statuses":[200,700,-1]}},"passive":{}}`))
	f.Add([]byte(`{"active":{"req_headers":["a","b: c",":x"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Checks
		if json.Unmarshal(data, &c) != nil {
			return
		}
		ck := NewChecker([]Node{{Host: "127.0.0.1", Port: 1, Weight: 1}}, c, nil)
		ck.Report("127.0.0.1:1", 700, false, false)
		ck.Report("127.0.0.1:1", -5, false, false)
		_ = ck.Status()
	})
}
