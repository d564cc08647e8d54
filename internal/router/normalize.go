package router

import "unicode/utf8"

// NormalizePath turns a request path (without the query string) into the one
// canonical form used for routing, plugin ACLs and the path forwarded
// upstream, so the three can never disagree (hardening.md §F).
//
// It follows nginx's $uri: percent-escapes are decoded once, "." and ".."
// segments are resolved (RFC 3986 §5.2.4) and runs of slashes are merged.
// Three escapes stay encoded (uppercased) instead: "%2F" and "%5C", so an
// encoded slash is never a separator, neither here nor upstream (APISIX
// matches "/v1/te%2Fst/x" against "/v1/:id/x" the same way), and "%25", so
// that "%" in the result always starts one of these three escapes and a
// decoded "%2F" can never be confused with an opaque one (no double decoding
// upstream, §F4). Route patterns that mean a literal '%' write "%25".
//
// It reports false, and the request should be answered 400, when the path
// does not start with "/", would climb above the root, has a malformed
// escape, contains a control character or NUL (raw or escaped), a raw
// backslash or '#', or does not decode to valid UTF-8 (which also rejects
// overlong forms such as "%c0%ae").
//
// Forwarding contract: send the result with '?', '#', space and non-ASCII
// bytes escaped, and never escape '%'. A path that needs no change is
// returned as is, without allocating.
func NormalizePath(raw string) (string, bool) {
	if len(raw) == 0 || raw[0] != '/' {
		return "", false
	}
	if isCanonical(raw) {
		return raw, true
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return "", false
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = hi<<4 | lo
			i += 2
			if c == '/' || c == '\\' || c == '%' {
				b = append(b, '%', upperHex[c>>4], upperHex[c&15])
				continue
			}
		} else if c == '\\' || c == '#' {
			return "", false
		}
		if c < 0x20 || c == 0x7f {
			return "", false
		}
		b = append(b, c)
	}
	if !utf8.Valid(b) {
		return "", false
	}

	out := make([]byte, 1, len(b))
	out[0] = '/'
	for i := 1; i <= len(b); {
		j := i
		for j < len(b) && b[j] != '/' {
			j++
		}
		seg := b[i:j]
		last := j == len(b)
		switch {
		case len(seg) == 0, len(seg) == 1 && seg[0] == '.':
			// Merged slash or "." segment: nothing to add; out already ends with '/'.
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if len(out) == 1 {
				return "", false
			}
			out = out[:len(out)-1]
			for out[len(out)-1] != '/' {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg...)
			if !last {
				out = append(out, '/')
			}
		}
		i = j + 1
	}
	return string(out), true
}

// isCanonical reports whether raw is already in normal form: no escapes, no
// forbidden bytes, no empty, "." or ".." segments, and valid UTF-8.
func isCanonical(raw string) bool {
	ascii := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if !isOpaqueEscape(raw[i+1:]) {
				return false
			}
		case c == '\\', c == '#', c < 0x20, c == 0x7f:
			return false
		case c >= 0x80:
			ascii = false
		case c == '/':
			rest := raw[i+1:]
			if len(rest) > 0 && rest[0] == '/' {
				return false
			}
			if len(rest) > 0 && rest[0] == '.' {
				if len(rest) == 1 || rest[1] == '/' {
					return false
				}
				if rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
					return false
				}
			}
		}
	}
	return ascii || utf8.ValidString(raw)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const upperHex = "0123456789ABCDEF"

// isOpaqueEscape reports whether s starts with one of the escapes that
// NormalizePath keeps encoded, in its canonical uppercase form.
func isOpaqueEscape(s string) bool {
	if len(s) < 2 {
		return false
	}
	switch s[:2] {
	case "25", "2F", "5C":
		return true
	}
	return false
}
