// Package uriblocker implements APISIX's uri-blocker plugin: it rejects
// requests whose URI matches any of a list of regular expressions.
//
// What is matched. APISIX searches ctx.var.request_uri, which it rebuilds
// before routing as the normalised path ($uri: percent-decoded once, dot
// segments resolved, slashes merged) plus "?" and the raw query string.
// Sluice matches the same string, so "/%61dmin", "/x/../admin",
// "/x/%2e%2e/admin" and "//admin" are all seen as "/admin". Because what
// the upstream receives is the raw request-target, Sluice is stricter than
// APISIX and also blocks when a rule matches one of these readings of the
// same URI that an upstream might apply:
//   - the path decoded a second time, with ";params" removed from each
//     segment and '\' read as '/', then normalised again
//     ("/%2561dmin", "/admin;x=1/", "/public\..\admin");
//   - the query string percent-decoded with '+' as space
//     ("?q=%3Cscript%3E", "?q=union+select").
//
// These extra readings are computed only when the path holds '%', ';' or
// '\' or the query holds '%' or '+'; a plain request costs one regex search.
package uriblocker

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/httpvar"
	uarestriction "github.com/sluice-gw/sluice/internal/plugins/ua-restriction"
)

// Name is the plugin name used in configs.
const Name = "uri-blocker"

// Priority is APISIX's priority for uri-blocker: before the auth plugins
// in rewrite.
const Priority = 2900

// schema transcribes apisix/plugins/uri-blocker.lua.
const schema = `{
 "type":"object",
 "properties":{
  "block_rules":{"type":"array","items":{"type":"string","minLength":1,"maxLength":4096},"uniqueItems":true},
  "rejected_code":{"type":"integer","minimum":200,"default":403},
  "rejected_msg":{"type":"string","minLength":1},
  "case_insensitive":{"type":"boolean","default":false}
 },
 "required":["block_rules"]
}`

// Config is the route-side conf.
type Config struct {
	// BlockRules are regular expressions searched in the request URI.
	BlockRules []string `json:"block_rules"`
	// RejectedCode is the status of a blocked request.
	RejectedCode int `json:"rejected_code"`
	// RejectedMsg, when set, is sent as {"error_msg": ...}; otherwise the
	// rejection has the standard error page.
	RejectedMsg string `json:"rejected_msg,omitempty"`
	// CaseInsensitive matches the rules ignoring case.
	CaseInsensitive bool `json:"case_insensitive"`
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: Priority,
		Schema:   json.RawMessage(schema),
		New:      New,
	}
}

// Plugin is a built uri-blocker instance.
type Plugin struct {
	rules *uarestriction.Rules
	code  int
	body  any // nil or {"error_msg":...} pre-encoded
	bufs  sync.Pool
}

// New decodes conf with APISIX's defaults and compiles each rule (with
// (?i) when case_insensitive). APISIX joins the rules with '|' into one
// PCRE; matching them one by one finds the same requests, except that an
// inline flag such as (?i) inside one rule no longer leaks into the rules
// after it, and lets literal rules use a substring search.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{RejectedCode: 403}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("decode conf: %w", err)
	}
	rules, err := uarestriction.CompileRules(c.BlockRules, c.CaseInsensitive)
	if err != nil {
		return nil, err
	}
	p := &Plugin{code: c.RejectedCode}
	if len(c.BlockRules) > 0 {
		p.rules = rules
	}
	if c.RejectedMsg != "" {
		b, err := json.Marshal(map[string]string{"error_msg": c.RejectedMsg})
		if err != nil {
			return nil, fmt.Errorf("encode rejected_msg: %w", err)
		}
		p.body = json.RawMessage(b)
	}
	p.bufs.New = func() any { b := make([]byte, 0, 256); return &b }
	return p, nil
}

// Rewrite rejects the request when a rule matches its URI.
func (p *Plugin) Rewrite(r *plugin.Request) {
	if p.rules != nil && p.Blocked(r.Path, r.Query) {
		r.Exit(p.code, p.body)
	}
}

// Blocked reports whether a rule matches the normalised path plus raw
// query (APISIX's request_uri) or one of the stricter readings described
// in the package comment.
func (p *Plugin) Blocked(path, query string) bool {
	if p.match(path, query) {
		return true
	}
	path2, pathAlt := altPath(path)
	query2, queryAlt := altQuery(query)
	switch {
	case pathAlt && p.match(path2, query):
		return true
	case queryAlt && p.match(path, query2):
		return true
	case pathAlt && queryAlt && p.match(path2, query2):
		return true
	}
	return false
}

// match searches path[?query] without allocating: the joined URI is built
// in a pooled buffer.
func (p *Plugin) match(path, query string) bool {
	if query == "" {
		return p.rules.MatchString(path)
	}
	bp := p.bufs.Get().(*[]byte)
	b := append((*bp)[:0], path...)
	b = append(b, '?')
	b = append(b, query...)
	ok := p.rules.Match(b)
	*bp = b[:0]
	p.bufs.Put(bp)
	return ok
}

// altPath returns the path as a lenient upstream might read it: '\' as
// '/', ";params" dropped from every segment, %XX decoded once more, dot
// segments resolved and slashes merged. ok is false when that reading is
// the path itself, so no second search is needed.
func altPath(path string) (string, bool) {
	if !strings.ContainsAny(path, "%;\\") {
		return "", false
	}
	dec := make([]byte, 0, len(path))
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch c {
		case '\\':
			dec = append(dec, '/')
		case ';':
			// Skip to the end of the segment.
			for i+1 < len(path) && path[i+1] != '/' && path[i+1] != '\\' {
				i++
			}
		case '%':
			if i+2 < len(path) {
				hi, ok1 := engine.Unhex(path[i+1])
				lo, ok2 := engine.Unhex(path[i+2])
				if ok1 && ok2 {
					c = hi<<4 | lo
					if c == '\\' {
						c = '/'
					}
					dec = append(dec, c)
					i += 2
					continue
				}
			}
			dec = append(dec, c)
		default:
			dec = append(dec, c)
		}
	}
	out := removeDots(dec)
	if out == path {
		return "", false
	}
	return out, true
}

// removeDots resolves "." and ".." segments and merges runs of '/', keeping
// a trailing '/'; ".." at the root stays at the root.
func removeDots(p []byte) string {
	out := make([]byte, 0, len(p)+1)
	out = append(out, '/')
	for i := 0; i < len(p); {
		for i < len(p) && p[i] == '/' {
			i++
		}
		j := i
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i:j]
		trailing := j < len(p)
		switch string(seg) {
		case "", ".":
		case "..":
			if len(out) > 1 {
				k := len(out) - 2
				for k >= 0 && out[k] != '/' {
					k--
				}
				out = out[:k+1]
			}
		default:
			out = append(out, seg...)
			if trailing {
				out = append(out, '/')
			}
		}
		i = j
	}
	return string(out)
}

// altQuery percent-decodes the query and reads '+' as a space, as
// ngx.unescape_uri does (malformed escapes stay literal); ok is false
// when nothing changes.
func altQuery(q string) (string, bool) {
	if !strings.ContainsAny(q, "%+") {
		return "", false
	}
	return httpvar.Unescape(q), true
}
