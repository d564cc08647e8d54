// Package refererrestriction implements APISIX's referer-restriction
// plugin: it allows or denies requests by the host part of their Referer
// header, against exact host names and "*.suffix" wildcards.
package refererrestriction

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name used in configs.
const Name = "referer-restriction"

// Priority is APISIX's priority for referer-restriction.
const Priority = 2990

// hostDef is APISIX's schema_def.host_def.
const hostDef = `{"type":"string","pattern":"^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$"}`

// schema transcribes apisix/plugins/referer-restriction.lua.
const schema = `{
 "type":"object",
 "properties":{
  "bypass_missing":{"type":"boolean","default":false},
  "whitelist":{"type":"array","items":` + hostDef + `,"minItems":1},
  "blacklist":{"type":"array","items":` + hostDef + `,"minItems":1},
  "message":{"type":"string","minLength":1,"maxLength":1024,"default":"Your referer host is not allowed"}
 },
 "oneOf":[{"required":["whitelist"]},{"required":["blacklist"]}]
}`

// Config is the route-side conf.
type Config struct {
	// BypassMissing lets requests without a usable Referer through.
	BypassMissing bool `json:"bypass_missing"`
	// Whitelist lets only these referer hosts through.
	Whitelist []string `json:"whitelist,omitempty"`
	// Blacklist rejects these referer hosts.
	Blacklist []string `json:"blacklist,omitempty"`
	// Message is the "message" of the JSON rejection body.
	Message string `json:"message"`
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

// Plugin is a built referer-restriction instance.
type Plugin struct {
	exact    map[string]struct{}
	suffixes []string
	white    bool
	bypass   bool
	body     json.RawMessage // {"message":...}, encoded once
}

// New decodes conf with APISIX's defaults and builds the host matcher once.
// Host names are compared case-insensitively (DNS names are), so entries
// are lowercased here and referer hosts at request time.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Message: "Your referer host is not allowed"}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("decode conf: %w", err)
	}
	p := &Plugin{bypass: c.BypassMissing, exact: map[string]struct{}{}}
	list := c.Blacklist
	if c.Whitelist != nil {
		list, p.white = c.Whitelist, true
	}
	for _, h := range list {
		h = strings.ToLower(h)
		if strings.HasPrefix(h, "*") {
			// "*.example.com" matches hosts ending in ".example.com";
			// a lone "*" matches every host.
			p.suffixes = append(p.suffixes, h[1:])
		} else {
			p.exact[h] = struct{}{}
		}
	}
	body, err := json.Marshal(map[string]string{"message": c.Message})
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	p.body = body
	return p, nil
}

// Access rejects the request when the referer host is not allowed, or is
// missing or malformed and bypass_missing is off.
func (p *Plugin) Access(r *plugin.Request) {
	ref, ok := r.Var("http_referer")
	var host string
	if ok {
		host, ok = RefererHost(ref)
	}
	var block bool
	switch {
	case !ok:
		block = !p.bypass
	case p.white:
		block = !p.match(host)
	default:
		block = p.match(host)
	}
	if block {
		r.Exit(403, p.body)
	}
}

func (p *Plugin) match(host string) bool {
	if _, ok := p.exact[host]; ok {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// RefererHost extracts the lowercased host of a Referer value of the form
// [http[s]:]//host[:port][/path][?query]. ok is false for anything else
// (no "//", another scheme, an empty host), which the plugin treats as a
// missing Referer, as APISIX does.
//
// Stricter than APISIX's lua-resty-http parse_uri: userinfo ("user@") is
// dropped and '#' ends the authority, so "http://evil#.good.com" is host
// "evil" rather than a host ending in ".good.com", a trailing dot is
// dropped, and the scheme is matched case-insensitively. The result allocates only when the host
// has upper-case letters.
func RefererHost(ref string) (string, bool) {
	rest := ref
	if i := strings.Index(rest, "//"); i >= 0 {
		scheme := rest[:i]
		switch {
		case scheme == "":
		case strings.EqualFold(scheme, "http:"), strings.EqualFold(scheme, "https:"):
		default:
			return "", false
		}
		rest = rest[i+2:]
	} else {
		return "", false
	}
	if end := strings.IndexAny(rest, "/?#\\"); end >= 0 {
		rest = rest[:end]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	host := rest
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", false
		}
		host = host[:end+1]
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	// "evil.com." is the same DNS name as "evil.com".
	host = strings.TrimSuffix(host, ".")
	if host == "" || host == "[]" {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host), true
		}
	}
	return host, true
}
