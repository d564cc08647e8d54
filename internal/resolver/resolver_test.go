package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is how the test server answers one name.
type zone struct {
	a, aaaa  []string
	ttl      uint32
	rcode    int           // non-zero: answer with this rcode and no records
	truncate bool          // answer UDP with TC set and no records
	delay    time.Duration // wait before answering
}

// testDNS is a real DNS server on a loopback UDP+TCP port with answers the test controls.
type testDNS struct {
	addr     string
	mu       sync.Mutex
	zones    map[string]zone
	counts   map[string]int // "name type net", e.g. "app.test. A udp"
	udp, tcp *dns.Server
	stopped  sync.Once
}

func startDNS(t testing.TB) *testDNS {
	t.Helper()
	s := &testDNS{zones: map[string]zone{}, counts: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no free udp+tcp port pair: %v", err)
		}
	}
	s.addr = pc.LocalAddr().String()
	var started sync.WaitGroup
	started.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: started.Done}
	s.tcp = &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: started.Done}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	started.Wait()
	t.Cleanup(s.stop)
	return s
}

// stop shuts the server down; later calls (the test's cleanup) do nothing.
func (s *testDNS) stop() {
	s.stopped.Do(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
}

func (s *testDNS) set(name string, z zone) {
	s.mu.Lock()
	s.zones[dns.Fqdn(name)] = z
	s.mu.Unlock()
}

// count returns how many questions for name and type ("A", "AAAA") arrived over net ("" = both).
func (s *testDNS) count(name, qtype, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, nw := range []string{"udp", "tcp"} {
		if network == "" || network == nw {
			n += s.counts[dns.Fqdn(name)+" "+qtype+" "+nw]
		}
	}
	return n
}

func (s *testDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	s.mu.Lock()
	s.counts[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]+" "+network]++
	z, ok := s.zones[strings.ToLower(q.Name)]
	s.mu.Unlock()
	time.Sleep(z.delay)
	m := new(dns.Msg)
	m.SetReply(req)
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case z.rcode != 0:
		m.Rcode = z.rcode
	case z.truncate && network == "udp":
		m.Truncated = true
	default:
		ips := z.a
		if q.Qtype == dns.TypeAAAA {
			ips = z.aaaa
		}
		for _, ip := range ips {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: z.ttl, Rrtype: q.Qtype}
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(ip)})
			} else if q.Qtype == dns.TypeAAAA {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(ip)})
			}
		}
	}
	w.WriteMsg(m)
}

// newTestResolver points a Resolver at s with an empty resolv.conf (no search list) and an
// empty hosts file unless opt says otherwise.
func newTestResolver(t *testing.T, s *testDNS, opt Options) *Resolver {
	t.Helper()
	dir := t.TempDir()
	if opt.Servers == nil {
		opt.Servers = []string{s.addr}
	}
	if opt.ResolvConf == "" {
		opt.ResolvConf = writeFile(t, dir, "resolv.conf", "")
	}
	if opt.HostsFile == "" {
		opt.HostsFile = writeFile(t, dir, "hosts", "")
	}
	r, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func mustLookup(t *testing.T, r *Resolver, host string, want []netip.Addr) {
	t.Helper()
	got, err := r.Lookup(context.Background(), host)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", host, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Lookup(%q) = %v, want %v", host, got, want)
	}
}

// eventually polls cond for up to 3s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLiterals(t *testing.T) {
	s := startDNS(t)
	r := newTestResolver(t, s, Options{})
	for _, tc := range []struct{ host, want string }{
		{"10.0.0.1", "10.0.0.1"},
		{"::1", "::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"fe80::1%eth0", "fe80::1%eth0"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			mustLookup(t, r, tc.host, addrs(tc.want))
			got, err := r.Pick(context.Background(), tc.host)
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("Pick = %v, %v", got, err)
			}
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.counts) != 0 {
		t.Fatalf("literals sent queries: %v", s.counts)
	}
}

func TestHostsFile(t *testing.T) {
	s := startDNS(t)
	dir := t.TempDir()
	hosts := writeFile(t, dir, "hosts", "# comment\n10.1.1.1 web.internal web # trailing\n10.1.1.2\tWEB.internal\n2001:db8::5 web\nbogus notanaddr\n")
	r := newTestResolver(t, s, Options{HostsFile: hosts})
	r.hostsEvery = 0 // check the mtime on every lookup so the test need not wait a second

	t.Run("names", func(t *testing.T) {
		for _, tc := range []struct {
			host string
			want []netip.Addr
		}{
			{"web.internal", addrs("10.1.1.1", "10.1.1.2")},
			{"Web.Internal.", addrs("10.1.1.1", "10.1.1.2")},
			{"web", addrs("10.1.1.1", "2001:db8::5")},
			{"localhost", addrs("127.0.0.1", "::1")}, // not in the file: built in
			{"LOCALHOST.", addrs("127.0.0.1", "::1")},
		} {
			mustLookup(t, r, tc.host, tc.want)
		}
	})
	t.Run("reload on mtime change", func(t *testing.T) {
		if err := os.WriteFile(hosts, []byte("10.9.9.9 web.internal\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		future := time.Now().Add(time.Hour)
		if err := os.Chtimes(hosts, future, future); err != nil {
			t.Fatal(err)
		}
		mustLookup(t, r, "web.internal", addrs("10.9.9.9"))
	})
	t.Run("removed file falls back to dns", func(t *testing.T) {
		s.set("web.internal", zone{a: []string{"10.7.7.7"}, ttl: 60})
		if err := os.Remove(hosts); err != nil {
			t.Fatal(err)
		}
		mustLookup(t, r, "web.internal", addrs("10.7.7.7"))
	})
	if n := s.count("web", "A", ""); n != 0 {
		t.Fatalf("hosts-file name %q went to DNS %d times", "web", n)
	}
}

func TestRoundRobinAndFamilies(t *testing.T) {
	s := startDNS(t)
	s.set("app.test", zone{a: []string{"10.0.0.1", "10.0.0.2"}, aaaa: []string{"2001:db8::1"}, ttl: 60})
	s.set("v6only.test", zone{aaaa: []string{"2001:db8::2"}, ttl: 60})
	r := newTestResolver(t, s, Options{})
	ctx := context.Background()

	mustLookup(t, r, "app.test", addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"))
	mustLookup(t, r, "v6only.test", addrs("2001:db8::2"))
	var got []netip.Addr
	for range 6 {
		a, err := r.Pick(ctx, "app.test")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	want := addrs("10.0.0.1", "10.0.0.2", "2001:db8::1", "10.0.0.1", "10.0.0.2", "2001:db8::1")
	if !slices.Equal(got, want) {
		t.Fatalf("Pick sequence %v, want %v", got, want)
	}
	if n := s.count("app.test", "A", ""); n != 1 {
		t.Fatalf("A queries = %d, want 1 (cached)", n)
	}
}

func TestTTLExpiryRefreshes(t *testing.T) {
	s := startDNS(t)
	s.set("ttl.test", zone{a: []string{"10.0.0.1"}, ttl: 1})
	r := newTestResolver(t, s, Options{MinTTL: 10 * time.Millisecond})

	mustLookup(t, r, "ttl.test", addrs("10.0.0.1"))
	mustLookup(t, r, "ttl.test", addrs("10.0.0.1"))
	if n := s.count("ttl.test", "A", ""); n != 1 {
		t.Fatalf("A queries within TTL = %d, want 1", n)
	}
	s.set("ttl.test", zone{a: []string{"10.0.0.2"}, ttl: 1})
	time.Sleep(1100 * time.Millisecond)
	// Within one TTL past expiry the old answer is served while a background query refreshes.
	mustLookup(t, r, "ttl.test", addrs("10.0.0.1"))
	eventually(t, "background refresh", func() bool {
		got, _ := r.Lookup(context.Background(), "ttl.test")
		return slices.Equal(got, addrs("10.0.0.2"))
	})
	if n := s.count("ttl.test", "A", ""); n != 2 {
		t.Fatalf("A queries after expiry = %d, want 2", n)
	}
}

func TestTTLClamp(t *testing.T) {
	const bound = time.Second // wide enough that the fresh check (at bound/2) survives a stalled machine
	for _, tc := range []struct {
		name string
		ttl  uint32
		opt  Options
	}{
		{"zero ttl raised to MinTTL", 0, Options{MinTTL: bound}},
		{"long ttl cut to MaxTTL", 3600, Options{MinTTL: time.Millisecond, MaxTTL: bound}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDNS(t)
			s.set("clamp.test", zone{a: []string{"10.0.0.1"}, ttl: tc.ttl})
			r := newTestResolver(t, s, tc.opt)
			// The answer is stored between start and after: the fresh check
			// counts from start, the expired one from after.
			start := time.Now()
			mustLookup(t, r, "clamp.test", addrs("10.0.0.1"))
			after := time.Now()
			s.set("clamp.test", zone{a: []string{"10.0.0.2"}, ttl: tc.ttl})
			time.Sleep(bound/2 - time.Since(start))
			mustLookup(t, r, "clamp.test", addrs("10.0.0.1"))
			if n := s.count("clamp.test", "A", ""); n != 1 {
				t.Fatalf("A queries before clamped expiry = %d, want 1", n)
			}
			// Past expiry plus the one-TTL stale window, the lookup waits for a fresh answer.
			time.Sleep(time.Until(after.Add(2*bound + 50*time.Millisecond)))
			mustLookup(t, r, "clamp.test", addrs("10.0.0.2"))
			if n := s.count("clamp.test", "A", ""); n != 2 {
				t.Fatalf("A queries after clamped expiry = %d, want 2", n)
			}
		})
	}
}

func TestNegativeCaching(t *testing.T) {
	s := startDNS(t)
	s.set("fail.test", zone{rcode: dns.RcodeServerFailure})
	s.set("empty.test", zone{ttl: 60}) // NOERROR, no records
	r := newTestResolver(t, s, Options{NegativeTTL: 150 * time.Millisecond})
	ctx := context.Background()
	for _, tc := range []struct {
		host     string
		notFound bool
	}{
		{"missing.test", true},
		{"empty.test", true},
		{"fail.test", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			for range 3 {
				_, err := r.Lookup(ctx, tc.host)
				if err == nil {
					t.Fatal("Lookup succeeded, want error")
				}
				if errors.Is(err, ErrNotFound) != tc.notFound {
					t.Fatalf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
				}
				if _, err := r.Pick(ctx, tc.host); err == nil {
					t.Fatal("Pick succeeded, want error")
				}
			}
			if n := s.count(tc.host, "A", ""); n != 1 {
				t.Fatalf("A queries within NegativeTTL = %d, want 1", n)
			}
			time.Sleep(200 * time.Millisecond)
			r.Lookup(ctx, tc.host)
			if n := s.count(tc.host, "A", ""); n != 2 {
				t.Fatalf("A queries after NegativeTTL = %d, want 2", n)
			}
		})
	}
}

func TestCoalescing(t *testing.T) {
	s := startDNS(t)
	s.set("slow.test", zone{a: []string{"10.0.0.1"}, ttl: 60, delay: 200 * time.Millisecond})
	r := newTestResolver(t, s, Options{})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			got, err := r.Lookup(context.Background(), "slow.test")
			if err == nil && !slices.Equal(got, addrs("10.0.0.1")) {
				err = fmt.Errorf("got %v", got)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if q := s.count("slow.test", "A", ""); q != 1 {
		t.Fatalf("%d parallel lookups sent %d A queries, want 1", n, q)
	}
	if q := s.count("slow.test", "AAAA", ""); q != 1 {
		t.Fatalf("%d parallel lookups sent %d AAAA queries, want 1", n, q)
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	s := startDNS(t)
	s.set("slow.test", zone{a: []string{"10.0.0.1"}, ttl: 60, delay: 200 * time.Millisecond})
	r := newTestResolver(t, s, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Lookup(ctx, "slow.test"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup with short deadline: %v, want DeadlineExceeded", err)
	}
	mustLookup(t, r, "slow.test", addrs("10.0.0.1"))
	if q := s.count("slow.test", "A", ""); q != 1 {
		t.Fatalf("A queries = %d, want 1 (the second lookup joins the first's query)", q)
	}
}

func TestTruncatedFallsBackToTCP(t *testing.T) {
	s := startDNS(t)
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.1.%d", i+1)
	}
	s.set("big.test", zone{a: many, ttl: 60, truncate: true})
	r := newTestResolver(t, s, Options{})
	mustLookup(t, r, "big.test", addrs(many...))
	if u, tc := s.count("big.test", "A", "udp"), s.count("big.test", "A", "tcp"); u != 1 || tc != 1 {
		t.Fatalf("A queries udp=%d tcp=%d, want 1 and 1", u, tc)
	}
}

func TestServerDownKeepsLastGoodAnswer(t *testing.T) {
	s := startDNS(t)
	s.set("keep.test", zone{a: []string{"10.0.0.1"}, ttl: 0})
	var logs bytes.Buffer
	var logMu sync.Mutex
	r := newTestResolver(t, s, Options{
		MinTTL:      100 * time.Millisecond,
		MaxTTL:      time.Second,
		NegativeTTL: 50 * time.Millisecond,
		Timeout:     200 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil)),
	})
	start := time.Now()
	mustLookup(t, r, "keep.test", addrs("10.0.0.1"))
	s.stop()

	// Stale window, then synchronous refreshes that fail: the last good answer is kept.
	for _, at := range []time.Duration{150 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond} {
		time.Sleep(at - time.Since(start))
		mustLookup(t, r, "keep.test", addrs("10.0.0.1"))
		if _, err := r.Pick(context.Background(), "keep.test"); err != nil {
			t.Fatalf("Pick at %v: %v", at, err)
		}
	}
	// Past expiry (100ms) + MaxTTL (1s) the answer is dropped.
	time.Sleep(1300*time.Millisecond - time.Since(start))
	eventually(t, "last good answer to expire", func() bool {
		_, err := r.Lookup(context.Background(), "keep.test")
		return err != nil
	})
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logs.String(), "serving last good answer"); n != 1 {
		t.Fatalf("logged the failed refresh %d times, want once:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSearchList(t *testing.T) {
	s := startDNS(t)
	s.set("api.svc.test", zone{a: []string{"10.0.2.1"}, ttl: 60})
	s.set("a.b.c", zone{a: []string{"10.0.2.2"}, ttl: 60})
	s.set("db.x.svc.test", zone{a: []string{"10.0.2.3"}, ttl: 60})
	conf := writeFile(t, t.TempDir(), "resolv.conf", "nameserver 192.0.2.1\nsearch svc.test other.test\noptions ndots:2\n")
	r := newTestResolver(t, s, Options{ResolvConf: conf})

	for _, tc := range []struct {
		host     string
		want     string
		tried    []string // names asked for, in order
		notAsked []string
	}{
		{"api", "10.0.2.1", []string{"api.svc.test."}, []string{"api."}},
		{"a.b.c", "10.0.2.2", []string{"a.b.c."}, []string{"a.b.c.svc.test."}},
		{"db.x", "10.0.2.3", []string{"db.x.svc.test."}, []string{"db.x."}},
	} {
		t.Run(tc.host, func(t *testing.T) {
			mustLookup(t, r, tc.host, addrs(tc.want))
			for _, n := range tc.tried {
				if s.count(n, "A", "") != 1 {
					t.Errorf("%s not asked once", n)
				}
			}
			for _, n := range tc.notAsked {
				if c := s.count(n, "A", ""); c != 0 {
					t.Errorf("%s asked %d times, want 0", n, c)
				}
			}
		})
	}
	t.Run("fqdn skips search", func(t *testing.T) {
		if _, err := r.Lookup(context.Background(), "api."); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Lookup(api.) = %v, want ErrNotFound", err)
		}
		if c := s.count("api.svc.test.", "A", ""); c != 1 {
			t.Fatalf("search applied to an FQDN: %d", c)
		}
	})
}

func TestServerFailover(t *testing.T) {
	s := startDNS(t)
	s.set("app.test", zone{a: []string{"10.0.0.1"}, ttl: 60})
	bad := startDNS(t)
	bad.set("app.test", zone{rcode: dns.RcodeServerFailure})
	dead := startDNS(t)
	dead.stop()
	r := newTestResolver(t, s, Options{Servers: []string{dead.addr, bad.addr, s.addr}, Timeout: 300 * time.Millisecond})
	mustLookup(t, r, "app.test", addrs("10.0.0.1"))
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"bad server", Options{Servers: []string{"dns.example"}}},
		{"min above max", Options{Servers: []string{"127.0.0.1"}, MinTTL: time.Hour, MaxTTL: time.Minute}},
		{"no resolv.conf", Options{ResolvConf: filepath.Join(t.TempDir(), "none")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opt); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
	r, err := New(Options{Servers: []string{"127.0.0.1", "[::1]:5353"}, ResolvConf: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:53", "[::1]:5353"}; !slices.Equal(r.servers, want) {
		t.Fatalf("servers %v, want %v", r.servers, want)
	}
	if _, err := r.Lookup(context.Background(), "bad..name"); err == nil {
		t.Fatal("invalid name resolved")
	}
}

func TestPickHitDoesNotAllocate(t *testing.T) {
	s := startDNS(t)
	s.set("app.test", zone{a: []string{"10.0.0.1", "10.0.0.2"}, ttl: 60})
	hosts := writeFile(t, t.TempDir(), "hosts", "10.1.1.1 web\n")
	r := newTestResolver(t, s, Options{HostsFile: hosts})
	ctx := context.Background()
	for _, host := range []string{"app.test", "web", "10.0.0.9", "localhost"} {
		if _, err := r.Pick(ctx, host); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(1000, func() { r.Pick(ctx, host) }); n != 0 {
			t.Errorf("Pick(%q) on a hit allocates %v times", host, n)
		}
	}
}

func BenchmarkPickHit(b *testing.B) {
	s := startDNS(b)
	s.set("app.test", zone{a: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, ttl: 3600})
	dir := b.TempDir()
	r, err := New(Options{
		Servers:    []string{s.addr},
		ResolvConf: filepath.Join(dir, "none"),
		HostsFile:  filepath.Join(dir, "none"),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, host := range []string{"app.test", "10.0.0.9"} {
		if _, err := r.Pick(ctx, host); err != nil {
			b.Fatal(err)
		}
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := r.Pick(ctx, host); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func FuzzParseHosts(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost # c\n10.0.0.1\tA.b. a.b\n"))
	f.Add([]byte("# only\n\n  \nbad x\nfe80::1%eth0 link\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, as := range parseHosts(data) {
			if name == "" || name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
				t.Fatalf("bad key %q", name)
			}
			if len(as) == 0 {
				t.Fatalf("name %q without addresses", name)
			}
			for _, a := range as {
				if !a.IsValid() {
					t.Fatalf("invalid addr for %q", name)
				}
			}
		}
	})
}
