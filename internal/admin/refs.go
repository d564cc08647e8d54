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
		if ref.Via != "" {
			continue // plugin references are the plugin's own business
		}
		if msg := s.refMsg(ref); msg != "" {
			return msg
		}
	}
	return ""
}

// refMsg fetches one referenced object and returns APISIX's error text
// when it is missing (or, for tls.client_cert_id, not a client cert).
func (s *Server) refMsg(ref resource.Ref) string {
	word := refWords[ref.Kind]
	if word == "" || !safeID(ref.ID) {
		return ""
	}
	kv, err := s.opt.Store.Get(context.Background(), "/"+ref.Kind+"/"+ref.ID)
	if errors.Is(err, store.ErrNotFound) {
		return "failed to fetch " + word + " info by " + word + " id [" + ref.ID + "], response code: 404"
	}
	if err != nil {
		return "failed to fetch " + word + " info by " + word + " id [" + ref.ID + "]: " + err.Error()
	}
	if ref.Kind == "ssls" {
		var m map[string]any
		_ = json.Unmarshal(kv.Value, &m)
		if t, _ := m["type"].(string); t != "client" {
			return "failed to fetch ssl info by ssl id [" + ref.ID + "], wrong ssl type"
		}
	}
	return ""
}

// refCheck is the Checker's RefCheck hook: it runs each reference check
// at the point APISIX's check_conf fetches it from etcd (after the schema
// and upstream checks, before the plugin checks), so that a body with
// several faults reports the same one as APISIX.
func (s *Server) refCheck(ref resource.Ref) error {
	if msg := s.refMsg(ref); msg != "" {
		return &resource.Error{Msg: msg}
	}
	return nil
}

// userCheck is one kind scanned by a delete checker: word is the name
// used in the message, direct whether the plain id field counts, plugin
// whether references from inside plugin confs count, and pluginWords
// whether those are reported as "plugin in <word>" (upstreams) or plainly
// (protos).
type userCheck struct {
	dir, word              string
	direct, plugin, prefix bool
}

// deleteUsers mirrors the delete_checker of each APISIX admin module:
// which kinds it scans, in which order, and how it words the hit.
var deleteUsers = map[string]struct {
	prefix string
	users  []userCheck
}{
	"upstreams": {"can not delete this upstream, ", []userCheck{
		{"routes", "route", true, true, true},
		{"services", "service", true, true, true},
		{"plugin_configs", "plugin_config", false, true, true},
		{"consumers", "consumer", false, true, true},
		{"consumer_groups", "consumer_group", false, true, true},
		{"global_rules", "global_rules", false, true, true},
	}},
	"services": {"can not delete this service directly, ", []userCheck{
		{"routes", "route", true, false, false},
		{"stream_routes", "stream_route", true, false, false},
	}},
	"plugin_configs": {"can not delete this plugin config, ", []userCheck{
		{"routes", "route", true, false, false},
	}},
	"consumer_groups": {"can not delete this consumer group, ", []userCheck{
		{"consumers", "consumer", true, false, false},
	}},
	"protos": {"can not delete this proto, ", []userCheck{
		{"routes", "route", false, true, false},
		{"services", "service", false, true, false},
	}},
}

// deleteCheck refuses to delete an object that others still reference,
// unless ?force=true (reference/apisix-core.md §1.8). Like APISIX it stops
// at the first referencing object, checking plugin references of an
// object before its direct field.
func (s *Server) deleteCheck(ctx context.Context, t *target) string {
	spec, ok := deleteUsers[t.kind.Name]
	if !ok {
		return ""
	}
	for _, u := range spec.users {
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
			refs := resource.Refs(k, m)
			for _, ref := range refs {
				if ref.Via != "" && u.plugin && ref.Kind == t.kind.Name && ref.ID == t.id {
					if u.prefix {
						return spec.prefix + "plugin in " + u.word + " [" + rest + "] is still using it now"
					}
					return spec.prefix + u.word + " [" + rest + "] is still using it now"
				}
			}
			for _, ref := range refs {
				if ref.Via == "" && u.direct && ref.Kind == t.kind.Name && ref.ID == t.id {
					return spec.prefix + u.word + " [" + rest + "] is still using it now"
				}
			}
		}
	}
	return ""
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
