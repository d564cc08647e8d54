// Package proxyrewrite implements APISIX's proxy-rewrite plugin: it
// rewrites the URI, method, Host and headers of the request sent upstream.
package proxyrewrite

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/vartpl"
)

// Name is the plugin name.
const Name = "proxy-rewrite"

// Priority is APISIX's priority for proxy-rewrite.
const Priority = 1008

const headerValue = `{"oneOf":[{"type":"string"},{"type":"number"},{"type":"array","minItems":1,"items":{"oneOf":[{"type":"string"},{"type":"number"}]}}]}`

// schema transcribes proxy-rewrite.lua's schema.
var schema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"uri": {"description": "new uri for upstream", "type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^\\/.*"},
		"method": {"description": "proxy route method", "type": "string",
			"enum": ["GET","POST","PUT","HEAD","DELETE","OPTIONS","MKCOL","COPY","MOVE","PROPFIND","LOCK","UNLOCK","PATCH","TRACE"]},
		"regex_uri": {"description": "new uri that substitute from client uri for upstream, lower priority than uri property",
			"type": "array", "minItems": 2, "items": {"description": "regex uri", "type": "string"}},
		"host": {"description": "new host for upstream", "type": "string", "pattern": "^[0-9a-zA-Z-.]+(:\\d{1,5})?$"},
		"headers": {
			"description": "new headers for request",
			"oneOf": [
				{"type": "object", "minProperties": 1, "additionalProperties": false, "properties": {
					"add": {"type": "object", "minProperties": 1, "patternProperties": {"^[^:]+$": ` + headerValue + `}},
					"set": {"type": "object", "minProperties": 1, "patternProperties": {"^[^:]+$": ` + headerValue + `}},
					"remove": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[^:]+$"}}
				}},
				{"type": "object", "minProperties": 1, "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}}
			]
		},
		"use_real_request_uri_unsafe": {"description": "use real_request_uri instead, THIS IS VERY UNSAFE.", "type": "boolean", "default": false}
	},
	"minProperties": 1
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Config is proxy-rewrite's configuration.
type Config struct {
	// URI replaces the upstream path; "$var" references are resolved.
	URI *string `json:"uri"`
	// Method replaces the request method.
	Method string `json:"method"`
	// RegexURI is [pattern, template, pattern, template, ...].
	RegexURI []string `json:"regex_uri"`
	// Host is the Host header sent upstream.
	Host string `json:"host"`
	// Headers is {add, set, remove} or a flat object (= set).
	Headers json.RawMessage `json:"headers"`
	// UseRealRequestURIUnsafe starts from the raw request URI instead of
	// the normalised path.
	UseRealRequestURIUnsafe bool `json:"use_real_request_uri_unsafe"`
}

type regexPair struct {
	re  *regexp.Regexp
	sub *vartpl.Sub
	// prefix (non-empty): the pattern is ^literal(.*) or ^literal(.*)$
	// (the usual "strip a path prefix" rule, the seed's among them),
	// matched without the regexp engine; tail says whether it ends with $.
	prefix string
	tail   bool
}

// prefixRule recognises ^literal(.*) and ^literal(.*)$ (no flags that
// change what the literal or . match), which regexRewrite matches with a
// prefix compare. Any other pattern returns ok false and runs in RE2.
func prefixRule(pat string) (lit string, tail, ok bool) {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil || re.Op != syntax.OpConcat || len(re.Sub) < 3 || len(re.Sub) > 4 {
		return "", false, false
	}
	sub := re.Sub
	if sub[0].Op != syntax.OpBeginText || sub[1].Op != syntax.OpLiteral || sub[1].Flags&syntax.FoldCase != 0 {
		return "", false, false
	}
	c := sub[2]
	if c.Op != syntax.OpCapture || c.Cap != 1 || len(c.Sub) != 1 {
		return "", false, false
	}
	st := c.Sub[0]
	if st.Op != syntax.OpStar || st.Flags&syntax.NonGreedy != 0 || len(st.Sub) != 1 || st.Sub[0].Op != syntax.OpAnyCharNotNL {
		return "", false, false
	}
	if len(sub) == 4 {
		if sub[3].Op != syntax.OpEndText {
			return "", false, false
		}
		tail = true
	}
	lit = string(sub[1].Rune)
	if strings.ContainsRune(lit, utf8.RuneError) {
		// RE2 reads each invalid UTF-8 byte of the input as U+FFFD, so
		// such a literal matches bytes a byte compare would not.
		return "", false, false
	}
	return lit, tail, true
}

// matchPrefix is FindStringSubmatchIndex for a prefixRule pattern, into m.
func (rp *regexPair) matchPrefix(up string, m *[4]int) bool {
	if !strings.HasPrefix(up, rp.prefix) {
		return false
	}
	end := len(up)
	if i := strings.IndexByte(up[len(rp.prefix):], '\n'); i >= 0 {
		if rp.tail {
			return false // . stops at the newline, and $ is the end of text
		}
		end = len(rp.prefix) + i
	}
	*m = [4]int{0, end, len(rp.prefix), end}
	return true
}

// hdrOp is one header operation with its value templates.
type hdrOp struct {
	name  string
	vals  []string
	multi bool // an array value
}

// Plugin is a built proxy-rewrite instance.
type Plugin struct {
	cfg    Config
	regex  []regexPair
	uriEnc string // the encoded uri when it references no variable
	static bool
	add    []hdrOp
	set    []hdrOp
	remove []string
}

// New decodes and checks conf as proxy-rewrite's check_schema does.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	p := &Plugin{}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, err
	}
	c := &p.cfg
	if len(c.RegexURI) > 0 {
		if len(c.RegexURI)%2 != 0 {
			return nil, errors.New("The length of regex_uri should be an even number")
		}
		for i := 0; i < len(c.RegexURI); i += 2 {
			pat, rep := c.RegexURI[i], c.RegexURI[i+1]
			re, err := regexp.Compile(pat)
			if err != nil {
				return nil, fmt.Errorf("invalid regex_uri(%s, %s): %w", pat, rep, err)
			}
			sub, err := vartpl.CompileSub(rep)
			if err != nil {
				return nil, fmt.Errorf("invalid regex_uri(%s, %s): %w", pat, rep, err)
			}
			rp := regexPair{re: re, sub: sub}
			rp.prefix, rp.tail, _ = prefixRule(pat)
			p.regex = append(p.regex, rp)
		}
	}
	if c.URI != nil && !vartpl.HasVars(*c.URI) && !c.UseRealRequestURIUnsafe {
		p.static = true
		p.uriEnc = encode(*c.URI, true)
	}
	if len(c.Headers) > 0 {
		if err := p.buildHeaders(c.Headers); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// buildHeaders turns the headers conf into add/set/remove lists, keeping
// document order within each list.
func (p *Plugin) buildHeaders(raw json.RawMessage) error {
	members, err := vartpl.Members(raw)
	if err != nil {
		return fmt.Errorf("invalid headers: %w", err)
	}
	isNew := false
	for _, m := range members {
		v := strings.TrimSpace(string(m.Value))
		if (m.Name == "add" || m.Name == "set" || m.Name == "remove") && v != "" && (v[0] == '{' || v[0] == '[') {
			isNew = true
		}
	}
	if !isNew {
		for _, m := range members {
			val, ok := vartpl.Scalar(m.Value)
			if !ok {
				return errors.New("invalid type as header value")
			}
			if m.Name == "" {
				return errors.New("invalid field length in header")
			}
			if !validField(m.Name) {
				return errors.New("invalid field character in header")
			}
			if !validValue(val) {
				return errors.New("invalid value character in header")
			}
			p.set = append(p.set, hdrOp{name: textproto.CanonicalMIMEHeaderKey(m.Name), vals: []string{val}})
		}
		return nil
	}
	for _, m := range members {
		switch m.Name {
		case "add", "set":
			ops, err := headerOps(m.Value)
			if err != nil {
				return err
			}
			if m.Name == "add" {
				p.add = ops
			} else {
				p.set = ops
			}
		case "remove":
			names, err := vartpl.HeaderNames(m.Value)
			if err != nil {
				return err
			}
			p.remove = append(p.remove, names...)
		}
	}
	return nil
}

func headerOps(raw json.RawMessage) ([]hdrOp, error) {
	members, err := vartpl.Members(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid headers: %w", err)
	}
	ops := make([]hdrOp, 0, len(members))
	for _, m := range members {
		op := hdrOp{name: textproto.CanonicalMIMEHeaderKey(m.Name)}
		if v := strings.TrimSpace(string(m.Value)); v != "" && v[0] == '[' {
			var arr []json.RawMessage
			if err := json.Unmarshal(m.Value, &arr); err != nil {
				return nil, fmt.Errorf("invalid header %s: %w", m.Name, err)
			}
			op.multi = true
			for _, e := range arr {
				s, ok := vartpl.Scalar(e)
				if !ok {
					return nil, errors.New("invalid type as header value")
				}
				op.vals = append(op.vals, s)
			}
		} else {
			s, ok := vartpl.Scalar(m.Value)
			if !ok {
				return nil, errors.New("invalid type as header value")
			}
			op.vals = []string{s}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// validField is core.utils.validate_header_field: '!'..'~' except ':'.
func validField(f string) bool {
	for i := 0; i < len(f); i++ {
		if b := f[i]; b <= 32 || b >= 127 || b == ':' {
			return false
		}
	}
	return true
}

// validValue is core.utils.validate_header_value: no control bytes and
// nothing above 126.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 32 || b >= 127 {
			return false
		}
	}
	return true
}

// encode applies proxy-rewrite's final encoding: the path part is escaped
// with uri_safe_encode; when the '?' came from the template (sepEscaped),
// the part from '?' on only gets its control bytes escaped.
func encode(u string, sepEscaped bool) string {
	if vartpl.URISafe(u) {
		// Nothing to escape (a '?' would be): keep u, without allocating.
		return u
	}
	return string(appendEncoded(make([]byte, 0, len(u)+8), u, sepEscaped))
}

func appendEncoded(dst []byte, u string, sepEscaped bool) []byte {
	idx := -1
	if sepEscaped {
		idx = strings.IndexByte(u, '?')
	}
	if idx < 0 {
		return vartpl.AppendURISafe(dst, u)
	}
	dst = vartpl.AppendURISafe(dst, u[:idx])
	return vartpl.AppendControlEscaped(dst, u[idx:])
}

// Rewrite applies the configured rewrites to the request.
func (p *Plugin) Rewrite(r *plugin.Request) {
	c := &p.cfg
	if c.Host != "" {
		r.UpstreamHost = c.Host
	}
	var match []int
	var matchSrc string
	var mbuf [4]int // the prefix fast path's match, on this stack
	switch {
	case p.static:
		p.setURI(r, p.uriEnc)
	case c.UseRealRequestURIUnsafe:
		up := r.RequestURI
		if c.URI != nil {
			query := ""
			if i := strings.IndexByte(up, '?'); i >= 0 {
				query = up[i:]
			}
			up = vartpl.Resolve(*c.URI, r)
			if query != "" {
				if strings.IndexByte(up, '?') >= 0 {
					up = up + "&" + query[1:]
				} else {
					up += query
				}
			}
		} else if len(p.regex) > 0 {
			match, matchSrc, up = p.regexRewrite(r.Ctx, up, &mbuf)
		}
		r.RequestURI = up
	case c.URI != nil:
		buf := vartpl.Append(make([]byte, 0, len(*c.URI)+len(r.Path)), *c.URI, r, vartpl.EscapeQuestion)
		p.setURI(r, encode(string(buf), true))
	default:
		up := r.Path
		sepEscaped := strings.IndexByte(up, '?') < 0
		if len(p.regex) > 0 {
			match, matchSrc, up = p.regexRewrite(r.Ctx, up, &mbuf)
		} else {
			sepEscaped = false
		}
		p.setURI(r, encode(up, sepEscaped))
	}
	if len(p.add)+len(p.set)+len(p.remove) > 0 {
		p.headers(r, match, matchSrc)
	}
	if c.Method != "" {
		r.Method = c.Method
	}
}

// regexRewrite substitutes the first matching pattern's first match;
// mbuf holds the match of a prefix rule.
func (p *Plugin) regexRewrite(c *engine.Ctx, up string, mbuf *[4]int) (match []int, src, out string) {
	for i := range p.regex {
		rp := &p.regex[i]
		var m []int
		if rp.prefix != "" {
			if !rp.matchPrefix(up, mbuf) {
				continue
			}
			m = mbuf[:]
		} else if m = rp.re.FindStringSubmatchIndex(up); m == nil {
			continue
		}
		// A stack buffer for the usual short URI, made a string in the
		// request's text chunk (no allocation of its own).
		var buf [256]byte
		b := append(buf[:0], up[:m[0]]...)
		b = rp.sub.Expand(b, up, m)
		b = append(b, up[m[1]:]...)
		return m, up, c.Text(b)
	}
	return nil, "", up
}

// setURI makes enc the new $uri and the forwarded request-target, with
// the client's query string appended as APISIX does.
func (p *Plugin) setURI(r *plugin.Request, enc string) {
	path := enc
	if i := strings.IndexByte(enc, '?'); i >= 0 {
		path = enc[:i]
	}
	r.Path, r.RawPath = enc, path
	switch {
	case r.Query == "":
		r.RequestURI = enc
	case path != enc:
		r.RequestURI = enc + "&" + r.Query
	default:
		r.RequestURI = enc + "?" + r.Query
	}
}

// resolve expands regex captures, then variables, in a header template.
func resolve(tpl string, r *plugin.Request, match []int, src string) string {
	if !vartpl.HasVars(tpl) {
		return tpl
	}
	b := vartpl.AppendCaptures(make([]byte, 0, len(tpl)+16), tpl, src, match)
	return vartpl.Resolve(string(b), r)
}

// headers runs add, then set, then remove on the upstream request headers.
func (p *Plugin) headers(r *plugin.Request, match []int, src string) {
	h := r.Header
	if h == nil {
		h = engine.Header{}
		r.Header = h
	}
	for _, op := range p.add {
		for _, v := range op.vals {
			h[op.name] = append(h[op.name], resolve(v, r, match, src))
		}
	}
	for _, op := range p.set {
		if !op.multi {
			v := resolve(op.vals[0], r, match, src)
			if v == "" {
				// nginx's set_header with an empty value removes the header.
				delete(h, op.name)
			} else {
				h[op.name] = []string{v}
			}
			continue
		}
		vals := make([]string, len(op.vals))
		for i, v := range op.vals {
			vals[i] = resolve(v, r, match, src)
		}
		h[op.name] = vals
	}
	for _, n := range p.remove {
		delete(h, n)
	}
}
