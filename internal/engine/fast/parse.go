package fast

import (
	"bufio"
	"errors"
	"net/url"
	"strings"
)

// httpError is a request the server answers itself with status and then
// closes the connection. soft errors are framing verdicts that net/http
// would have let through and the std engine refuses afterwards; a hard
// (parse) error found later in the same head wins over them, so both
// engines give the same status for the same bytes.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

var (
	errBadRequest     = &httpError{400, "malformed request"}
	errHeaderTooLarge = &httpError{431, "request header too large"}
	errURITooLong     = &httpError{414, "request line too long"}
	errTooManyHeaders = &httpError{431, "too many header fields"}
	errVersion        = &httpError{505, "unsupported HTTP version"}
	errNotImplemented = &httpError{501, "unsupported transfer encoding"}
	errExpectation    = &httpError{417, "unsupported expectation"}
	errBodyTooLarge   = &httpError{413, "request body too large"}
	// errHandled: the engine answered the request itself (OPTIONS *).
	errHandled         = &httpError{-1, "handled"}
	errLineTooLong     = errors.New("line too long")
	errBareLF          = errors.New("bare LF line ending")
	errMalformedChunks = errors.New("malformed chunked encoding")
)

// tokenTable marks RFC 9110 tchar bytes, the only ones allowed in methods
// and field names.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

// hostTable is golang.org/x/net/http/httpguts' validHostByte: the bytes
// net/http accepts in a Host header.
var hostTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!$%&()*+,-.:;=['~]_" {
		t[c] = true
	}
	return
}()

// validValue reports whether b is a legal field value: no control bytes
// other than HTAB (NUL, CR, LF, DEL are refused; obs-text is allowed).
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func validValueString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		if !hostTable[s[i]] {
			return false
		}
	}
	return true
}

// readLine returns the next line without its line ending. CRLF is
// required unless bareLF is allowed; *bare reports a bare LF. The slice is
// valid until the next read from br. Lines longer than br's buffer are
// assembled in *long, up to max bytes.
func readLine(br *bufio.Reader, long *[]byte, max int, allowBareLF bool, bare *bool) ([]byte, int, error) {
	line, err := br.ReadSlice('\n')
	n := len(line)
	if err == bufio.ErrBufferFull {
		buf := append((*long)[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(buf) > max {
				*long = buf[:0]
				return nil, len(buf), errLineTooLong
			}
			line, err = br.ReadSlice('\n')
			buf = append(buf, line...)
		}
		*long = buf
		line = buf
		n = len(buf)
	}
	if err != nil {
		return nil, n, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
		*bare = false
	} else {
		*bare = true
		if !allowBareLF {
			return line, n, errBareLF
		}
	}
	return line, n, nil
}

// canonicalKey writes the canonical form of a token field name into dst
// (textproto's CanonicalMIMEHeaderKey for valid names).
func canonicalKey(dst []byte, name []byte) []byte {
	upper := true
	for _, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}

// commonKeys interns the canonical names most requests and responses use,
// so parsing them costs no allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Origin", "Age", "Allow", "Authorization", "Cache-Control",
		"Connection", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Location", "Content-Range", "Content-Type", "Cookie",
		"Date", "Etag", "Expect", "Expires", "Forwarded", "From", "Host", "If-Match",
		"If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
		"Keep-Alive", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin",
		"Pragma", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range",
		"Referer", "Retry-After", "Sec-Websocket-Accept", "Sec-Websocket-Extensions",
		"Sec-Websocket-Key", "Sec-Websocket-Protocol", "Sec-Websocket-Version", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Te", "Trailer", "Transfer-Encoding",
		"Upgrade", "User-Agent", "Vary", "Via", "Warning", "Www-Authenticate",
		"X-Api-Key", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id", "X-Powered-By",
		"X-Content-Type-Options", "X-Frame-Options", "X-Apisix-Upstream-Status",
		"Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-Dest", "Upgrade-Insecure-Requests",
		"Dnt", "Priority", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
	} {
		m[k] = k
	}
	return m
}()

var commonMethods = [...]string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

// strCache turns byte slices into strings and remembers them by position,
// so a keep-alive client that sends the same header block again (the
// common case) costs no allocation. Strings are immutable and never
// reused for other bytes, so handlers may keep them.
type strCache struct {
	keys  []string // canonical names by header position
	vals  []string // values by header position
	lines []string // whole field lines by position (field, keepLine)
	misc  [4]string
}

// field returns the name and value of the field line l at header
// position i when l repeats the line kept there (keepLine): that line
// was split and checked then, so the same bytes need neither again.
func (sc *strCache) field(i int, l []byte) (k, v string, ok bool) {
	if i < len(sc.lines) && sc.lines[i] == string(l) {
		return sc.keys[i], sc.vals[i], true
	}
	return "", "", false
}

// keepLine remembers the valid field line l at position i, whose name
// name(i, ...) has just interned, and returns its value v (a subslice of
// l) as a string sharing the line's one allocation.
func (sc *strCache) keepLine(i int, l, v []byte) string {
	if i >= maxCachedFields {
		return sc.val(i, v)
	}
	raw := string(l)
	off := cap(l) - cap(v)
	val := raw[off : off+len(v)]
	sc.put(&sc.lines, i, raw)
	sc.put(&sc.vals, i, val)
	return val
}

// name returns the canonical field name for raw at header position i.
// A keep-alive peer repeats its header block, so the name remembered at
// the position is tried first with a plain comparison (it also proves raw
// already canonical); only a miss canonicalizes and hashes.
func (sc *strCache) name(i int, raw []byte) string {
	if i < len(sc.keys) && sc.keys[i] == string(raw) {
		return sc.keys[i]
	}
	var buf [128]byte
	var canon []byte
	if len(raw) <= len(buf) {
		canon = canonicalKey(buf[:0], raw)
	} else {
		canon = canonicalKey(nil, raw)
	}
	return sc.key(i, canon)
}

func (sc *strCache) key(i int, canon []byte) string {
	if i < len(sc.keys) && sc.keys[i] == string(canon) {
		return sc.keys[i]
	}
	k, ok := commonKeys[string(canon)]
	if !ok {
		k = string(canon)
	}
	sc.put(&sc.keys, i, k)
	return k
}

func (sc *strCache) val(i int, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if i < len(sc.vals) && sc.vals[i] == string(b) {
		return sc.vals[i]
	}
	s := string(b)
	sc.put(&sc.vals, i, s)
	return s
}

// maxCachedFields bounds the header positions a strCache remembers.
const maxCachedFields = 256

func (sc *strCache) put(dst *[]string, i int, s string) {
	if i >= maxCachedFields {
		return
	}
	for len(*dst) <= i {
		*dst = append(*dst, "")
	}
	(*dst)[i] = s
}

// slot returns a memoised string for one of a few fixed positions
// (request target, status reason).
func (sc *strCache) slot(i int, b []byte) string {
	if sc.misc[i] == string(b) {
		return sc.misc[i]
	}
	s := string(b)
	sc.misc[i] = s
	return s
}

func internMethod(sc *strCache, b []byte) string {
	for _, m := range commonMethods {
		if m == string(b) {
			return m
		}
	}
	return sc.slot(1, b)
}

// parseContentLength parses a Content-Length value as net/http does
// (strconv.ParseUint(v, 10, 63)): digits only, no sign, no list, leading
// zeros allowed, at most 1<<63-1.
func parseContentLength(s string) (int64, bool) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63-1 {
			return 0, false
		}
	}
	return int64(n), true
}

// checkTarget gives url.ParseRequestURI's verdict on a request target,
// which net/http reaches before the header, so both engines refuse the
// same targets at the same point. Origin-form (the common case) is checked
// without allocating: only a broken percent escape in its path can fail
// there. Anything else (absolute-form, authority-form, junk) goes through
// url.ParseRequestURI itself, CONNECT's authority prefixed as net/http
// does; host is the URL's host, which wins over the Host header.
func checkTarget(method string, target []byte) (host string, ok bool) {
	if target[0] == '/' {
		for i := 0; i < len(target); i++ {
			switch target[i] {
			case '?':
				return "", true
			case '%':
				if i+2 >= len(target) {
					return "", false
				}
				if _, ok := hexVal(target[i+1]); !ok {
					return "", false
				}
				if _, ok := hexVal(target[i+2]); !ok {
					return "", false
				}
				i += 2
			}
		}
		return "", true
	}
	if len(target) == 1 && target[0] == '*' {
		return "", true
	}
	raw := string(target)
	if method == "CONNECT" {
		raw = "http://" + raw
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return "", false
	}
	return u.Host, true
}

// parseVersion parses HTTP/x.y as net/http's ParseHTTPVersion; only
// HTTP/1.0 and HTTP/1.1 are served (505 for the rest, including
// HTTP/1.2-1.9, which net/http serves as 1.x; hardening B6).
func parseVersion(b []byte) (proto string, major, minor int, err *httpError) {
	switch string(b) {
	case "HTTP/1.1":
		return "HTTP/1.1", 1, 1, nil
	case "HTTP/1.0":
		return "HTTP/1.0", 1, 0, nil
	}
	if len(b) == 8 && string(b[:5]) == "HTTP/" && b[6] == '.' &&
		'0' <= b[5] && b[5] <= '9' && '0' <= b[7] && b[7] <= '9' {
		return "", int(b[5] - '0'), int(b[7] - '0'), errVersion
	}
	return "", 0, 0, errBadRequest
}

// hasToken is net/http's hasToken: token (lowercase) appears in v ASCII
// case-insensitively with space, tab or comma boundaries. net/http uses it
// for Expect and for the first Connection value, so "close foo" closes.
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	if v == token {
		return true
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if asciiEqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// asciiEqualFold compares ASCII case-insensitively; unlike
// strings.EqualFold it never matches non-ASCII look-alikes (U+212A K).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
