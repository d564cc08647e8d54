package engine

import (
	"net/textproto"
	"strings"
)

// Header is a request or response header map with canonical keys. It has
// the same layout as net/http's Header and net/textproto's MIMEHeader so an
// engine built on net/http converts between them with a type conversion,
// without copying.
type Header map[string][]string

// Get returns the first value of key, or "" when it is absent.
func (h Header) Get(key string) string {
	return textproto.MIMEHeader(h).Get(key)
}

// Values returns every value of key; the slice is shared with h.
func (h Header) Values(key string) []string {
	return textproto.MIMEHeader(h).Values(key)
}

// Set replaces the values of key with value.
func (h Header) Set(key, value string) {
	textproto.MIMEHeader(h).Set(key, value)
}

// Add appends value to key's values.
func (h Header) Add(key, value string) {
	textproto.MIMEHeader(h).Add(key, value)
}

// Del removes key.
func (h Header) Del(key string) {
	textproto.MIMEHeader(h).Del(key)
}

// Clone returns a deep copy of h; nil stays nil.
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	// One backing array for all values, as net/http does, keeps the copy
	// to two allocations plus the map.
	all := make([]string, n)
	out := make(Header, len(h))
	for k, vv := range h {
		if vv == nil {
			out[k] = nil
			continue
		}
		m := copy(all, vv)
		out[k] = all[:m:m]
		all = all[m:]
	}
	return out
}

// hopByHop lists the connection-level headers a proxy never forwards
// (RFC 9110 §7.6.1 plus the legacy Keep-Alive and Proxy-Connection);
// IsHopByHop's switch must name the same (TestIsHopByHop).
var hopByHop = [...]string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// IsHopByHop reports whether the canonical header name k is connection
// level: one of the fixed hop-by-hop names or any Proxy-* header.
func IsHopByHop(k string) bool {
	// A switch (length first) instead of a loop over hopByHop: it runs
	// for every header of every proxied request and response.
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return strings.HasPrefix(k, "Proxy-")
}

// RemoveConnectionListed deletes the headers the Connection header names
// (RFC 9110 §7.6.1), except "upgrade", which the forwarder decides about.
// Engines call it once, when they fill a Ctx and before any plugin runs, so
// a client can strip only its own headers and never the ones the gateway or
// a plugin adds later (golang/go#50580: X-Real-IP, X-Consumer-*).
func (h Header) RemoveConnectionListed() {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = textproto.TrimString(tok)
			if tok == "" || strings.EqualFold(tok, "upgrade") ||
				strings.EqualFold(tok, "close") || strings.EqualFold(tok, "keep-alive") {
				continue
			}
			if strings.EqualFold(tok, "connection") {
				continue
			}
			delete(h, textproto.CanonicalMIMEHeaderKey(tok))
		}
	}
}

// HasToken reports whether any value of key contains token as one element
// of a comma-separated list, case-insensitively (e.g. Connection: upgrade).
func (h Header) HasToken(key, token string) bool {
	for _, v := range h[key] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(textproto.TrimString(tok), token) {
				return true
			}
		}
	}
	return false
}
