package resource

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sluice-gw/sluice/internal/expr"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/schema"
)

// Checker validates whole resource objects the way APISIX's admin modules
// do. It caches compiled plugin schemas; it is safe for concurrent use.
type Checker struct {
	// Plugins is the registry of enabled plugins.
	Plugins *plugin.Registry
	// DecryptKey, when set, turns a stored (encrypted) SSL private key back
	// into PEM before it is parsed; APISIX does the same with its keyring
	// when a PATCH re-validates a stored SSL object. Keys that already look
	// like PEM are never passed to it.
	DecryptKey func(string) (string, error)
	// RefCheck, when set, is called for every reference (see Refs) at the
	// point where APISIX fetches it from etcd, i.e. after the schema and
	// upstream checks and before the plugin checks, so that error
	// precedence matches. Its error text is returned unchanged.
	RefCheck func(Ref) error

	mu    sync.Mutex
	cache map[pluginSchemaKey]*compiled
}

type pluginSchemaKey struct {
	def *plugin.Def
	st  plugin.SchemaType
}

type compiled struct {
	s   *schema.Schema
	err error
}

// NewChecker returns a Checker for the plugins in reg.
func NewChecker(reg *plugin.Registry) *Checker {
	return &Checker{Plugins: reg, cache: map[pluginSchemaKey]*compiled{}}
}

// Error is a validation failure; Error() is exactly APISIX's error_msg.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func fail(format string, a ...any) error { return &Error{Msg: fmt.Sprintf(format, a...)} }

func failMsg(msg string) error { return &Error{Msg: msg} }

// Check validates obj (as it will be stored: id set by the caller,
// timestamps possibly present) as a k and returns an error whose text is
// exactly APISIX's error_msg.
func (c *Checker) Check(k *Kind, obj map[string]any) error {
	return c.check(k, obj, true)
}

// SchemaCheck is the JSON-schema-only check of
// POST /apisix/admin/schema/validate/{kind}: the message carries no
// "invalid configuration: " prefix.
func (c *Checker) SchemaCheck(k *Kind, obj any) error {
	if err := k.schema.Validate(obj); err != nil {
		return failMsg(err.Error())
	}
	return nil
}

// CheckPluginMetadata validates a plugin_metadata body against the plugin's
// metadata schema (an empty object schema when the plugin declares none).
func (c *Checker) CheckPluginMetadata(pluginName string, obj map[string]any) error {
	if pluginName == "" {
		return failMsg("missing plugin name")
	}
	def, ok := c.lookup(pluginName)
	if !ok {
		return failMsg("invalid plugin name")
	}
	// The stored object carries "id" (the plugin name); APISIX checks the
	// body before adding it.
	conf := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "id" {
			conf[k] = v
		}
	}
	if def.MetadataSchema == nil {
		return nil
	}
	s, err := c.pluginSchema(def, plugin.SchemaMetadata)
	if err != nil {
		return fail("invalid configuration: %s", err.Error())
	}
	if err := s.Validate(conf); err != nil {
		return fail("invalid configuration: %s", err.Error())
	}
	if def.Check != nil {
		if err := def.Check(conf, plugin.SchemaMetadata); err != nil {
			return fail("invalid configuration: %s", err.Error())
		}
	}
	return nil
}

func (c *Checker) lookup(name string) (*plugin.Def, bool) {
	if c == nil || c.Plugins == nil {
		return nil, false
	}
	return c.Plugins.Lookup(name)
}

func (c *Checker) pluginSchema(def *plugin.Def, st plugin.SchemaType) (*schema.Schema, error) {
	key := pluginSchemaKey{def, st}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = map[pluginSchemaKey]*compiled{}
	}
	if cp, ok := c.cache[key]; ok {
		return cp.s, cp.err
	}
	doc := def.SchemaFor(st)
	if doc == nil {
		doc = json.RawMessage(`{"type":"object"}`)
	}
	s, err := schema.Compile(doc)
	if err != nil {
		err = fmt.Errorf("invalid schema of plugin %s: %w", def.Name, err)
	}
	c.cache[key] = &compiled{s, err}
	return s, err
}

// check runs the checks of k; full=false skips what needs the plugin
// registry (used by Decode, which has none).
func (c *Checker) check(k *Kind, obj map[string]any, full bool) error {
	invalid := func(err error) error { return fail("invalid configuration: %s", err.Error()) }
	switch k.Name {
	case "routes":
		if luaTruthy(obj, "host") && luaTruthy(obj, "hosts") {
			return failMsg("only one of host or hosts is allowed")
		}
		if luaTruthy(obj, "remote_addr") && luaTruthy(obj, "remote_addrs") {
			return failMsg("only one of remote_addr or remote_addrs is allowed")
		}
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
		if up, ok := obj["upstream"].(map[string]any); ok {
			if err := c.checkUpstream(up, false); err != nil {
				return err
			}
		}
		if err := c.refs(k, obj, "upstreams", "services", "plugin_configs"); err != nil {
			return err
		}
		if full {
			if err := c.checkPlugins(obj["plugins"], plugin.SchemaRoute); err != nil {
				return err
			}
		}
		if v, ok := obj["vars"]; ok {
			if err := checkVars(v); err != nil {
				return err
			}
		}
		if _, ok := obj["filter_func"]; ok {
			return failMsg("filter_func is not supported by Sluice (Lua)")
		}
		if _, ok := obj["script"]; ok {
			return failMsg("script is not supported by Sluice (Lua)")
		}
	case "services":
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
		if up, ok := obj["upstream"].(map[string]any); ok {
			if err := c.checkUpstream(up, false); err != nil {
				return err
			}
		}
		if err := c.refs(k, obj, "upstreams"); err != nil {
			return err
		}
		if full {
			if err := c.checkPlugins(obj["plugins"], plugin.SchemaRoute); err != nil {
				return err
			}
		}
		if _, ok := obj["script"]; ok {
			return failMsg("script is not supported by Sluice (Lua)")
		}
	case "upstreams":
		return c.checkUpstream(obj, true)
	case "consumers":
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
		if full {
			if err := c.checkPlugins(obj["plugins"], plugin.SchemaConsumer); err != nil {
				return fail("invalid plugins configuration: %s", err.Error())
			}
		}
		return c.refs(k, obj, "consumer_groups")
	case "credentials":
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
		if !full {
			return nil
		}
		if err := c.checkPlugins(obj["plugins"], plugin.SchemaConsumer); err != nil {
			return fail("invalid plugins configuration: %s", err.Error())
		}
		if ps, ok := obj["plugins"].(map[string]any); ok {
			for _, name := range sortedKeys(ps) {
				def, ok := c.lookup(name)
				if !ok {
					return fail("unknown plugin %s", name)
				}
				if !def.Auth {
					return failMsg("only supports auth type plugins in consumer credential")
				}
			}
		}
	case "consumer_groups", "global_rules", "plugin_configs":
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
		if full {
			return c.checkPlugins(obj["plugins"], plugin.SchemaRoute)
		}
	case "ssls":
		return c.checkSSL(obj)
	case "plugin_metadata":
		if full {
			name, _ := obj["id"].(string)
			return c.CheckPluginMetadata(name, obj)
		}
	case "protos":
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
	case "secrets":
		id := IDString(obj["id"])
		manager, _, _ := strings.Cut(id, "/")
		s, ok := secretSchemas[manager]
		if !ok {
			return fail("invalid secret manager: %s", manager)
		}
		if err := s.Validate(obj); err != nil {
			return invalid(err)
		}
	case "stream_routes":
		if err := k.schema.Validate(obj); err != nil {
			return invalid(err)
		}
		if up, ok := obj["upstream"].(map[string]any); ok {
			if err := c.checkUpstream(up, false); err != nil {
				return err
			}
		}
		if p, ok := obj["protocol"].(map[string]any); ok {
			if sid, ok := p["superior_id"]; ok && obj["id"] != nil && IDString(sid) == IDString(obj["id"]) {
				return failMsg("stream route can not set itself as superior_id")
			}
		}
		return c.refs(k, obj, "upstreams", "services")
	default:
		return k.schema.Validate(obj)
	}
	return nil
}

// refs calls RefCheck for the references of obj to the given kinds.
func (c *Checker) refs(k *Kind, obj map[string]any, kinds ...string) error {
	if c == nil || c.RefCheck == nil {
		return nil
	}
	for _, r := range Refs(k, obj) {
		if r.Via != "" {
			continue
		}
		for _, want := range kinds {
			if r.Kind == want {
				if err := c.RefCheck(r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkVars(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fail("failed to validate the 'vars' expression: %s", err.Error())
	}
	if _, err := expr.Compile(raw); err != nil {
		return fail("failed to validate the 'vars' expression: %s", err.Error())
	}
	return nil
}

// checkPlugins is APISIX's plugin.check_schema: every plugin must be
// enabled, its conf an object that passes the plugin's schema (with the
// injected _meta) and its custom check.
func (c *Checker) checkPlugins(v any, st plugin.SchemaType) error {
	ps, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	for _, name := range sortedKeys(ps) {
		if err := c.checkPlugin(name, ps[name], st); err != nil {
			return err
		}
	}
	return nil
}

func (c *Checker) checkPlugin(name string, v any, st plugin.SchemaType) error {
	conf, ok := v.(map[string]any)
	if arr, isArr := v.([]any); isArr && len(arr) == 0 {
		// cjson decodes [] into an empty table, which Lua accepts as an
		// (empty) object.
		conf, ok = map[string]any{}, true
	}
	if !ok {
		if _, isArr := v.([]any); !isArr {
			b, _ := json.Marshal(v)
			return fail("invalid plugin conf %s for plugin [%s]", strings.ReplaceAll(string(b), "/", `\/`), name)
		}
	}
	def, found := c.lookup(name)
	if !found {
		return fail("unknown plugin [%s]", name)
	}
	err := c.pluginConfError(def, v, conf, st)
	if err != nil && !disabled(conf) {
		return fail("failed to check the configuration of plugin %s err: %s", name, err.Error())
	}
	meta, _ := conf["_meta"].(map[string]any)
	if meta == nil {
		return nil
	}
	if f, ok := meta["filter"]; ok {
		if err := checkVars(f); err != nil {
			return err
		}
	}
	if _, ok := meta["pre_function"]; ok {
		return fail("failed to load _meta.pre_function in plugin %s: pre_function is not supported by Sluice (Lua)", name)
	}
	return nil
}

// pluginConfError validates one plugin conf. _meta is checked against the
// injected schema and stripped before the plugin's own schema sees it, so
// plugin schemas need not know about it.
func (c *Checker) pluginConfError(def *plugin.Def, raw any, conf map[string]any, st plugin.SchemaType) error {
	s, err := c.pluginSchema(def, st)
	if err != nil {
		return err
	}
	if conf == nil { // a non-empty array
		return s.Validate(raw)
	}
	body := conf
	if m, ok := conf["_meta"]; ok {
		if err := metaSchemaC.Validate(m); err != nil {
			return fmt.Errorf("property \"_meta\" validation failed: %w", err)
		}
		body = make(map[string]any, len(conf))
		for k, v := range conf {
			if k != "_meta" {
				body[k] = v
			}
		}
	}
	if err := s.Validate(body); err != nil {
		return err
	}
	if def.Check != nil {
		return def.Check(body, st)
	}
	return nil
}

// luaTruthy reports whether m[k] is truthy in Lua: present and not false
// (JSON null decodes to cjson.null, which is truthy).
func luaTruthy(m map[string]any, k string) bool {
	v, ok := m[k]
	return ok && v != false
}

func disabled(conf map[string]any) bool {
	meta, ok := conf["_meta"].(map[string]any)
	if !ok {
		return false
	}
	d, _ := meta["disable"].(bool)
	return d
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// IDString renders an id as APISIX's tostring would: strings as they are,
// integers in decimal.
func IDString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
		if f, err := x.Float64(); err == nil {
			return schema.LuaNumber(f)
		}
		return string(x)
	case float64:
		return schema.LuaNumber(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
