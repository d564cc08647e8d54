// Package stream is Sluice's L4 proxy: APISIX's stream_routes served on
// the apisix.stream_proxy TCP and UDP listeners. A connection is matched
// once, when it arrives, against the route table of the snapshot current
// at that moment (APISIX's ip_port router); the upstream is picked with
// the shared balancer and bytes are copied both ways until either side is
// done. Configuration changes apply to new connections only; connections
// already proxied keep their upstream.
package stream

import (
	"crypto/tls"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/balancer"
)

// Route is one compiled stream_route. The zero value of each condition
// matches everything, as an absent field does in APISIX.
type Route struct {
	// ID is the stream_route id, for logs.
	ID string
	// ServerAddr is the local address the client connected to; the zero
	// Addr matches any. (APISIX compares server_addr as a string: an
	// IPv4-mapped IPv6 address is unmapped before comparing here.)
	ServerAddr netip.Addr
	// ServerPort is the local port the client connected to; 0 matches
	// any.
	ServerPort int
	// RemoteAddr is the client IP or CIDR; the zero Prefix matches any.
	RemoteAddr netip.Prefix
	// SNI is the TLS server name the route needs, lowercased; "*.x.com"
	// matches any name ending in ".x.com". Routes with an SNI only match
	// connections on TLS listeners.
	SNI string
	// Upstream is where matched connections go. Nil means the route's
	// upstream (or service) is missing: the connection is closed, as
	// APISIX's preread phase does with ngx.exit(1).
	Upstream *Upstream
}

// Upstream is the part of a compiled upstream the proxy needs. The
// gateway builds it from the same runtime as the HTTP data plane, so the
// balancer state (least_conn counts, ewma) and active health checks are
// shared with HTTP routes that use the same upstream.
type Upstream struct {
	// Balancer picks nodes.
	Balancer *balancer.Balancer
	// Checker receives passive reports (connect failures and timeouts);
	// nil without active health checks.
	Checker *balancer.Checker
	// ConnectTimeout bounds each connection attempt (upstream
	// timeout.connect); 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes a session after this long without a byte in
	// either direction: nginx's proxy_timeout, which APISIX sets to
	// max(timeout.send, timeout.read); 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Retries is how many other nodes are tried after a failed connect.
	Retries int
	// RetryTimeout, when positive, stops retrying once this long has
	// passed since the first attempt (upstream retry_timeout).
	RetryTimeout time.Duration
	// TLS, when set, makes the proxy speak TLS to the nodes (upstream
	// scheme "tls").
	TLS *tls.Config
}

// Defaults of nginx's stream proxy module, which APISIX's stream server
// block leaves as they are.
const (
	// DefaultConnectTimeout is proxy_connect_timeout.
	DefaultConnectTimeout = 60 * time.Second
	// DefaultIdleTimeout is proxy_timeout.
	DefaultIdleTimeout = 10 * time.Minute
)

// Table is an immutable set of routes in match order. A nil *Table
// matches nothing.
type Table struct {
	exact map[string][]*Route // by SNI
	wild  []sniGroup          // "*.x.com" routes, longest suffix first
	other []*Route            // routes without SNI, in order
	all   []*Route
}

// sniGroup is the routes of one wildcard SNI.
type sniGroup struct {
	suffix string // ".x.com" for "*.x.com"
	routes []*Route
}

// NewTable compiles routes; their order is the match order among routes
// with the same SNI (APISIX iterates stream_routes in the order it loaded
// them, which for etcd and Sluice's store is id order, so callers sort by
// id). The routes are referenced, not copied.
func NewTable(routes []*Route) *Table {
	t := &Table{exact: map[string][]*Route{}, all: routes}
	wild := map[string]int{}
	for _, r := range routes {
		sni := strings.ToLower(r.SNI)
		switch {
		case sni == "":
			t.other = append(t.other, r)
		case strings.HasPrefix(sni, "*"):
			suf := sni[1:]
			i, ok := wild[suf]
			if !ok {
				i = len(t.wild)
				wild[suf] = i
				t.wild = append(t.wild, sniGroup{suffix: suf})
			}
			t.wild[i].routes = append(t.wild[i].routes, r)
		default:
			t.exact[sni] = append(t.exact[sni], r)
		}
	}
	// The radixtree APISIX builds over reversed SNIs tries the exact name
	// first, then the longest matching prefix of the reversed name.
	sort.SliceStable(t.wild, func(i, j int) bool { return len(t.wild[i].suffix) > len(t.wild[j].suffix) })
	return t
}

// Len is the number of routes.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.all)
}

// Routes returns the routes in the order NewTable got them; the slice
// must not be modified.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return t.all
}

// Match returns the route for a connection: local is the address the
// client connected to, remote the client's IP and sni the TLS server name
// ("" on plain listeners). Routes with an SNI are tried first (exact name,
// then wildcards, longest first), then the routes without one, each group
// in table order; the first whose addresses match wins. Nil means no
// route: the connection is to be closed.
func (t *Table) Match(local netip.AddrPort, remote netip.Addr, sni string) *Route {
	if t == nil {
		return nil
	}
	laddr, lport, raddr := local.Addr().Unmap(), int(local.Port()), remote.Unmap()
	if sni != "" && (len(t.exact) > 0 || len(t.wild) > 0) {
		sni = lowerASCII(sni)
		if r := matchAddrs(t.exact[sni], laddr, lport, raddr); r != nil {
			return r
		}
		for i := range t.wild {
			if strings.HasSuffix(sni, t.wild[i].suffix) {
				if r := matchAddrs(t.wild[i].routes, laddr, lport, raddr); r != nil {
					return r
				}
			}
		}
	}
	return matchAddrs(t.other, laddr, lport, raddr)
}

// matchAddrs is APISIX's match_addrs over a list: the first route whose
// remote_addr, server_addr and server_port all match.
func matchAddrs(rs []*Route, laddr netip.Addr, lport int, raddr netip.Addr) *Route {
	for _, r := range rs {
		if r.RemoteAddr.IsValid() && !r.RemoteAddr.Contains(raddr) {
			continue
		}
		if r.ServerAddr.IsValid() && r.ServerAddr != laddr {
			continue
		}
		if r.ServerPort != 0 && r.ServerPort != lport {
			continue
		}
		return r
	}
	return nil
}

// lowerASCII lowercases s, allocating only when it has upper-case letters.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
