// Package uarestriction implements APISIX's ua-restriction plugin: it
// allows or denies requests by regular expressions searched in the
// User-Agent header.
package uarestriction

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name used in configs.
const Name = "ua-restriction"

// Priority is APISIX's priority for ua-restriction.
const Priority = 2999

// schema transcribes apisix/plugins/ua-restriction.lua.
const schema = `{
 "type":"object",
 "properties":{
  "bypass_missing":{"type":"boolean","default":false},
  "allowlist":{"type":"array","minItems":1,"items":{"type":"string","minLength":1}},
  "denylist":{"type":"array","minItems":1,"items":{"type":"string","minLength":1}},
  "message":{"type":"string","minLength":1,"maxLength":1024,"default":"Not allowed"}
 },
 "oneOf":[{"required":["allowlist"]},{"required":["denylist"]}]
}`

// Config is the route-side conf.
type Config struct {
	// BypassMissing lets requests without a User-Agent through.
	BypassMissing bool `json:"bypass_missing"`
	// Allowlist: a request passes only if some rule matches its User-Agent.
	Allowlist []string `json:"allowlist,omitempty"`
	// Denylist: a request is rejected if some rule matches its User-Agent.
	Denylist []string `json:"denylist,omitempty"`
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

// Plugin is a built ua-restriction instance.
type Plugin struct {
	rules  *Rules
	allow  bool
	bypass bool
	body   json.RawMessage // {"message":...}, encoded once
}

// New decodes conf with APISIX's defaults and compiles every rule once.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Message: "Not allowed"}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("decode conf: %w", err)
	}
	p := &Plugin{bypass: c.BypassMissing}
	// APISIX compiles (and so rejects) both lists, then enforces the
	// allowlist when present.
	for _, list := range [][]string{c.Allowlist, c.Denylist} {
		for _, rule := range list {
			if _, err := CompileRule(rule); err != nil {
				return nil, err
			}
		}
	}
	list := c.Denylist
	if c.Allowlist != nil {
		list, p.allow = c.Allowlist, true
	}
	rules, err := CompileRules(list, false)
	if err != nil {
		return nil, err
	}
	p.rules = rules
	body, err := json.Marshal(map[string]string{"message": c.Message})
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	p.body = body
	return p, nil
}

// Access checks every User-Agent value (trimmed): with an allowlist the
// request passes if any value matches a rule; with a denylist it is
// rejected if any value matches a rule.
func (p *Plugin) Access(r *plugin.Request) {
	uas := r.Header["User-Agent"]
	if len(uas) == 0 {
		if !p.bypass {
			r.Exit(403, p.body)
		}
		return
	}
	if p.allow {
		for _, ua := range uas {
			if p.matches(ua) {
				return
			}
		}
		r.Exit(403, p.body)
		return
	}
	for _, ua := range uas {
		if p.matches(ua) {
			r.Exit(403, p.body)
			return
		}
	}
}

func (p *Plugin) matches(ua string) bool {
	return p.rules.MatchString(strings.TrimSpace(ua))
}
