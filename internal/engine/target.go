package engine

import "strings"

// OriginForm turns an absolute-form request target (http://host/p?q) into
// its origin form; the engine already took the host from it (RFC 9112
// §3.2.2: absolute-form wins over Host), so routing and forwarding agree.
// Both engines use it, so they turn the same targets into the same paths.
func OriginForm(uri string) string {
	i := strings.Index(uri, "://")
	if i < 0 {
		return uri // "*" or authority-form; NormalizePath rejects them
	}
	rest := uri[i+3:]
	j := strings.IndexAny(rest, "/?")
	if j < 0 {
		return "/"
	}
	if rest[j] == '?' {
		return "/" + rest[j:]
	}
	return rest[j:]
}

// NormHost lowercases the host, drops the port and a trailing dot, as
// nginx's $host; it does not allocate for an already-lowercase host
// (strings.ToLower returns its argument then).
func NormHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}
