// Package iprestriction implements APISIX's ip-restriction plugin: it lets
// a request through only if the client address is (whitelist) or is not
// (blacklist) in a list of IPs and CIDRs.
//
// The client address is $remote_addr as the gateway determined it: the
// socket peer, or what real-ip (which runs earlier, in rewrite) set from a
// trusted proxy's header. Client-sent X-Forwarded-For or X-Real-IP are never
// read here, so they cannot bypass the list.
package iprestriction

import (
	"encoding/json"
	"fmt"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name used in configs.
const Name = "ip-restriction"

// Priority is APISIX's priority for ip-restriction.
const Priority = 3000

// ipDef is APISIX's schema_def.ip_def: IPv4, IPv4/CIDR, IPv6, IPv6/CIDR.
const ipDef = `[
 {"title":"IPv4","type":"string","format":"ipv4"},
 {"title":"IPv4/CIDR","type":"string","pattern":"^([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\\.([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])/([12]?[0-9]|3[0-2])$"},
 {"title":"IPv6","type":"string","format":"ipv6"},
 {"title":"IPv6/CIDR","type":"string","pattern":"^([a-fA-F0-9]{0,4}:){1,8}(:[a-fA-F0-9]{0,4}){0,8}([a-fA-F0-9]{0,4})?/[0-9]{1,3}$"}]`

// IPListSchema is the JSON schema of an array of IPs/CIDRs as APISIX's
// plugins declare it; real-ip reuses it for trusted_addresses.
const IPListSchema = `{"type":"array","items":{"anyOf":` + ipDef + `},"minItems":1}`

// schema transcribes apisix/plugins/ip-restriction/init.lua.
const schema = `{
 "type":"object",
 "properties":{
  "message":{"type":"string","minLength":1,"maxLength":1024,"default":"Your IP address is not allowed"},
  "response_code":{"type":"integer","minimum":403,"maximum":404,"default":403},
  "whitelist":` + IPListSchema + `,
  "blacklist":` + IPListSchema + `
 },
 "oneOf":[{"required":["whitelist"]},{"required":["blacklist"]}]
}`

// Config is the route-side conf.
type Config struct {
	// Whitelist lets only these IPs/CIDRs through.
	Whitelist []string `json:"whitelist,omitempty"`
	// Blacklist rejects these IPs/CIDRs.
	Blacklist []string `json:"blacklist,omitempty"`
	// Message is the "message" of the JSON rejection body.
	Message string `json:"message"`
	// ResponseCode is the rejection status, 403 or 404.
	ResponseCode int `json:"response_code"`
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

// Plugin is a built ip-restriction instance.
type Plugin struct {
	matcher *Matcher
	white   bool
	code    int
	body    json.RawMessage // {"message":...}, encoded once
}

// New decodes conf with APISIX's defaults and parses the address list once.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Message: "Your IP address is not allowed", ResponseCode: 403}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("decode conf: %w", err)
	}
	p := &Plugin{code: c.ResponseCode}
	list := c.Blacklist
	if len(c.Whitelist) > 0 {
		// APISIX checks the whitelist last, so it decides when both are set
		// (the schema forbids that anyway).
		list, p.white = c.Whitelist, true
	}
	if len(c.Whitelist) > 0 && len(c.Blacklist) > 0 {
		if _, err := NewMatcher(c.Blacklist); err != nil {
			return nil, err
		}
	}
	m, err := NewMatcher(list)
	if err != nil {
		return nil, err
	}
	p.matcher = m
	body, err := json.Marshal(map[string]string{"message": c.Message})
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	p.body = json.RawMessage(body)
	return p, nil
}

// Access rejects the request when the client address is not allowed.
func (p *Plugin) Access(r *plugin.Request) {
	ip, _ := r.Var("remote_addr")
	match, ok := p.matcher.MatchString(ip)
	// An address that does not parse is in no list: a whitelist rejects
	// it, a blacklist lets it through (as resty.ipmatcher does).
	block := match
	if p.white {
		block = !match || !ok
	}
	if block {
		r.Exit(p.code, p.body)
	}
}
