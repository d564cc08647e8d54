package iprestriction

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Matcher tests addresses against a fixed list of IPs and CIDRs, both
// families. It is built once per conf and read concurrently without locks.
//
// Prefixes are grouped by length, each group a set of masked prefixes, so a
// lookup costs one map probe per distinct prefix length in the list rather
// than one comparison per entry, and never allocates.
type Matcher struct {
	groups []group
}

type group struct {
	bits int
	v6   bool
	set  map[netip.Prefix]struct{}
}

// errInvalid is wrapped by ParseAddrOrCIDR; callers report APISIX's own
// message ("invalid ip address: <x>").
var errInvalid = errors.New("invalid ip address")

// ParseAddrOrCIDR parses an IP ("10.0.0.1", "::1") or a CIDR
// ("10.0.0.0/8", "fe80::/10") as APISIX's core.ip.validate_cidr_or_ip
// accepts it: the mask is a decimal number of at most 32 (IPv4) or 128
// (IPv6) bits; host bits may be set and are masked off. Zoned IPv6
// addresses are rejected. IPv4-mapped IPv6 entries (::ffff:a.b.c.d, with a
// mask of at least 96) become plain IPv4 prefixes, because client
// addresses are unmapped before they are matched.
func ParseAddrOrCIDR(s string) (netip.Prefix, error) {
	addrPart, maskPart, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errInvalid
	}
	bits := a.BitLen()
	if hasMask {
		n, err := strconv.Atoi(maskPart)
		if err != nil || n < 0 || n > a.BitLen() || maskPart == "" || maskPart[0] == '+' || maskPart[0] == '-' {
			return netip.Prefix{}, errInvalid
		}
		bits = n
	}
	if a.Is4In6() {
		if bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, errInvalid
	}
	return p, nil
}

// NewMatcher builds a Matcher from IP/CIDR strings. The error names the
// first bad entry in APISIX's words: "invalid ip address: <entry>".
func NewMatcher(list []string) (*Matcher, error) {
	m := &Matcher{}
	for _, s := range list {
		p, err := ParseAddrOrCIDR(s)
		if err != nil {
			return nil, errors.New("invalid ip address: " + s)
		}
		m.add(p)
	}
	return m, nil
}

func (m *Matcher) add(p netip.Prefix) {
	v6 := p.Addr().Is6()
	for i := range m.groups {
		if g := &m.groups[i]; g.bits == p.Bits() && g.v6 == v6 {
			g.set[p] = struct{}{}
			return
		}
	}
	m.groups = append(m.groups, group{bits: p.Bits(), v6: v6, set: map[netip.Prefix]struct{}{p: {}}})
}

// Match reports whether a is inside any listed prefix. IPv4-mapped IPv6
// addresses are matched as IPv4; an invalid address matches nothing.
func (m *Matcher) Match(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	v6 := a.Is6()
	for i := range m.groups {
		g := &m.groups[i]
		if g.v6 != v6 {
			continue
		}
		p, err := a.Prefix(g.bits)
		if err != nil {
			continue
		}
		if _, ok := g.set[p]; ok {
			return true
		}
	}
	return false
}

// MatchString parses s (a textual IP such as $remote_addr) and matches it;
// ok is false when s is not an IP address.
func (m *Matcher) MatchString(s string) (match, ok bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false, false
	}
	return m.Match(a), true
}
