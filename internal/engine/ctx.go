// Package engine holds the engine-neutral request context that the router,
// the plugins, the balancer and the proxy see. Engines (net/http in
// engine/std, the raw HTTP/1.1 engine in engine/fast) own sockets, TLS and
// parsing; they fill a pooled Ctx and call a Handler. Nothing here imports
// net/http, so the layers above stay engine-independent.
package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// ErrBodyTooLarge is returned by a request Body that passed the engine's
// body size limit; the proxy answers 413 when it sees it.
var ErrBodyTooLarge = errors.New("request body too large")

// ResponseWriter is the response half of a request. Engines implement it;
// Header values must be set before WriteHeader. Flush pushes buffered bytes
// to the client (streaming, SSE).
type ResponseWriter interface {
	Header() Header
	WriteHeader(status int)
	Write(p []byte) (int, error)
	Flush() error
}

// Hijacker is implemented by ResponseWriters that can hand over the raw
// client connection, for WebSocket and other Upgrade tunnels.
type Hijacker interface {
	Hijack() (net.Conn, *bufio.ReadWriter, error)
}

// Aborter is implemented by ResponseWriters that can abort a response whose
// header was already sent, so the client sees a truncated response rather
// than a well-formed short one (net/http's ErrAbortHandler).
type Aborter interface {
	Abort()
}

// Handler serves one request. The Ctx and everything it refers to must not
// be used after Serve returns: it goes back to a pool.
type Handler interface {
	Serve(c *Ctx)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Ctx)

// Serve calls f(c).
func (f HandlerFunc) Serve(c *Ctx) { f(c) }

// Ctx is one request as every layer above the engine sees it, plus the
// per-request state the gateway and plugins share. It is pooled: Reset
// keeps slice and map capacity so steady-state requests allocate nothing.
type Ctx struct {
	// A copy of a Ctx would share its text chunk (txt) with the original,
	// and an append through one would overwrite strings handed out
	// through the other: go vet's copylocks check reports copies.
	_ noCopy

	// Request, filled by the engine.

	// Method is the request method, e.g. "GET".
	Method string
	// Proto is the protocol version string, e.g. "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// RequestURI is the raw origin-form request-target (path?query) as
	// received; the proxy forwards it verbatim unless a plugin rewrites it.
	RequestURI string
	// RawPath is the raw (undecoded) path part of RequestURI.
	RawPath string
	// Path is the normalised path (nginx $uri) used for routing.
	Path string
	// Query is the raw query string without '?'.
	Query string
	// Host is the request host, lowercased, without port or trailing dot.
	Host string
	// RawHost is the Host header (or :authority) as sent.
	RawHost string
	// Header holds the request headers with canonical keys.
	Header Header
	// Trailer holds request trailers; the engine pre-declares the keys and
	// the values appear once Body returned io.EOF.
	Trailer Header
	// Body streams the request body; engines never buffer it whole.
	Body io.ReadCloser
	// ContentLength is the declared body length, -1 when unknown (chunked).
	ContentLength int64
	// RemoteAddr is the client socket's address.
	RemoteAddr netip.AddrPort
	// LocalAddr is the listener address the request arrived on.
	LocalAddr netip.AddrPort
	// TLS is the client connection's TLS state, nil for cleartext.
	TLS *tls.ConnectionState
	// Scheme is "http" or "https".
	Scheme string
	// Context is cancelled when the client goes away or the server shuts
	// down; the proxy derives the upstream request's context from it.
	Context context.Context
	// StartTime is when the engine began serving the request.
	StartTime time.Time
	// EngineData is the engine's own per-request state (nil for std). The
	// fast engine stores its connection here so the gateway can tell which
	// engine a Ctx came from and its upstream client can reach the
	// connection's buffers and disconnect watcher.
	EngineData any

	// ServerHeader is the Server header value the engine puts on every
	// response (apisix.enable_server_tokens decides whether it carries
	// the version); set by the engine, reused across requests: read only.
	ServerHeader []string
	// RequestHeadBytes is the size of the request head as received
	// (request line, header fields, blank line); 0 when the engine does
	// not know it (std), and users then estimate it from the fields.
	RequestHeadBytes int
	// ResponseHeadBytes is the size of the response head as written
	// (status line, header fields, blank line), set when the head is
	// written; 0 when the engine does not know it.
	ResponseHeadBytes int

	// Response side.

	// W writes the response.
	W ResponseWriter
	// Status is the response status once written (0 before).
	Status int
	// BytesSent counts response body bytes written.
	BytesSent int64

	// Gateway and plugin state.

	// RouteID, ServiceID and ConsumerName identify what served the request.
	RouteID, ServiceID, ConsumerName string
	// RouteName and ServiceName are the matched objects' names (prometheus
	// prefer_name, $route_name, $service_name).
	RouteName, ServiceName string
	// MatchedURI and MatchedHost are the route pattern and host pattern
	// that matched (APISIX's matched_uri/matched_host labels).
	MatchedURI, MatchedHost string
	// UpstreamAddr is the last upstream node tried (host:port).
	UpstreamAddr string
	// UpstreamStatus lists the status of each upstream attempt in order
	// (nginx $upstream_status); 502/504 stand for failed attempts.
	UpstreamStatus []int
	// ParamKeys and ParamValues hold route parameters (uri_param_<name>).
	ParamKeys, ParamValues []string
	// Values is free per-request storage for plugins, keyed by plugin name
	// or a documented key. Allocated on first use, cleared on Reset.
	Values map[string]any

	vars  []kv     // variables set by plugins; they shadow built-ins
	hvals []string // backing array of HeaderValue's slices
	// txt is the chunk Text carves strings from. Bytes once
	// handed out are never written again (a plugin may keep the string
	// past the request, e.g. in a log batch), so it is never rewound:
	// a full chunk is left to the strings that use it and a new one made.
	txt      []byte
	remoteIP string
}

type kv struct{ k, v string }

// Reset clears c for reuse, keeping allocated capacity.
func (c *Ctx) Reset() {
	ups := c.UpstreamStatus[:0]
	pk, pv := c.ParamKeys[:0], c.ParamValues[:0]
	vals := c.Values
	clear(vals)
	vars := c.vars[:0]
	clear(c.hvals)
	hv := c.hvals[:0]
	txt := c.txt // not rewound: see txt
	*c = Ctx{}
	c.UpstreamStatus, c.ParamKeys, c.ParamValues, c.Values, c.vars, c.hvals, c.txt = ups, pk, pv, vals, vars, hv, txt
	c.ContentLength = -1
}

var ctxPool = sync.Pool{New: func() any { c := new(Ctx); c.ContentLength = -1; return c }}

// AcquireCtx returns an empty Ctx from a pool.
func AcquireCtx() *Ctx { return ctxPool.Get().(*Ctx) }

// ReleaseCtx resets c and puts it back into the pool; c must not be used
// afterwards.
func ReleaseCtx(c *Ctx) {
	c.Reset()
	ctxPool.Put(c)
}

// SetValue stores a plugin value under key.
func (c *Ctx) SetValue(key string, v any) {
	if c.Values == nil {
		c.Values = make(map[string]any, 4)
	}
	c.Values[key] = v
}

// HeaderValue returns v as a one-value header slice for this request's
// header maps (h[key] = c.HeaderValue(v)), without the allocation of
// []string{v}: the slices share a per-request backing array, each capped
// at its one element so an append copies. Valid until the request ends,
// like the maps it goes in.
func (c *Ctx) HeaderValue(v string) []string {
	if len(c.hvals) == cap(c.hvals) {
		c.hvals = make([]string, 0, max(8, 2*cap(c.hvals)))
	}
	i := len(c.hvals)
	c.hvals = append(c.hvals, v)
	return c.hvals[i : i+1 : i+1]
}

// noCopy makes go vet report copies of the struct holding it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// txtChunk is the size of the chunks Text carves strings from: one
// allocation per ~30 numbers or ~10 short paths.
const txtChunk = 512

// Text returns string(b) without an allocation of its own when b is short:
// the bytes are copied into a chunk the Ctx keeps across requests (a new
// txtChunk-byte chunk when the current one is full, so the garbage is the
// texts' bytes, not an object each). The string is immutable like any
// other and may be kept after the request ends.
func (c *Ctx) Text(b []byte) string {
	if len(b) == 0 || len(b) > txtChunk/4 {
		return string(b)
	}
	if cap(c.txt)-len(c.txt) < len(b) {
		c.txt = make([]byte, 0, txtChunk)
	}
	i := len(c.txt)
	c.txt = append(c.txt, b...)
	return unsafe.String(&c.txt[i], len(b))
}

// smallInts holds the text of 0..999, the commonest counts.
var smallInts = func() (t [1000]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// FormatInt is strconv.FormatInt(n, 10), with 0..999 from a table (no
// allocation for them).
func FormatInt(n int64) string {
	if n >= 0 && n < int64(len(smallInts)) {
		return smallInts[n]
	}
	return strconv.FormatInt(n, 10)
}

// IntText is FormatInt without its allocation: 0..999 from the table,
// other numbers by way of Text.
func (c *Ctx) IntText(n int64) string {
	if n >= 0 && n < int64(len(smallInts)) {
		return smallInts[n]
	}
	var b [20]byte // the longest int64
	return c.Text(strconv.AppendInt(b[:0], n, 10))
}

// SetVar sets variable name for the rest of the request; it shadows the
// built-in of the same name (APISIX's ctx.var.x = y).
func (c *Ctx) SetVar(name, value string) {
	for i := range c.vars {
		if c.vars[i].k == name {
			c.vars[i].v = value
			return
		}
	}
	c.vars = append(c.vars, kv{name, value})
}

// Param returns the route parameter name.
func (c *Ctx) Param(name string) (string, bool) {
	for i, k := range c.ParamKeys {
		if k == name {
			return c.ParamValues[i], true
		}
	}
	return "", false
}

// Reply writes a complete response: status, Content-Type (when not empty),
// Content-Length and body. Plugins that stop a request and the proxy's
// error paths use it.
func (c *Ctx) Reply(status int, contentType string, body []byte) {
	h := c.W.Header()
	if contentType != "" {
		h["Content-Type"] = []string{contentType}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	c.W.WriteHeader(status)
	if len(body) > 0 && c.Method != "HEAD" {
		c.W.Write(body)
	}
}

// ReplyError answers status with nginx's HTML error page.
func (c *Ctx) ReplyError(status int) {
	c.Reply(status, ErrorPageContentType, ErrorPage(status))
}

// SetRemote sets the client address with its text form (RemoteIP's
// value) for an engine that formats it once per connection; ip must be
// a.Addr().Unmap().String(), or "" to have RemoteIP compute it.
func (c *Ctx) SetRemote(a netip.AddrPort, ip string) {
	c.RemoteAddr, c.remoteIP = a, ip
}

// SetRemoteAddr replaces the client address (realip, the real-ip plugin);
// everything that reads it afterwards, $remote_addr included, sees the new
// one.
func (c *Ctx) SetRemoteAddr(a netip.AddrPort) {
	c.RemoteAddr = a
	c.remoteIP = ""
}

// RemoteIP returns the client address as text, computed once per request.
func (c *Ctx) RemoteIP() string {
	if c.remoteIP == "" && c.RemoteAddr.IsValid() {
		c.remoteIP = c.RemoteAddr.Addr().Unmap().String()
	}
	return c.remoteIP
}

// ClientWatcher is implemented by an engine's EngineData when it notices a
// client disconnect only while asked to watch (the fast engine reads the
// client socket from a helper goroutine only then). WatchClient arms the
// watch, reporting false when it cannot; UnwatchClient disarms it. Both run
// on the goroutine serving the request.
type ClientWatcher interface {
	WatchClient() bool
	UnwatchClient()
}

// Wait blocks for d or until the client goes away (Context is done),
// whichever is first, and reports whether the full d elapsed. Plugins that
// delay a request (limit-req, limit-conn, fault-injection, mocking) use it
// so that a client that gives up is never forwarded after its wait.
func (c *Ctx) Wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if c.Context == nil {
		time.Sleep(d)
		return true
	}
	if w, ok := c.EngineData.(ClientWatcher); ok && w.WatchClient() {
		defer w.UnwatchClient()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.Context.Done():
		return false
	}
}
