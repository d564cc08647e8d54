// Package httpvar reads and strips request variables the way nginx and
// OpenResty do: query arguments (ngx.req.get_uri_args, ngx.unescape_uri)
// and cookies. It is shared by plugins that take credentials or match on
// the query string (key-auth, jwt-auth, uri-blocker, request-validation),
// so they all read the same request the same way.
package httpvar

import (
	"strings"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// QueryArg finds the argument name in the raw query q the way OpenResty's
// ngx.req.get_uri_args does: names compare exactly after unescaping, and
// values are unescaped ("+" is a space). It returns how many times the
// argument occurs and the first value; the value is nil when that
// occurrence has no "=" (a boolean true in Lua). It allocates only when a
// name or value actually contains escapes.
func QueryArg(q, name string) (*string, int) {
	var val *string
	n := 0
	for q != "" {
		var pair string
		pair, q, _ = cutByte(q, '&')
		if pair == "" {
			continue
		}
		k, v, hasEq := cutByte(pair, '=')
		if Unescape(k) != name {
			continue
		}
		n++
		if n == 1 && hasEq {
			s := Unescape(v)
			val = &s
		}
	}
	return val, n
}

// RemoveQueryArg drops every occurrence of name from the raw query q and
// reports whether anything was removed. The other arguments keep their
// raw bytes and order (APISIX re-encodes the whole query instead).
func RemoveQueryArg(q, name string) (string, bool) {
	var b strings.Builder
	changed := false
	rest := q
	for rest != "" {
		var pair string
		pair, rest, _ = cutByte(rest, '&')
		k, _, _ := cutByte(pair, '=')
		if pair != "" && Unescape(k) == name {
			changed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	if !changed {
		return q, false
	}
	return b.String(), true
}

// cutByte is strings.Cut for a single separator byte.
func cutByte(s string, sep byte) (before, after string, found bool) {
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// Unescape decodes %XX escapes and "+" like ngx.unescape_uri as used for
// query arguments: malformed escapes are kept literally.
func Unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
				i += 2
			} else {
				b = append(b, c)
			}
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// HideQuery removes every occurrence of the query argument name from the
// forwarded request target, keeping the other arguments byte for byte.
func HideQuery(r *plugin.Request, name string) {
	q, changed := RemoveQueryArg(r.Query, name)
	if !changed {
		return
	}
	r.Query = q
	path, _, _ := cutByte(r.RequestURI, '?')
	if q == "" {
		r.RequestURI = path
	} else {
		r.RequestURI = path + "?" + q
	}
}

// RemoveCookie drops the cookie name from the Cookie header(s) and keeps
// the other cookies as sent; a header left empty is removed.
func RemoveCookie(r *plugin.Request, name string) {
	vv := r.Header["Cookie"]
	out := make([]string, 0, len(vv))
	for _, line := range vv {
		var kept []string
		for _, part := range strings.Split(line, ";") {
			k, _, _ := cutByte(strings.TrimSpace(part), '=')
			if strings.TrimSpace(k) == name {
				continue
			}
			if p := strings.TrimSpace(part); p != "" {
				kept = append(kept, p)
			}
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	if len(out) == 0 {
		r.Header.Del("Cookie")
		return
	}
	r.Header["Cookie"] = out
}
