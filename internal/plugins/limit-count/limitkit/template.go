// Package limitkit holds what the rate and concurrency plugins (limit-count,
// limit-req, limit-conn, api-breaker) share: APISIX's variable templates
// (core.utils.resolve_var), limit keys, numbers that may be variables, and a
// sharded, swap-surviving counter table with bounded memory.
package limitkit

import (
	"strings"

	"github.com/sluice-gw/sluice/internal/engine"
)

// segment is one piece of a template: literal text or a variable reference.
type segment struct {
	lit    string
	name   string
	def    string
	isVar  bool
	hasDef bool
}

// Template is a compiled APISIX variable template such as
// "$http_a ${remote_addr}" or "${http_x ?? default}". It is immutable and
// safe for concurrent use.
type Template struct {
	raw  string
	segs []segment
	vars bool
}

// isWord reports whether ch matches PCRE's [\w.] as used by resolve_var.
func isWord(ch byte) bool {
	return ch == '_' || ch == '.' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9'
}

func isSpace(ch byte) bool {
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'
}

// CompileTemplate parses s with resolve_var's pattern
// (?<!\\)\$(\{\s*([^}]+?)\s*\}|([\w\.]+)); a "??" inside braces gives a
// default used when the variable is unset.
func CompileTemplate(s string) *Template {
	t := &Template{raw: s}
	if !strings.Contains(s, "$") {
		return t
	}
	lit := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || (i > 0 && s[i-1] == '\\') {
			continue
		}
		var sg segment
		end := -1
		if i+1 < len(s) && s[i+1] == '{' {
			if j := strings.IndexByte(s[i+2:], '}'); j >= 0 {
				inner := strings.TrimFunc(s[i+2:i+2+j], func(r rune) bool { return r < 128 && isSpace(byte(r)) })
				if inner != "" {
					sg = segment{isVar: true, name: inner}
					if k := strings.Index(inner, "??"); k >= 0 {
						sg.name = strings.TrimRight(inner[:k], " \t\n\r\f\v")
						sg.def = strings.TrimLeft(inner[k+2:], " \t\n\r\f\v")
						sg.hasDef = true
					}
					end = i + 2 + j + 1
				}
			}
		}
		if end < 0 {
			j := i + 1
			for j < len(s) && isWord(s[j]) {
				j++
			}
			if j == i+1 {
				continue
			}
			sg = segment{isVar: true, name: s[i+1 : j]}
			end = j
		}
		if lit < i {
			t.segs = append(t.segs, segment{lit: s[lit:i]})
		}
		t.segs = append(t.segs, sg)
		t.vars = true
		lit = end
		i = end - 1
	}
	if lit < len(s) {
		t.segs = append(t.segs, segment{lit: s[lit:]})
	}
	return t
}

// Raw returns the template text.
func (t *Template) Raw() string { return t.raw }

// HasVars reports whether the template references any variable.
func (t *Template) HasVars() bool { return t.vars }

// Append resolves the template against c, appending to dst. n counts the
// variables that resolved (set, or unset with a default), as resolve_var's
// third result does; unset variables without a default become "".
func (t *Template) Append(dst []byte, c *engine.Ctx) (out []byte, n int) {
	if !t.vars {
		return append(dst, t.raw...), 0
	}
	for i := range t.segs {
		sg := &t.segs[i]
		if !sg.isVar {
			dst = append(dst, sg.lit...)
			continue
		}
		v, ok := c.Var(sg.name)
		if !ok {
			if !sg.hasDef {
				continue
			}
			v = sg.def
		}
		n++
		dst = append(dst, v...)
	}
	return dst, n
}

// Resolve returns the resolved string and the number of resolved
// variables. A template without variables returns its text without
// allocating.
func (t *Template) Resolve(c *engine.Ctx) (string, int) {
	if !t.vars {
		return t.raw, 0
	}
	if len(t.segs) == 1 {
		sg := &t.segs[0]
		if v, ok := c.Var(sg.name); ok {
			return v, 1
		}
		if sg.hasDef {
			return sg.def, 1
		}
		return "", 0
	}
	var buf [128]byte
	b, n := t.Append(buf[:0], c)
	return string(b), n
}
