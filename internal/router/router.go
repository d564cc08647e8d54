// Package router is the compiled HTTP route table of the data plane. It
// reproduces Apache APISIX's routers (apisix/http/router/*.lua on top of
// lua-resty-radixtree): radixtree_host_uri, radixtree_uri and
// radixtree_uri_with_parameter, with their precedence rules.
//
// Precedence, as in lua-resty-radixtree: routes whose pattern is an exact
// path equal to the request path come first (priority desc); then prefix
// patterns from the longest matching prefix to the shortest, and within one
// prefix by priority desc, then longer pattern, then insertion order. The
// first candidate whose other conditions (methods, remote_addrs, hosts, vars,
// parameter pattern) all pass wins. In radixtree_host_uri, routes with hosts
// live in per-host tables that are tried (exact host, then wildcard hosts by
// longest suffix) before the host-less routes.
//
// A Table is immutable after New and safe for concurrent Match calls. Match
// does not allocate when given a reused Params, and its cost depends on the
// request path and host, not on the number of routes: exact paths are a map
// lookup and prefixes are found in one walk along a radix trie.
package router

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/sluice-gw/sluice/internal/expr"
)

// Router kinds, the values of APISIX's apisix.router.http.
const (
	KindHostURI       = "radixtree_host_uri"
	KindURI           = "radixtree_uri"
	KindURIWithParams = "radixtree_uri_with_parameter"
)

// Route is one route as the router sees it. The snapshot builder fills it
// from the route resource (with the service's hosts merged in) and keeps its
// compiled form in Value.
type Route struct {
	// ID identifies the route in errors.
	ID string
	// URIs are path patterns: exact ("/a"), prefix ("/a/*", "/a*"), "*name"
	// segments captured into Params, and ":name" segments (parameter router
	// only; a literal ':' in the other kinds).
	URIs []string
	// Hosts are already merged with the service's hosts; "*.foo.com" and "*"
	// are suffix wildcards. Matching is case-insensitive.
	Hosts []string
	// Methods lists the allowed methods; empty allows any.
	Methods []string
	// RemoteAddrs lists client address ranges; empty allows any.
	RemoteAddrs []netip.Prefix
	// Vars is the compiled "vars" condition; nil always passes.
	Vars *expr.Expr
	// Priority orders routes sharing one exact path or one prefix.
	Priority int
	// Value is the opaque payload returned on match (the compiled route).
	Value any
}

// Request holds what a match needs from the request.
type Request struct {
	// Path is the normalised path without query (see NormalizePath).
	Path string
	// Host is the lowercased Host without port.
	Host string
	// RawHost is the Host header as sent (with port); route hosts containing
	// ':' are compared against it in the radixtree_uri kinds.
	RawHost string
	// Method is the request method.
	Method string
	// RemoteAddr is the client address.
	RemoteAddr netip.Addr
	// Vars resolves variables for routes' vars conditions; nil means none exist.
	Vars expr.Vars
}

// span locates a captured parameter inside the matched path.
type span struct{ start, end int }

// Params holds the result details of a match: captured ":name" and "*name"
// values and the matched pattern and host. Keep one per request context and
// reuse it: Match then does not allocate. A Params must not be shared by
// concurrent Match calls.
type Params struct {
	path    string
	names   []string
	spans   []span
	pattern string
	host    string
	nodes   []*tnode[[]*entry]
	hnodes  []*tnode[*uriTable]
}

func (p *Params) reset(path string) {
	p.path = path
	p.names = nil
	p.spans = p.spans[:0]
	p.pattern = ""
	p.host = ""
}

// Get returns the value captured for a ":name" or "*name" segment; an
// anonymous "*" is captured as ":ext". When a name repeats, the last wins.
func (p *Params) Get(name string) (string, bool) {
	for i := len(p.names) - 1; i >= 0; i-- {
		if p.names[i] == name {
			s := p.spans[i]
			return p.path[s.start:s.end], true
		}
	}
	return "", false
}

// Len returns the number of captured parameters.
func (p *Params) Len() int { return len(p.names) }

// At returns the i-th captured parameter, in pattern order; the engine uses
// it to expose uri_param_<name> variables.
func (p *Params) At(i int) (name, value string) {
	s := p.spans[i]
	return p.names[i], p.path[s.start:s.end]
}

// Pattern returns the URI pattern of the matched route (APISIX's
// curr_req_matched._path).
func (p *Params) Pattern() string { return p.pattern }

// Host returns the host pattern whose table matched in radixtree_host_uri
// (APISIX's curr_req_matched._host); empty otherwise.
func (p *Params) Host() string { return p.host }

// Table is a compiled route table.
type Table struct {
	kind       string
	uri        uriTable             // radixtree_uri kinds: every route; host_uri: host-less routes
	exactHosts map[string]*uriTable // host_uri only
	wildHosts  trie[*uriTable]      // host_uri only; keys are reversed suffixes
}

// uriTable is one URI tree: a map for exact paths and a radix trie of
// prefixes, each holding its candidates already in precedence order.
type uriTable struct {
	host   string // the host pattern of a host_uri bucket
	exact  map[string][]*entry
	prefix trie[[]*entry]
}

type hostCond struct {
	wild bool   // suffix match on host
	host string // without the leading '*'
	raw  bool   // contains ':': compare against RawHost
}

type tokKind uint8

const (
	tokLit tokKind = iota
	tokParam
	tokStar
)

type token struct {
	kind tokKind
	lit  string
	idx  int // capture index
}

// entry is one (route, URI pattern) pair placed in a uriTable. It is kept
// small (48 bytes) because a table holds one per route and URI: the
// conditions most routes do not have live behind x.
type entry struct {
	route    *Route
	pattern  string
	priority int
	seq      int32
	methods  uint16
	x        *entryExt // nil when the entry has none of its conditions
}

// entryExt holds an entry's less common conditions. Entries of one route
// share it when they need no pattern check of their own.
type entryExt struct {
	ras   []netip.Prefix
	hosts []hostCond // nil in host_uri host buckets: the bucket is the condition
	toks  []token    // nil when the pattern needs no parameter check
	names []string
}

var methodBits = map[string]uint16{
	"GET": 1 << 0, "POST": 1 << 1, "PUT": 1 << 2, "DELETE": 1 << 3, "PATCH": 1 << 4,
	"HEAD": 1 << 5, "OPTIONS": 1 << 6, "CONNECT": 1 << 7, "TRACE": 1 << 8, "PURGE": 1 << 9,
}

// methodBit maps a request method to its bit without a map lookup; methods
// outside APISIX's list get 0 and so fail any route that lists methods.
func methodBit(m string) uint16 {
	switch m {
	case "GET":
		return 1 << 0
	case "POST":
		return 1 << 1
	case "PUT":
		return 1 << 2
	case "DELETE":
		return 1 << 3
	case "PATCH":
		return 1 << 4
	case "HEAD":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	case "CONNECT":
		return 1 << 7
	case "TRACE":
		return 1 << 8
	case "PURGE":
		return 1 << 9
	}
	return 0
}

// New compiles routes into a table of the given kind. The slice order is the
// insertion order that breaks ties. Routes are referenced, not copied: they
// must not change afterwards.
func New(kind string, routes []Route) (*Table, error) {
	withParams := false
	switch kind {
	case KindHostURI, KindURI:
	case KindURIWithParams:
		withParams = true
	default:
		return nil, fmt.Errorf("unknown router kind %q", kind)
	}
	// Size the host-less exact-path map up front: grown step by step it
	// would leave garbage several times its final size at 10,000 routes.
	nexact := 0
	for i := range routes {
		if kind == KindHostURI && len(routes[i].Hosts) > 0 {
			continue
		}
		for _, uri := range routes[i].URIs {
			if !strings.ContainsAny(uri, "*:") {
				nexact++
			}
		}
	}
	t := &Table{kind: kind, uri: uriTable{exact: make(map[string][]*entry, nexact)}}
	if kind == KindHostURI {
		t.exactHosts = map[string]*uriTable{}
	}
	var seq int32
	for i := range routes {
		rt := &routes[i]
		if len(rt.URIs) == 0 {
			return nil, fmt.Errorf("route %s: no uris", rt.ID)
		}
		var mbits uint16
		for _, m := range rt.Methods {
			b, ok := methodBits[m]
			if !ok {
				return nil, fmt.Errorf("route %s: invalid method %q", rt.ID, m)
			}
			mbits |= b
		}
		var ras []netip.Prefix
		for j, pfx := range rt.RemoteAddrs {
			if !pfx.IsValid() {
				return nil, fmt.Errorf("route %s: invalid remote_addrs[%d]", rt.ID, j)
			}
			// Compare unmapped addresses so "::ffff:10.0.0.1" meets "10.0.0.0/8".
			if pfx.Addr().Is4In6() {
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0))
			}
			ras = append(ras, pfx.Masked())
		}
		var hosts []hostCond
		for _, h := range rt.Hosts {
			h = strings.ToLower(h)
			hc := hostCond{host: h}
			if strings.HasPrefix(h, "*") {
				hc.wild, hc.host = true, h[1:]
			}
			hc.raw = strings.IndexByte(hc.host, ':') >= 0
			hosts = append(hosts, hc)
		}
		// One allocation for the route's entries.
		es := make([]entry, len(rt.URIs))
		var shared *entryExt // conditions common to the route's entries
		if len(ras) > 0 || (kind != KindHostURI && len(hosts) > 0) {
			shared = &entryExt{ras: ras}
			if kind != KindHostURI {
				shared.hosts = hosts
			}
		}
		for j, uri := range rt.URIs {
			e := &es[j]
			*e = entry{route: rt, pattern: uri, priority: rt.Priority, seq: seq, methods: mbits, x: shared}
			seq++
			if kind == KindHostURI && len(hosts) > 0 {
				for _, hc := range hosts {
					ut := t.hostTable(hc)
					ut.add(e, withParams)
				}
				continue
			}
			t.uri.add(e, withParams)
		}
	}
	t.uri.sort()
	for _, ut := range t.exactHosts {
		ut.sort()
	}
	if t.wildHosts.root != nil {
		forEach(t.wildHosts.root, func(n *tnode[*uriTable]) { n.val.sort() })
	}
	return t, nil
}

func (t *Table) hostTable(hc hostCond) *uriTable {
	if !hc.wild {
		ut := t.exactHosts[hc.host]
		if ut == nil {
			ut = &uriTable{host: hc.host, exact: map[string][]*entry{}}
			t.exactHosts[hc.host] = ut
		}
		return ut
	}
	n := t.wildHosts.node(reverse(hc.host))
	if n.val == nil {
		n.val = &uriTable{host: "*" + hc.host, exact: map[string][]*entry{}}
	}
	return n.val
}

func forEach[T any](n *tnode[T], f func(*tnode[T])) {
	if n.has {
		f(n)
	}
	for _, c := range n.kids {
		forEach(c, f)
	}
}

// add places e in the exact map or under its prefix, following
// lua-resty-radixtree: with parameters enabled, a ':' anywhere ends the
// literal prefix; otherwise the first '*' does; a pattern with neither is an
// exact path.
func (u *uriTable) add(e *entry, withParams bool) {
	p := e.pattern
	cut := -1
	if withParams {
		cut = strings.IndexByte(p, ':')
	}
	if cut < 0 {
		cut = strings.IndexByte(p, '*')
	}
	if cut < 0 {
		u.exact[p] = append(u.exact[p], e)
		return
	}
	if e.x == nil || e.x.toks == nil {
		// Host buckets add the same entry to several tables: compile its
		// pattern once.
		if toks, names := compilePattern(p); toks != nil {
			x := &entryExt{toks: toks, names: names}
			if e.x != nil {
				x.ras, x.hosts = e.x.ras, e.x.hosts
			}
			e.x = x
		}
	}
	n := u.prefix.node(p[:cut])
	n.val = append(n.val, e)
}

func (u *uriTable) sort() {
	for _, list := range u.exact {
		sortEntries(list)
	}
	if u.prefix.root != nil {
		forEach(u.prefix.root, func(n *tnode[[]*entry]) { sortEntries(n.val) })
	}
}

func sortEntries(list []*entry) {
	if len(list) < 2 {
		return // nearly every exact path: skip the sort's allocations
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.priority != b.priority {
			return a.priority > b.priority
		}
		if len(a.pattern) != len(b.pattern) {
			return len(a.pattern) > len(b.pattern)
		}
		return a.seq < b.seq
	})
}

// compilePattern turns a prefix pattern into the full-path check that
// lua-resty-radixtree builds with a regex: the pattern is split on '/'
// (trailing empty parts dropped, a trailing '/' kept), a part starting with
// ':' becomes a non-empty segment capture ([^/]+) and a part starting with
// '*' a capture of anything, slashes included (named ":ext" when anonymous).
// The whole part is replaced, so "*.json" captures as ".json" and matches any
// tail, as in APISIX. It returns nil when there is nothing to capture: the
// prefix match alone decides. Unlike APISIX, literal parts after a capture are
// matched literally (APISIX pastes them into the regex unescaped).
func compilePattern(p string) ([]token, []string) {
	parts := strings.Split(p, "/")
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	var toks []token
	var names []string
	lit := func(s string) {
		if s == "" {
			return
		}
		if n := len(toks); n > 0 && toks[n-1].kind == tokLit {
			toks[n-1].lit += s
			return
		}
		toks = append(toks, token{kind: tokLit, lit: s})
	}
	for i, part := range parts {
		if i > 0 {
			lit("/")
		}
		switch {
		case strings.HasPrefix(part, ":"):
			toks = append(toks, token{kind: tokParam, idx: len(names)})
			names = append(names, part[1:])
		case strings.HasPrefix(part, "*"):
			name := part[1:]
			if name == "" {
				name = ":ext"
			}
			toks = append(toks, token{kind: tokStar, idx: len(names)})
			names = append(names, name)
		default:
			lit(part)
		}
	}
	if strings.HasSuffix(p, "/") {
		lit("/")
	}
	if len(names) == 0 {
		return nil, nil
	}
	return toks, names
}

// matchBudget caps the backtracking steps one pattern may spend on one path:
// several '*' captures backtrack polynomially in the path length, and the path
// is chosen by the client. Patterns with at most one capture never get close.
const matchBudget = 1 << 14

// matchToks finds the first match of toks at the start of s in the order a
// backtracking regex engine would (every capture greedy) and returns where it
// ends. Like APISIX, the caller then requires the match to cover the whole
// path rather than searching for another alignment. A match that exhausts
// budget fails.
func matchToks(toks []token, s string, pos int, caps []span, budget *int) (int, bool) {
	if len(toks) == 0 {
		return pos, true
	}
	if *budget--; *budget < 0 {
		return 0, false
	}
	t := &toks[0]
	switch t.kind {
	case tokLit:
		if strings.HasPrefix(s[pos:], t.lit) {
			return matchToks(toks[1:], s, pos+len(t.lit), caps, budget)
		}
	case tokParam:
		end := pos
		for end < len(s) && s[end] != '/' {
			end++
		}
		for e := end; e > pos; e-- {
			caps[t.idx] = span{pos, e}
			if r, ok := matchToks(toks[1:], s, e, caps, budget); ok {
				return r, true
			}
		}
	case tokStar:
		for e := len(s); e >= pos; e-- {
			caps[t.idx] = span{pos, e}
			if r, ok := matchToks(toks[1:], s, e, caps, budget); ok {
				return r, true
			}
		}
	}
	return 0, false
}

// Match returns the route for the request, or nil. p receives the captures
// and the matched pattern; pass a reused Params to avoid allocation (a nil p
// allocates a temporary one).
func (t *Table) Match(r *Request, p *Params) *Route {
	if p == nil {
		p = new(Params)
	}
	p.reset(r.Path)
	mbit := methodBit(r.Method)
	if t.exactHosts != nil {
		if ut := t.exactHosts[r.Host]; ut != nil {
			if e := ut.match(r, p, mbit); e != nil {
				p.host = ut.host
				return e.route
			}
		}
		if t.wildHosts.root != nil {
			p.hnodes = t.wildHosts.walkRev(r.Host, p.hnodes[:0])
			for i := len(p.hnodes) - 1; i >= 0; i-- {
				ut := p.hnodes[i].val
				if e := ut.match(r, p, mbit); e != nil {
					p.host = ut.host
					return e.route
				}
			}
		}
	}
	if e := t.uri.match(r, p, mbit); e != nil {
		return e.route
	}
	return nil
}

func (u *uriTable) match(r *Request, p *Params, mbit uint16) *entry {
	if list, ok := u.exact[r.Path]; ok {
		for _, e := range list {
			if e.conds(r, mbit) && e.route.Vars.Eval(r.Vars) {
				p.pattern = e.pattern
				return e
			}
		}
	}
	if u.prefix.root == nil {
		return nil
	}
	p.nodes = u.prefix.walk(r.Path, p.nodes[:0])
	for i := len(p.nodes) - 1; i >= 0; i-- {
		for _, e := range p.nodes[i].val {
			if !e.conds(r, mbit) {
				continue
			}
			var x *entryExt
			if e.x != nil && e.x.toks != nil {
				x = e.x
				if cap(p.spans) < len(x.names) {
					p.spans = make([]span, len(x.names))
				}
				p.spans = p.spans[:len(x.names)]
				budget := matchBudget
				end, ok := matchToks(x.toks, r.Path, 0, p.spans, &budget)
				if !ok || end != len(r.Path) {
					continue
				}
			}
			if !e.route.Vars.Eval(r.Vars) {
				continue
			}
			p.pattern = e.pattern
			if x != nil {
				p.names = x.names
			} else {
				p.spans = p.spans[:0]
			}
			return e
		}
	}
	p.spans = p.spans[:0]
	return nil
}

// conds checks methods, remote_addrs and (radixtree_uri kinds) hosts; vars
// are checked by the caller last, as they cost the most.
func (e *entry) conds(r *Request, mbit uint16) bool {
	if e.methods != 0 && e.methods&mbit == 0 {
		return false
	}
	x := e.x
	if x == nil {
		return true
	}
	if ras := x.ras; len(ras) > 0 {
		a := r.RemoteAddr.Unmap()
		ok := false
		for _, pfx := range ras {
			if pfx.Contains(a) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if x.hosts != nil && !hostOK(x.hosts, r) {
		return false
	}
	return true
}

func hostOK(hosts []hostCond, r *Request) bool {
	for i := range hosts {
		h := &hosts[i]
		target := r.Host
		if h.raw && r.RawHost != "" {
			target = r.RawHost
		}
		if h.wild {
			if len(target) >= len(h.host) && strings.EqualFold(target[len(target)-len(h.host):], h.host) {
				return true
			}
		} else if strings.EqualFold(target, h.host) {
			return true
		}
	}
	return false
}
