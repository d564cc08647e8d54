package engine

import (
	"strings"
	"unicode/utf8"
)

// NormalizePath turns a raw request path (the part of the request-target
// before '?') into the path used for routing, with nginx's $uri semantics:
// every %XX escape is decoded once (so %2e%2e and %2f take part in the
// following steps, as in nginx, and %252e stays a literal "%2e"), "." and
// ".." segments are resolved, and runs of '/' are merged. It reports false,
// meaning "answer 400", for a path that does not start with '/', a bad
// escape, a NUL byte, a literal '#', a ".." that climbs above the root, or
// bytes that are not valid UTF-8 after decoding (overlong forms such as
// %c0%ae are a classic filter bypass). A path that needs no change is
// returned as is, without allocating.
func NormalizePath(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	clean := true
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '%', 0, '#':
			clean = false
		case '/':
			if i+1 < len(raw) && (raw[i+1] == '/' || raw[i+1] == '.') {
				clean = false
			}
		default:
			if c >= utf8.RuneSelf {
				clean = false
			}
		}
		if !clean {
			break
		}
	}
	if clean {
		return raw, true
	}
	return normalizeSlow(raw)
}

func normalizeSlow(raw string) (string, bool) {
	// Decode first. nginx feeds decoded bytes back into its state machine,
	// so a decoded '/' or '.' behaves like a literal one.
	dec := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case 0, '#':
			return "", false
		case '%':
			if i+2 >= len(raw) {
				return "", false
			}
			hi, ok1 := Unhex(raw[i+1])
			lo, ok2 := Unhex(raw[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = hi<<4 | lo
			if c == 0 {
				return "", false
			}
			i += 2
		}
		dec = append(dec, c)
	}
	if !utf8.Valid(dec) {
		return "", false
	}
	// Resolve segments in place: out never grows past the input.
	out := dec[:0:len(dec)]
	out = append(out[:0], '/')
	n := len(dec)
	for i := 0; i < n; {
		// Skip slashes (merge).
		for i < n && dec[i] == '/' {
			i++
		}
		if i >= n {
			break
		}
		j := i
		for j < n && dec[j] != '/' {
			j++
		}
		seg := dec[i:j]
		trailing := j < n // a '/' follows the segment
		switch {
		case len(seg) == 1 && seg[0] == '.':
			// "." vanishes; out already ends in '/'.
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if len(out) == 1 {
				return "", false // above the root: nginx answers 400
			}
			// Drop the last segment, keep its leading '/'.
			k := len(out) - 2
			for k >= 0 && out[k] != '/' {
				k--
			}
			out = out[:k+1]
		default:
			out = append(out, seg...)
			if trailing {
				out = append(out, '/')
			}
		}
		i = j
	}
	return string(out), true
}

// Unhex returns the value of the hexadecimal digit c, and false when c is
// not one. Exported for plugins that decode percent-escapes the way the
// path normalisation does (uri-blocker).
func Unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// SplitRequestURI splits an origin-form request-target into its raw path
// and raw query (without the '?').
func SplitRequestURI(uri string) (path, query string) {
	path, query, _ = strings.Cut(uri, "?")
	return path, query
}
