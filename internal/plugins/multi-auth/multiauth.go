// Package multiauth implements APISIX's multi-auth plugin: it tries a list
// of auth plugins in order and lets the request through with the first one
// that authenticates it.
//
// Sub-plugins are found through a lookup function given to Def (the
// plugin list in internal/plugins/all wires it to the built-in defs), since
// a plugin package cannot import the registry. A sub-plugin instance should
// implement
//
//	Authenticate(r *plugin.Request) (ok bool, status int, body any)
//
// which does what its Rewrite does except writing the response: on success
// it attaches the consumer and returns ok; on failure it may set response
// headers (WWW-Authenticate) and returns the status and body Rewrite would
// exit with. Instances that only have Rewrite are run against a capturing
// response writer and a private plugin.Request, so their failure writes
// nothing to the client.
package multiauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/schema"
)

// Name is the plugin name.
const Name = "multi-auth"

const schemaDoc = `{
  "type": "object",
  "title": "work with route or service object",
  "properties": {
    "auth_plugins": {"type": "array", "minItems": 2}
  },
  "required": ["auth_plugins"]
}`

// authenticator is what auth plugins implement so multi-auth can try them
// without a failure being written to the client.
type authenticator interface {
	Authenticate(r *plugin.Request) (ok bool, status int, body any)
}

// Lookup finds a built-in plugin definition by name.
type Lookup func(name string) (*plugin.Def, bool)

// Def returns the plugin's definition; lookup resolves the names listed in
// auth_plugins when a conf is built or validated.
func Def(lookup Lookup) *plugin.Def {
	b := &builder{lookup: lookup}
	return &plugin.Def{
		Name:     Name,
		Priority: 2600,
		Auth:     true,
		Schema:   json.RawMessage(schemaDoc),
		New:      b.New,
	}
}

// builder holds the lookup and a cache of compiled sub-plugin schemas, so
// building many routes does not recompile them.
type builder struct {
	lookup  Lookup
	schemas sync.Map // *plugin.Def -> *schema.Schema
}

func (b *builder) schemaOf(d *plugin.Def) (*schema.Schema, error) {
	if s, ok := b.schemas.Load(d); ok {
		return s.(*schema.Schema), nil
	}
	doc := d.SchemaFor(plugin.SchemaRoute)
	if doc == nil {
		doc = json.RawMessage(`{"type":"object"}`)
	}
	s, err := schema.Compile(doc)
	if err != nil {
		return nil, fmt.Errorf("compile schema of plugin %s: %w", d.Name, err)
	}
	b.schemas.Store(d, s)
	return s, nil
}

// sub is one configured sub-plugin.
type sub struct {
	name string
	auth authenticator
	rw   plugin.Rewriter
}

// Plugin is a built multi-auth instance.
type Plugin struct {
	subs []sub
}

// New builds an instance: every listed plugin must exist, be an auth
// plugin and accept its conf; env may be nil (validation).
func (b *builder) New(raw json.RawMessage, env *plugin.BuildEnv) (any, error) {
	v, err := schema.DecodeJSON(raw, 0)
	if err != nil {
		return nil, fmt.Errorf("decode multi-auth conf: %w", err)
	}
	conf, _ := v.(map[string]any)
	list, ok := conf["auth_plugins"].([]any)
	if !ok {
		if _, present := conf["auth_plugins"]; present {
			return nil, errors.New(`property "auth_plugins" validation failed: wrong type: expected array, got ` + schema.LuaType(conf["auth_plugins"]))
		}
		return nil, errors.New(`property "auth_plugins" is required`)
	}
	if len(list) < 2 {
		return nil, errors.New(`property "auth_plugins" validation failed: expect array to have at least 2 items`)
	}
	p := &Plugin{}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("auth_plugins item %d: wrong type: expected object, got %s", i+1, schema.LuaType(item))
		}
		// Lua iterates an item's keys in no defined order; one key per
		// item is the documented form, sorting makes several stable.
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			s, err := b.build(name, m[name], env)
			if err != nil {
				return nil, err
			}
			p.subs = append(p.subs, s)
		}
	}
	return p, nil
}

func (b *builder) build(name string, conf any, env *plugin.BuildEnv) (sub, error) {
	var d *plugin.Def
	ok := false
	if b.lookup != nil {
		d, ok = b.lookup(name)
	}
	if !ok || d == nil {
		return sub{}, errors.New(name + " plugin did not found")
	}
	if !d.Auth || d.New == nil {
		return sub{}, errors.New(name + " plugin is not supported")
	}
	failed := func(err error) error {
		return fmt.Errorf("plugin %s check schema failed: %w", name, err)
	}
	s, err := b.schemaOf(d)
	if err != nil {
		return sub{}, failed(err)
	}
	if err := s.Validate(conf); err != nil {
		return sub{}, failed(err)
	}
	m, _ := conf.(map[string]any)
	if d.Check != nil {
		if err := d.Check(m, plugin.SchemaRoute); err != nil {
			return sub{}, failed(err)
		}
	}
	delete(m, "_meta")
	raw, err := json.Marshal(m)
	if err != nil {
		return sub{}, failed(err)
	}
	inst, err := d.New(raw, env)
	if err != nil {
		return sub{}, failed(err)
	}
	out := sub{name: name}
	out.auth, _ = inst.(authenticator)
	out.rw, _ = inst.(plugin.Rewriter)
	if out.auth == nil && out.rw == nil {
		return sub{}, errors.New(name + " plugin is not supported")
	}
	return out, nil
}

var authFailed = map[string]string{"message": "Authorization Failed"}

// failure is one sub-plugin's rejection, kept for the log line APISIX
// writes when every plugin failed.
type failure struct {
	name   string
	status int
	body   any
}

// Rewrite tries each sub-plugin in order; the first success wins.
func (p *Plugin) Rewrite(r *plugin.Request) {
	var buf [4]failure
	fails := buf[:0]
	for _, s := range p.subs {
		var ok bool
		var status int
		var body any
		if s.auth != nil {
			ok, status, body = s.auth.Authenticate(r)
		} else {
			ok, status, body = viaRewrite(s.rw, r)
		}
		if ok {
			return
		}
		fails = append(fails, failure{s.name, status, body})
	}
	if r.Env != nil && r.Env.Logger != nil {
		for _, f := range fails {
			r.Env.Logger.Warn(f.name + " failed to authenticate the request, code: " + strconv.Itoa(f.status) + ". error: " + message(f.body))
		}
	}
	r.Exit(401, authFailed)
}

// message extracts the text of a rejection body for the log.
func message(body any) string {
	switch b := body.(type) {
	case nil:
		return ""
	case string:
		return b
	case []byte:
		return string(b)
	case map[string]string:
		return b["message"]
	case map[string]any:
		if s, ok := b["message"].(string); ok {
			return s
		}
	}
	j, _ := json.Marshal(body)
	return string(j)
}

// viaRewrite runs a sub-plugin that has only Rewrite on a private
// plugin.Request whose response goes to a capturing writer, so its exit is
// not sent; response headers it set (WWW-Authenticate) are copied over.
func viaRewrite(rw plugin.Rewriter, r *plugin.Request) (bool, int, any) {
	cw := &captureWriter{h: engine.Header{}}
	orig := r.Ctx.W
	r.Ctx.W = cw
	tmp := &plugin.Request{Ctx: r.Ctx, Env: r.Env}
	func() {
		defer func() { r.Ctx.W = orig }()
		rw.Rewrite(tmp)
	}()
	dst := orig.Header()
	for k, vv := range cw.h {
		if k != "Content-Type" && k != "Content-Length" {
			dst[k] = vv
		}
	}
	if tmp.Exited() {
		return false, cw.status, cw.body
	}
	if tmp.Consumer != nil {
		r.AttachConsumer(tmp.Consumer, tmp.CredentialID)
	}
	return true, 0, nil
}

// captureWriter records a response instead of sending it.
type captureWriter struct {
	h      engine.Header
	status int
	body   []byte
}

func (w *captureWriter) Header() engine.Header { return w.h }
func (w *captureWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *captureWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	w.body = append(w.body, p...)
	return len(p), nil
}
func (w *captureWriter) Flush() error { return nil }
