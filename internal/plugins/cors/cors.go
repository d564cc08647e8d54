// Package cors implements APISIX's cors plugin: it answers every OPTIONS
// request itself in the rewrite phase (before any auth plugin) and adds the
// CORS response headers in header_filter, so they appear on every response
// of the route, including errors produced by other plugins or the gateway.
package cors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name.
const Name = "cors"

// Priority is APISIX's priority for cors.
const Priority = 4000

// originVar is the request variable holding the Origin header as it was
// in the rewrite phase (APISIX's ctx.original_request_origin): a later
// plugin (proxy-rewrite) may change the request's Origin for the upstream,
// but the CORS decision is about the client's. A variable is used instead
// of Ctx.Values because setting it does not allocate.
const originVar = "cors_original_request_origin"

// allMethods is what allow_methods "**" expands to.
const allMethods = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"

// originsPattern is APISIX's origins_pattern.
const originsPattern = `^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$`

var schemaDoc = json.RawMessage(`{
  "type": "object",
  "properties": {
    "allow_origins": {"type": "string", "pattern": "` + originsPattern + `", "default": "*"},
    "allow_methods": {"type": "string", "default": "*"},
    "allow_headers": {"type": "string", "default": "*"},
    "expose_headers": {"type": "string"},
    "max_age": {"type": "integer", "default": 5},
    "allow_credential": {"type": "boolean", "default": false},
    "allow_origins_by_regex": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 4096}, "minItems": 1, "uniqueItems": true},
    "allow_origins_by_metadata": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 4096}, "minItems": 1, "uniqueItems": true},
    "timing_allow_origins": {"type": "string", "pattern": "` + originsPattern + `"},
    "timing_allow_origins_by_regex": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 4096}, "minItems": 1, "uniqueItems": true}
  }
}`)

var metadataSchemaDoc = json.RawMessage(`{
  "type": "object",
  "properties": {
    "allow_origins": {"type": "object", "additionalProperties": {"type": "string", "pattern": "` + originsPattern + `"}}
  }
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:           Name,
		Priority:       Priority,
		Schema:         schemaDoc,
		MetadataSchema: metadataSchemaDoc,
		New:            func(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) { return New(conf) },
	}
}

// Config is the route-side configuration, with APISIX's defaults.
type Config struct {
	// AllowOrigins is "*", "**" (echo the request Origin, even with
	// credentials), "null" or a comma list of scheme://host[:port].
	AllowOrigins string `json:"allow_origins"`
	// AllowMethods is sent as Access-Control-Allow-Methods; "**" expands
	// to every method.
	AllowMethods string `json:"allow_methods"`
	// AllowHeaders is sent as Access-Control-Allow-Headers; "**" echoes
	// the request's Access-Control-Request-Headers.
	AllowHeaders string `json:"allow_headers"`
	// ExposeHeaders, when set and not empty, is sent as
	// Access-Control-Expose-Headers.
	ExposeHeaders *string `json:"expose_headers"`
	// MaxAge is sent as Access-Control-Max-Age.
	MaxAge int64 `json:"max_age"`
	// AllowCredential adds Access-Control-Allow-Credentials: true.
	AllowCredential bool `json:"allow_credential"`
	// AllowOriginsByRegex, when set, replaces AllowOrigins: an Origin that
	// any regex finds (unanchored) is allowed.
	AllowOriginsByRegex []string `json:"allow_origins_by_regex"`
	// AllowOriginsByMetadata names entries of the plugin_metadata's
	// allow_origins map that are allowed too.
	AllowOriginsByMetadata []string `json:"allow_origins_by_metadata"`
	// TimingAllowOrigins decides Timing-Allow-Origin like AllowOrigins.
	TimingAllowOrigins *string `json:"timing_allow_origins"`
	// TimingAllowOriginsByRegex, when set, replaces TimingAllowOrigins.
	TimingAllowOriginsByRegex []string `json:"timing_allow_origins_by_regex"`
}

// errCredentialWildcard is APISIX's check_schema message.
var errCredentialWildcard = errors.New("you can not set '*' for other option when 'allow_credential' is true")

// opt is a Lua value that may be nil: APISIX's CORS logic distinguishes
// an absent Origin from an empty one.
type opt struct {
	v  string
	ok bool
}

// origins is one allow_origins-style setting, prepared once.
type origins struct {
	raw string
	// multi holds the members of a comma list; nil for a single value.
	multi map[string]struct{}
}

func newOrigins(s string) origins {
	o := origins{raw: s}
	if strings.Contains(s, ",") {
		o.multi = map[string]struct{}{}
		for _, p := range strings.Split(s, ",") {
			if p != "" {
				o.multi[p] = struct{}{}
			}
		}
	}
	return o
}

// process is APISIX's process_with_allow_origins: the value to answer
// with, or nil.
func (o *origins) process(req opt) opt {
	v := o.raw
	multi := o.multi
	if v == "**" {
		if !req.ok {
			return opt{"*", true}
		}
		v = req.v
		if strings.Contains(v, ",") {
			// APISIX splits the echoed Origin as a list; a value with a
			// comma can never equal one of its own parts.
			return opt{}
		}
	}
	if multi != nil {
		if _, in := multi[req.v]; req.ok && in {
			return req
		}
		return opt{}
	}
	return opt{v, true}
}

// matches is APISIX's match_origins: equal (nil equals nil) or "*".
func matches(req, allow opt) bool {
	return (req.ok == allow.ok && req.v == allow.v) || (allow.ok && allow.v == "*")
}

// metadata is the parsed plugin_metadata of cors.
type metadata struct {
	raw     []byte
	origins map[string]*origins
}

// Plugin is a configured cors instance.
type Plugin struct {
	conf          Config
	allowOrigins  origins
	timingOrigins *origins // nil when timing_allow_origins is not set
	originsRe     *regexp.Regexp
	timingRe      *regexp.Regexp

	// Constant header values, shared by every response; cap == len so an
	// Add on the response header copies instead of writing into them.
	methods, maxAge, allowHeaders, expose, credTrue []string

	// meta caches the parsed plugin_metadata, keyed by its raw bytes, so
	// requests parse it only after it changed.
	meta atomic.Pointer[metadata]
}

// New decodes conf with APISIX's defaults and applies cors's check_schema.
func New(conf json.RawMessage) (*Plugin, error) {
	c := Config{AllowOrigins: "*", AllowMethods: "*", AllowHeaders: "*", MaxAge: 5}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("invalid conf: %w", err)
	}
	if c.AllowCredential {
		if c.AllowOrigins == "*" || c.AllowMethods == "*" || c.AllowHeaders == "*" ||
			(c.ExposeHeaders != nil && *c.ExposeHeaders == "*") ||
			(c.TimingAllowOrigins != nil && *c.TimingAllowOrigins == "*") {
			return nil, errCredentialWildcard
		}
	}
	p := &Plugin{conf: c, allowOrigins: newOrigins(c.AllowOrigins)}
	var err error
	if p.originsRe, err = joinRegexps(c.AllowOriginsByRegex); err != nil {
		return nil, err
	}
	if p.timingRe, err = joinRegexps(c.TimingAllowOriginsByRegex); err != nil {
		return nil, err
	}
	if c.TimingAllowOrigins != nil {
		t := newOrigins(*c.TimingAllowOrigins)
		p.timingOrigins = &t
	}
	methods := c.AllowMethods
	if methods == "**" {
		methods = allMethods
	}
	p.methods = []string{methods}
	p.maxAge = []string{strconv.FormatInt(c.MaxAge, 10)}
	p.allowHeaders = []string{c.AllowHeaders}
	if c.ExposeHeaders != nil && *c.ExposeHeaders != "" {
		p.expose = []string{*c.ExposeHeaders}
	}
	p.credTrue = []string{"true"}
	return p, nil
}

// joinRegexps compiles each rule (to report the bad one as APISIX does)
// and then all of them joined with "|", as APISIX matches them.
func joinRegexps(rules []string) (*regexp.Regexp, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	for _, r := range rules {
		if _, err := regexp.Compile(r); err != nil {
			return nil, err
		}
	}
	return regexp.Compile(strings.Join(rules, "|"))
}

// Rewrite remembers the client's Origin and answers every OPTIONS request
// with an empty 200, before auth plugins run.
func (p *Plugin) Rewrite(r *plugin.Request) {
	if vs := r.Header["Origin"]; len(vs) > 0 {
		r.SetVar(originVar, vs[0])
	}
	if r.Method == "OPTIONS" {
		r.Exit(200, "")
	}
}

// HeaderFilter adds the CORS headers to the response, following APISIX's
// header_filter step by step (including its nil-versus-value quirks).
func (p *Plugin) HeaderFilter(r *plugin.Request) {
	var req opt
	req.v, req.ok = r.Var(originVar)
	c := &p.conf

	var allow opt
	local := false
	if c.AllowOriginsByMetadata != nil {
		allow = p.byMetadata(r, req)
		if !matches(req, allow) && c.AllowOrigins != "*" {
			local = true
		}
	} else {
		local = true
	}
	if local {
		if p.originsRe == nil {
			allow = p.allowOrigins.process(req)
		} else {
			allow = byRegex(p.originsRe, req)
		}
	}
	if !matches(req, allow) {
		allow = p.byMetadata(r, req)
	}
	h := r.W.Header()
	if c.AllowOrigins != "*" {
		h.Add("Vary", "Origin")
	}
	if allow.ok {
		p.setCORSHeaders(r, h, allow.v)
	}

	var timing opt
	switch {
	case p.timingRe != nil:
		timing = byRegex(p.timingRe, req)
	case p.timingOrigins != nil:
		timing = p.timingOrigins.process(req)
	}
	if timing.ok && matches(req, timing) {
		h["Timing-Allow-Origin"] = []string{timing.v}
	}
}

func (p *Plugin) setCORSHeaders(r *plugin.Request, h engine.Header, origin string) {
	h["Access-Control-Allow-Origin"] = []string{origin}
	h["Access-Control-Allow-Methods"] = p.methods[:1:1]
	h["Access-Control-Max-Age"] = p.maxAge[:1:1]
	if p.expose != nil {
		h["Access-Control-Expose-Headers"] = p.expose[:1:1]
	}
	if p.conf.AllowHeaders == "**" {
		if vs := r.Header["Access-Control-Request-Headers"]; len(vs) > 0 {
			h["Access-Control-Allow-Headers"] = vs[:1:1]
		} else {
			delete(h, "Access-Control-Allow-Headers")
		}
	} else {
		h["Access-Control-Allow-Headers"] = p.allowHeaders[:1:1]
	}
	if p.conf.AllowCredential {
		h["Access-Control-Allow-Credentials"] = p.credTrue[:1:1]
	}
}

// byRegex is APISIX's process_with_allow_origins_by_regex.
func byRegex(re *regexp.Regexp, req opt) opt {
	if req.ok && re.MatchString(req.v) {
		return req
	}
	return opt{}
}

// byMetadata is APISIX's process_with_allow_origins_by_metadata: the
// request Origin if one of the named metadata entries allows it.
func (p *Plugin) byMetadata(r *plugin.Request, req opt) opt {
	if p.conf.AllowOriginsByMetadata == nil {
		return opt{}
	}
	md := p.metadata(r.Metadata(Name))
	if md == nil {
		return opt{}
	}
	for _, key := range p.conf.AllowOriginsByMetadata {
		o := md.origins[key]
		if o == nil {
			// APISIX raises a Lua error here; an unknown name simply
			// allows nothing.
			continue
		}
		if matches(req, o.process(req)) {
			return req
		}
	}
	return opt{}
}

// metadata returns the parsed plugin_metadata, parsing it only when its
// bytes changed since the last request.
func (p *Plugin) metadata(raw json.RawMessage) *metadata {
	if len(raw) == 0 {
		return nil
	}
	if m := p.meta.Load(); m != nil && bytes.Equal(m.raw, raw) {
		return m
	}
	var doc struct {
		AllowOrigins map[string]string `json:"allow_origins"`
	}
	m := &metadata{raw: append([]byte(nil), raw...)}
	if json.Unmarshal(raw, &doc) == nil && doc.AllowOrigins != nil {
		m.origins = make(map[string]*origins, len(doc.AllowOrigins))
		for k, v := range doc.AllowOrigins {
			o := newOrigins(v)
			m.origins[k] = &o
		}
	}
	p.meta.Store(m)
	return m
}
