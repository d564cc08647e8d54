// Package keyauth implements APISIX's key-auth plugin: a consumer is
// identified by an API key sent in a request header or, failing that, in a
// query argument.
package keyauth

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/textproto"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/authkit"
	"github.com/sluice-gw/sluice/internal/plugins/internal/httpvar"
)

// Name is the plugin name.
const Name = "key-auth"

// Priority is APISIX's priority for key-auth.
const Priority = 2500

// schema is APISIX's route-side schema (apisix/plugins/key-auth.lua),
// with the realm schema of apisix/schema_def.lua get_realm_schema("key").
const schema = `{
  "type": "object",
  "properties": {
    "header": {"type": "string", "default": "apikey"},
    "query": {"type": "string", "default": "apikey"},
    "realm": {"type": "string", "pattern": "^[ -!#-[\\]-~]+$", "default": "key", "minLength": 1, "maxLength": 128},
    "hide_credentials": {"type": "boolean", "default": false},
    "anonymous_consumer": {"type": "string", "minLength": 1}
  }
}`

// consumerSchema is APISIX's consumer_schema; "key" is an encrypt field.
const consumerSchema = `{
  "type": "object",
  "properties": {
    "key": {"type": "string"}
  },
  "required": ["key"]
}`

// Config is the route-side configuration.
type Config struct {
	// Header is the request header carrying the key (default "apikey").
	Header string `json:"header"`
	// Query is the query argument carrying the key when the header is
	// absent (default "apikey").
	Query string `json:"query"`
	// Realm goes into WWW-Authenticate on failures (default "key").
	Realm string `json:"realm"`
	// HideCredentials removes the key from the request before it is
	// forwarded.
	HideCredentials bool `json:"hide_credentials"`
	// AnonymousConsumer is attached when authentication fails.
	AnonymousConsumer string `json:"anonymous_consumer,omitempty"`
}

// ConsumerConfig is the consumer/credential-side configuration.
type ConsumerConfig struct {
	// Key is the consumer's API key.
	Key string `json:"key"`
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:           Name,
		Priority:       Priority,
		Auth:           true,
		KeyField:       "key",
		EncryptFields:  []string{"key"},
		Schema:         json.RawMessage(schema),
		ConsumerSchema: json.RawMessage(consumerSchema),
		New:            New,
		NewConsumer:    NewConsumer,
	}
}

// Plugin is a built key-auth instance.
type Plugin struct {
	conf Config
	// headerKey is conf.Header in canonical form, so the per-request
	// lookup is one map access.
	headerKey string
	// challenge is the prebuilt WWW-Authenticate value.
	challenge []string
}

// New decodes conf with APISIX's defaults and builds the instance.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Header: "apikey", Query: "apikey", Realm: "key"}
	if len(conf) > 0 {
		if err := json.Unmarshal(conf, &c); err != nil {
			return nil, fmt.Errorf("decode key-auth conf: %w", err)
		}
	}
	return &Plugin{
		conf:      c,
		headerKey: textproto.CanonicalMIMEHeaderKey(c.Header),
		challenge: []string{`apikey realm="` + c.Realm + `"`},
	}, nil
}

// credential is what NewConsumer builds: the key, kept to confirm the
// index hit in constant time.
type credential struct {
	key string
}

// NewConsumer decodes the consumer-side conf; the consumer is indexed by
// its key.
func NewConsumer(conf json.RawMessage) (string, any, error) {
	var c struct {
		Key *string `json:"key"`
	}
	if err := json.Unmarshal(conf, &c); err != nil {
		return "", nil, fmt.Errorf("decode key-auth consumer conf: %w", err)
	}
	if c.Key == nil {
		return "", nil, fmt.Errorf(`property "key" is required`)
	}
	return *c.Key, &credential{key: *c.Key}, nil
}

// Rewrite authenticates the request (APISIX runs auth plugins in rewrite).
func (p *Plugin) Rewrite(r *plugin.Request) {
	cred, errMsg := p.find(r)
	if cred != nil {
		r.AttachConsumer(cred.Consumer, cred.ID)
		return
	}
	// The credential was wrong or missing; with hide_credentials it must
	// not reach the upstream on the anonymous path either, wherever it was.
	if p.conf.AnonymousConsumer != "" && p.conf.HideCredentials {
		r.Header.Del(p.headerKey)
		httpvar.HideQuery(r, p.conf.Query)
	}
	if c, ok := authkit.Anonymous(r, p.conf.AnonymousConsumer, p.challenge, errMsg); ok {
		r.AttachConsumer(c, "")
	}
}

// find looks the key up: the header first, the query argument only when
// the header is absent. It returns the credential or the failure message.
func (p *Plugin) find(r *plugin.Request) (*plugin.Credential, string) {
	var key string
	fromHeader := false
	if vv, ok := r.Header[p.headerKey]; ok && len(vv) > 0 {
		key, fromHeader = vv[0], true
	} else {
		v, n := httpvar.QueryArg(r.Query, p.conf.Query)
		switch {
		case n == 0:
			return nil, "Missing API key in request"
		case n > 1 || v == nil:
			// Repeated arguments and arguments without "=" are a table
			// or a boolean in APISIX, which never matches a key.
			return nil, "Invalid API key in request"
		}
		key = *v
	}
	cred, ok := r.Env.Consumers.Lookup(Name, key)
	if !ok || !keyEqual(cred, key) {
		return nil, "Invalid API key in request"
	}
	if p.conf.HideCredentials {
		if fromHeader {
			r.Header.Del(p.headerKey)
		} else {
			httpvar.HideQuery(r, p.conf.Query)
		}
	}
	return cred, ""
}

// keyEqual confirms an index hit by comparing the stored key with the
// presented one in constant time, so the decision never depends on a
// byte-by-byte comparison an attacker could time.
func keyEqual(cred *plugin.Credential, key string) bool {
	c, ok := cred.Data.(*credential)
	return ok && subtle.ConstantTimeCompare([]byte(c.key), []byte(key)) == 1
}
