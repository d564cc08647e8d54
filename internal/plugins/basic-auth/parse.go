package basicauth

import (
	"encoding/base64"
	"strings"
)

// ParseAuthorization extracts the username and password from an
// Authorization header value exactly as APISIX's basic-auth does, quirks
// included, so the same headers succeed and fail:
//
//   - the value is searched (not anchored) for "basic" in any case,
//     followed by one whitespace character and at least one more
//     character; everything after that whitespace is the credential;
//   - the credential is decoded like ngx.decode_base64: padding is
//     optional and anything after the first "=" is ignored, but any other
//     character outside the standard alphabet fails;
//   - the decoded text is split on ":" with trailing empty fields dropped
//     (lua-resty-core's ngx.re.split); at least two fields must remain;
//     the username is the first, the password the second (so a password
//     is only compared up to its first ":");
//   - all whitespace is removed from both.
//
// ok is false for any header APISIX answers "Invalid authorization in
// request".
func ParseAuthorization(h string) (user string, pass []byte, ok bool) {
	cred, found := basicCredential(h)
	if !found {
		return "", nil, false
	}
	decoded, ok := ngxDecodeBase64(cred)
	if !ok {
		return "", nil, false
	}
	i := indexByte(decoded, ':')
	if i < 0 {
		return "", nil, false
	}
	u, rest := decoded[:i], decoded[i+1:]
	if !hasNonColon(rest) {
		// Every field after the username is empty and trailing, so the
		// split leaves fewer than two fields.
		return "", nil, false
	}
	if j := indexByte(rest, ':'); j >= 0 {
		rest = rest[:j]
	}
	return string(stripSpace(u)), stripSpace(rest), true
}

// basicCredential finds the leftmost match of PCRE `(?i:basic)\s(.+)` and
// returns the capture.
func basicCredential(h string) (string, bool) {
	for i := 0; i+6 < len(h); i++ {
		if !strings.EqualFold(h[i:i+5], "basic") || !isSpace(h[i+5]) {
			continue
		}
		rest := h[i+6:]
		if n := strings.IndexByte(rest, '\n'); n >= 0 {
			rest = rest[:n]
		}
		if rest != "" {
			return rest, true
		}
	}
	return "", false
}

// ngxDecodeBase64 decodes like nginx's ngx_decode_base64: input stops at
// the first '=', characters outside the standard alphabet fail, and a
// length of 1 mod 4 fails; missing padding is fine.
func ngxDecodeBase64(s string) ([]byte, bool) {
	if i := strings.IndexByte(s, '='); i >= 0 {
		s = s[:i]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, false
		}
	}
	if len(s)%4 == 1 {
		return nil, false
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(s)))
	n, err := base64.RawStdEncoding.Decode(out, []byte(s))
	if err != nil {
		return nil, false
	}
	return out[:n], true
}

// isSpace is PCRE's \s without UTF mode: space, \t, \n, \v, \f, \r.
func isSpace(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r'
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func hasNonColon(b []byte) bool {
	for _, x := range b {
		if x != ':' {
			return true
		}
	}
	return false
}

// stripSpace removes every whitespace byte in place.
func stripSpace(b []byte) []byte {
	out := b[:0]
	for _, c := range b {
		if !isSpace(c) {
			out = append(out, c)
		}
	}
	return out
}
