package balancer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func nodes(spec ...any) []Node {
	// spec: "host:port", weight, ... ; priority via "host:port@prio".
	var out []Node
	for i := 0; i < len(spec); i += 2 {
		addr := spec[i].(string)
		prio := 0
		if at := strings.IndexByte(addr, '@'); at >= 0 {
			fmt.Sscanf(addr[at+1:], "%d", &prio)
			addr = addr[:at]
		}
		host, port, _ := strings.Cut(addr, ":")
		var p int
		fmt.Sscanf(port, "%d", &p)
		out = append(out, Node{Host: host, Port: p, Weight: spec[i+1].(int), Priority: prio, Addr: addr})
	}
	return out
}

func mustNew(t testing.TB, cfg Config) *Balancer {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seq(b *Balancer, n int, key string) []string {
	var out []string
	for range n {
		p := b.Pick(nil, key)
		if p == nil {
			out = append(out, "nil")
			continue
		}
		out = append(out, p.Addr)
		b.Done(p, 0, false)
	}
	return out
}

func short(addrs []string) string {
	var sb strings.Builder
	for _, a := range addrs {
		switch {
		case a == "nil":
			sb.WriteByte('-')
		default:
			sb.WriteByte(a[len(a)-1] - '0' + 'A')
		}
	}
	return sb.String()
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"unknown type", Config{Type: "random", Nodes: nodes("h:0", 1)}, ErrUnknownType},
		{"negative weight", Config{Nodes: []Node{{Host: "h", Port: 1, Weight: -1}}}, nil},
		{"empty host", Config{Nodes: []Node{{Port: 1, Weight: 1}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("want error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	b := mustNew(t, Config{Nodes: []Node{{Host: "::1", Port: 80, Weight: 1}, {Host: "[::2]", Port: 81, Weight: 1}}})
	if got := b.Nodes()[0].Addr + " " + b.Nodes()[1].Addr; got != "[::1]:80 [::2]:81" {
		t.Fatalf("addrs = %q", got)
	}
	if b.Type() != TypeRoundRobin {
		t.Fatalf("default type = %q", b.Type())
	}
}

// Node ports end in 0,1,2... and print as A,B,C.
func TestRoundRobinOrder(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		n     int
		want  string
	}{
		{"equal", nodes("h:0", 1, "h:1", 1), 4, "ABAB"},
		{"three equal", nodes("h:0", 1, "h:1", 1, "h:2", 1), 6, "ABCABC"},
		{"3-2-1", nodes("h:0", 3, "h:1", 2, "h:2", 1), 12, "AABABCAABABC"},
		{"5-1-1", nodes("h:0", 5, "h:1", 1, "h:2", 1), 14, "AAAAABCAAAAABC"},
		{"gcd 4-2", nodes("h:0", 4, "h:1", 2), 6, "AABAAB"},
		{"gcd 100-100", nodes("h:0", 100, "h:1", 100), 4, "ABAB"},
		{"weight 0", nodes("h:0", 3, "h:1", 0, "h:2", 1), 8, "AAACAAAC"},
		{"all weight 0", nodes("h:0", 0, "h:1", 0), 2, "--"},
		{"light first", nodes("h:0", 1, "h:1", 3), 8, "BBABBBAB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, Config{Type: TypeRoundRobin, Nodes: tt.nodes})
			if got := short(seq(b, tt.n, "")); got != tt.want {
				t.Fatalf("order = %s, want %s", got, tt.want)
			}
		})
	}
}

// The counts APISIX's t/node/rr-balance.t expects over 12 requests.
func TestRoundRobinCounts(t *testing.T) {
	tests := []struct {
		nodes []Node
		want  map[string]int
	}{
		{nodes("h:0", 1, "h:1", 1), map[string]int{"h:0": 6, "h:1": 6}},
		{nodes("h:0", 1, "h:1", 1, "h:2", 1), map[string]int{"h:0": 4, "h:1": 4, "h:2": 4}},
		{nodes("h:0", 3, "h:1", 2, "h:2", 1), map[string]int{"h:0": 6, "h:1": 4, "h:2": 2}},
		{nodes("h:0", 3, "h:1", 0, "h:2", 1), map[string]int{"h:0": 9, "h:2": 3}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			b := mustNew(t, Config{Nodes: tt.nodes})
			got := map[string]int{}
			for _, a := range seq(b, 12, "") {
				got[a]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("counts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTriedExclusion(t *testing.T) {
	for _, typ := range []string{TypeRoundRobin, TypeCHash, TypeLeastConn, TypeEWMA} {
		t.Run(typ, func(t *testing.T) {
			b := mustNew(t, Config{Type: typ, Nodes: nodes("h:0", 5, "h:1", 1, "h:2", 1)})
			for range 50 {
				var tr Tried
				seen := map[string]bool{}
				for range 3 {
					p := b.Pick(&tr, "key")
					if p == nil {
						t.Fatal("nil before all tried")
					}
					if seen[p.Addr] {
						t.Fatalf("picked tried node %s", p.Addr)
					}
					seen[p.Addr] = true
					tr.Add(p)
					b.Done(p, time.Millisecond, true)
				}
				if p := b.Pick(&tr, "key"); p != nil {
					t.Fatalf("all tried, got %s", p.Addr)
				}
			}
		})
	}
}

func TestRoundRobinRetryFallback(t *testing.T) {
	// A long cycle dominated by the tried node must still reach the other.
	b := mustNew(t, Config{Nodes: nodes("h:0", 1000000, "h:1", 1)})
	var tr Tried
	tr.Add(b.Pick(&tr, ""))
	if p := b.Pick(&tr, ""); p == nil || p.Addr != "h:1" {
		t.Fatalf("retry = %v", p)
	}
}

func TestSingleNode(t *testing.T) {
	for _, typ := range []string{TypeRoundRobin, TypeCHash, TypeLeastConn, TypeEWMA} {
		t.Run(typ, func(t *testing.T) {
			b := mustNew(t, Config{Type: typ, Nodes: nodes("h:0", 1)})
			b.SetHealth(staticHealth{"h:0": false})
			var tr Tried
			p := b.Pick(&tr, "k")
			tr.Add(p)
			// APISIX short-circuits single-node upstreams: retried even when
			// tried or unhealthy (t/node/least_conn.t TEST 6).
			if p2 := b.Pick(&tr, "k"); p2 != p {
				t.Fatalf("single node retry = %v", p2)
			}
			b.Done(p, 0, false)
			b.Done(p, 0, false)
			z := mustNew(t, Config{Type: typ, Nodes: nodes("h:0", 0)})
			if z.Pick(nil, "k") != nil {
				t.Fatal("weight-0 single node picked")
			}
		})
	}
	b := mustNew(t, Config{Type: TypeLeastConn, Nodes: nodes("h:0", 1)})
	p := b.Pick(nil, "")
	b.Pick(nil, "")
	if a := b.nodes[0].active.Load(); a != 2 {
		t.Fatalf("active = %d", a)
	}
	b.Done(p, 0, false)
	b.Done(p, 0, false)
	b.Done(p, 0, false)
	if a := b.nodes[0].active.Load(); a != 0 {
		t.Fatalf("active after done = %d", a)
	}
}

type staticHealth map[string]bool

func (s staticHealth) Healthy(addr string) bool {
	h, ok := s[addr]
	return !ok || h
}

// flipHealth is a versioned view the test can change.
type flipHealth struct {
	mu   sync.Mutex
	down map[string]bool
	ver  atomic.Uint64
}

func (f *flipHealth) Healthy(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down[addr]
}

func (f *flipHealth) HealthVersion() uint64 { return f.ver.Load() }

func (f *flipHealth) set(addr string, down bool) {
	f.mu.Lock()
	if f.down == nil {
		f.down = map[string]bool{}
	}
	f.down[addr] = down
	f.mu.Unlock()
	f.ver.Add(1)
}

func TestPriorityFailover(t *testing.T) {
	ns := nodes("h:0@1", 1, "h:1@1", 1, "h:2@0", 1, "h:3@-1", 1)
	for _, typ := range []string{TypeRoundRobin, TypeCHash, TypeLeastConn, TypeEWMA} {
		t.Run(typ, func(t *testing.T) {
			b := mustNew(t, Config{Type: typ, Nodes: ns})
			for range 20 {
				p := b.Pick(nil, "k")
				if p.Priority != 1 {
					t.Fatalf("picked %s from lower group", p.Addr)
				}
				b.Done(p, time.Millisecond, false)
			}
			var tr Tried
			var order []int
			for {
				p := b.Pick(&tr, "k")
				if p == nil {
					break
				}
				order = append(order, p.Priority)
				tr.Add(p)
			}
			if fmt.Sprint(order) != "[1 1 0 -1]" {
				t.Fatalf("priorities in retry order = %v", order)
			}

			// Unhealthy high group: the lower group serves.
			h := &flipHealth{}
			b.SetHealth(h)
			h.set("h:0", true)
			h.set("h:1", true)
			for range 10 {
				if p := b.Pick(nil, "k"); p.Addr != "h:2" {
					t.Fatalf("with group 1 down picked %s", p.Addr)
				}
			}
			// Everything down: APISIX uses all nodes, priorities intact.
			h.set("h:2", true)
			h.set("h:3", true)
			for range 10 {
				if p := b.Pick(nil, "k"); p.Priority != 1 {
					t.Fatalf("all down picked %s", p.Addr)
				}
			}
			h.set("h:1", false)
			for range 10 {
				if p := b.Pick(nil, "k"); p.Addr != "h:1" {
					t.Fatalf("only h:1 up, picked %s", p.Addr)
				}
			}
			b.SetHealth(nil)
			seen := map[string]bool{}
			for range 40 {
				seen[b.Pick(nil, "k"+fmt.Sprint(len(seen))).Addr] = true
			}
			if typ != TypeCHash && len(seen) != 2 {
				t.Fatalf("health detached, saw %v", seen)
			}
		})
	}
}

func TestUnversionedHealth(t *testing.T) {
	b := mustNew(t, Config{Nodes: nodes("h:0", 1, "h:1", 1, "h:2", 1)})
	b.SetHealth(staticHealth{"h:1": false})
	if got := short(seq(b, 6, "")); got != "ACACAC" {
		t.Fatalf("order = %s", got)
	}
	// Unhealthy nodes are removed, not skipped: the survivors keep even shares.
	b.SetHealth(staticHealth{"h:0": false})
	if got := short(seq(b, 4, "")); got != "BCBC" {
		t.Fatalf("order = %s", got)
	}
}

// Expected nodes from APISIX's t/node/chash-balance.t and chash-hashon.t.
func TestCHashAPISIXVectors(t *testing.T) {
	two := nodes("127.0.0.1:1980", 1, "127.0.0.1:1981", 1)
	three := nodes("127.0.0.1:1980", 1, "127.0.0.1:1981", 1, "127.0.0.1:1982", 1)
	tests := []struct {
		nodes []Node
		key   string
		want  string
	}{
		{two, "127.0.0.1", "127.0.0.1:1980"},
		{three, "127.0.0.1", "127.0.0.1:1982"},
		{two, "jack", "127.0.0.1:1981"},
		{two, "tom", "127.0.0.1:1980"},
		{two, "custom-one", "127.0.0.1:1980"},
		{two, "cuscookie", "127.0.0.1:1981"},
		{nodes("127.0.0.1:1980", 1, "127.0.0.1:1981", 0, "127.0.0.1:1982", 0), "127.0.0.1", "127.0.0.1:1980"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-%s", len(tt.nodes), tt.key), func(t *testing.T) {
			b := mustNew(t, Config{Type: TypeCHash, Key: "remote_addr", Nodes: tt.nodes})
			for range 3 {
				if p := b.Pick(nil, tt.key); p == nil || p.Addr != tt.want {
					t.Fatalf("key %q -> %v, want %s", tt.key, p, tt.want)
				}
			}
		})
	}
}

func TestCHashDistributionAndStability(t *testing.T) {
	five := nodes("10.0.0.1:80", 1, "10.0.0.2:80", 1, "10.0.0.3:80", 1, "10.0.0.4:80", 1, "10.0.0.5:80", 1)
	b := mustNew(t, Config{Type: TypeCHash, Nodes: five})
	const keys = 20000
	before := make([]string, keys)
	counts := map[string]int{}
	for i := range keys {
		before[i] = b.Pick(nil, fmt.Sprintf("user-%d", i)).Addr
		counts[before[i]]++
	}
	for a, c := range counts {
		if c < keys/5*7/10 || c > keys/5*13/10 {
			t.Errorf("node %s got %d of %d keys", a, c, keys)
		}
	}
	// Removing a node moves only the keys it owned.
	b2 := mustNew(t, Config{Type: TypeCHash, Nodes: append(five[:2:2], five[3:]...)})
	moved := 0
	for i := range keys {
		after := b2.Pick(nil, fmt.Sprintf("user-%d", i)).Addr
		if after != before[i] {
			if before[i] != "10.0.0.3:80" {
				t.Fatalf("key %d moved from surviving node %s to %s", i, before[i], after)
			}
			moved++
		}
	}
	if moved != counts["10.0.0.3:80"] {
		t.Fatalf("moved %d, removed node owned %d", moved, counts["10.0.0.3:80"])
	}
	// Same for an unhealthy node.
	b.SetHealth(staticHealth{"10.0.0.3:80": false})
	for i := range keys {
		if got, want := b.Pick(nil, fmt.Sprintf("user-%d", i)).Addr, b2.Pick(nil, fmt.Sprintf("user-%d", i)).Addr; got != want {
			t.Fatalf("unhealthy ring differs from removed ring for key %d: %s vs %s", i, got, want)
		}
	}
	// Weights shape the shares.
	w := mustNew(t, Config{Type: TypeCHash, Nodes: nodes("10.0.0.1:80", 3, "10.0.0.2:80", 1)})
	heavy := 0
	for i := range keys {
		if w.Pick(nil, fmt.Sprint(i)).Addr == "10.0.0.1:80" {
			heavy++
		}
	}
	if heavy < keys*65/100 || heavy > keys*85/100 {
		t.Fatalf("weight-3 node got %d of %d", heavy, keys)
	}
}

func TestCHashRetryWalksRing(t *testing.T) {
	b := mustNew(t, Config{Type: TypeCHash, Nodes: nodes("h:0", 1, "h:1", 1, "h:2", 1, "h:3", 1)})
	// The retry order for a key is deterministic.
	order := func() string {
		var tr Tried
		var s []string
		for p := b.Pick(&tr, "session-42"); p != nil; p = b.Pick(&tr, "session-42") {
			s = append(s, p.Addr)
			tr.Add(p)
		}
		return strings.Join(s, ",")
	}
	first := order()
	if strings.Count(first, ",") != 3 {
		t.Fatalf("order = %s", first)
	}
	for range 5 {
		if o := order(); o != first {
			t.Fatalf("retry order changed: %s vs %s", o, first)
		}
	}
}

// t/node/least_conn.t: weights 3 and 2 with three concurrent requests pick
// A, B, A; the heavier node wins an idle upstream.
func TestLeastConn(t *testing.T) {
	b := mustNew(t, Config{Type: TypeLeastConn, Nodes: nodes("h:0", 3, "h:1", 2)})
	var picked []*Node
	for range 3 {
		picked = append(picked, b.Pick(nil, ""))
	}
	if got := short([]string{picked[0].Addr, picked[1].Addr, picked[2].Addr}); got != "ABA" {
		t.Fatalf("order = %s", got)
	}
	for _, p := range picked {
		b.Done(p, 0, false)
	}
	if p := b.Pick(nil, ""); p.Addr != "h:0" {
		t.Fatalf("idle pick = %s", p.Addr)
	}

	// A node holding long requests gets fewer new ones.
	b = mustNew(t, Config{Type: TypeLeastConn, Nodes: nodes("h:0", 1, "h:1", 1)})
	for range 10 {
		b.Pick(nil, "")
	}
	// Release only h:1's five slots; h:0 keeps five in flight.
	for i := range b.nodes {
		if b.nodes[i].Addr == "h:1" {
			for range 5 {
				b.Done(&b.nodes[i].Node, 0, false)
			}
		}
	}
	for range 4 {
		if p := b.Pick(nil, ""); p.Addr != "h:1" {
			t.Fatalf("expected the idle node, got %s", p.Addr)
		}
	}
	// Done with a foreign node is ignored.
	b.Done(&Node{Addr: "h:0"}, 0, false)
}

func TestEWMAPrefersFaster(t *testing.T) {
	b := mustNew(t, Config{Type: TypeEWMA, Nodes: nodes("h:0", 1, "h:1", 1, "h:2", 1)})
	lat := map[string]time.Duration{"h:0": 80 * time.Millisecond, "h:1": 5 * time.Millisecond, "h:2": 40 * time.Millisecond}
	for i := range b.nodes {
		b.Done(&b.nodes[i].Node, lat[b.nodes[i].Addr], false)
	}
	counts := map[string]int{}
	for range 3000 {
		p := b.Pick(nil, "")
		counts[p.Addr]++
		b.Done(p, lat[p.Addr], false)
	}
	// Power of two choices: the fastest wins every draw it is in (2/3), the
	// slowest none.
	if counts["h:1"] < 1800 || counts["h:0"] > 0 {
		t.Fatalf("counts = %v", counts)
	}
	// Samples are weighted by the time since the previous one (10 s time
	// constant), so age h:1's average before charging a fast failure; the
	// failure counts as ewmaFailurePenalty, not its 1 ms.
	s := &b.nodes[1]
	s.ewma.Store(packEWMA(0.005, b.nowMs()-10000))
	b.Done(&s.Node, time.Millisecond, true)
	if sc := b.score(s, b.nowMs()); sc < 0.5 {
		t.Fatalf("failed node score = %v", sc)
	}
	for range 100 {
		if p := b.Pick(nil, ""); p.Addr == "h:1" {
			t.Fatal("penalised node still picked")
		}
	}
}

func TestConcurrentPickDone(t *testing.T) {
	for _, typ := range []string{TypeRoundRobin, TypeCHash, TypeLeastConn, TypeEWMA} {
		t.Run(typ, func(t *testing.T) {
			b := mustNew(t, Config{Type: typ, Nodes: nodes("h:0@1", 3, "h:1@1", 2, "h:2", 1, "h:3", 0)})
			h := &flipHealth{}
			b.SetHealth(h)
			var wg sync.WaitGroup
			var picks atomic.Int64
			stop := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					h.set(fmt.Sprintf("h:%d", i%3), i%2 == 0)
					time.Sleep(50 * time.Microsecond)
				}
			}()
			var workers sync.WaitGroup
			for g := range 8 {
				workers.Add(1)
				go func() {
					defer workers.Done()
					var tr Tried
					for i := range 2000 {
						tr.Reset()
						p := b.Pick(&tr, fmt.Sprint(g, i%17))
						if p == nil || p.Weight == 0 {
							t.Errorf("bad pick %v", p)
							return
						}
						tr.Add(p)
						b.Done(p, time.Duration(i%7)*time.Millisecond, i%11 == 0)
						if q := b.Pick(&tr, "x"); q != nil {
							b.Done(q, time.Millisecond, false)
						}
						picks.Add(1)
					}
				}()
			}
			workers.Wait()
			close(stop)
			wg.Wait()
			if typ == TypeLeastConn {
				for i := range b.nodes {
					if a := b.nodes[i].active.Load(); a != 0 {
						t.Fatalf("node %s active = %d after all done", b.nodes[i].Addr, a)
					}
				}
			}
		})
	}
}

func TestTried(t *testing.T) {
	var tr Tried
	ns := make([]Node, 12)
	for i := range ns {
		ns[i].Addr = fmt.Sprint("n", i)
		tr.Add(&ns[i])
		tr.Add(&ns[i])
	}
	if tr.Len() != 12 {
		t.Fatalf("len = %d", tr.Len())
	}
	if !tr.Has(&Node{Addr: "n11"}) || tr.Has(&Node{Addr: "n12"}) {
		t.Fatal("Has by addr")
	}
	tr.Reset()
	if tr.Len() != 0 || tr.Has(&ns[0]) {
		t.Fatal("reset")
	}
	var nilTried *Tried
	if nilTried.Has(&ns[0]) || nilTried.Len() != 0 {
		t.Fatal("nil tried")
	}
	allocs := testing.AllocsPerRun(100, func() {
		tr.Reset()
		for i := range 8 {
			tr.Add(&ns[i])
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
}

// DialAddr resolves only named hosts, and keeps Addr when it cannot.
func TestDialAddr(t *testing.T) {
	b, err := New(Config{Type: "roundrobin", Nodes: []Node{
		{Host: "10.0.0.1", Port: 80, Weight: 1},
		{Host: "::1", Port: 81, Weight: 1},
		{Host: "api.test", Port: 8080, Weight: 1},
		{Host: "gone.test", Port: 9, Weight: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	resolve := func(_ context.Context, host string) (netip.Addr, error) {
		asked = append(asked, host)
		if host == "api.test" {
			return netip.MustParseAddr("192.0.2.7"), nil
		}
		return netip.Addr{}, errors.New("no such host")
	}
	want := map[string]struct {
		addr string
		err  bool
	}{
		"10.0.0.1":  {"10.0.0.1:80", false},
		"::1":       {"[::1]:81", false},
		"api.test":  {"192.0.2.7:8080", false},
		"gone.test": {"gone.test:9", true},
	}
	for i := range b.nodes {
		n := &b.nodes[i].Node
		addr, err := n.DialAddr(context.Background(), resolve)
		if w := want[n.Host]; addr != w.addr || (err != nil) != w.err {
			t.Errorf("%s: DialAddr = %q, %v; want %q (error %v)", n.Host, addr, err, w.addr, w.err)
		}
		if addr, err := n.DialAddr(context.Background(), nil); addr != n.Addr || err != nil {
			t.Errorf("%s without a resolver: %q, %v", n.Host, addr, err)
		}
	}
	if strings.Join(asked, ",") != "api.test,gone.test" {
		t.Errorf("resolver asked for %v, want only the named hosts", asked)
	}
}
