// Package balancer picks upstream nodes for the data plane with APISIX's
// algorithms (roundrobin, chash, least_conn, ewma), node priorities, retries
// over untried nodes and health-check exclusion, and runs the active and
// passive health checkers that feed it.
//
// A Balancer is built once per upstream configuration and shared by every
// request. Picks take no mutex: the node set visible to a pick is an
// immutable view swapped atomically when node health changes, and per-node
// counters (active connections, latency averages) are atomics.
package balancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Balancer type names as they appear in an upstream's "type" field.
const (
	TypeRoundRobin = "roundrobin"
	TypeCHash      = "chash"
	TypeLeastConn  = "least_conn"
	TypeEWMA       = "ewma"
)

// ErrUnknownType is returned by New for a balancer type APISIX does not ship.
// The Admin API accepts any string, so this surfaces at build time, where the
// caller can disable just the affected upstream.
var ErrUnknownType = errors.New("unknown balancer type")

// Node is one upstream server.
type Node struct {
	Host     string
	Port     int
	Weight   int
	Priority int
	// Addr is "host:port" (IPv6 hosts in brackets). New fills it from Host
	// and Port when empty; it is the identity used by health checks and Tried.
	Addr string
	// Named: Host is a name to resolve, not an IP address (New sets it).
	Named bool
}

// DialAddr is the address to dial for n: for a named host, the address
// resolve gives (TTL cache, hosts file...) with n's port; otherwise, or
// without resolve, Addr. When resolve fails it returns Addr (the dialer's
// own lookup gets its chance) and the error, for the caller to log.
func (n *Node) DialAddr(ctx context.Context, resolve func(context.Context, string) (netip.Addr, error)) (string, error) {
	if resolve == nil || !n.Named {
		return n.Addr, nil
	}
	ip, err := resolve(ctx, n.Host)
	if err != nil {
		return n.Addr, err
	}
	return netip.AddrPortFrom(ip, uint16(n.Port)).String(), nil
}

// Config is the part of an upstream that drives node selection.
type Config struct {
	// Type is roundrobin (the default when empty), chash, least_conn or ewma.
	Type string
	// HashOn and Key describe where the chash key comes from. The caller
	// resolves the key per request and passes it to Pick; they are kept here
	// so the wiring code can read them back from the Balancer.
	HashOn string
	Key    string
	Nodes  []Node
}

// HealthView tells the balancer which nodes a health checker considers
// usable. Healthy must be safe for concurrent use and cheap.
type HealthView interface {
	Healthy(addr string) bool
}

// VersionedHealthView is a HealthView whose verdicts only change when
// HealthVersion changes. The balancer then re-reads node health only after a
// version bump instead of on every pick. *Checker implements it.
type VersionedHealthView interface {
	HealthView
	HealthVersion() uint64
}

type kind uint8

const (
	kindRoundRobin kind = iota
	kindCHash
	kindLeastConn
	kindEWMA
)

// ewmaDecay is APISIX's DECAY_TIME: how fast an old latency sample fades.
const ewmaDecay = 10 * time.Second

// ewmaFailurePenalty is the latency charged for a failed attempt, so a node
// that refuses connections quickly does not look like the fastest node.
const ewmaFailurePenalty = time.Second

// nodeState is a node plus the mutable per-node balancing state. Node must be
// the first field: Done maps a *Node handed out by Pick back to its state by
// address arithmetic over the nodes slice.
type nodeState struct {
	Node
	// active counts in-flight requests for least_conn.
	active atomic.Int64
	// ewma packs the latency average (float32 seconds, high half) and the
	// time of the last sample (milliseconds since Balancer.base, low half)
	// so both change in a single compare-and-swap.
	ewma atomic.Uint64
}

// Balancer picks nodes for one upstream. It is goroutine-safe.
type Balancer struct {
	kind   kind
	hashOn string
	key    string
	nodes  []nodeState
	base   time.Time

	health atomic.Pointer[healthRef]
	view   atomic.Pointer[view]
}

// healthRef boxes the HealthView so it can sit behind an atomic pointer and so
// views can tell which HealthView they were built for.
type healthRef struct {
	hv  HealthView
	ver VersionedHealthView // nil when hv has no version
}

// view is the immutable node selection structure for one health state.
type view struct {
	ref     *healthRef
	ver     uint64
	healthy []bool // per node, nil when built without a HealthView
	groups  []*group
}

// group holds the usable nodes of one priority level.
type group struct {
	priority int
	members  []int32 // indexes into Balancer.nodes, config order
	rr       rrPlan
	ring     []ringPoint
	next     atomic.Uint64 // roundrobin position
}

// New builds a Balancer. It fails on an unknown type or an invalid node.
func New(cfg Config) (*Balancer, error) {
	b := &Balancer{hashOn: cfg.HashOn, key: cfg.Key, base: time.Now()}
	switch cfg.Type {
	case "", TypeRoundRobin:
		b.kind = kindRoundRobin
	case TypeCHash:
		b.kind = kindCHash
	case TypeLeastConn:
		b.kind = kindLeastConn
	case TypeEWMA:
		b.kind = kindEWMA
	default:
		return nil, fmt.Errorf("balancer: %q: %w", cfg.Type, ErrUnknownType)
	}
	b.nodes = make([]nodeState, len(cfg.Nodes))
	for i, n := range cfg.Nodes {
		if n.Weight < 0 {
			return nil, fmt.Errorf("balancer: node %d: negative weight %d", i, n.Weight)
		}
		if n.Addr == "" {
			if n.Host == "" {
				return nil, fmt.Errorf("balancer: node %d: empty host", i)
			}
			n.Addr = joinHostPort(n.Host, n.Port)
		}
		_, err := netip.ParseAddr(n.Host)
		n.Named = err != nil
		b.nodes[i].Node = n
	}
	b.view.Store(b.buildView(nil, 0, nil))
	return b, nil
}

// joinHostPort formats an address, accepting IPv6 hosts with or without
// brackets.
func joinHostPort(host string, port int) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Type returns the balancer type name.
func (b *Balancer) Type() string {
	switch b.kind {
	case kindCHash:
		return TypeCHash
	case kindLeastConn:
		return TypeLeastConn
	case kindEWMA:
		return TypeEWMA
	}
	return TypeRoundRobin
}

// HashOn returns the configured chash key source (vars, header, cookie,
// consumer, vars_combinations).
func (b *Balancer) HashOn() string { return b.hashOn }

// Key returns the configured chash key.
func (b *Balancer) Key() string { return b.key }

// Nodes returns the configured nodes. The slice is freshly allocated; the
// pointers Pick returns are not into it.
func (b *Balancer) Nodes() []Node {
	out := make([]Node, len(b.nodes))
	for i := range b.nodes {
		out[i] = b.nodes[i].Node
	}
	return out
}

// SetHealth attaches a health view; nil detaches it. Unhealthy nodes are
// skipped, unless no node with a positive weight is healthy, in which case all
// nodes are used as if no checker existed (APISIX's rule).
func (b *Balancer) SetHealth(h HealthView) {
	if h == nil {
		b.health.Store(nil)
		return
	}
	ref := &healthRef{hv: h}
	if v, ok := h.(VersionedHealthView); ok {
		ref.ver = v
	}
	b.health.Store(ref)
}

// Pick chooses a node for a request. tried holds the nodes this request has
// already attempted (nil for none); they are not picked again. hashKey is the
// chash key resolved by the caller (ignored by other types).
//
// Nodes are grouped by priority; the highest group is used and a lower one
// only when every node of the higher groups is tried or unhealthy. Moving
// down a level is final for the request and clears tried (see Tried). Weight-0
// nodes are never picked. An upstream with a single node skips the balancer
// entirely, as in APISIX: that node is returned even when tried or unhealthy,
// so an explicit retries count retries it. Pick returns nil when no node is
// available.
func (b *Balancer) Pick(tried *Tried, hashKey string) *Node {
	if len(b.nodes) == 1 {
		s := &b.nodes[0]
		if s.Weight <= 0 {
			return nil
		}
		if b.kind == kindLeastConn {
			s.active.Add(1)
		}
		return &s.Node
	}
	v := b.currentView()
	for _, g := range v.groups {
		if tried.skips(g.priority) {
			continue
		}
		var i int
		switch b.kind {
		case kindCHash:
			i = b.pickCHash(g, tried, hashKey)
		case kindLeastConn:
			i = b.pickLeastConn(g, tried)
		case kindEWMA:
			i = b.pickEWMA(g, tried)
		default:
			i = b.pickRoundRobin(g, tried)
		}
		if i >= 0 {
			return &b.nodes[i].Node
		}
		tried.exhaust(g.priority)
	}
	return nil
}

// Done reports the outcome of an attempt on a node returned by Pick: it
// releases the least_conn slot and feeds the ewma latency average. failed
// means the attempt did not produce a response (connection error, timeout);
// such attempts are charged at least ewmaFailurePenalty. Call Done once per
// Pick, including for attempts that are retried.
func (b *Balancer) Done(n *Node, latency time.Duration, failed bool) {
	s := b.state(n)
	if s == nil {
		return
	}
	switch b.kind {
	case kindLeastConn:
		for {
			a := s.active.Load()
			if a <= 0 || s.active.CompareAndSwap(a, a-1) {
				return
			}
		}
	case kindEWMA:
		if failed && latency < ewmaFailurePenalty {
			latency = ewmaFailurePenalty
		}
		b.observe(s, latency)
	}
}

// state maps a node handed out by Pick back to its state without a map
// lookup. Pointers that did not come from this Balancer yield nil.
func (b *Balancer) state(n *Node) *nodeState {
	if n == nil || len(b.nodes) == 0 {
		return nil
	}
	base := uintptr(unsafe.Pointer(&b.nodes[0]))
	p := uintptr(unsafe.Pointer(n))
	if p < base {
		return nil
	}
	i := (p - base) / unsafe.Sizeof(b.nodes[0])
	if i >= uintptr(len(b.nodes)) || &b.nodes[i].Node != n {
		return nil
	}
	return &b.nodes[i]
}

// currentView returns the view matching the attached health view, rebuilding
// it when node health changed. The common path is two atomic loads (plus a
// version load with a versioned view) and no allocation.
func (b *Balancer) currentView() *view {
	v := b.view.Load()
	ref := b.health.Load()
	if ref == nil {
		if v.ref == nil {
			return v
		}
		nv := b.buildView(nil, 0, nil)
		b.view.CompareAndSwap(v, nv)
		return nv
	}
	var ver uint64
	if ref.ver != nil {
		ver = ref.ver.HealthVersion()
		if v.ref == ref && v.ver == ver {
			return v
		}
	}
	if v.ref == ref && b.sameHealth(ref.hv, v.healthy) {
		if v.ver == ver {
			return v
		}
		// Same verdicts under a new version: keep the groups (and with them
		// the roundrobin position) and only record the version.
		nv := &view{ref: ref, ver: ver, healthy: v.healthy, groups: v.groups}
		b.view.CompareAndSwap(v, nv)
		return nv
	}
	healthy := make([]bool, len(b.nodes))
	for i := range b.nodes {
		healthy[i] = ref.hv.Healthy(b.nodes[i].Addr)
	}
	nv := b.buildView(ref, ver, healthy)
	b.view.CompareAndSwap(v, nv)
	return nv
}

func (b *Balancer) sameHealth(hv HealthView, healthy []bool) bool {
	if len(healthy) != len(b.nodes) {
		return false
	}
	for i := range b.nodes {
		if hv.Healthy(b.nodes[i].Addr) != healthy[i] {
			return false
		}
	}
	return true
}

// buildView groups the usable nodes by priority and precomputes the per-group
// pick structures.
func (b *Balancer) buildView(ref *healthRef, ver uint64, healthy []bool) *view {
	v := &view{ref: ref, ver: ver, healthy: healthy}
	anyHealthy := false
	if healthy != nil {
		for i := range b.nodes {
			if b.nodes[i].Weight > 0 && healthy[i] {
				anyHealthy = true
				break
			}
		}
	}
	usable := func(i int) bool {
		if b.nodes[i].Weight <= 0 {
			return false
		}
		return healthy == nil || !anyHealthy || healthy[i]
	}
	for i := range b.nodes {
		if !usable(i) {
			continue
		}
		p := b.nodes[i].Priority
		idx := slices.IndexFunc(v.groups, func(g *group) bool { return g.priority == p })
		if idx < 0 {
			v.groups = append(v.groups, &group{priority: p})
			idx = len(v.groups) - 1
		}
		v.groups[idx].members = append(v.groups[idx].members, int32(i))
	}
	slices.SortStableFunc(v.groups, func(x, y *group) int { return cmp.Compare(y.priority, x.priority) })
	for _, g := range v.groups {
		switch b.kind {
		case kindRoundRobin:
			g.rr = b.newRRPlan(g.members)
		case kindCHash:
			g.ring = b.newRing(g.members)
		}
	}
	return v
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pickLeastConn returns the untried member with the lowest
// (active+1)/weight, the first in config order on ties, and takes a slot.
func (b *Balancer) pickLeastConn(g *group, tried *Tried) int {
	best, bestA, bestW := -1, int64(0), int64(0)
	for _, m := range g.members {
		s := &b.nodes[m]
		if tried.Has(&s.Node) {
			continue
		}
		a := max(s.active.Load(), 0)
		w := int64(s.Weight)
		// (1+a)/w < (1+bestA)/bestW, cross-multiplied to stay in integers.
		if best < 0 || (1+a)*bestW < (1+bestA)*w {
			best, bestA, bestW = int(m), a, w
		}
	}
	if best >= 0 {
		b.nodes[best].active.Add(1)
	}
	return best
}

// TracksLatency reports whether Done uses its latency argument (EWMA
// only), so callers can skip reading the clock for the other balancers.
func (b *Balancer) TracksLatency() bool { return b.kind == kindEWMA }
