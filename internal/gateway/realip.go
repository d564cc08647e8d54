package gateway

import (
	"net/netip"
	"net/textproto"
	"strings"

	"github.com/sluice-gw/sluice/internal/engine"
)

// realIP reproduces nginx's realip module as APISIX ships it
// (real_ip_header X-Real-IP; real_ip_from 127.0.0.1): a trusted peer may
// name the client address in a header, and that address is the client's
// for routing (remote_addrs), plugins and X-Real-IP/X-Forwarded-For.
type realIP struct {
	header    string
	from      []netip.Prefix
	recursive bool
}

func newRealIP(header string, from []string, recursive string) *realIP {
	// Canonical once here, so Header.Get does not allocate per request.
	r := &realIP{header: textproto.CanonicalMIMEHeaderKey(header), recursive: recursive == "on"}
	for _, f := range from {
		if strings.HasPrefix(f, "unix:") {
			continue // no unix-socket listeners
		}
		if p, err := parsePrefix(f); err == nil {
			r.from = append(r.from, p)
		}
	}
	if r.header == "" || len(r.from) == 0 {
		return nil
	}
	return r
}

func (r *realIP) trusted(a netip.Addr) bool {
	for _, p := range r.from {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// apply replaces c.RemoteAddr when the peer is trusted and the header
// names a valid address.
func (r *realIP) apply(c *engine.Ctx) {
	if r == nil {
		return
	}
	peer := c.RemoteAddr.Addr().Unmap()
	if !r.trusted(peer) {
		return
	}
	vv := c.Header[r.header] // canonical already: no Get
	if len(vv) == 0 || vv[0] == "" {
		return
	}
	v := vv[0]
	parts := strings.Split(v, ",")
	pick := strings.TrimSpace(parts[len(parts)-1])
	if r.recursive {
		// The rightmost address that is not itself trusted.
		for i := len(parts) - 1; i >= 0; i-- {
			pick = strings.TrimSpace(parts[i])
			a, err := netip.ParseAddr(pick)
			if err != nil || !r.trusted(a.Unmap()) {
				break
			}
		}
	}
	a, err := netip.ParseAddr(pick)
	if err != nil {
		return
	}
	c.SetRemoteAddr(netip.AddrPortFrom(a.Unmap(), c.RemoteAddr.Port()))
}
