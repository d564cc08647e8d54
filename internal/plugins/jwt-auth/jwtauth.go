// Package jwtauth implements APISIX's jwt-auth plugin: a consumer is
// identified by a claim of a signed JSON Web Token and the token is
// verified with that consumer's secret or public key.
package jwtauth

import (
	"encoding/json"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/authkit"
	"github.com/sluice-gw/sluice/internal/plugins/internal/httpvar"
)

// Name is the plugin name.
const Name = "jwt-auth"

// Priority is APISIX's priority for jwt-auth.
const Priority = 2510

// PayloadKey is the engine.Ctx value key under which the verified token's
// payload (map[string]any) is stored when store_in_ctx is on (APISIX's
// ctx.jwt_auth_payload).
const PayloadKey = "jwt_auth_payload"

// schema is APISIX's route-side schema (apisix/plugins/jwt-auth.lua),
// with the realm schema of apisix/schema_def.lua get_realm_schema("jwt").
const schema = `{
  "type": "object",
  "properties": {
    "header": {"type": "string", "default": "authorization"},
    "query": {"type": "string", "default": "jwt"},
    "cookie": {"type": "string", "default": "jwt"},
    "hide_credentials": {"type": "boolean", "default": false},
    "key_claim_name": {"type": "string", "default": "key", "minLength": 1},
    "store_in_ctx": {"type": "boolean", "default": false},
    "realm": {"type": "string", "pattern": "^[ -!#-[\\]-~]+$", "default": "jwt", "minLength": 1, "maxLength": 128},
    "anonymous_consumer": {"type": "string", "minLength": 1},
    "claims_to_verify": {
      "type": "array",
      "items": {"type": "string", "enum": ["exp", "nbf"]},
      "uniqueItems": true
    }
  }
}`

// consumerSchema is APISIX's consumer_schema; "secret" is an encrypt
// field.
const consumerSchema = `{
  "type": "object",
  "properties": {
    "key": {"type": "string", "minLength": 1},
    "secret": {"type": "string", "minLength": 1},
    "algorithm": {
      "type": "string",
      "enum": ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"],
      "default": "HS256"
    },
    "exp": {"type": "integer", "minimum": 1, "default": 86400},
    "base64_secret": {"type": "boolean", "default": false},
    "lifetime_grace_period": {"type": "integer", "minimum": 0, "default": 0}
  },
  "dependencies": {
    "algorithm": {
      "oneOf": [
        {
          "properties": {
            "algorithm": {"enum": ["HS256", "HS384", "HS512"], "default": "HS256"}
          }
        },
        {
          "properties": {
            "public_key": {"type": "string", "minLength": 1},
            "algorithm": {"enum": ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"]}
          },
          "required": ["public_key"]
        }
      ]
    }
  },
  "required": ["key"]
}`

// Config is the route-side configuration.
type Config struct {
	// Header carries the token, optionally prefixed "Bearer " (default
	// "authorization").
	Header string `json:"header"`
	// Query is the query argument tried when the header is absent
	// (default "jwt").
	Query string `json:"query"`
	// Cookie is the cookie tried last (default "jwt").
	Cookie string `json:"cookie"`
	// HideCredentials removes the token from wherever it was found before
	// the request is forwarded.
	HideCredentials bool `json:"hide_credentials"`
	// KeyClaimName is the payload claim holding the consumer key (default
	// "key").
	KeyClaimName string `json:"key_claim_name"`
	// StoreInCtx keeps the verified payload for later plugins.
	StoreInCtx bool `json:"store_in_ctx"`
	// Realm goes into WWW-Authenticate on failures (default "jwt").
	Realm string `json:"realm"`
	// AnonymousConsumer is attached when authentication fails.
	AnonymousConsumer string `json:"anonymous_consumer,omitempty"`
	// ClaimsToVerify lists the claims ("exp", "nbf") that must be present
	// and valid; when empty, exp and nbf are checked only if present.
	ClaimsToVerify []string `json:"claims_to_verify,omitempty"`
}

// ConsumerConfig is the consumer/credential-side configuration.
type ConsumerConfig struct {
	// Key identifies the consumer; tokens carry it in KeyClaimName.
	Key *string `json:"key"`
	// Secret is the HMAC key for HS* algorithms.
	Secret *string `json:"secret"`
	// PublicKey is the PEM key for RS*, PS*, ES* and EdDSA.
	PublicKey *string `json:"public_key"`
	// Algorithm is the only algorithm accepted (default "HS256").
	Algorithm string `json:"algorithm"`
	// Exp is accepted for compatibility; APISIX no longer signs tokens.
	Exp int64 `json:"exp"`
	// Base64Secret means Secret is base64 encoded.
	Base64Secret bool `json:"base64_secret"`
	// LifetimeGracePeriod is the clock leeway in seconds for exp and nbf.
	LifetimeGracePeriod int64 `json:"lifetime_grace_period"`
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: Priority,
		Auth:     true,
		KeyField: "key",
		// APISIX's consumer_schema encrypts "secret" only; a public key
		// is not secret and private keys are no longer part of the schema.
		EncryptFields:  []string{"secret"},
		Schema:         json.RawMessage(schema),
		ConsumerSchema: json.RawMessage(consumerSchema),
		New:            New,
		NewConsumer:    NewConsumer,
	}
}

// Plugin is a built jwt-auth instance.
type Plugin struct {
	conf       Config
	headerKey  string
	cookieVar  string
	challenge  []string
	verifyExp  bool // claims_to_verify lists exp
	verifyNbf  bool // claims_to_verify lists nbf
	explicitly bool // claims_to_verify is non-empty
}

// New decodes conf with APISIX's defaults and builds the instance.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{Header: "authorization", Query: "jwt", Cookie: "jwt", KeyClaimName: "key", Realm: "jwt"}
	if len(conf) > 0 {
		if err := json.Unmarshal(conf, &c); err != nil {
			return nil, fmt.Errorf("decode jwt-auth conf: %w", err)
		}
	}
	p := &Plugin{
		conf:      c,
		headerKey: textproto.CanonicalMIMEHeaderKey(c.Header),
		cookieVar: "cookie_" + c.Cookie,
		challenge: []string{`Bearer realm="` + c.Realm + `"`},
	}
	for _, cl := range c.ClaimsToVerify {
		switch cl {
		case "exp":
			p.verifyExp = true
		case "nbf":
			p.verifyNbf = true
		default:
			return nil, fmt.Errorf("unsupported claim %q in claims_to_verify", cl)
		}
		p.explicitly = true
	}
	return p, nil
}

// consumerKey is what NewConsumer builds: the verification method and key
// of one consumer, parsed once per snapshot rather than per request.
type consumerKey struct {
	alg    string
	method jwt.SigningMethod
	// key is []byte for HS*, a parsed public key otherwise; nil when the
	// PEM could not be used, which fails every token (fail closed, as
	// APISIX does when openssl rejects the key at request time).
	key    any
	leeway int64
}

// NewConsumer decodes and checks the consumer-side conf (APISIX's
// check_schema for TYPE_CONSUMER); the consumer is indexed by its key.
func NewConsumer(conf json.RawMessage) (string, any, error) {
	c := ConsumerConfig{Algorithm: "HS256", Exp: 86400}
	if err := json.Unmarshal(conf, &c); err != nil {
		return "", nil, fmt.Errorf("decode jwt-auth consumer conf: %w", err)
	}
	if c.Key == nil {
		return "", nil, fmt.Errorf(`property "key" is required`)
	}
	method := jwt.GetSigningMethod(c.Algorithm)
	if method == nil || c.Algorithm == "none" {
		return "", nil, fmt.Errorf("unsupported algorithm %q", c.Algorithm)
	}
	isHS := strings.HasPrefix(c.Algorithm, "HS")
	if isHS && c.Secret == nil {
		return "", nil, fmt.Errorf(`property "secret" is required when using HS based algorithms`)
	}
	ck := &consumerKey{alg: c.Algorithm, method: method, leeway: c.LifetimeGracePeriod}
	if isHS {
		secret := []byte(*c.Secret)
		if c.Base64Secret && !isSecretRef(*c.Secret) {
			b, ok := ngxDecodeBase64(*c.Secret, stdAlphabet)
			if !ok {
				return "", nil, fmt.Errorf("base64_secret required but the secret is not in base64 format")
			}
			secret = b
		}
		ck.key = secret
	} else {
		if c.PublicKey == nil {
			return "", nil, fmt.Errorf("missing valid public key")
		}
		ck.key = parsePublicKey(*c.PublicKey, c.Algorithm)
	}
	return *c.Key, ck, nil
}

// isSecretRef reports whether s is an APISIX secret reference, which
// APISIX does not check for base64 at write time.
func isSecretRef(s string) bool {
	return strings.HasPrefix(s, "$env://") || strings.HasPrefix(s, "$secret://")
}

// Rewrite authenticates the request (APISIX runs auth plugins in rewrite).
func (p *Plugin) Rewrite(r *plugin.Request) {
	cred, errMsg := p.find(r)
	if cred != nil {
		r.AttachConsumer(cred.Consumer, cred.ID)
		return
	}
	if c, ok := authkit.Anonymous(r, p.conf.AnonymousConsumer, p.challenge, errMsg); ok {
		r.AttachConsumer(c, "")
	}
}

// find fetches, parses and verifies the token in APISIX's order: key
// claim, consumer, algorithm, signature, claims. It returns the
// credential or the failure message.
func (p *Plugin) find(r *plugin.Request) (*plugin.Credential, string) {
	raw, ok := p.fetch(r)
	if !ok {
		return nil, "Missing JWT token in request"
	}
	tok, ok := parseToken(raw)
	if !ok {
		return nil, "JWT token invalid"
	}
	var key string
	switch v := tok.payload[p.conf.KeyClaimName].(type) {
	case nil:
		if _, present := tok.payload[p.conf.KeyClaimName]; !present {
			return nil, "missing user key in JWT token"
		}
		// JSON null is truthy in Lua (cjson.null) but matches no key.
		return nil, "Invalid user key in JWT token"
	case bool:
		if !v {
			return nil, "missing user key in JWT token"
		}
		return nil, "Invalid user key in JWT token"
	case string:
		key = v
	default:
		return nil, "Invalid user key in JWT token"
	}
	cred, found := r.Env.Consumers.Lookup(Name, key)
	if !found {
		return nil, "Invalid user key in JWT token"
	}
	ck, ok := cred.Data.(*consumerKey)
	if !ok || ck.key == nil {
		return nil, "failed to verify jwt"
	}
	// The token's alg must be the consumer's: this is what stops "none"
	// and algorithm confusion (an HS256 token signed with an RSA public
	// key presented as the HMAC secret).
	if alg, _ := tok.alg.(string); alg != ck.alg {
		return nil, "failed to verify jwt"
	}
	sig, ok := ngxDecodeBase64(tok.sig, urlAlphabet)
	if !ok {
		return nil, "failed to verify jwt"
	}
	if err := ck.method.Verify(tok.signingString, sig, ck.key); err != nil {
		return nil, "failed to verify jwt"
	}
	if !p.claimsValid(tok.payload, ck.leeway, time.Now().Unix()) {
		return nil, "failed to verify jwt"
	}
	if p.conf.StoreInCtx {
		r.SetValue(PayloadKey, tok.payload)
	}
	return cred, ""
}

// claimsValid checks exp and nbf like APISIX's parser.verify_claims: with
// no claims_to_verify they are checked only when present; listed claims
// must be present. Both must be numbers; exp > now - leeway and
// nbf < now + leeway.
func (p *Plugin) claimsValid(payload map[string]any, leeway, now int64) bool {
	check := func(name string, required bool, ok func(float64) bool) bool {
		v, present := payload[name]
		if !present {
			return !required
		}
		// A JSON null is present (cjson.null) and not a number.
		f, isNum := v.(float64)
		return isNum && ok(f)
	}
	nbf := func(f float64) bool { return f < float64(now+leeway) }
	exp := func(f float64) bool { return f > float64(now-leeway) }
	if !p.explicitly {
		return check("nbf", false, nbf) && check("exp", false, exp)
	}
	for _, cl := range p.conf.ClaimsToVerify {
		var ok bool
		if cl == "exp" {
			ok = check("exp", true, exp)
		} else {
			ok = check("nbf", true, nbf)
		}
		if !ok {
			return false
		}
	}
	return true
}

// fetch finds the token: header (a "Bearer "/"bearer " prefix is
// stripped), then query argument, then cookie. With hide_credentials the
// source found is removed at once, before verification, as APISIX does.
func (p *Plugin) fetch(r *plugin.Request) (string, bool) {
	if vv, ok := r.Header[p.headerKey]; ok && len(vv) > 0 {
		tok := vv[0]
		if p.conf.HideCredentials {
			r.Header.Del(p.headerKey)
		}
		if len(tok) >= 7 && (tok[:7] == "Bearer " || tok[:7] == "bearer ") {
			tok = tok[7:]
		}
		return tok, true
	}
	if v, n := httpvar.QueryArg(r.Query, p.conf.Query); n > 0 {
		if p.conf.HideCredentials {
			httpvar.HideQuery(r, p.conf.Query)
		}
		if n > 1 || v == nil {
			// A table or boolean in APISIX: present but never a token.
			return "", true
		}
		return *v, true
	}
	val, ok := r.Var(p.cookieVar)
	if !ok {
		return "", false
	}
	if p.conf.HideCredentials {
		httpvar.RemoveCookie(r, p.conf.Cookie)
	}
	return val, true
}
