// Package resource is the one place that knows every Admin API resource
// kind: its names, its JSON schema (apache/apisix schema_def.lua), the
// checks APISIX's admin modules run on write (with APISIX's exact error
// texts), and the typed form the snapshot builder uses. The Admin API, the
// standalone loader and the snapshot builder all go through this package so
// that what is accepted on write is exactly what is built.
package resource

import (
	"encoding/json"

	"github.com/sluice-gw/sluice/internal/schema"
)

// Kind describes one resource kind.
type Kind struct {
	// Name is the URL segment and store directory, e.g. "routes".
	Name string
	// Singular is the word APISIX uses in messages, e.g. "route",
	// "consumer group", "plugin_metadata".
	Singular string
	// NoPost and NoPatch mark methods answered with 405.
	NoPost, NoPatch bool
	// SchemaName is the name under GET /apisix/admin/schema/{name}; empty
	// for kinds without a served schema.
	SchemaName string

	doc    string
	schema *schema.Schema
}

// Schema returns the JSON schema served by the /schema endpoints; plugins
// appear as a generic object.
func (k *Kind) Schema() json.RawMessage { return json.RawMessage(k.doc) }

func newKind(name, singular, schemaName string, noPost, noPatch bool, doc string) *Kind {
	return &Kind{Name: name, Singular: singular, SchemaName: schemaName, NoPost: noPost, NoPatch: noPatch,
		doc: doc, schema: schema.MustCompile([]byte(doc))}
}

// Compiled once at start-up; never modified afterwards.
var (
	upstreamDoc = expandUpstream()

	kindList = []*Kind{
		newKind("routes", "route", "route", false, false, expand(schemaRoute)),
		newKind("services", "service", "service", false, false, expand(schemaService)),
		newKind("upstreams", "upstream", "upstream", false, false, upstreamDoc),
		newKind("consumers", "consumer", "consumer", true, true, expand(schemaConsumer)),
		newKind("credentials", "credential", "credential", true, true, expand(schemaCredential)),
		newKind("consumer_groups", "consumer group", "consumer_group", true, false, expand(schemaConsumerGroup)),
		newKind("ssls", "ssl", "ssl", false, false, expand(schemaSSL)),
		newKind("global_rules", "global rule", "global_rule", true, false, expand(schemaGlobalRule)),
		newKind("plugin_configs", "plugin config", "plugin_config", true, false, expand(schemaPluginConfig)),
		newKind("plugin_metadata", "plugin_metadata", "", true, true, schemaPluginMetadata),
		newKind("protos", "proto", "proto", false, true, expand(schemaProto)),
		newKind("secrets", "secret", "", true, false, `{"type":"object"}`),
		newKind("stream_routes", "stream route", "stream_route", false, true, expand(schemaStreamRoute)),
	}

	hashVarsSchema   = schema.MustCompile([]byte(schemaHashVars))
	hashHeaderSchema = schema.MustCompile([]byte(schemaHashHeader))
	metaSchemaC      = schema.MustCompile([]byte(metaSchema))
	upstreamSchema   = schema.MustCompile([]byte(upstreamDoc))

	secretSchemas = map[string]*schema.Schema{
		"vault": schema.MustCompile([]byte(common().Replace(schemaSecretVault))),
		"aws":   schema.MustCompile([]byte(common().Replace(schemaSecretAWS))),
		"gcp":   schema.MustCompile([]byte(common().Replace(schemaSecretGCP))),
	}
)

// Kinds returns every resource kind in a fixed order.
func Kinds() []*Kind { return kindList }

// ByName finds a kind by its URL segment / store directory name.
func ByName(name string) (*Kind, bool) {
	for _, k := range kindList {
		if k.Name == name {
			return k, true
		}
	}
	return nil, false
}

// BySchemaName finds a kind by its /schema/{name} name.
func BySchemaName(name string) (*Kind, bool) {
	for _, k := range kindList {
		if k.SchemaName != "" && k.SchemaName == name {
			return k, true
		}
	}
	return nil, false
}

// SecretManagers lists the secret managers APISIX ships (vault, aws, gcp).
func SecretManagers() []string { return []string{"vault", "aws", "gcp"} }
