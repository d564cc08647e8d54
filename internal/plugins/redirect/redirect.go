// Package redirect implements APISIX's redirect plugin: it answers with a
// redirect to a URI built from a template, a regex substitution of the
// path, or the https version of the request URL.
package redirect

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/vartpl"
)

// Name is the plugin name.
const Name = "redirect"

// Priority is APISIX's priority for redirect.
const Priority = 900

// uriPattern is redirect.lua's segment regex, also used as the schema
// pattern of "uri" (unanchored, so it only rejects strings made of
// backslashes).
const uriPattern = `(\\\$[0-9a-zA-Z_]+)|\$\{([0-9a-zA-Z_]+)\}|\$([0-9a-zA-Z_]+)|(\$|[^$\\]+)`

var schema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"ret_code": {"type": "integer", "minimum": 200, "default": 302},
		"uri": {"type": "string", "minLength": 2, "pattern": ` + strconv.Quote(uriPattern) + `},
		"regex_uri": {
			"description": "params for generating new uri that substitute from client uri, first param is regular expression, the second one is uri template",
			"type": "array", "maxItems": 2, "minItems": 2,
			"items": {"description": "regex uri", "type": "string"}
		},
		"http_to_https": {"type": "boolean"},
		"encode_uri": {"type": "boolean", "default": false},
		"append_query_string": {"type": "boolean", "default": false}
	},
	"oneOf": [
		{"required": ["uri"]},
		{"required": ["regex_uri"]},
		{"required": ["http_to_https"]}
	]
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Config is redirect's configuration.
type Config struct {
	// RetCode is the redirect status (default 302).
	RetCode int `json:"ret_code"`
	// URI is the Location template: "$var", "${var}"; "\$var" stays literal.
	URI *string `json:"uri"`
	// RegexURI is [pattern, template] applied to the request path.
	RegexURI []string `json:"regex_uri"`
	// HTTPToHTTPS redirects plain-http requests to https.
	HTTPToHTTPS bool `json:"http_to_https"`
	// EncodeURI escapes the path part of the new URI.
	EncodeURI bool `json:"encode_uri"`
	// AppendQueryString appends the client's query string.
	AppendQueryString bool `json:"append_query_string"`
}

// seg is one piece of a parsed uri template: a literal or a variable.
type seg struct {
	lit   string
	name  string
	isVar bool
}

// Plugin is a built redirect instance.
type Plugin struct {
	cfg      Config
	segs     []seg
	static   bool
	re       *regexp.Regexp
	sub      *vartpl.Sub
	httpsURI []seg // http_to_https template
}

// New decodes and checks conf as redirect's check_schema does. The https
// port comes from plugin_attr.redirect.https_port.
func New(conf json.RawMessage, env *plugin.BuildEnv) (any, error) {
	p := &Plugin{cfg: Config{RetCode: 302}}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, err
	}
	c := &p.cfg
	if len(c.RegexURI) == 2 {
		pat, rep := c.RegexURI[0], c.RegexURI[1]
		re, err := regexp.Compile(pat)
		if err == nil {
			p.sub, err = vartpl.CompileSub(rep)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid regex_uri (%s, %s), err:%w", pat, rep, err)
		}
		p.re = re
	}
	if c.HTTPToHTTPS && c.AppendQueryString {
		return nil, errors.New("only one of `http_to_https` and `append_query_string` can be configured.")
	}
	if c.URI != nil {
		p.segs = parse(*c.URI)
		p.static = true
		for _, s := range p.segs {
			if s.isVar {
				p.static = false
			}
		}
	}
	if c.HTTPToHTTPS {
		tpl := "https://$host$request_uri"
		if env != nil {
			if port, ok := httpsPort(env.Attr); ok {
				tpl = "https://$host:" + strconv.Itoa(port) + "$request_uri"
			}
		}
		p.httpsURI = parse(tpl)
	}
	return p, nil
}

// httpsPort reads plugin_attr.redirect.https_port; 443 and out-of-range
// ports mean "no port in the Location".
func httpsPort(attr map[string]any) (int, bool) {
	var port int
	switch v := attr["https_port"].(type) {
	case float64:
		port = int(v)
	case int:
		port = v
	case int64:
		port = int(v)
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return 0, false
		}
		port = int(n)
	default:
		return 0, false
	}
	if port == 443 || port <= 0 || port > 65535 {
		return 0, false
	}
	return port, true
}

func isName(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// parse splits a uri template the way redirect.lua's regex does: "\$name"
// is kept literally (backslash included), "${name}" and "$name" are
// variables, a lone '$' is literal, and a backslash that starts none of
// these matches nothing and is dropped.
func parse(tpl string) []seg {
	var out []seg
	for i := 0; i < len(tpl); {
		switch tpl[i] {
		case '\\':
			j := i + 2
			if i+1 < len(tpl) && tpl[i+1] == '$' {
				for j < len(tpl) && isName(tpl[j]) {
					j++
				}
			}
			if j > i+2 {
				out = append(out, seg{lit: tpl[i:j]})
				i = j
			} else {
				i++
			}
		case '$':
			if i+1 < len(tpl) && tpl[i+1] == '{' {
				j := i + 2
				for j < len(tpl) && isName(tpl[j]) {
					j++
				}
				if j > i+2 && j < len(tpl) && tpl[j] == '}' {
					out = append(out, seg{name: tpl[i+2 : j], isVar: true})
					i = j + 1
					continue
				}
			}
			j := i + 1
			for j < len(tpl) && isName(tpl[j]) {
				j++
			}
			if j > i+1 {
				out = append(out, seg{name: tpl[i+1 : j], isVar: true})
				i = j
			} else {
				out = append(out, seg{lit: "$"})
				i++
			}
		default:
			j := i
			for j < len(tpl) && tpl[j] != '$' && tpl[j] != '\\' {
				j++
			}
			out = append(out, seg{lit: tpl[i:j]})
			i = j
		}
	}
	return out
}

func expand(segs []seg, r *plugin.Request) string {
	if len(segs) == 1 && !segs[0].isVar {
		return segs[0].lit
	}
	var b strings.Builder
	for _, s := range segs {
		if !s.isVar {
			b.WriteString(s.lit)
		} else if v, ok := r.Var(s.name); ok {
			b.WriteString(v)
		}
	}
	return b.String()
}

// Rewrite answers with the redirect, or lets the request continue when
// there is nothing to redirect to (regex_uri did not match, or the request
// is already https).
func (p *Plugin) Rewrite(r *plugin.Request) {
	c := &p.cfg
	code := c.RetCode
	segs := p.segs
	useURI := c.URI != nil
	if c.HTTPToHTTPS {
		scheme := r.Header.Get("X-Forwarded-Proto")
		if scheme == "" {
			scheme = r.Scheme
		}
		if scheme != "https" {
			segs, useURI = p.httpsURI, true
			if r.Method == "GET" || r.Method == "HEAD" {
				code = 301
			} else {
				code = 308
			}
		}
	}
	var loc string
	switch {
	case useURI:
		loc = expand(segs, r)
	case p.re != nil:
		var n int
		loc, n = p.sub.Replace(p.re, r.Path, false)
		if n < 1 {
			return
		}
	default:
		return
	}
	idx := strings.IndexByte(loc, '?')
	if c.EncodeURI {
		if idx >= 0 {
			loc = string(vartpl.AppendURISafe(nil, loc[:idx])) + loc[idx:]
		} else if !vartpl.URISafe(loc) {
			loc = string(vartpl.AppendURISafe(nil, loc))
		}
	}
	if c.AppendQueryString && r.Query != "" {
		if idx >= 0 {
			loc += "&" + r.Query
		} else {
			loc += "?" + r.Query
		}
	}
	r.W.Header()["Location"] = []string{loc}
	r.Exit(code, nil)
}
