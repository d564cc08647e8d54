// Package hmacauth implements APISIX's hmac-auth plugin (the 3.x format):
// the client signs selected request headers and the request target with a
// consumer's secret key and sends
//
//	Authorization: Signature keyId="...",algorithm="hmac-sha256",headers="@request-target date",signature="..."
//
// The plugin finds the consumer by keyId, checks the algorithm, the Date
// header against clock_skew, that every signed_headers entry was signed,
// the signature (in constant time) and optionally the body Digest.
package hmacauth

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/reqbody"
)

// Name is the plugin name.
const Name = "hmac-auth"

const schemaDoc = `{
  "type": "object",
  "title": "work with route or service object",
  "properties": {
    "allowed_algorithms": {
      "type": "array",
      "minItems": 1,
      "items": {"type": "string", "enum": ["hmac-sha1", "hmac-sha256", "hmac-sha512"]},
      "default": ["hmac-sha1", "hmac-sha256", "hmac-sha512"]
    },
    "clock_skew": {"type": "integer", "default": 300, "minimum": 1},
    "signed_headers": {
      "type": "array",
      "default": ["date"],
      "items": {"type": "string", "minLength": 1, "maxLength": 50}
    },
    "validate_request_body": {"type": "boolean", "default": false},
    "max_req_body_size": {"type": "integer", "minimum": 1, "default": 67108864},
    "hide_credentials": {"type": "boolean", "default": false},
    "realm": {
      "type": "string",
      "pattern": "^[\\x20-\\x21\\x23-\\x5B\\]-\\x7E]+$",
      "default": "hmac",
      "minLength": 1,
      "maxLength": 128
    },
    "anonymous_consumer": {"type": "string", "minLength": 1}
  }
}`

const consumerSchemaDoc = `{
  "type": "object",
  "title": "work with consumer object",
  "properties": {
    "key_id": {"type": "string", "minLength": 1, "maxLength": 256},
    "secret_key": {"type": "string", "minLength": 1, "maxLength": 256}
  },
  "required": ["key_id", "secret_key"]
}`

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:           Name,
		Priority:       2530,
		Auth:           true,
		KeyField:       "key_id",
		EncryptFields:  []string{"secret_key"},
		Schema:         json.RawMessage(schemaDoc),
		ConsumerSchema: json.RawMessage(consumerSchemaDoc),
		New:            New,
		NewConsumer:    NewConsumer,
	}
}

// Config is the route-side configuration.
type Config struct {
	// AllowedAlgorithms lists the algorithms a client may sign with.
	AllowedAlgorithms []string `json:"allowed_algorithms"`
	// ClockSkew is how many seconds the Date header may differ from now.
	ClockSkew int64 `json:"clock_skew"`
	// SignedHeaders must all appear in the signature's headers list.
	SignedHeaders []string `json:"signed_headers"`
	// ValidateRequestBody checks the Digest header against the body.
	ValidateRequestBody bool `json:"validate_request_body"`
	// MaxReqBodySize bounds the body read for the digest check.
	MaxReqBodySize int64 `json:"max_req_body_size"`
	// HideCredentials removes Authorization before proxying.
	HideCredentials bool `json:"hide_credentials"`
	// Realm goes into WWW-Authenticate on failure.
	Realm string `json:"realm"`
	// AnonymousConsumer is attached when authentication fails.
	AnonymousConsumer string `json:"anonymous_consumer"`
}

// algorithm indexes the three supported HMAC algorithms.
type algorithm int

const (
	algSHA1 algorithm = iota
	algSHA256
	algSHA512
	numAlgs
)

var algNames = [numAlgs]string{"hmac-sha1", "hmac-sha256", "hmac-sha512"}
var algHashes = [numAlgs]func() hash.Hash{sha1.New, sha256.New, sha512.New}

func parseAlg(s string) (algorithm, bool) {
	for i, n := range algNames {
		if n == s {
			return algorithm(i), true
		}
	}
	return 0, false
}

// Plugin is a built hmac-auth instance.
type Plugin struct {
	conf      Config
	allowed   [numAlgs]bool
	wwwAuth   []string
	scratches sync.Pool // *scratch
}

// scratch holds per-request buffers so verifying a signature does not
// allocate.
type scratch struct {
	signing []byte
	sig     [96]byte
	sum     []byte
}

// New builds an instance from a route-side conf; env may be nil.
func New(raw json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{
		AllowedAlgorithms: []string{"hmac-sha1", "hmac-sha256", "hmac-sha512"},
		ClockSkew:         300,
		SignedHeaders:     []string{"date"},
		MaxReqBodySize:    67108864,
		Realm:             "hmac",
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode hmac-auth conf: %w", err)
		}
	}
	p := &Plugin{conf: c}
	for _, a := range c.AllowedAlgorithms {
		i, ok := parseAlg(a)
		if !ok {
			return nil, fmt.Errorf("unknown algorithm %q", a)
		}
		p.allowed[i] = true
	}
	if c.ClockSkew < 1 {
		return nil, errors.New(`property "clock_skew" validation failed: expected 0 to be at least 1`)
	}
	p.wwwAuth = []string{`hmac realm="` + c.Realm + `"`}
	p.scratches.New = func() any { return &scratch{signing: make([]byte, 0, 256), sum: make([]byte, 0, 64)} }
	return p, nil
}

// Secret is the consumer-side data of an hmac-auth credential. It keeps
// one pool of keyed HMAC states per algorithm so a request reuses a state
// instead of re-deriving the key pads.
type Secret struct {
	key   []byte
	pools [numAlgs]sync.Pool
}

func (s *Secret) mac(a algorithm) hash.Hash {
	if h, ok := s.pools[a].Get().(hash.Hash); ok {
		h.Reset()
		return h
	}
	return hmac.New(algHashes[a], s.key)
}

// NewConsumer decodes a consumer-side conf: the key is key_id.
func NewConsumer(raw json.RawMessage) (string, any, error) {
	var c struct {
		KeyID     *string `json:"key_id"`
		SecretKey *string `json:"secret_key"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", nil, fmt.Errorf("decode hmac-auth consumer conf: %w", err)
	}
	if c.KeyID == nil {
		return "", nil, errors.New(`property "key_id" is required`)
	}
	if c.SecretKey == nil {
		return "", nil, errors.New(`property "secret_key" is required`)
	}
	return *c.KeyID, &Secret{key: []byte(*c.SecretKey)}, nil
}

// Rewrite authenticates the request or ends it with 401.
func (p *Plugin) Rewrite(r *plugin.Request) {
	if ok, status, body := p.Authenticate(r); !ok {
		r.Exit(status, body)
	}
}

// Failure bodies; shared so a rejection does not build a map.
var (
	msgMissingAuth = map[string]string{"message": "client request can't be validated: missing Authorization header"}
	msgNoSignature = map[string]string{"message": "client request can't be validated: Authorization header does not start with 'Signature'"}
	msgInvalid     = map[string]string{"message": "client request can't be validated"}
	msgInvalidUser = map[string]string{"message": "Invalid user authorization"}
)

// Authenticate verifies the request and attaches the consumer (or the
// anonymous consumer) without writing a response, so multi-auth can try
// it among others. On failure it has set WWW-Authenticate and returns the
// status and body Rewrite would answer with.
func (p *Plugin) Authenticate(r *plugin.Request) (ok bool, status int, body any) {
	cred, fail, reason, st := p.verify(r)
	if cred == nil {
		if st != 0 {
			return false, st, map[string]string{"message": reason}
		}
		if p.conf.AnonymousConsumer == "" {
			r.W.Header()["Www-Authenticate"] = p.wwwAuth
			return false, 401, fail
		}
		if r.Env != nil && r.Env.Logger != nil {
			r.Env.Logger.Debug("hmac-auth: using anonymous consumer", "reason", reason)
		}
		var c *plugin.Consumer
		found := false
		if r.Env != nil {
			c, found = r.Env.Consumers.ByName(p.conf.AnonymousConsumer)
		}
		if !found {
			if r.Env != nil && r.Env.Logger != nil {
				r.Env.Logger.Error("hmac-auth: anonymous consumer not found", "consumer", p.conf.AnonymousConsumer)
			}
			r.W.Header()["Www-Authenticate"] = p.wwwAuth
			return false, 401, msgInvalidUser
		}
		if p.conf.HideCredentials {
			r.Header.Del("Authorization")
		}
		r.AttachConsumer(c, "")
		return true, 0, nil
	}
	if p.conf.HideCredentials {
		r.Header.Del("Authorization")
	}
	r.AttachConsumer(cred.Consumer, cred.ID)
	return true, 0, nil
}

// params are the fields of a Signature Authorization header.
type params struct {
	keyID, algorithm, signature, headers   string
	hasKeyID, hasAlg, hasSig, hasHeaderLst bool
}

// verify returns the matched credential, or the body to answer with, the
// reason (for logs) and, for failures that keep their own status (413), that
// status.
func (p *Plugin) verify(r *plugin.Request) (*plugin.Credential, map[string]string, string, int) {
	auth, present := headerFirst(r.Header, "Authorization")
	if !present {
		return nil, msgMissingAuth, "missing Authorization header", 0
	}
	if !strings.HasPrefix(auth, "Signature") {
		return nil, msgNoSignature, "Authorization header does not start with 'Signature'", 0
	}
	ps := parseSignature(auth[len("Signature"):])
	cred, reason, status := p.validate(r, &ps)
	if cred == nil {
		return nil, msgInvalid, reason, status
	}
	return cred, nil, "", 0
}

// validate runs APISIX's checks in APISIX's order. On failure it returns
// the reason (logged, never sent) and, for a body too large, 413.
func (p *Plugin) validate(r *plugin.Request, ps *params) (*plugin.Credential, string, int) {
	if !ps.hasKeyID || !ps.hasSig {
		return nil, "keyId or signature missing", 0
	}
	if !ps.hasAlg {
		return nil, "algorithm missing", 0
	}
	var cred *plugin.Credential
	if r.Env != nil {
		cred, _ = r.Env.Consumers.Lookup(Name, ps.keyID)
	}
	if cred == nil {
		return nil, "Invalid key_id", 0
	}
	secret, _ := cred.Data.(*Secret)
	if secret == nil {
		return nil, "Invalid key_id", 0
	}
	alg, known := parseAlg(ps.algorithm)
	if !known || !p.allowed[alg] {
		return nil, "Invalid algorithm", 0
	}
	date, ok := headerFirst(r.Header, "Date")
	if !ok {
		return nil, "Date header missing. failed to validate clock skew", 0
	}
	t, ok := parseHTTPTime(date)
	if !ok {
		return nil, "Invalid GMT format time", 0
	}
	diff := time.Now().Unix() - t.Unix()
	if diff < 0 {
		diff = -diff
	}
	if diff > p.conf.ClockSkew {
		return nil, "Clock skew exceeded", 0
	}
	for _, want := range p.conf.SignedHeaders {
		if !listHas(ps.headers, want) {
			return nil, `expected header "` + want + `" missing in signing`, 0
		}
	}

	sc := p.scratches.Get().(*scratch)
	defer p.scratches.Put(sc)
	sc.signing = p.signingString(sc.signing[:0], r, ps)
	mac := secret.mac(alg)
	mac.Write(sc.signing)
	sc.sum = mac.Sum(sc.sum[:0])
	secret.pools[alg].Put(mac)
	sig, ok := decodeBase64(sc.sig[:], ps.signature)
	if !ok || subtle.ConstantTimeCompare(sig, sc.sum) != 1 {
		return nil, "Invalid signature", 0
	}

	if p.conf.ValidateRequestBody {
		digest, ok := headerFirst(r.Header, "Digest")
		if !ok {
			return nil, "Invalid digest", 0
		}
		body, err := reqbody.Read(r, p.conf.MaxReqBodySize)
		if err != nil {
			return nil, err.Error(), 413
		}
		sum := sha256.Sum256(body)
		want := "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:])
		if subtle.ConstantTimeCompare([]byte(want), []byte(digest)) != 1 {
			return nil, "Invalid digest", 0
		}
	}
	return cred, "", 0
}

// listHas reports whether the space-separated list contains name exactly.
func listHas(list, name string) bool {
	for len(list) > 0 {
		item := list
		if i := strings.IndexByte(list, ' '); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			list = ""
		}
		if item == name {
			return true
		}
	}
	return false
}

// signingString appends the string the client signed: keyId, then one
// line per entry of the headers list; "@request-target" is "METHOD uri"
// unless a header of that name exists, and headers the request lacks are
// skipped, as APISIX does. Every line ends with "\n".
func (p *Plugin) signingString(b []byte, r *plugin.Request, ps *params) []byte {
	b = append(b, ps.keyID...)
	b = append(b, '\n')
	list := ps.headers
	for len(list) > 0 {
		h := list
		if i := strings.IndexByte(list, ' '); i >= 0 {
			h, list = list[:i], list[i+1:]
		} else {
			list = ""
		}
		v, ok := "", false
		if h != "" {
			v, ok = headerFirst(r.Header, h)
		}
		switch {
		case ok:
			b = append(b, h...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, '\n')
		case h == "@request-target":
			uri := r.RequestURI
			if uri == "" {
				uri = "/"
			}
			b = append(b, r.Method...)
			b = append(b, ' ')
			b = append(b, uri...)
			b = append(b, '\n')
		}
	}
	return b
}

// decodeBase64 decodes standard base64 (padding optional, as nginx's
// decoder accepts) into dst without allocating; false if s is not base64
// or too long to be any supported digest.
func decodeBase64(dst []byte, s string) ([]byte, bool) {
	s = strings.TrimRight(s, "=")
	if base64.RawStdEncoding.DecodedLen(len(s)) > len(dst) {
		return nil, false
	}
	var src [128]byte
	n := copy(src[:], s)
	m, err := base64.RawStdEncoding.Decode(dst, src[:n])
	if err != nil {
		return nil, false
	}
	return dst[:m], true
}

// parseSignature splits the Authorization value after "Signature" on
// commas and takes, in each field, the first `word="value"` pair, as
// APISIX's Lua pattern %s*(%w+)="(.-)" does (%w is ASCII letters and
// digits).
func parseSignature(s string) params {
	var ps params
	for len(s) > 0 {
		field := s
		if i := strings.IndexByte(s, ','); i >= 0 {
			field, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		key, val, ok := firstPair(field)
		if !ok {
			continue
		}
		switch key {
		case "keyId":
			ps.keyID, ps.hasKeyID = val, true
		case "algorithm":
			ps.algorithm, ps.hasAlg = val, true
		case "signature":
			ps.signature, ps.hasSig = val, true
		case "headers":
			ps.headers, ps.hasHeaderLst = val, true
		}
	}
	return ps
}

func isWord(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// firstPair finds the leftmost word="value" in field.
func firstPair(field string) (key, val string, ok bool) {
	from := 0
	for {
		j := strings.Index(field[from:], `="`)
		if j < 0 {
			return "", "", false
		}
		j += from
		from = j + 1
		if j == 0 || !isWord(field[j-1]) {
			continue
		}
		end := strings.IndexByte(field[j+2:], '"')
		if end < 0 {
			continue
		}
		i := j - 1
		for i > 0 && isWord(field[i-1]) {
			i--
		}
		return field[i:j], field[j+2 : j+2+end], true
	}
}

// headerFirst returns the first value of a header, matching the name
// case-insensitively without allocating.
func headerFirst(h engine.Header, name string) (string, bool) {
	if vv, ok := h[name]; ok && len(vv) > 0 {
		return vv[0], true
	}
	for k, vv := range h {
		if len(vv) > 0 && strings.EqualFold(k, name) {
			return vv[0], true
		}
	}
	return "", false
}

var httpTimeLayouts = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT",
	time.RFC850,
	time.ANSIC,
}

// parseHTTPTime parses the three HTTP date formats nginx accepts.
func parseHTTPTime(s string) (time.Time, bool) {
	for _, l := range httpTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
