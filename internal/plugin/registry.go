// Package plugin holds the plugin contract and the registry of built-in
// plugins. The registry is built once in main and is read-only afterwards.
package plugin

import (
	"encoding/json"
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
		r.all[d.Name] = d
	}
	if enabled == nil {
		for _, d := range defs {
			r.enabled[d.Name] = d
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
