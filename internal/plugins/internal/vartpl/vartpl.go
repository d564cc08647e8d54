// Package vartpl implements the small template languages APISIX plugins
// share: core.utils.resolve_var ("$var", "${var ?? default}"),
// core.utils.resolve_var_with_captures ("$1", "${1}") and the replacement
// templates of ngx.re.sub/gsub ("$0", "${1}", "$$"), plus nginx's
// ngx_escape_uri as core.utils.uri_safe_encode uses it.
//
// It is shared by proxy-rewrite, response-rewrite, redirect, echo,
// fault-injection and mocking, so it lives with the plugins' shared code.
package vartpl

import (
	"errors"
	"regexp"
	"strings"
)

// Vars gives variable values; engine.Ctx and plugin.Request implement it.
type Vars interface {
	Var(name string) (string, bool)
}

// Escaper appends s to dst, escaped; nil appends s unchanged.
type Escaper func(dst []byte, s string) []byte

// HasVars reports whether tpl may reference a variable; templates without a
// '$' resolve to themselves.
func HasVars(tpl string) bool { return strings.IndexByte(tpl, '$') >= 0 }

// Resolve expands tpl as core.utils.resolve_var does; it returns tpl itself,
// without allocating, when tpl has no '$'.
func Resolve(tpl string, v Vars) string {
	if !HasVars(tpl) {
		return tpl
	}
	return string(Append(nil, tpl, v, nil))
}

func isWord(c byte) bool {
	return c == '_' || c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// Append appends tpl to dst with every "$name" or "${name}" that is not
// preceded by a backslash replaced by the variable's value (escaped with
// esc). Like APISIX: names are [A-Za-z0-9_.]+; inside braces surrounding
// spaces are trimmed and "${name ?? default}" falls back to default when
// the variable is unset; an unset variable without default becomes "" (not
// passed to esc); the backslash of "\$name" is kept; a '$' that starts no
// reference stays literal.
func Append(dst []byte, tpl string, v Vars, esc Escaper) []byte {
	for i := 0; i < len(tpl); {
		c := tpl[i]
		if c != '$' || (i > 0 && tpl[i-1] == '\\') || i+1 >= len(tpl) {
			dst = append(dst, c)
			i++
			continue
		}
		var name string
		end := -1
		if tpl[i+1] == '{' {
			if j := strings.IndexByte(tpl[i+2:], '}'); j > 0 {
				name = tpl[i+2 : i+2+j]
				end = i + 3 + j
				for len(name) > 0 && isSpace(name[0]) {
					name = name[1:]
				}
				for len(name) > 1 && isSpace(name[len(name)-1]) {
					name = name[:len(name)-1]
				}
			}
		} else {
			j := i + 1
			for j < len(tpl) && isWord(tpl[j]) {
				j++
			}
			if j > i+1 {
				name, end = tpl[i+1:j], j
			}
		}
		if end < 0 {
			dst = append(dst, c)
			i++
			continue
		}
		i = end
		def, hasDef := "", false
		if k := strings.Index(name, "??"); k >= 0 {
			def = strings.TrimLeft(name[k+2:], " \t\r\n\f\v")
			if k2 := strings.Index(def, "??"); k2 >= 0 {
				def = strings.TrimRight(def[:k2], " \t\r\n\f\v")
			}
			name = strings.TrimRight(name[:k], " \t\r\n\f\v")
			hasDef = true
		}
		val, ok := "", false
		if v != nil {
			val, ok = v.Var(name)
		}
		if !ok {
			if !hasDef {
				continue
			}
			val = def
		}
		if esc != nil {
			dst = esc(dst, val)
		} else {
			dst = append(dst, val...)
		}
	}
	return dst
}

// AppendCaptures appends tpl with "$N", "${N}" (not preceded by a
// backslash) replaced by capture N of a regex match, as
// core.utils.resolve_var_with_captures does for proxy-rewrite headers.
// match holds submatch index pairs into src (regexp's FindStringSubmatchIndex);
// a missing or unmatched capture becomes "".
func AppendCaptures(dst []byte, tpl, src string, match []int) []byte {
	for i := 0; i < len(tpl); {
		c := tpl[i]
		if c != '$' || (i > 0 && tpl[i-1] == '\\') {
			dst = append(dst, c)
			i++
			continue
		}
		j := i + 1
		if j < len(tpl) && tpl[j] == '{' {
			j++
		}
		k := j
		n := 0
		for k < len(tpl) && '0' <= tpl[k] && tpl[k] <= '9' {
			if n < 1<<20 {
				n = n*10 + int(tpl[k]-'0')
			}
			k++
		}
		if k == j {
			dst = append(dst, c)
			i++
			continue
		}
		if k < len(tpl) && tpl[k] == '}' {
			k++
		}
		if 2*n+1 < len(match) && match[2*n] >= 0 {
			dst = append(dst, src[match[2*n]:match[2*n+1]]...)
		}
		i = k
	}
	return dst
}

// Sub is a compiled ngx.re.sub replacement template: "$N" and "${N}" insert
// capture N ($0 is the whole match), "$$" is a literal '$'.
type Sub struct {
	parts []subPart
}

type subPart struct {
	lit string
	n   int // capture number; -1 for a literal
}

// CompileSub compiles a replacement template with ngx.re.sub's rules; the
// errors carry the messages lua-nginx-module returns.
func CompileSub(tpl string) (*Sub, error) {
	s := &Sub{}
	lit := make([]byte, 0, len(tpl))
	flush := func() {
		if len(lit) > 0 {
			s.parts = append(s.parts, subPart{lit: string(lit), n: -1})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(tpl); i++ {
		c := tpl[i]
		if c != '$' {
			lit = append(lit, c)
			continue
		}
		i++
		if i == len(tpl) {
			return nil, errors.New("invalid capturing variable name found in \"" + tpl + "\"")
		}
		if tpl[i] == '$' {
			lit = append(lit, '$')
			continue
		}
		bracket := tpl[i] == '{'
		if bracket {
			i++
		}
		start := i
		for i < len(tpl) && '0' <= tpl[i] && tpl[i] <= '9' {
			i++
		}
		digits := tpl[start:i]
		if bracket {
			if i >= len(tpl) || tpl[i] != '}' {
				if digits == "" {
					return nil, errors.New("invalid capturing variable name found in \"" + tpl + "\"")
				}
				return nil, errors.New("the closing bracket in \"" + digits + "\" variable is missing")
			}
		} else {
			i-- // the loop's i++ moves past the last digit
		}
		if digits == "" {
			return nil, errors.New("invalid capturing variable name found in \"" + tpl + "\"")
		}
		n := 0
		for _, d := range []byte(digits) {
			if n < 1<<20 {
				n = n*10 + int(d-'0')
			}
		}
		flush()
		s.parts = append(s.parts, subPart{n: n})
	}
	flush()
	return s, nil
}

// Expand appends the template to dst for one match of a regexp in src.
func (s *Sub) Expand(dst []byte, src string, match []int) []byte {
	for _, p := range s.parts {
		if p.n < 0 {
			dst = append(dst, p.lit...)
			continue
		}
		if 2*p.n+1 < len(match) && match[2*p.n] >= 0 {
			dst = append(dst, src[match[2*p.n]:match[2*p.n+1]]...)
		}
	}
	return dst
}

// Replace substitutes the first match of re in src (ngx.re.sub), or every
// match when global (ngx.re.gsub). It reports the number of substitutions;
// with none, src is returned as is.
func (s *Sub) Replace(re *regexp.Regexp, src string, global bool) (string, int) {
	if !global {
		m := re.FindStringSubmatchIndex(src)
		if m == nil {
			return src, 0
		}
		out := make([]byte, 0, len(src)+16)
		out = append(out, src[:m[0]]...)
		out = s.Expand(out, src, m)
		out = append(out, src[m[1]:]...)
		return string(out), 1
	}
	all := re.FindAllStringSubmatchIndex(src, -1)
	if len(all) == 0 {
		return src, 0
	}
	out := make([]byte, 0, len(src)+16)
	last := 0
	for _, m := range all {
		out = append(out, src[last:m[0]]...)
		out = s.Expand(out, src, m)
		last = m[1]
	}
	out = append(out, src[last:]...)
	return string(out), len(all)
}

// uriEscape marks the bytes nginx's ngx_escape_uri(NGX_ESCAPE_URI) escapes:
// controls, space, '#', '%', '?', DEL and every byte >= 0x80.
var uriEscape = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || c == '?'
	}
	return t
}()

const hexUpper = "0123456789ABCDEF"

// URISafe reports whether AppendURISafe would leave s unchanged.
func URISafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if uriEscape[s[i]] {
			return false
		}
	}
	return true
}

// AppendURISafe appends s escaped as core.utils.uri_safe_encode does.
func AppendURISafe(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if uriEscape[c] {
			dst = append(dst, '%', hexUpper[c>>4], hexUpper[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// AppendControlEscaped appends s with control bytes (0x00-0x1f, 0x7f)
// percent-encoded, as core.utils.escape_uri_control_chars does.
func AppendControlEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			dst = append(dst, '%', hexUpper[c>>4], hexUpper[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// EscapeQuestion is proxy-rewrite's escaper for variable values in "uri":
// a '?' coming from a variable must not start the query string.
func EscapeQuestion(dst []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, '?')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, "%3F"...)
		s = s[i+1:]
	}
}
