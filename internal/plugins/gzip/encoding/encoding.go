// Package encoding holds what the gzip and brotli plugins share: the
// Content-Type matcher of their "types" field, the request's HTTP version,
// Accept-Encoding parsing as nginx (gzip) and APISIX (brotli) do it, and
// ETag weakening for transformed bodies.
package encoding

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/sluice-gw/sluice/internal/engine"
)

// TypeMatcher matches a response Content-Type against a "types" field.
type TypeMatcher struct {
	all   bool
	types []string
}

// ParseTypes decodes a "types" field: an array of media types or "*";
// absent means def.
func ParseTypes(raw json.RawMessage, def []string) (TypeMatcher, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return TypeMatcher{types: def}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s != "*" {
			return TypeMatcher{}, errors.New(`types must be an array of strings or "*"`)
		}
		return TypeMatcher{all: true}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return TypeMatcher{}, errors.New(`types must be an array of strings or "*"`)
	}
	return TypeMatcher{types: list}, nil
}

// Match reports whether contentType qualifies: never when it is empty
// (like nginx); with "*" always; otherwise the part before the first ";"
// must equal one of the types exactly, as APISIX compares it.
func (m TypeMatcher) Match(contentType string) bool {
	if contentType == "" {
		return false
	}
	if m.all {
		return true
	}
	if i := strings.IndexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	for _, t := range m.types {
		if t == contentType {
			return true
		}
	}
	return false
}

// ProtoVersion returns the request's HTTP version as a number (1.0, 1.1,
// 2.0), as ngx.req.http_version does; unknown protocols count as 1.1.
func ProtoVersion(proto string) float64 {
	switch proto {
	case "HTTP/1.0":
		return 1.0
	case "HTTP/1.1", "":
		return 1.1
	case "HTTP/2", "HTTP/2.0":
		return 2.0
	case "HTTP/3", "HTTP/3.0":
		return 3.0
	case "HTTP/0.9":
		return 0.9
	}
	return 1.1
}

// AcceptsGzip reports whether an Accept-Encoding header allows gzip, with
// nginx's rules (ngx_http_gzip_accept_encoding): the first "gzip" that
// starts the value or follows "," or " " decides; "gzip;q=0" refuses it;
// anything unexpected after the token refuses it. "*" does not count.
func AcceptsGzip(values []string) bool {
	for _, v := range values {
		if acceptsGzip(v) {
			return true
		}
	}
	return false
}

func acceptsGzip(v string) bool {
	start := 0
	p := -1
	for {
		i := indexFold(v[start:], "gzip")
		if i < 0 {
			return false
		}
		i += start
		if i == 0 || v[i-1] == ',' || v[i-1] == ' ' {
			p = i + 4
			break
		}
		start = i + 4
	}
	for p < len(v) {
		ch := v[p]
		p++
		switch ch {
		case ',':
			return true
		case ';':
			return quantity(v, p)
		case ' ':
		default:
			return false
		}
	}
	return true
}

// quantity follows ";" after the token: "q=<value>" must be non-zero.
func quantity(v string, p int) bool {
	for p < len(v) {
		ch := v[p]
		p++
		switch ch {
		case 'q', 'Q':
			if p+2 > len(v) || v[p] != '=' {
				return false
			}
			return qValue(v[p+1:]) > 0
		case ' ':
		default:
			return false
		}
	}
	return true
}

// qValue is ngx_http_gzip_quantity: non-zero for a positive q-value, 0
// for q=0 or an invalid one.
func qValue(s string) int {
	if s == "" {
		return 0
	}
	ch := s[0]
	if ch < '0' || ch > '1' {
		return 0
	}
	q := int(ch-'0') * 100
	if len(s) == 1 {
		return q
	}
	ch = s[1]
	if ch == ',' || ch == ' ' {
		return q
	}
	if ch != '.' {
		return 0
	}
	// nginx adds the digits up unweighted; only zero versus non-zero
	// and the > 100 check matter, so this is what it does.
	n := 0
	for _, c := range []byte(s[2:]) {
		if c == ',' || c == ' ' {
			break
		}
		if c < '0' || c > '9' {
			return 0
		}
		q += int(c - '0')
		n++
	}
	if q > 100 || n > 3 {
		return 0
	}
	return q
}

// indexFold is a case-insensitive strings.Index for an ASCII lowercase
// needle, without allocating.
func indexFold(s, needle string) int {
	for i := 0; i+len(needle) <= len(s); i++ {
		ok := true
		for j := 0; j < len(needle); j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// AcceptsBrotli reports whether an Accept-Encoding header allows br, with
// APISIX's brotli rules: the whole value "*" or "br"; otherwise any token
// (runs of [a-z*], case-sensitive) equal to "br" or "*" that is not
// followed by exactly ";q=0".
func AcceptsBrotli(values []string) bool {
	if len(values) == 0 {
		return false
	}
	v := strings.Join(values, ", ")
	if v == "*" || v == "br" {
		return true
	}
	isTok := func(c byte) bool { return c >= 'a' && c <= 'z' || c == '*' }
	for i := 0; i < len(v); {
		if !isTok(v[i]) {
			i++
			continue
		}
		j := i
		for j < len(v) && isTok(v[j]) {
			j++
		}
		tok := v[i:j]
		hasQ := strings.HasPrefix(v[j:], ";q=")
		q := ""
		if hasQ {
			j += 3
			k := j
			for k < len(v) && (v[k] >= '0' && v[k] <= '9' || v[k] == '.') {
				k++
			}
			q = v[j:k]
			j = k
		}
		if (tok == "br" || tok == "*") && (!hasQ || q != "0") {
			return true
		}
		i = j
	}
	return false
}

// WeakenETag turns a strong ETag into a weak one, keeps a weak one and
// drops one that is not a quoted string: a re-encoded body is no longer
// byte-identical to the upstream's.
func WeakenETag(h engine.Header) {
	vs := h["Etag"]
	if len(vs) == 0 {
		return
	}
	e := vs[0]
	weak := strings.HasPrefix(e, "W/")
	q := strings.TrimPrefix(e, "W/")
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' || strings.IndexByte(q[1:len(q)-1], '"') >= 0 {
		delete(h, "Etag")
		return
	}
	if !weak {
		h["Etag"] = []string{"W/" + e}
	}
}
