// Package requestvalidation implements APISIX's request-validation plugin:
// it validates the request headers and/or body against JSON Schemas in the
// rewrite phase and rejects what does not conform, before auth plugins run.
package requestvalidation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/httpvar"
	"github.com/sluice-gw/sluice/internal/schema"
)

// Name is the plugin name.
const Name = "request-validation"

// Priority is APISIX's priority for request-validation.
const Priority = 2800

// DefaultMaxBodySize is APISIX's default max_req_body_size (64 MiB).
const DefaultMaxBodySize = 67108864

var schemaDoc = json.RawMessage(`{
  "type": "object",
  "properties": {
    "header_schema": {"type": "object"},
    "body_schema": {"type": "object"},
    "max_req_body_size": {"type": "integer", "minimum": 1, "default": 67108864},
    "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 400},
    "rejected_msg": {"type": "string", "minLength": 1, "maxLength": 256}
  },
  "anyOf": [
    {"required": ["header_schema"]},
    {"required": ["body_schema"]}
  ]
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: Priority,
		Schema:   schemaDoc,
		New:      func(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) { return New(conf) },
	}
}

// Config is the plugin configuration, with APISIX's defaults.
type Config struct {
	// HeaderSchema validates the request headers, seen as an object of
	// lowercase names to a string (or an array of strings when repeated).
	HeaderSchema json.RawMessage `json:"header_schema"`
	// BodySchema validates the body: a form when Content-Type is
	// application/x-www-form-urlencoded, JSON otherwise.
	BodySchema json.RawMessage `json:"body_schema"`
	// MaxReqBodySize caps the body read into memory, in bytes.
	MaxReqBodySize int64 `json:"max_req_body_size"`
	// RejectedCode is the status of a rejection.
	RejectedCode int `json:"rejected_code"`
	// RejectedMsg, when set, replaces the validator's message.
	RejectedMsg *string `json:"rejected_msg"`
}

// Plugin is a configured request-validation instance.
type Plugin struct {
	conf   Config
	header *schema.Schema // nil when header_schema is not set
	body   *schema.Schema // nil when body_schema is not set
}

// New decodes conf with APISIX's defaults and compiles both schemas,
// rejecting invalid ones as APISIX's check_schema does.
func New(conf json.RawMessage) (*Plugin, error) {
	c := Config{MaxReqBodySize: DefaultMaxBodySize, RejectedCode: 400}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("invalid conf: %w", err)
	}
	if isNull(c.HeaderSchema) && isNull(c.BodySchema) {
		return nil, errors.New("object matches none of the required: [\"header_schema\"] or [\"body_schema\"]")
	}
	p := &Plugin{conf: c}
	var err error
	if !isNull(c.BodySchema) {
		if p.body, err = compile(c.BodySchema); err != nil {
			return nil, err
		}
	}
	if !isNull(c.HeaderSchema) {
		if p.header, err = compile(c.HeaderSchema); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// compile compiles a user schema. Errors lua-resty-jsonschema reports in
// its own words (an unknown type name, a keyword that must be an array)
// get those words; anything else gets the compiler's message.
func compile(raw json.RawMessage) (*schema.Schema, error) {
	if doc, err := schema.DecodeJSON(raw, 0); err == nil {
		if msg := luaSchemaError(doc); msg != "" {
			return nil, errors.New(msg)
		}
	}
	s, err := schema.Compile(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid schema: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	return s, nil
}

var jsonTypes = map[string]bool{
	"array": true, "boolean": true, "integer": true, "null": true,
	"number": true, "object": true, "string": true,
}

// luaSchemaError walks the keywords of a schema document and returns the
// message lua-resty-jsonschema gives for the first structural mistake it
// knows about, or "".
func luaSchemaError(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	switch t := m["type"].(type) {
	case string:
		if !jsonTypes[t] {
			return "invalid JSON type: " + t
		}
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && !jsonTypes[s] {
				return "invalid JSON type: " + s
			}
		}
	}
	for _, k := range []string{"enum", "required"} {
		if x, ok := m[k]; ok {
			if _, isArr := x.([]any); !isArr {
				return "table expected, got " + schema.LuaType(x)
			}
		}
	}
	for _, k := range []string{"properties", "patternProperties", "definitions", "dependencies"} {
		if mm, ok := m[k].(map[string]any); ok {
			for _, sub := range mm {
				if msg := luaSchemaError(sub); msg != "" {
					return msg
				}
			}
		}
	}
	for _, k := range []string{"items", "additionalItems", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf"} {
		switch x := m[k].(type) {
		case map[string]any:
			if msg := luaSchemaError(x); msg != "" {
				return msg
			}
		case []any:
			for _, sub := range x {
				if msg := luaSchemaError(sub); msg != "" {
					return msg
				}
			}
		}
	}
	return ""
}

// reject ends the request with rejected_code and rejected_msg, or msg
// when rejected_msg is not set (nil msg: nginx's page for the status).
func (p *Plugin) reject(r *plugin.Request, msg any) {
	if p.conf.RejectedMsg != nil {
		r.Exit(p.conf.RejectedCode, *p.conf.RejectedMsg)
		return
	}
	r.Exit(p.conf.RejectedCode, msg)
}

func (p *Plugin) logf(r *plugin.Request, msg string, args ...any) {
	if r.Env != nil && r.Env.Logger != nil {
		r.Env.Logger.Error(msg, args...)
	}
}

// Rewrite validates headers, then the body.
func (p *Plugin) Rewrite(r *plugin.Request) {
	if p.header != nil {
		if err := p.header.Validate(headerMap(r.Header, r.RawHost)); err != nil {
			p.logf(r, "req schema validation failed", "err", err.Error())
			p.reject(r, err.Error())
			return
		}
	}
	if p.body == nil {
		return
	}
	body, status := p.readBody(r)
	if status > 0 {
		r.Exit(status, nil)
	}
	if r.Exited() {
		return
	}
	if body == nil {
		p.reject(r, nil)
		return
	}
	ct := r.Header["Content-Type"]
	if len(ct) > 1 {
		// Two Content-Types are ambiguous: the upstream might parse the
		// body differently from what was validated.
		p.logf(r, "duplicated Content-Type header")
		p.reject(r, nil)
		return
	}
	var doc any
	if len(ct) == 1 && hasPrefixFold(ct[0], "application/x-www-form-urlencoded") {
		doc = decodeArgs(body)
	} else {
		var err error
		var reencode bool
		doc, reencode, err = decodeJSON(body)
		if err != nil {
			p.logf(r, "failed to decode the req body", "err", err.Error())
			p.reject(r, err.Error())
			return
		}
		if reencode {
			// The body had duplicate keys; forward exactly the document
			// that was validated (last key wins), as APISIX does.
			if b, err := encodeJSON(doc); err == nil {
				setBody(r.Ctx, b)
			}
		}
	}
	if err := p.body.Validate(doc); err != nil {
		p.logf(r, "req schema validation failed", "err", err.Error())
		p.reject(r, err.Error())
	}
}

// readBody reads the whole body, at most max_req_body_size bytes, and puts
// the bytes back as the body the upstream will receive. It returns nil for
// no body (rejected as APISIX does), or a status for failures that are not
// the client's schema's business: 413 when the engine's own body limit
// (client_max_body_size) was passed, 400 when the body could not be read.
// A body over max_req_body_size is rejected here, as APISIX does, with
// rejected_code and rejected_msg.
func (p *Plugin) readBody(r *plugin.Request) ([]byte, int) {
	max := p.conf.MaxReqBodySize
	if cl, ok := r.Header["Content-Length"]; ok && len(cl) > 0 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n > max {
			p.logf(r, "failed to get body", "err", fmt.Sprintf("request size %d is greater than the maximum size %d allowed", n, max))
			p.reject(r, nil)
			return nil, 0
		}
	}
	if r.Body == nil || r.ContentLength == 0 {
		return nil, 0
	}
	size := int64(512)
	if r.ContentLength > 0 {
		size = r.ContentLength
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(size, max)+1))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, max+1))
	if err != nil {
		if errors.Is(err, engine.ErrBodyTooLarge) {
			return nil, 413
		}
		p.logf(r, "failed to read the request body", "err", err.Error())
		return nil, 400
	}
	if n > max {
		p.logf(r, "failed to get body", "err", fmt.Sprintf("request size %d is greater than the maximum size %d allowed", n, max))
		p.reject(r, nil)
		return nil, 0
	}
	b := buf.Bytes()
	setBody(r.Ctx, b)
	if len(b) == 0 {
		return nil, 0
	}
	return b, 0
}

// bufferedBody is a request body already read into memory; Close closes
// the engine's body it replaced.
type bufferedBody struct {
	*bytes.Reader
	orig io.Closer
}

func (b *bufferedBody) Close() error { return b.orig.Close() }

// setBody makes b the body forwarded upstream, with a matching length.
func setBody(c *engine.Ctx, b []byte) {
	var orig io.Closer = io.NopCloser(nil)
	if bb, ok := c.Body.(*bufferedBody); ok {
		orig = bb.orig
	} else if c.Body != nil {
		orig = c.Body
	}
	c.Body = &bufferedBody{Reader: bytes.NewReader(b), orig: orig}
	c.ContentLength = int64(len(b))
	c.Header.Del("Transfer-Encoding")
	c.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// headerMap is the request headers as APISIX's core.request.headers sees
// them: lowercase names, a string per header or an array of strings when
// the header was sent more than once, and "host" even where the engine
// keeps the Host header apart.
func headerMap(h engine.Header, rawHost string) map[string]any {
	m := make(map[string]any, len(h)+1)
	if _, ok := h["Host"]; !ok && rawHost != "" {
		m["host"] = rawHost
	}
	for k, vs := range h {
		switch len(vs) {
		case 0:
		case 1:
			m[strings.ToLower(k)] = vs[0]
		default:
			a := make([]any, len(vs))
			for i, v := range vs {
				a[i] = v
			}
			m[strings.ToLower(k)] = a
		}
	}
	return m
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// decodeJSON decodes the body strictly; a body whose only fault is a
// duplicate object key is decoded the way lua-cjson does (last key wins)
// and reported for re-encoding.
func decodeJSON(b []byte) (any, bool, error) {
	v, err := schema.DecodeJSON(b, 0)
	if err == nil {
		return v, false, nil
	}
	if !strings.HasPrefix(err.Error(), "duplicate key") {
		return nil, false, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeArgs parses a form body as ngx.decode_args(body, 0) does: "a=b"
// pairs split on '&', '+' and %XX decoded, a key without '=' is true, a
// repeated key collects its values in an array.
func decodeArgs(b []byte) map[string]any {
	m := map[string]any{}
	s := string(b)
	for s != "" {
		var part string
		part, s, _ = strings.Cut(s, "&")
		if part == "" {
			continue
		}
		k, v, hasEq := strings.Cut(part, "=")
		k = httpvar.Unescape(k)
		if k == "" {
			continue
		}
		var val any = true
		if hasEq {
			val = httpvar.Unescape(v)
		}
		switch old := m[k].(type) {
		case nil:
			m[k] = val
		case []any:
			m[k] = append(old, val)
		default:
			m[k] = []any{old, val}
		}
	}
	return m
}
