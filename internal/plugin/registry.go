// Package plugin holds the plugin contract and the registry of built-in
// plugins. The registry is built once in main and is read-only afterwards.
package plugin

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
)

// SchemaType selects which of a plugin's schemas applies to a config.
type SchemaType int

const (
	// SchemaRoute is the schema for a plugin on a route, service,
	// plugin_config, global rule or consumer group.
	SchemaRoute SchemaType = iota
	// SchemaConsumer is the schema for an auth plugin on a consumer or
	// credential (APISIX's consumer_schema).
	SchemaConsumer
	// SchemaMetadata is the schema of the plugin's plugin_metadata object.
	SchemaMetadata
)

// Def describes one built-in plugin: its name, priority and schemas, and
// optional checks beyond the JSON schema.
type Def struct {
	// Name is the plugin name as used in configs, e.g. "key-auth".
	Name string
	// Priority orders plugins within a phase, highest first.
	Priority int
	// Auth marks authentication plugins (APISIX's type = 'auth'); only they
	// may appear in credentials, and they identify consumers.
	Auth bool
	// KeyField is the consumer-side attribute an auth plugin indexes
	// consumers by ("key" for key-auth, "username" for basic-auth); it must
	// be unique across consumers and credentials.
	KeyField string
	// EncryptFields lists consumer-side fields (dot paths) that are stored
	// encrypted when apisix.data_encryption.enable_encrypt_fields is on, as
	// APISIX's encrypt_fields do (key-auth "key", basic-auth "password").
	EncryptFields []string
	// Schema, ConsumerSchema and MetadataSchema are JSON Schema documents.
	// A nil ConsumerSchema means Schema applies to consumers too; a nil
	// MetadataSchema means the plugin takes no plugin_metadata.
	Schema, ConsumerSchema, MetadataSchema json.RawMessage
	// Check, when set, runs after the schema accepted conf and returns an
	// error whose text becomes the "err: ..." part of the Admin API message.
	Check func(conf map[string]any, st SchemaType) error
	// New builds the runtime instance of a route-side conf (already
	// accepted by Schema; _meta removed). It applies the plugin's defaults
	// and must reject what it cannot run: when Check is nil, the Admin API
	// calls New to validate, so writes are validated by the code that
	// builds. The instance implements the phase interfaces it needs
	// (Rewriter, Accesser, ...). env is nil during validation.
	New func(conf json.RawMessage, env *BuildEnv) (any, error)
	// NewConsumer builds the consumer-side conf of an auth plugin: the key
	// the consumer is found by (KeyField's value) and whatever the plugin
	// needs to verify a request (password, secret, ...).
	NewConsumer func(conf json.RawMessage) (key string, data any, err error)
	// Init, when set, runs once at gateway start for an enabled plugin,
	// with plugin_attr.<name>; it starts process-level services (the
	// prometheus exporter's listener) that stop when ctx ends. shared is
	// the same Shared that BuildEnv carries.
	Init func(ctx context.Context, attr map[string]any, shared *Shared, logger *slog.Logger) error
	// PreferRoute skips the global-rule instance when the route configures
	// the same plugin (APISIX's run_policy = "prefer_route").
	PreferRoute bool
}

// BuildEnv is what Def.New gets besides the conf: where the conf lives and
// shared services, so stateful plugins can keep state that survives
// snapshot swaps.
type BuildEnv struct {
	// Parent is the key of the object holding the conf ("/routes/1").
	Parent string
	// ConfHash identifies the conf's content (hex); with Parent it scopes
	// counters as APISIX does (parent key + crc32 of the conf).
	ConfHash string
	// Shared holds long-lived state (counter stores, clients) keyed by
	// plugin; it outlives snapshots. May be nil in tests.
	Shared *Shared
	// Attr is plugin_attr.<name> from config.yaml.
	Attr map[string]any
}

// SchemaFor returns the schema document for st, or nil if there is none.
func (d *Def) SchemaFor(st SchemaType) json.RawMessage {
	switch st {
	case SchemaConsumer:
		if d.ConsumerSchema != nil {
			return d.ConsumerSchema
		}
		return d.Schema
	case SchemaMetadata:
		return d.MetadataSchema
	default:
		return d.Schema
	}
}

// Registry is the set of built-in plugins and which of them config.yaml
// enables.
type Registry struct {
	all     map[string]*Def
	enabled map[string]*Def
	sorted  []*Def
}

// NewRegistry builds a registry from the built-in defs. enabled lists the
// plugin names config.yaml enables; nil enables every built-in plugin. Names
// in enabled that are not built in are returned as unknown so the caller can
// warn about them.
func NewRegistry(defs []*Def, enabled []string) (r *Registry, unknown []string) {
	r = &Registry{all: map[string]*Def{}, enabled: map[string]*Def{}}
	for _, d := range defs {
		if d.Check == nil && d.New != nil {
			d = withBuildCheck(d)
		}
		r.all[d.Name] = d
	}
	if enabled == nil {
		for name, d := range r.all {
			r.enabled[name] = d
		}
	} else {
		for _, n := range enabled {
			if d, ok := r.all[n]; ok {
				r.enabled[n] = d
			} else {
				unknown = append(unknown, n)
			}
		}
	}
	for _, d := range r.enabled {
		r.sorted = append(r.sorted, d)
	}
	sort.Slice(r.sorted, func(i, j int) bool {
		if r.sorted[i].Priority != r.sorted[j].Priority {
			return r.sorted[i].Priority > r.sorted[j].Priority
		}
		return r.sorted[i].Name < r.sorted[j].Name
	})
	return r, unknown
}

// Lookup returns an enabled plugin by name.
func (r *Registry) Lookup(name string) (*Def, bool) {
	d, ok := r.enabled[name]
	return d, ok
}

// Enabled returns the enabled plugins sorted by priority, highest first.
func (r *Registry) Enabled() []*Def { return r.sorted }

// withBuildCheck returns a copy of d whose Check runs New (and NewConsumer
// for consumer-side confs), so validation and building are one code path.
func withBuildCheck(d *Def) *Def {
	c := *d
	c.Check = func(conf map[string]any, st SchemaType) error {
		raw, err := json.Marshal(conf)
		if err != nil {
			return err
		}
		switch {
		case st == SchemaConsumer && d.NewConsumer != nil:
			_, _, err = d.NewConsumer(raw)
		case st == SchemaMetadata:
			return nil
		default:
			_, err = d.New(raw, nil)
		}
		return err
	}
	return &c
}

// All returns every built-in plugin, enabled or not, sorted by name.
func (r *Registry) All() []*Def {
	out := make([]*Def, 0, len(r.all))
	for _, d := range r.all {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
