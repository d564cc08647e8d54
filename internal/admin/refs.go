package admin

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
)

// refWords maps a referenced kind to the words APISIX uses in
// "failed to fetch <x> info by <x> id [id], response code: 404".
var refWords = map[string]string{
	"upstreams":       "upstream",
	"services":        "service",
	"plugin_configs":  "plugin config",
	"consumer_groups": "consumer group",
	"ssls":            "ssl",
	"protos":          "proto",
}

// checkRefs verifies that every object obj references exists
// (reference/apisix-core.md §1.8). It returns the error message or "".
func (s *Server) checkRefs(k *resource.Kind, obj map[string]any) string {
	for _, ref := range resource.Refs(k, obj) {
		word := refWords[ref.Kind]
		if word == "" || !safeID(ref.ID) {
			continue
		}
		kv, err := s.opt.Store.Get(context.Background(), "/"+ref.Kind+"/"+ref.ID)
		if errors.Is(err, store.ErrNotFound) {
			return "failed to fetch " + word + " info by " + word + " id [" + ref.ID + "], response code: 404"
		}
		if err != nil {
			return "failed to fetch " + word + " info by " + word + " id [" + ref.ID + "], " + err.Error()
		}
		if ref.Kind == "ssls" {
			var m map[string]any
			_ = json.Unmarshal(kv.Value, &m)
			if t, _ := m["type"].(string); t != "client" {
				return "failed to fetch ssl info by ssl id [" + ref.ID + "], wrong ssl type"
			}
		}
	}
	return ""
}

// users lists, in APISIX's checking order, the kinds that may reference
// another kind, with the word used in delete messages.
var users = []struct{ dir, word string }{
	{"routes", "route"},
	{"services", "service"},
	{"stream_routes", "stream_route"},
	{"plugin_configs", "plugin_config"},
	{"consumers", "consumer"},
	{"consumer_groups", "consumer_group"},
	{"global_rules", "global_rules"},
}

// deleteCheck refuses to delete an object that others still reference,
// unless ?force=true (reference/apisix-core.md §1.8).
func (s *Server) deleteCheck(ctx context.Context, t *target) string {
	var prefix string
	switch t.kind.Name {
	case "upstreams":
		prefix = "can not delete this upstream, "
	case "services":
		prefix = "can not delete this service directly, "
	case "plugin_configs":
		prefix = "can not delete this plugin config, "
	case "consumer_groups":
		prefix = "can not delete this consumer group, "
	case "protos":
		prefix = "can not delete this proto, "
	default:
		return ""
	}
	var pluginMsg string
	for _, u := range users {
		k, ok := resource.ByName(u.dir)
		if !ok {
			continue
		}
		kvs, _, err := s.opt.Store.List(ctx, "/"+u.dir+"/")
		if err != nil {
			return err.Error()
		}
		for _, kv := range kvs {
			rest := kv.Key[len(u.dir)+2:]
			if strings.Contains(rest, "/") {
				continue
			}
			var m map[string]any
			if json.Unmarshal(kv.Value, &m) != nil {
				continue
			}
			for _, ref := range resource.Refs(k, m) {
				if ref.Kind != t.kind.Name || ref.ID != t.id {
					continue
				}
				if ref.Via == "" {
					return prefix + u.word + " [" + rest + "] is still using it now"
				}
				if pluginMsg == "" {
					pluginMsg = prefix + "plugin in " + u.word + " [" + rest + "] is still using it now"
				}
			}
		}
	}
	return pluginMsg
}

// checkAuthKeys refuses a consumer or credential whose auth key (key-auth
// key, basic-auth username, ...) another consumer or credential already
// uses (APISIX 3.18).
func (s *Server) checkAuthKeys(self string, k *resource.Kind, obj map[string]any) string {
	plugins, _ := obj["plugins"].(map[string]any)
	mine := resource.AuthKeys(s.opt.Plugins, plugins)
	if len(mine) == 0 {
		return ""
	}
	kvs, _, err := s.opt.Store.List(context.Background(), "/consumers/")
	if err != nil {
		return err.Error()
	}
	for _, kv := range kvs {
		if kv.Key == self {
			continue
		}
		var m map[string]any
		if json.Unmarshal(kv.Value, &m) != nil {
			continue
		}
		kind := "consumers"
		parts := strings.Split(strings.TrimPrefix(kv.Key, "/consumers/"), "/")
		if len(parts) == 3 {
			kind = "credentials"
		}
		kk, _ := resource.ByName(kind)
		_ = s.decrypt(kk, m)
		other, _ := m["plugins"].(map[string]any)
		for _, theirs := range resource.AuthKeys(s.opt.Plugins, other) {
			for _, a := range mine {
				if a.Plugin != theirs.Plugin || a.Value != theirs.Value {
					continue
				}
				if kind == "credentials" {
					return "duplicate key of plugin " + a.Plugin + " found with credential: " + parts[2] + " of consumer: " + parts[0]
				}
				return "duplicate key of plugin " + a.Plugin + " found with consumer: " + parts[0]
			}
		}
	}
	return ""
}
