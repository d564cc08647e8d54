package resource

import (
	"encoding/json"
	"strconv"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Ref is a reference from one object to another, for write-time existence
// checks and delete-time "still using it" checks.
type Ref struct {
	// Kind is the referenced kind's Name: "upstreams", "services",
	// "plugin_configs", "consumer_groups", "ssls" or "protos".
	Kind string
	// ID is the referenced id as a string.
	ID string
	// Via is "" for a direct field and "plugin" for a reference from inside
	// a plugin conf (traffic-split weighted_upstreams[].upstream_id,
	// grpc-transcode proto_id).
	Via string
}

// Refs lists what obj (an object of kind k) references, in the order
// APISIX checks them.
func Refs(k *Kind, obj map[string]any) []Ref {
	var out []Ref
	add := func(kind, field string, via string, m map[string]any) {
		if v, ok := m[field]; ok && v != nil {
			if id := IDString(v); id != "" {
				out = append(out, Ref{Kind: kind, ID: id, Via: via})
			}
		}
	}
	upstreamTLS := func(up any) {
		if m, ok := up.(map[string]any); ok {
			if t, ok := m["tls"].(map[string]any); ok {
				add("ssls", "client_cert_id", "", t)
			}
		}
	}
	switch k.Name {
	case "routes":
		upstreamTLS(obj["upstream"])
		add("upstreams", "upstream_id", "", obj)
		add("services", "service_id", "", obj)
		add("plugin_configs", "plugin_config_id", "", obj)
	case "services":
		upstreamTLS(obj["upstream"])
		add("upstreams", "upstream_id", "", obj)
	case "stream_routes":
		upstreamTLS(obj["upstream"])
		add("upstreams", "upstream_id", "", obj)
		add("services", "service_id", "", obj)
	case "upstreams":
		upstreamTLS(obj)
	case "consumers":
		add("consumer_groups", "group_id", "", obj)
	}
	if ps, ok := obj["plugins"].(map[string]any); ok {
		if ts, ok := ps["traffic-split"].(map[string]any); ok {
			rules, _ := ts["rules"].([]any)
			for _, r := range rules {
				rm, _ := r.(map[string]any)
				wus, _ := rm["weighted_upstreams"].([]any)
				for _, wu := range wus {
					if wm, ok := wu.(map[string]any); ok {
						add("upstreams", "upstream_id", "plugin", wm)
					}
				}
			}
		}
		if gt, ok := ps["grpc-transcode"].(map[string]any); ok {
			add("protos", "proto_id", "plugin", gt)
		}
	}
	return out
}

// AuthKey is one auth plugin credential value that must be unique across
// consumers and credentials.
type AuthKey struct {
	Plugin, Value string
}

// AuthKeys returns the (plugin, key value) pairs of the auth plugins in a
// consumer's or credential's plugins, using each plugin's Def.KeyField.
// Plugins are listed in name order.
func AuthKeys(reg *plugin.Registry, plugins map[string]any) []AuthKey {
	if reg == nil {
		return nil
	}
	var out []AuthKey
	for _, name := range sortedKeys(plugins) {
		def, ok := reg.Lookup(name)
		if !ok || !def.Auth || def.KeyField == "" {
			continue
		}
		conf, ok := plugins[name].(map[string]any)
		if !ok {
			continue
		}
		switch v := conf[def.KeyField].(type) {
		case string:
			out = append(out, AuthKey{Plugin: name, Value: v})
		case json.Number:
			out = append(out, AuthKey{Plugin: name, Value: string(v)})
		case float64:
			out = append(out, AuthKey{Plugin: name, Value: strconv.FormatFloat(v, 'g', -1, 64)})
		}
	}
	return out
}
