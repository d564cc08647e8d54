// Package realip implements APISIX's real-ip plugin: when the request comes
// from a trusted proxy, it takes the client address from a header or
// argument (X-Forwarded-For, X-Real-IP, ...) and makes it the request's
// client address for everything that follows: $remote_addr and
// $remote_port, ip-restriction, limit keys, logs and the X-Real-IP /
// X-Forwarded-For the upstream receives.
//
// Unlike APISIX, where a conf without trusted_addresses believes every
// peer, Sluice believes none: a header any client can send is not a client
// address unless it came from a listed proxy. Trusting everyone must be
// spelled out (["0.0.0.0/0", "::/0"]).
package realip

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/plugin"
	iprestriction "github.com/sluice-gw/sluice/internal/plugins/ip-restriction"
)

// Name is the plugin name used in configs.
const Name = "real-ip"

// Priority is APISIX's priority for real-ip: first in rewrite.
const Priority = 23000

// schema transcribes apisix/plugins/real-ip.lua.
const schema = `{
 "type":"object",
 "properties":{
  "trusted_addresses":` + iprestriction.IPListSchema + `,
  "source":{"type":"string","minLength":1},
  "recursive":{"type":"boolean","default":false}
 },
 "required":["source"]
}`

// Config is the route-side conf.
type Config struct {
	// TrustedAddresses lists the peers (IPs/CIDRs) whose source is
	// believed. Empty: nobody (APISIX: everybody).
	TrustedAddresses []string `json:"trusted_addresses,omitempty"`
	// Source is the variable holding the address: http_x_forwarded_for,
	// http_x_real_ip, arg_realip, ...
	Source string `json:"source"`
	// Recursive walks X-Forwarded-For from the right, skipping trusted
	// proxies, instead of taking its last entry.
	Recursive bool `json:"recursive"`
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: Priority,
		Schema:   json.RawMessage(schema),
		New:      New,
	}
}

// Plugin is a built real-ip instance.
type Plugin struct {
	trusted   *iprestriction.Matcher // nil: nobody is trusted
	source    string
	xff       bool
	recursive bool
}

// New decodes conf and parses trusted_addresses once.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	var c Config
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("decode conf: %w", err)
	}
	p := &Plugin{source: c.Source, xff: c.Source == "http_x_forwarded_for", recursive: c.Recursive}
	if len(c.TrustedAddresses) > 0 {
		m, err := iprestriction.NewMatcher(c.TrustedAddresses)
		if err != nil {
			return nil, err
		}
		p.trusted = m
	}
	return p, nil
}

// Rewrite replaces the client address when the peer is trusted and the
// source holds a valid ip[:port]; anything else leaves it unchanged.
func (p *Plugin) Rewrite(r *plugin.Request) {
	if p.trusted == nil {
		return
	}
	// The peer is read from RemoteAddr, not $remote_addr: formatting the
	// var would cache the peer's text in the Ctx, and the proxy would then
	// send it as X-Real-IP after the address changed.
	if !r.RemoteAddr.IsValid() || !p.trusted.Match(r.RemoteAddr.Addr()) {
		return
	}
	var v string
	var found bool
	if p.xff {
		v, found = p.fromXFF(r)
	} else {
		v, found = r.Var(p.source)
	}
	if !found {
		return
	}
	ap, ok := ParseAddr(v)
	if !ok {
		return
	}
	if _, set := r.Var("realip_remote_addr"); !set {
		// nginx's realip module keeps the peer in $realip_remote_addr.
		r.SetVar("realip_remote_addr", r.RemoteAddr.Addr().Unmap().String())
		r.SetVar("realip_remote_port", strconv.Itoa(int(r.RemoteAddr.Port())))
	}
	// The engine's RemoteAddr is what the proxy derives X-Real-IP and
	// X-Forwarded-For from; SetRemoteAddr also drops the cached text, and
	// the vars shadow the built-ins, so every reader sees the new address.
	r.SetRemoteAddr(ap)
	r.SetVar("remote_addr", ap.Addr().String())
	if ap.Port() != 0 {
		r.SetVar("remote_port", strconv.Itoa(int(ap.Port())))
	} else {
		r.SetVar("remote_port", "")
	}
}

// fromXFF picks the client entry of X-Forwarded-For: the right-most one, or
// with recursive the right-most one that is not a trusted proxy (the
// left-most if all are). Repeated header lines count as one list, in order.
func (p *Plugin) fromXFF(r *plugin.Request) (string, bool) {
	vv := r.Header["X-Forwarded-For"]
	if len(vv) == 0 {
		return "", false
	}
	for i := len(vv) - 1; i >= 0; i-- {
		line := vv[i]
		for {
			j := strings.LastIndexByte(line, ',')
			entry := strings.TrimSpace(line[j+1:])
			if !p.recursive {
				return entry, true
			}
			if i == 0 && j < 0 {
				return entry, true // the left-most entry
			}
			if trusted, _ := p.trusted.MatchString(entry); !trusted {
				return entry, true
			}
			if j < 0 {
				break
			}
			line = line[:j]
		}
	}
	return "", false
}

// ParseAddr parses an address the way real-ip accepts it: "1.2.3.4",
// "1.2.3.4:80", "::1", "[::1]" or "[::1]:80". Only dotted-decimal IPv4
// without leading zeros and textual IPv6 without a zone are accepted
// (inet_pton's rules); decimal ("2130706433"), octal and hex forms, host
// names, a port outside 1..65535 and trailing garbage are rejected, so the
// client address stays the socket peer.
func ParseAddr(s string) (netip.AddrPort, bool) {
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.AddrPort{}, false
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return netip.AddrPort{}, false
			}
			port = rest[1:]
			if port == "" {
				return netip.AddrPort{}, false
			}
		}
		if !strings.Contains(host, ":") {
			return netip.AddrPort{}, false // [1.2.3.4] is not an address
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return netip.AddrPort{}, false
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	isV4 := a.Is4()
	// ::ffff:1.2.3.4 is 1.2.3.4, as the engine reports mapped peers.
	a = a.Unmap()
	if port != "" && !isV4 && !strings.HasPrefix(s, "[") {
		return netip.AddrPort{}, false
	}
	var n uint64
	if port != "" {
		n, err = strconv.ParseUint(port, 10, 16)
		if err != nil || n < 1 || port[0] == '+' {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(a, uint16(n)), true
}
