package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/schema"
)

// metaSchema is the `_meta` property APISIX injects into every plugin schema.
var metaSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"disable":        map[string]any{"type": "boolean"},
		"error_response": map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "object"}}},
		"priority":       map[string]any{"type": "integer", "description": "priority of plugins by customized order"},
		"filter":         map[string]any{"type": "array", "description": "filter determines whether the plugin needs to be executed at runtime"},
		"pre_function":   map[string]any{"type": "string", "description": "function to be executed in each phase before execution of plugins"},
	},
	"additionalProperties": false,
}

// pluginSchema returns a plugin's schema as the Admin API serves it.
func pluginSchema(d *plugin.Def, st plugin.SchemaType) map[string]any {
	m := map[string]any{}
	if raw := d.SchemaFor(st); raw != nil {
		_ = json.Unmarshal(raw, &m)
	}
	if st != plugin.SchemaMetadata {
		props, _ := m["properties"].(map[string]any)
		if props == nil {
			props = map[string]any{}
			m["properties"] = props
		}
		props["_meta"] = metaSchema
		m["$comment"] = "this is a mark for our injected plugin schema"
	}
	return m
}

// plugins serves /apisix/admin/plugins/... (reference §1.10).
func (s *Server) plugins(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) == 1 && segs[0] == "reload" {
		if r.Method != http.MethodPut {
			writeErr(w, http.StatusMethodNotAllowed, "please use PUT method to reload the plugins, "+r.Method+" method is not allowed.")
			return
		}
		writePlain(w, http.StatusOK, "done")
		return
	}
	if r.Method != http.MethodGet {
		writeErr(w, http.StatusNotFound, "not found")
		return
	}
	sub := r.URL.Query().Get("subsystem")
	if len(segs) == 1 && segs[0] == "list" {
		names := []string{}
		switch sub {
		case "", "http":
			for _, d := range s.opt.Plugins.Enabled() {
				names = append(names, d.Name)
			}
		case "stream":
		default:
			writePlain(w, http.StatusBadRequest, "invalid subsystem passed")
			return
		}
		writeJSON(w, http.StatusOK, names)
		return
	}
	s.pluginSchema(w, r, segs)
}

// pluginSchema is admin/plugins.lua's get(name), reached through
// /plugins/{name} and /schema/plugins/{name}: the subsystem is checked
// first, ?all=true lists every plugin, and a missing or unknown name is
// 404 "plugin not found in subsystem ...".
func (s *Server) pluginSchema(w http.ResponseWriter, r *http.Request, segs []string) {
	q := r.URL.Query()
	sub := q.Get("subsystem")
	if sub == "" {
		sub = "http"
	}
	if sub != "http" && sub != "stream" {
		writeErr(w, http.StatusBadRequest, "unsupported subsystem: "+sub)
		return
	}
	if q.Get("all") == "true" {
		all := map[string]any{}
		if sub == "http" {
			for _, d := range s.opt.Plugins.Enabled() {
				e := map[string]any{"priority": d.Priority, "schema": pluginSchema(d, plugin.SchemaRoute), "version": 0.1}
				if d.Auth {
					e["type"] = "auth"
					e["consumer_schema"] = pluginSchema(d, plugin.SchemaConsumer)
				}
				if d.MetadataSchema != nil {
					e["metadata_schema"] = pluginSchema(d, plugin.SchemaMetadata)
				}
				all[d.Name] = e
			}
		}
		writeJSON(w, http.StatusOK, all)
		return
	}
	var d *plugin.Def
	ok := false
	if len(segs) >= 1 && sub == "http" {
		d, ok = s.opt.Plugins.Lookup(segs[0])
	}
	if !ok {
		writeErr(w, http.StatusNotFound, "plugin not found in subsystem "+sub)
		return
	}
	st := plugin.SchemaRoute
	if q.Get("schema_type") == "consumer" {
		st = plugin.SchemaConsumer
	}
	writeJSON(w, http.StatusOK, pluginSchema(d, st))
}

// schema serves GET /schema/{name}, GET /schema/plugins/{plugin} and
// POST /schema/validate/{kind}.
func (s *Server) schema(w http.ResponseWriter, r *http.Request, segs []string) {
	if r.Method != http.MethodGet {
		writeErr(w, http.StatusNotFound, "not found")
		return
	}
	if len(segs) >= 1 && segs[0] == "plugins" {
		// init.lua rewrites /schema/plugins/{name} (and /schema/plugins)
		// to the plugins resource.
		s.pluginSchema(w, r, segs[1:])
		return
	}
	if len(segs) == 1 {
		if k, ok := resource.BySchemaName(segs[0]); ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(append(append([]byte{}, k.Schema()...), '\n'))
			return
		}
	}
	name := ""
	if len(segs) > 0 {
		name = segs[0] // schema.lua sees only the segment after /schema/
	}
	writeErr(w, http.StatusBadRequest, "not found schema: "+name)
}

// schemaValidate serves POST /schema/validate/{kind}: a JSON-schema-only
// check whose error carries no "invalid configuration: " prefix.
func (s *Server) schemaValidate(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) == 0 {
		writeErr(w, http.StatusNotFound, "not found")
		return
	}
	k, ok := resource.ByName(segs[0])
	if !ok {
		writeErr(w, http.StatusNotFound, "Unsupported resource type: "+segs[0])
		return
	}
	v, ok := decodeBody(w, r, "missing configurations")
	if !ok {
		return
	}
	if err := s.opt.Checker.SchemaCheck(k, v); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

// configError is one entry of a /configs/validate failure.
type configError struct {
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id"`
	Index        int    `json:"index"`
	Error        string `json:"error"`
}

// validateConfigs serves POST /apisix/admin/configs/validate: it checks a
// whole standalone configuration without storing anything.
func (s *Server) validateConfigs(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeErr(w, http.StatusBadRequest, "invalid request body: empty request body")
		return
	}
	var doc any
	var err error
	if strings.Contains(r.Header.Get("Content-Type"), "yaml") {
		var y any
		if err = yaml.Unmarshal(body, &y); err == nil {
			var j []byte
			if j, err = json.Marshal(y); err == nil {
				doc, err = schema.DecodeJSON(j, maxJSONDepth)
			}
		}
	} else {
		doc, err = schema.DecodeJSON(body, maxJSONDepth)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return
	}
	top, ok := doc.(map[string]any)
	if !ok {
		writeErr(w, http.StatusBadRequest, "invalid request body: expected an object")
		return
	}
	var errs []configError
	for _, k := range resource.Kinds() {
		items, ok := top[k.Name].([]any)
		if !ok {
			continue
		}
		seen := map[string]bool{}
		for i, it := range items {
			obj, _ := it.(map[string]any)
			id := ""
			if obj != nil {
				id = idString(obj["id"])
				if k.Name == "consumers" {
					id = idString(obj["username"])
				}
				if id == "" {
					id = "arr_" + strconv.Itoa(i+1)
				}
			}
			if id != "" && seen[id] {
				errs = append(errs, configError{k.Name, id, i, "found duplicate id " + id + " in " + k.Name})
				continue
			}
			seen[id] = true
			if obj == nil {
				errs = append(errs, configError{k.Name, id, i, "invalid configuration: wrong type: expected object, got " + luaType(it)})
				continue
			}
			var cerr error
			if k.Name == "plugin_metadata" {
				cerr = s.opt.Checker.CheckPluginMetadata(id, obj)
			} else {
				cerr = s.opt.Checker.Check(k, obj)
			}
			if cerr != nil {
				errs = append(errs, configError{k.Name, id, i, cerr.Error()})
			}
		}
	}
	if len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error_msg": "Configuration validation failed", "errors": errs})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
