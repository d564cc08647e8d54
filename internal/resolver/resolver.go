// Package resolver turns upstream node hostnames into addresses with DNS and caches the answers
// for their TTL, so that a balancer can pick a node address per request without a query and
// without a lock.
//
// Order of sources for a name, like the C library's "files dns": IP literals answer themselves;
// then the hosts file; then "localhost" (RFC 6761, answered even when the hosts file lacks it);
// then DNS through the cache.
//
// Cache semantics:
//   - A positive answer is cached for the minimum TTL of its answer records (CNAMEs included),
//     clamped to [MinTTL, MaxTTL].
//   - When an entry expires, the next lookup still gets the old answer for at most one more TTL
//     (the "refresh interval") while a single background query refreshes it. After that window a
//     lookup waits for the refresh.
//   - A refresh that fails (timeouts, SERVFAIL, NXDOMAIN, server down) keeps serving the last good
//     answer for up to MaxTTL past its expiry, retrying at most every NegativeTTL; this is logged
//     once per failure streak.
//   - A name with no good answer to fall back on caches its failure for NegativeTTL.
//   - Concurrent lookups of one name share one query (a hand-rolled singleflight).
//
// Cache hits load an atomic.Pointer to an immutable map and take no mutex; writers copy the map
// under a mutex, which suits the small, slowly changing set of upstream hostnames (and lets every
// write drop entries that can no longer be served).
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ErrNotFound reports that the name does not exist (NXDOMAIN) or has no A or AAAA records,
// in the hosts file or in DNS, after trying the search list.
var ErrNotFound = errors.New("no such host")

// Defaults for zero Options fields.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultMinTTL      = time.Second
	DefaultMaxTTL      = time.Hour
	DefaultNegativeTTL = 5 * time.Second
	DefaultHostsFile   = "/etc/hosts"
	DefaultResolvConf  = "/etc/resolv.conf"
)

// hostsCheckEvery bounds how often the hosts file's mtime is checked: a stat per request would
// cost a syscall and an allocation on the hot path.
const hostsCheckEvery = time.Second

// ednsSize is the UDP payload size we advertise (the DNS flag day 2020 recommendation), so most
// answers fit without falling back to TCP.
const ednsSize = 1232

// Options configures a Resolver. Zero values take the defaults named on each field.
type Options struct {
	// Servers are the DNS servers as "ip:port" (a bare IP means port 53), tried in order for each
	// query. Empty means the nameservers of ResolvConf.
	Servers []string
	// ResolvConf is the resolv.conf whose "search" list and "ndots" option apply to unqualified
	// names (and whose nameservers are used when Servers is empty). Default /etc/resolv.conf.
	// A missing file is fine when Servers is set: names are then only tried as given.
	ResolvConf string
	// Timeout bounds one query to one server (UDP, plus the TCP retry when truncated). Default 2s.
	Timeout time.Duration
	// MinTTL and MaxTTL clamp the cache lifetime of an answer. Defaults 1s and 1h. MaxTTL also
	// bounds how long a last good answer is served while refreshes fail.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long a failure (NXDOMAIN, no records, SERVFAIL, timeout) is cached, and
	// how often a failing name is retried. Default 5s.
	NegativeTTL time.Duration
	// HostsFile is read for static names and re-read when its mtime or size changes (checked at
	// most once a second). Default /etc/hosts. A missing file is treated as empty.
	HostsFile string
	// Logger receives failed refreshes and hosts-file errors. Default: discard.
	Logger *slog.Logger
}

// Resolver resolves hostnames to addresses with a TTL cache. It is safe for concurrent use; the
// zero value is not usable, call New.
type Resolver struct {
	servers     []string
	search      []string // suffixes, each a FQDN ending in "."
	ndots       int
	timeout     time.Duration
	minTTL      time.Duration
	maxTTL      time.Duration
	negTTL      time.Duration
	hostsPath   string
	hostsEvery  time.Duration
	log         *slog.Logger
	udp, tcp    *dns.Client
	epoch       time.Time
	localhost   *entry
	cache       atomic.Pointer[map[string]*entry]
	hosts       atomic.Pointer[hostsTable]
	hostsCheck  atomic.Int64 // r.now() of the last hosts-file stat
	hostsReload sync.Mutex   // one reader of the hosts file at a time

	mu      sync.Mutex // guards cache writes and flights
	flights map[string]*call
}

// entry is an immutable cached answer; only its round-robin counter changes.
type entry struct {
	addrs []netip.Addr
	err   error // non-nil for a negative entry
	// All times are nanoseconds since Resolver.epoch on the monotonic clock.
	expires    int64 // fresh until
	staleUntil int64 // may be served (while refreshing) until
	keepUntil  int64 // last good answer kept through failed refreshes until
	failing    bool  // the answer is a last good one kept after a failed refresh
	next       atomic.Uint32
}

// pick rotates over the entry's addresses.
func (e *entry) pick() netip.Addr {
	n := e.next.Add(1) - 1
	return e.addrs[n%uint32(len(e.addrs))]
}

// call is one in-flight refresh that concurrent lookups of the same name wait for.
type call struct {
	done chan struct{}
	e    *entry
}

// New builds a Resolver from opt, reading resolv.conf and the hosts file once.
func New(opt Options) (*Resolver, error) {
	r := &Resolver{
		timeout:    orDefault(opt.Timeout, DefaultTimeout),
		minTTL:     orDefault(opt.MinTTL, DefaultMinTTL),
		maxTTL:     orDefault(opt.MaxTTL, DefaultMaxTTL),
		negTTL:     orDefault(opt.NegativeTTL, DefaultNegativeTTL),
		hostsPath:  opt.HostsFile,
		hostsEvery: hostsCheckEvery,
		log:        opt.Logger,
		epoch:      time.Now(),
		flights:    make(map[string]*call),
		ndots:      1,
	}
	if r.minTTL > r.maxTTL {
		return nil, fmt.Errorf("resolver: min ttl %v exceeds max ttl %v", r.minTTL, r.maxTTL)
	}
	if r.hostsPath == "" {
		r.hostsPath = DefaultHostsFile
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	confPath := opt.ResolvConf
	if confPath == "" {
		confPath = DefaultResolvConf
	}
	conf, confErr := dns.ClientConfigFromFile(confPath)
	if confErr == nil {
		r.ndots = conf.Ndots
		for _, s := range conf.Search {
			if s = dns.Fqdn(strings.ToLower(s)); s != "." {
				r.search = append(r.search, s)
			}
		}
	}
	if len(opt.Servers) > 0 {
		for _, s := range opt.Servers {
			addr, err := parseServer(s, "53")
			if err != nil {
				return nil, fmt.Errorf("resolver: server %q: %w", s, err)
			}
			r.servers = append(r.servers, addr)
		}
	} else {
		if confErr != nil {
			return nil, fmt.Errorf("resolver: no servers given and %s unreadable: %w", confPath, confErr)
		}
		for _, s := range conf.Servers {
			addr, err := parseServer(s, conf.Port)
			if err != nil {
				return nil, fmt.Errorf("resolver: nameserver %q in %s: %w", s, confPath, err)
			}
			r.servers = append(r.servers, addr)
		}
		if len(r.servers) == 0 {
			return nil, fmt.Errorf("resolver: no nameserver in %s", confPath)
		}
	}
	r.udp = &dns.Client{Net: "udp", Timeout: r.timeout, UDPSize: ednsSize}
	r.tcp = &dns.Client{Net: "tcp", Timeout: r.timeout}
	r.localhost = &entry{
		addrs:   []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()},
		expires: 1<<63 - 1,
	}
	empty := map[string]*entry{}
	r.cache.Store(&empty)
	r.hosts.Store(&hostsTable{})
	r.reloadHosts(r.now())
	return r, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// parseServer accepts "ip:port", "[v6]:port" or a bare IP (given port).
func parseServer(s, port string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("want ip or ip:port: %w", err)
	}
	if port == "" {
		port = "53"
	}
	return net.JoinHostPort(a.String(), port), nil
}

// now is the monotonic time since the Resolver was built; plain int64 comparisons keep the hot
// path cheap.
func (r *Resolver) now() int64 { return int64(time.Since(r.epoch)) }

// Lookup returns the addresses of host (A records first, then AAAA), from the cache while the
// record's TTL lasts. IP literals return themselves without a query; names in the hosts file are
// answered from it (re-read when its mtime changes); "localhost" works without DNS. The returned
// slice is the caller's to keep.
func (r *Resolver) Lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := parseLiteral(host); ok {
		return []netip.Addr{a}, nil
	}
	e, err := r.get(ctx, host)
	if err != nil {
		return nil, err
	}
	return slices.Clone(e.addrs), nil
}

// Pick returns one address for host, rotating round-robin over the cached set. A cache hit
// (fresh DNS answer, hosts-file name, IP literal) takes no lock and does not allocate.
func (r *Resolver) Pick(ctx context.Context, host string) (netip.Addr, error) {
	if a, ok := parseLiteral(host); ok {
		return a, nil
	}
	e, err := r.get(ctx, host)
	if err != nil {
		return netip.Addr{}, err
	}
	return e.pick(), nil
}

// get finds the entry for a non-literal host: hosts file, localhost, fresh cache hit, or the slow
// path. The returned entry always has addresses.
func (r *Resolver) get(ctx context.Context, host string) (*entry, error) {
	now := r.now()
	if e := r.fromHosts(host, now); e != nil {
		return e, nil
	}
	if e := (*r.cache.Load())[host]; e != nil && now < e.expires {
		if e.err != nil {
			return nil, e.err
		}
		return e, nil
	}
	return r.slow(ctx, host)
}

// slow handles a miss, an expired entry or a cached failure past its NegativeTTL.
func (r *Resolver) slow(ctx context.Context, host string) (*entry, error) {
	if host == "" {
		return nil, errors.New("resolver: empty host")
	}
	if _, ok := dns.IsDomainName(host); !ok {
		return nil, fmt.Errorf("resolver: lookup %q: invalid name", host)
	}
	now := r.now()
	if e := (*r.cache.Load())[host]; e != nil {
		if now < e.expires {
			if e.err != nil {
				return nil, e.err
			}
			return e, nil
		}
		if e.err == nil && now < e.staleUntil {
			// Serve the expired answer once more while one background query refreshes it.
			r.refresh(host)
			return e, nil
		}
	}
	c := r.refresh(host)
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("resolver: lookup %s: %w", host, ctx.Err())
	}
	if c.e.err != nil {
		return nil, c.e.err
	}
	return c.e, nil
}

// refresh starts a query for host unless one is already running, and returns the call to wait
// on. The query runs detached from any caller's context so that one caller giving up does not
// fail the others; it is bounded by the per-query timeouts.
func (r *Resolver) refresh(host string) *call {
	r.mu.Lock()
	if c := r.flights[host]; c != nil {
		r.mu.Unlock()
		return c
	}
	c := &call{done: make(chan struct{})}
	r.flights[host] = c
	r.mu.Unlock()
	go func() {
		addrs, ttl, err := r.query(context.Background(), host)
		r.mu.Lock()
		old := *r.cache.Load()
		now := r.now()
		e := r.newEntry(host, old[host], addrs, ttl, err, now)
		m := make(map[string]*entry, len(old)+1)
		for k, v := range old {
			if k != host && now < v.keepUntil {
				m[k] = v
			}
		}
		m[host] = e
		r.cache.Store(&m)
		delete(r.flights, host)
		r.mu.Unlock()
		c.e = e
		close(c.done)
	}()
	return c
}

// newEntry turns a query result into a cache entry, falling back to the last good answer.
func (r *Resolver) newEntry(host string, old *entry, addrs []netip.Addr, ttl uint32, err error, now int64) *entry {
	if err == nil {
		d := min(max(time.Duration(ttl)*time.Second, r.minTTL), r.maxTTL)
		if old != nil && old.failing {
			r.log.Info("resolver: refresh recovered", "host", host)
		}
		e := &entry{
			addrs:      addrs,
			expires:    now + int64(d),
			staleUntil: now + 2*int64(d),
			keepUntil:  now + int64(d) + int64(r.maxTTL),
		}
		if old != nil {
			// Keep rotating where the previous answer left off rather than restarting at the first address.
			e.next.Store(old.next.Load())
		}
		return e
	}
	if old != nil && old.err == nil && now < old.keepUntil {
		if !old.failing {
			r.log.Warn("resolver: refresh failed, serving last good answer",
				"host", host, "error", err, "addrs", old.addrs,
				"for", time.Duration(old.keepUntil-now).Round(time.Second))
		}
		e := &entry{
			addrs:      old.addrs,
			expires:    min(now+int64(r.negTTL), old.keepUntil),
			staleUntil: old.keepUntil,
			keepUntil:  old.keepUntil,
			failing:    true,
		}
		e.next.Store(old.next.Load())
		return e
	}
	if old != nil && old.failing {
		r.log.Warn("resolver: last good answer dropped after max ttl", "host", host, "error", err)
	}
	exp := now + int64(r.negTTL)
	return &entry{
		err:       fmt.Errorf("resolver: lookup %s: %w", host, err),
		expires:   exp,
		keepUntil: exp,
	}
}

// candidates lists the FQDNs to try for host, like the C library: a name ending in "." is tried
// alone; a name with at least ndots dots is tried as given, then with each search suffix; a name
// with fewer dots is tried with each suffix first, then as given.
func (r *Resolver) candidates(host string) []string {
	if strings.HasSuffix(host, ".") {
		return []string{host}
	}
	fqdn := host + "."
	if len(r.search) == 0 {
		return []string{fqdn}
	}
	out := make([]string, 0, len(r.search)+1)
	asIs := strings.Count(host, ".") >= r.ndots
	if asIs {
		out = append(out, fqdn)
	}
	for _, s := range r.search {
		out = append(out, fqdn+s)
	}
	if !asIs {
		out = append(out, fqdn)
	}
	return out
}

// query resolves host through the search list. It returns the first candidate with addresses;
// otherwise a temporary failure if any candidate had one (so it is not mistaken for NXDOMAIN),
// else ErrNotFound.
func (r *Resolver) query(ctx context.Context, host string) ([]netip.Addr, uint32, error) {
	var tempErr error
	for _, name := range r.candidates(host) {
		addrs, ttl, err := r.queryName(ctx, name)
		if err == nil {
			return addrs, ttl, nil
		}
		if !errors.Is(err, ErrNotFound) && tempErr == nil {
			tempErr = err
		}
	}
	if tempErr != nil {
		return nil, 0, tempErr
	}
	return nil, 0, ErrNotFound
}

// result is one A or AAAA query's outcome.
type result struct {
	addrs []netip.Addr
	ttl   uint32
	err   error
}

// queryName asks for A and AAAA of one FQDN in parallel. Either family alone is a success; the
// TTL is the smaller of the two answers'.
func (r *Resolver) queryName(ctx context.Context, name string) ([]netip.Addr, uint32, error) {
	ch := make(chan result, 1)
	go func() { ch <- r.exchange(ctx, name, dns.TypeAAAA) }()
	a := r.exchange(ctx, name, dns.TypeA)
	aaaa := <-ch
	switch {
	case a.err == nil && aaaa.err == nil:
		return append(a.addrs, aaaa.addrs...), min(a.ttl, aaaa.ttl), nil
	case a.err == nil:
		return a.addrs, a.ttl, nil
	case aaaa.err == nil:
		return aaaa.addrs, aaaa.ttl, nil
	case !errors.Is(a.err, ErrNotFound):
		return nil, 0, a.err
	default:
		return nil, 0, aaaa.err
	}
}

// exchange sends one question to each server in turn until one answers authoritatively for our
// purpose (NOERROR or NXDOMAIN); SERVFAIL, REFUSED and network errors move on to the next server.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) result {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)
	var lastErr error
	for _, srv := range r.servers {
		resp, err := r.exchangeOne(ctx, m, srv)
		if err != nil {
			lastErr = fmt.Errorf("%s %s via %s: %w", dns.TypeToString[qtype], name, srv, err)
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			var res result
			first := true
			for _, rr := range resp.Answer {
				var addr netip.Addr
				switch rr := rr.(type) {
				case *dns.A:
					if qtype != dns.TypeA {
						continue
					}
					addr, _ = netip.AddrFromSlice(rr.A.To4())
				case *dns.AAAA:
					if qtype != dns.TypeAAAA {
						continue
					}
					addr, _ = netip.AddrFromSlice(rr.AAAA.To16())
				case *dns.CNAME:
					// The chain's TTL bounds the answer's too.
				default:
					continue
				}
				if ttl := rr.Header().Ttl; first || ttl < res.ttl {
					res.ttl, first = ttl, false
				}
				if addr.IsValid() && !slices.Contains(res.addrs, addr) {
					res.addrs = append(res.addrs, addr)
				}
			}
			if len(res.addrs) == 0 {
				res.err = ErrNotFound // NODATA
			}
			return res
		case dns.RcodeNameError:
			return result{err: ErrNotFound}
		default:
			lastErr = fmt.Errorf("%s %s via %s: server answered %s",
				dns.TypeToString[qtype], name, srv, rcodeName(resp.Rcode))
		}
	}
	return result{err: lastErr}
}

// exchangeOne asks one server over UDP and repeats the question over TCP when the answer is
// truncated.
func (r *Resolver) exchangeOne(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, _, err := r.udp.ExchangeContext(qctx, m, srv)
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if !resp.Truncated {
		return resp, nil
	}
	resp, _, err = r.tcp.ExchangeContext(qctx, m, srv)
	if err != nil {
		return nil, fmt.Errorf("tcp after truncated udp answer: %w", err)
	}
	return resp, nil
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rc)
}

// parseLiteral recognises IP literals ("10.0.0.1", "::1", "[::1]", "fe80::1%eth0") without
// calling netip.ParseAddr on ordinary hostnames, whose parse error would allocate.
func parseLiteral(host string) (netip.Addr, bool) {
	if len(host) == 0 {
		return netip.Addr{}, false
	}
	if host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	} else if !strings.Contains(host, ":") {
		for i := 0; i < len(host); i++ {
			if c := host[i]; c != '.' && (c < '0' || c > '9') {
				return netip.Addr{}, false
			}
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a, true
}

// isLocalhost reports whether host is "localhost" (any case, optional trailing dot).
func isLocalhost(host string) bool {
	return strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
}

// hostsTable is one parse of the hosts file; it is immutable once stored.
type hostsTable struct {
	names map[string]*entry // lowercase name without trailing dot
	mtime time.Time
	size  int64
	found bool
}

// fromHosts answers host from the hosts file or as localhost; nil means ask DNS.
func (r *Resolver) fromHosts(host string, now int64) *entry {
	if now-r.hostsCheck.Load() >= int64(r.hostsEvery) {
		r.reloadHosts(now)
	}
	t := r.hosts.Load()
	if e := t.names[host]; e != nil {
		return e
	}
	if needsFold(host) {
		if e := t.names[strings.TrimSuffix(strings.ToLower(host), ".")]; e != nil {
			return e
		}
	}
	if isLocalhost(host) {
		return r.localhost
	}
	return nil
}

// needsFold reports whether host differs from its hosts-table key (upper case or a trailing dot),
// so the common lowercase case needs no allocation.
func needsFold(host string) bool {
	if strings.HasSuffix(host, ".") {
		return true
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// reloadHosts re-reads the hosts file if its mtime or size changed. Only one goroutine checks at a
// time; the others keep using the current table.
func (r *Resolver) reloadHosts(now int64) {
	if !r.hostsReload.TryLock() {
		return
	}
	defer r.hostsReload.Unlock()
	r.hostsCheck.Store(now)
	cur := r.hosts.Load()
	fi, err := os.Stat(r.hostsPath)
	if err != nil {
		if cur.found {
			r.log.Warn("resolver: hosts file gone, ignoring it", "path", r.hostsPath, "error", err)
			r.hosts.Store(&hostsTable{})
		}
		return
	}
	if cur.found && fi.ModTime().Equal(cur.mtime) && fi.Size() == cur.size {
		return
	}
	data, err := os.ReadFile(r.hostsPath)
	if err != nil {
		r.log.Warn("resolver: reading hosts file", "path", r.hostsPath, "error", err)
		return
	}
	names := make(map[string]*entry)
	for name, addrs := range parseHosts(data) {
		names[name] = &entry{addrs: addrs, expires: 1<<63 - 1}
	}
	r.hosts.Store(&hostsTable{names: names, mtime: fi.ModTime(), size: fi.Size(), found: true})
}

// parseHosts reads hosts(5) text: an address followed by names, "#" starts a comment. Names are
// lowercased without a trailing dot; a name on several lines collects every address in file
// order. Lines with an unparsable address are skipped, as the C library does.
func parseHosts(data []byte) map[string][]netip.Addr {
	out := make(map[string][]netip.Addr)
	for line := range strings.Lines(string(data)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, name := range f[1:] {
			name = strings.TrimRight(strings.ToLower(name), ".")
			if name == "" {
				continue
			}
			if !slices.Contains(out[name], addr) {
				out[name] = append(out[name], addr)
			}
		}
	}
	return out
}
