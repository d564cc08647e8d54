package jwtauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
)

// token is a JWS in compact form, parsed but not verified.
type token struct {
	// alg is the header's "alg" (any JSON type; only a string can match).
	alg     any
	payload map[string]any
	// signingString is "<raw header>.<raw payload>".
	signingString string
	// sig is the raw (still encoded) signature part.
	sig string
}

// parseToken splits and decodes a compact JWS the way lua-resty-jwt's
// load_jwt does: exactly three dot-separated parts, header and payload
// base64url (decoded leniently like ngx.decode_base64) holding JSON
// objects. It returns false for anything APISIX calls "JWT token invalid".
func parseToken(s string) (*token, bool) {
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return nil, false
	}
	pl, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		return nil, false
	}
	t := &token{signingString: s[:len(h)+1+len(pl)], sig: sig}
	if t.alg, ok = decodeAlg(h); !ok {
		return nil, false
	}
	if t.payload, ok = decodeObject(pl); !ok {
		return nil, false
	}
	return t, true
}

// decodeAlg decodes the header and returns its "alg"; decoding into a
// struct keeps the header, which only matters for alg, cheap.
func decodeAlg(part string) (any, bool) {
	b, ok := ngxDecodeBase64(part, jwtAlphabet)
	if !ok {
		return nil, false
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) > 0 && b[0] == '[' {
		return nil, json.Valid(b)
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var h struct {
		Alg any `json:"alg"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, false
	}
	return h.Alg, true
}

func decodeObject(part string) (map[string]any, bool) {
	b, ok := ngxDecodeBase64(part, jwtAlphabet)
	if !ok {
		return nil, false
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) > 0 && b[0] == '[' {
		// A JSON array decodes to a Lua table without named fields: the
		// token stays "valid" and every claim lookup finds nothing.
		if !json.Valid(b) {
			return nil, false
		}
		return map[string]any{}, true
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false
	}
	return m, true
}

// Alphabets for ngxDecodeBase64.
const (
	stdAlphabet = iota
	urlAlphabet
	// jwtAlphabet accepts both: lua-resty-jwt maps "-" and "_" to "+" and
	// "/" and then decodes with the standard alphabet.
	jwtAlphabet
)

// ngxDecodeBase64 decodes like nginx's ngx_decode_base64(url): input
// stops at the first '=', characters outside the alphabet fail, a length
// of 1 mod 4 fails, and missing padding is fine.
func ngxDecodeBase64(s string, alphabet int) ([]byte, bool) {
	if i := strings.IndexByte(s, '='); i >= 0 {
		s = s[:i]
	}
	if len(s)%4 == 1 {
		return nil, false
	}
	buf := []byte(s)
	for i, c := range buf {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '+' || c == '/':
			if alphabet == urlAlphabet {
				return nil, false
			}
			if alphabet == jwtAlphabet {
				// Decoded below with the URL alphabet.
				if c == '+' {
					buf[i] = '-'
				} else {
					buf[i] = '_'
				}
			}
		case c == '-' || c == '_':
			if alphabet == stdAlphabet {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	enc := base64.RawStdEncoding
	if alphabet != stdAlphabet {
		enc = base64.RawURLEncoding
	}
	out := make([]byte, enc.DecodedLen(len(buf)))
	n, err := enc.Decode(out, buf)
	if err != nil {
		return nil, false
	}
	return out[:n], true
}

// parsePublicKey reads a PEM key the way OpenSSL's pkey.new would for
// verification: public keys (PKIX, PKCS#1), certificates and private keys
// (whose public half is used). It returns nil when the PEM is unusable or
// its type does not fit alg.
func parsePublicKey(s, alg string) any {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil
	}
	var pub any
	if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		pub = k
	} else if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
		pub = k
	} else if c, err := x509.ParseCertificate(block.Bytes); err == nil {
		pub = c.PublicKey
	} else if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		pub = publicOf(k)
	} else if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		pub = &k.PublicKey
	} else if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		pub = &k.PublicKey
	}
	switch alg[:2] {
	case "RS", "PS":
		if k, ok := pub.(*rsa.PublicKey); ok {
			return k
		}
	case "ES":
		if k, ok := pub.(*ecdsa.PublicKey); ok {
			return k
		}
	case "Ed":
		if k, ok := pub.(ed25519.PublicKey); ok {
			return k
		}
	}
	return nil
}

func publicOf(k any) any {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}
