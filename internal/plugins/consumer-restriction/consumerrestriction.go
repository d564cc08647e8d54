// Package consumerrestriction implements APISIX's consumer-restriction
// plugin: it allows or rejects a request by the consumer name, consumer
// group id, service id or route id, with whitelist, blacklist and
// per-method rules. It runs in access, after the auth plugins identified
// the consumer in rewrite.
package consumerrestriction

import (
	"encoding/json"
	"fmt"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name.
const Name = "consumer-restriction"

const schemaDoc = `{
  "type": "object",
  "properties": {
    "type": {
      "type": "string",
      "enum": ["consumer_name", "service_id", "route_id", "consumer_group_id"],
      "default": "consumer_name"
    },
    "blacklist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "whitelist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "allowed_by_methods": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "user": {"type": "string"},
          "methods": {
            "type": "array",
            "minItems": 1,
            "items": {
              "description": "HTTP method",
              "type": "string",
              "enum": ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"]
            }
          }
        }
      }
    },
    "rejected_code": {"type": "integer", "minimum": 200, "default": 403},
    "rejected_msg": {"type": "string"}
  },
  "anyOf": [
    {"required": ["blacklist"]},
    {"required": ["whitelist"]},
    {"required": ["allowed_by_methods"]}
  ]
}`

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: 2400,
		Schema:   json.RawMessage(schemaDoc),
		New:      New,
	}
}

// MethodRule restricts one value (user) to a set of methods.
type MethodRule struct {
	// User is the value (consumer name, route id, ...) the rule applies to.
	User *string `json:"user"`
	// Methods are the methods the value may use.
	Methods []string `json:"methods"`
}

// Config is the plugin configuration.
type Config struct {
	// Type selects the value checked: consumer_name, consumer_group_id,
	// service_id or route_id.
	Type string `json:"type"`
	// Whitelist lists the only values allowed.
	Whitelist []string `json:"whitelist"`
	// Blacklist lists values that are rejected.
	Blacklist []string `json:"blacklist"`
	// AllowedByMethods limits values to methods when not whitelisted.
	AllowedByMethods []MethodRule `json:"allowed_by_methods"`
	// RejectedCode is the status of a rejection.
	RejectedCode int `json:"rejected_code"`
	// RejectedMsg replaces the default rejection message.
	RejectedMsg *string `json:"rejected_msg"`
}

// valueKind is the decoded Type.
type valueKind int

const (
	kindConsumerName valueKind = iota
	kindConsumerGroupID
	kindServiceID
	kindRouteID
)

// Plugin is a built consumer-restriction instance.
type Plugin struct {
	conf       Config
	kind       valueKind
	rejectBody map[string]string
	missing    map[string]string
}

// New builds an instance; env may be nil.
func New(raw json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Type: "consumer_name", RejectedCode: 403}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode consumer-restriction conf: %w", err)
		}
	}
	p := &Plugin{conf: c}
	switch c.Type {
	case "consumer_name":
		p.kind = kindConsumerName
	case "consumer_group_id":
		p.kind = kindConsumerGroupID
	case "service_id":
		p.kind = kindServiceID
	case "route_id":
		p.kind = kindRouteID
	default:
		return nil, fmt.Errorf(`property "type" validation failed: matches none of the enum values`)
	}
	if c.Whitelist == nil && c.Blacklist == nil && c.AllowedByMethods == nil {
		return nil, fmt.Errorf("one of whitelist, blacklist or allowed_by_methods is required")
	}
	msg := "The " + c.Type + " is forbidden."
	if c.RejectedMsg != nil {
		msg = *c.RejectedMsg
	}
	p.rejectBody = map[string]string{"message": msg}
	p.missing = map[string]string{"message": "The request is rejected, please check the " + c.Type + " for this request"}
	return p, nil
}

func (p *Plugin) value(r *plugin.Request) (string, bool) {
	switch p.kind {
	case kindConsumerName:
		if r.Consumer != nil {
			return r.Consumer.Username, true
		}
		return r.ConsumerName, r.ConsumerName != ""
	case kindConsumerGroupID:
		if r.Consumer != nil && r.Consumer.GroupID != "" {
			return r.Consumer.GroupID, true
		}
	case kindServiceID:
		return r.ServiceID, r.ServiceID != ""
	case kindRouteID:
		return r.RouteID, r.RouteID != ""
	}
	return "", false
}

// Access allows or rejects the request.
func (p *Plugin) Access(r *plugin.Request) {
	v, ok := p.value(r)
	if !ok {
		r.Exit(401, p.missing)
		return
	}
	if contains(p.conf.Blacklist, v) {
		r.Exit(p.conf.RejectedCode, p.rejectBody)
		return
	}
	block, whitelisted := false, false
	if len(p.conf.Whitelist) > 0 {
		whitelisted = contains(p.conf.Whitelist, v)
		block = !whitelisted
	}
	if len(p.conf.AllowedByMethods) > 0 && !whitelisted && !p.methodAllowed(r.Method, v) {
		block = true
	}
	if block {
		r.Exit(p.conf.RejectedCode, p.rejectBody)
	}
}

// methodAllowed applies the first rule whose user is v; values without a
// rule pass.
func (p *Plugin) methodAllowed(method, v string) bool {
	for _, rule := range p.conf.AllowedByMethods {
		if rule.User != nil && *rule.User == v {
			return contains(rule.Methods, method)
		}
	}
	return true
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
