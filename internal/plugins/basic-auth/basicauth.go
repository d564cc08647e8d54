// Package basicauth implements APISIX's basic-auth plugin: a consumer is
// identified by the username and password of an HTTP Basic Authorization
// header.
package basicauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/authkit"
)

// Name is the plugin name.
const Name = "basic-auth"

// Priority is APISIX's priority for basic-auth.
const Priority = 2520

// schema is APISIX's route-side schema (apisix/plugins/basic-auth.lua),
// with the realm schema of apisix/schema_def.lua get_realm_schema("basic").
const schema = `{
  "type": "object",
  "title": "work with route or service object",
  "properties": {
    "hide_credentials": {"type": "boolean", "default": false},
    "realm": {"type": "string", "pattern": "^[ -!#-[\\]-~]+$", "default": "basic", "minLength": 1, "maxLength": 128},
    "anonymous_consumer": {"type": "string", "minLength": 1}
  }
}`

// consumerSchema is APISIX's consumer_schema; "password" is an encrypt
// field.
const consumerSchema = `{
  "type": "object",
  "title": "work with consumer object",
  "properties": {
    "username": {"type": "string"},
    "password": {"type": "string"}
  },
  "required": ["username", "password"]
}`

// Config is the route-side configuration.
type Config struct {
	// HideCredentials removes the Authorization header before the request
	// is forwarded.
	HideCredentials bool `json:"hide_credentials"`
	// Realm goes into WWW-Authenticate on failures (default "basic").
	Realm string `json:"realm"`
	// AnonymousConsumer is attached when authentication fails.
	AnonymousConsumer string `json:"anonymous_consumer,omitempty"`
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:           Name,
		Priority:       Priority,
		Auth:           true,
		KeyField:       "username",
		EncryptFields:  []string{"password"},
		Schema:         json.RawMessage(schema),
		ConsumerSchema: json.RawMessage(consumerSchema),
		New:            New,
		NewConsumer:    NewConsumer,
	}
}

// Plugin is a built basic-auth instance.
type Plugin struct {
	conf      Config
	challenge []string
}

// New decodes conf with APISIX's defaults and builds the instance.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Realm: "basic"}
	if len(conf) > 0 {
		if err := json.Unmarshal(conf, &c); err != nil {
			return nil, fmt.Errorf("decode basic-auth conf: %w", err)
		}
	}
	return &Plugin{conf: c, challenge: []string{`Basic realm="` + c.Realm + `"`}}, nil
}

// credential holds the SHA-256 of the consumer's password: comparing
// fixed-size digests in constant time reveals neither the bytes nor the
// length of the password through timing.
type credential struct {
	sum [sha256.Size]byte
}

// NewConsumer decodes the consumer-side conf; the consumer is indexed by
// its username.
func NewConsumer(conf json.RawMessage) (string, any, error) {
	var c struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := json.Unmarshal(conf, &c); err != nil {
		return "", nil, fmt.Errorf("decode basic-auth consumer conf: %w", err)
	}
	if c.Username == nil {
		return "", nil, fmt.Errorf(`property "username" is required`)
	}
	if c.Password == nil {
		return "", nil, fmt.Errorf(`property "password" is required`)
	}
	return *c.Username, &credential{sum: sha256.Sum256([]byte(*c.Password))}, nil
}

// Rewrite authenticates the request (APISIX runs auth plugins in rewrite).
func (p *Plugin) Rewrite(r *plugin.Request) {
	cred, errMsg := find(r)
	var c *plugin.Consumer
	var credID string
	if cred != nil {
		c, credID = cred.Consumer, cred.ID
	} else {
		var ok bool
		if c, ok = authkit.Anonymous(r, p.conf.AnonymousConsumer, p.challenge, errMsg); !ok {
			return
		}
	}
	if p.conf.HideCredentials {
		r.Header.Del("Authorization")
	}
	r.AttachConsumer(c, credID)
}

// find parses the Authorization header and checks the password; it
// returns the credential or the failure message.
func find(r *plugin.Request) (*plugin.Credential, string) {
	vv := r.Header["Authorization"]
	if len(vv) == 0 {
		return nil, "Missing authorization in request"
	}
	user, pass, ok := ParseAuthorization(vv[0])
	if !ok {
		return nil, "Invalid authorization in request"
	}
	cred, found := r.Env.Consumers.Lookup(Name, user)
	if !found {
		return nil, "Invalid user authorization"
	}
	c, ok := cred.Data.(*credential)
	sum := sha256.Sum256(pass)
	if !ok || subtle.ConstantTimeCompare(sum[:], c.sum[:]) != 1 {
		return nil, "Invalid user authorization"
	}
	return cred, ""
}
