// Package proxy forwards a request from an engine.Ctx to an upstream node
// and streams the answer back: hop-by-hop and X-Forwarded-* handling,
// retries on connect failures, nginx-style timeouts and error pages, SSE
// streaming, trailers and WebSocket tunnels. It is hand-written on
// http.Transport rather than httputil.ReverseProxy, whose Director/Rewrite
// hooks and buffering we would have to fight (hardening.md §1).
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/version"
)

// Target is one upstream node to send the request to.
type Target struct {
	// Scheme is "http" or "https" (HTTP/1.1), or APISIX's "grpc" (HTTP/2
	// with prior knowledge over cleartext, h2c) or "grpcs" (HTTP/2 over TLS,
	// ALPN h2). The grpc schemes always speak HTTP/2 upstream whatever the
	// client spoke, so gRPC's trailers and full-duplex streams survive;
	// gRPC clients themselves must reach Sluice over HTTP/2: TLS with ALPN
	// h2, or h2c on a listener whose engine allows it (std.WithH2C; the
	// gateway has no config switch for that yet, so in practice TLS).
	Scheme string
	// Addr is the dial address, host:port.
	Addr string
	// Host is the Host header to send; empty passes the client's through.
	Host string
	// SNI is the TLS server name for https and grpcs; empty uses Host
	// without port.
	SNI string
	// TLS is the upstream TLS config (client certs, roots). nil means
	// APISIX's default: do not verify the upstream certificate.
	TLS *tls.Config
}

// Timeouts are nginx's proxy_connect/send/read_timeout: connect bounds the
// dial (and TLS handshake), send the gap between two writes of the request,
// read the gap between two reads of the response (including the wait for
// its header). Zero means the default of 60 s.
type Timeouts struct {
	Connect, Send, Read time.Duration
}

// Pool sizes the keep-alive pool to one upstream address.
type Pool struct {
	// Size is the number of idle connections kept (APISIX keepalive 320).
	Size int
	// IdleTimeout closes idle pooled connections (APISIX 60 s).
	IdleTimeout time.Duration
	// Requests is APISIX's keepalive_pool.requests; not enforced yet.
	Requests int
}

// Options are the per-route forwarding settings.
type Options struct {
	Timeouts Timeouts
	// Retries is how many further nodes to try after a failed attempt.
	Retries int
	// RetryTimeout bounds the time from the first attempt within which a
	// retry may start; 0 means no bound.
	RetryTimeout  time.Duration
	KeepalivePool Pool
	// WebSocket allows Upgrade: websocket to be tunnelled.
	WebSocket bool
	// ShowUpstreamStatus always sends X-APISIX-Upstream-Status, not only
	// when the final status is 5xx.
	ShowUpstreamStatus bool
	// TrustedProxy reports whether a peer may set X-Forwarded-*; nil means
	// no trusted_addresses configured (incoming XFF is appended to, other
	// X-Forwarded-* are overwritten).
	TrustedProxy func(netip.Addr) bool
	// PluginForwarded marks X-Forwarded-Proto/-Host/-Port values a plugin
	// set (proxy-rewrite headers): they are sent as the plugin left them,
	// as in APISIX, instead of being recomputed.
	PluginForwarded ForwardedSet
}

// ForwardedSet is a set of the X-Forwarded-* headers the gateway computes.
type ForwardedSet uint8

// Members of ForwardedSet.
const (
	ForwardedProto ForwardedSet = 1 << iota
	ForwardedHost
	ForwardedPort
)

// Picker returns the target for attempt n (0-based); ok=false when no
// (more) node is available.
type Picker func(attempt int) (Target, bool)

const (
	defaultTimeout  = 60 * time.Second
	defaultPoolSize = 320
	defaultPoolIdle = 60 * time.Second
	copyBufSize     = 32 << 10
	// maxTransports bounds the per-(node, TLS identity, pool settings)
	// transports kept at once.
	maxTransports = 4096
	// StatusClientClosed is nginx's 499: the client went away first.
	StatusClientClosed = 499
)

var (
	errTimeout   = errors.New("upstream timed out")
	errNoTarget  = errors.New("no upstream node available")
	serverHeader = []string{version.Server}
)

type transportKey struct {
	scheme, addr, sni string
	tls               *tls.Config
	size              int
	idle, connect     time.Duration
}

// Forwarder holds the upstream connection pools and copy buffers; one per
// gateway, safe for concurrent use.
type Forwarder struct {
	logger     *slog.Logger
	mu         sync.RWMutex
	transports map[transportKey]roundTripper
	bufs       sync.Pool // *[]byte of copyBufSize
	attempts   sync.Pool // *attempt
}

// NewForwarder returns an empty Forwarder.
func NewForwarder(logger *slog.Logger) *Forwarder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{logger: logger, transports: map[transportKey]roundTripper{}}
	f.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	f.attempts.New = func() any { return newAttempt() }
	return f
}

// CloseIdle closes every idle upstream connection.
func (f *Forwarder) CloseIdle() {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, t := range f.transports {
		t.CloseIdleConnections()
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (f *Forwarder) transport(t *Target, opt *Options) roundTripper {
	key := transportKey{scheme: t.Scheme, addr: t.Addr, tls: t.TLS,
		size: opt.KeepalivePool.Size, idle: opt.KeepalivePool.IdleTimeout,
		connect: opt.Timeouts.Connect}
	if isTLS(t.Scheme) {
		key.sni = t.ServerName()
	}
	f.mu.RLock()
	tr := f.transports[key]
	f.mu.RUnlock()
	if tr != nil {
		return tr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if tr = f.transports[key]; tr != nil {
		return tr
	}
	if len(f.transports) >= maxTransports {
		// Keys include the SNI, which follows the client's Host with
		// pass_host=pass, and retired upstreams' settings: past the bound
		// the idle pools are closed and the map starts over, so memory
		// stays bounded whatever clients send. In-flight requests keep
		// their transport until they finish.
		for _, old := range f.transports {
			old.CloseIdleConnections()
		}
		clear(f.transports)
	}
	pool := Pool{Size: key.size, IdleTimeout: key.idle}.WithDefaults()
	connect := Timeouts{Connect: key.connect}.WithDefaults().Connect
	dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	var cfg *tls.Config
	if isTLS(t.Scheme) {
		cfg = t.ClientTLS(key.sni)
	}
	if isH2(t.Scheme) {
		tr = newH2Transport(key, dialer, cfg)
		f.transports[key] = tr
		return tr
	}
	h1 := &http.Transport{
		Proxy:       nil,
		DialContext: dialer.DialContext,
		// Go's default of 2 idle connections per host turns every burst
		// into new dials (DESIGN §4).
		MaxIdleConnsPerHost:   pool.Size,
		IdleConnTimeout:       pool.IdleTimeout,
		TLSHandshakeTimeout:   connect,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding and the upstream's encoding pass
		// through untouched.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	h1.TLSClientConfig = cfg
	f.transports[key] = h1
	return h1
}

// attempt is one try against one node: its context and the watchdog timer
// that implements the send/read timeouts. Attempts are pooled with their
// timer, trace hooks and body wrapper bound once, so a try allocates only
// its context and the outgoing request; reuse rules are on release.
type attempt struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	send   time.Duration
	read   time.Duration
	trace  httptrace.ClientTrace
	// hooks are trace's functions, bound once; trace is reset from them
	// per attempt because WithClientTrace composes into it in place.
	hooks httptrace.ClientTrace
	body  body
	// mu guards cancel: the timer's function reads it, try sets it.
	mu sync.Mutex
	// wrote is set by the WroteRequest hook: the Transport is done with
	// the request, its body and the hooks.
	wrote atomic.Bool
}

func newAttempt() *attempt {
	a := &attempt{}
	// Bound once per pooled attempt: method values allocate.
	a.hooks.GotConn = a.gotConn
	a.hooks.WroteRequest = a.wroteRequest
	return a
}

func (a *attempt) gotConn(httptrace.GotConnInfo) { a.arm(a.send) }

func (a *attempt) wroteRequest(httptrace.WroteRequestInfo) {
	a.wrote.Store(true)
	a.arm(a.read)
}

// fire is the watchdog: the attempt timed out.
func (a *attempt) fire() {
	a.mu.Lock()
	cancel := a.cancel
	a.mu.Unlock()
	if cancel != nil {
		cancel(errTimeout)
	}
}

// start arms the watchdog for a new attempt.
func (a *attempt) start(ctx context.Context, cancel context.CancelCauseFunc, d time.Duration) {
	a.mu.Lock()
	a.ctx, a.cancel = ctx, cancel
	a.mu.Unlock()
	a.wrote.Store(false)
	a.trace = a.hooks
	if a.timer == nil {
		a.timer = time.AfterFunc(d, a.fire)
	} else {
		a.timer.Reset(d)
	}
}

func (a *attempt) arm(d time.Duration) { a.timer.Reset(d) }

// release ends the attempt and reports whether it may be reused: only
// when its timer was still pending (so its function will not run for
// this attempt) and the Transport reported the request written (so no
// hook or body read of this attempt can come late, as when an upstream
// answers before it read the whole request).
func (a *attempt) release() bool {
	stopped := a.timer.Stop()
	a.mu.Lock()
	cancel := a.cancel
	a.ctx, a.cancel = nil, nil
	a.mu.Unlock()
	cancel(nil)
	if !stopped || !a.wrote.Load() {
		return false
	}
	a.body = body{}
	return true
}

// body wraps the client body for one attempt: it counts bytes, feeds the
// send-timeout watchdog and never closes the engine's body, so a second
// attempt can use it when the first one never read from it.
type body struct {
	r    io.Reader
	a    *attempt
	n    int64
	dead bool
	mu   sync.Mutex
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead {
		return 0, io.ErrUnexpectedEOF
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if n > 0 {
		b.a.arm(b.a.send)
	}
	return n, err
}

func (b *body) Close() error { return nil }

// finish retires the body once the attempt is over, waiting for a read in
// flight. closeClient closes the client's body first to wake such a read;
// only HTTP/2 request bodies are known to allow a Close concurrent with Read.
func (b *body) finish(closeClient bool) {
	if !b.mu.TryLock() {
		if cl, ok := b.r.(io.Closer); ok && closeClient {
			_ = cl.Close()
		}
		b.mu.Lock()
	}
	b.dead = true
	b.mu.Unlock()
}

func (b *body) read() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dead = true
	return b.n
}

// Forward sends c to the node pick chooses, retrying on the next node after
// connect failures and timeouts, and writes the upstream's response (or an
// nginx error page) to c.W. It returns the status sent to the client
// (499 when the client went away) and the last upstream error, if any.
func (f *Forwarder) Forward(c *engine.Ctx, pick Picker, opt *Options) (int, error) {
	upgrade := prepareHeaders(c, opt)
	rawPath, query := engine.SplitRequestURI(c.RequestURI)
	parent := c.Context
	if parent == nil {
		parent = context.Background()
	}
	idempotent := IsIdempotent(c.Method)
	r := Retry{Options: opt}
	for {
		t, ok := r.Next(pick)
		if !ok {
			break
		}
		c.UpstreamAddr = t.Addr
		st, err, retry := f.try(c, &t, opt, parent, rawPath, query, upgrade, idempotent)
		if err == nil {
			return st, nil
		}
		if !r.Failed(st, err, retry) {
			break
		}
		f.logger.Debug("upstream attempt failed", "addr", t.Addr, "status", st, "err", err)
	}
	return r.Reply(c)
}

// try makes one attempt. On success it has written the response and
// returns err == nil. On failure nothing was written to the client; it
// returns the status to report and whether another node may be tried.
func (f *Forwarder) try(c *engine.Ctx, t *Target, opt *Options, parent context.Context,
	rawPath, query string, upgrade, idempotent bool) (int, error, bool) {
	tr := f.transport(t, opt)
	h2 := isH2(t.Scheme)
	ctx, cancel := context.WithCancelCause(parent)
	a := f.attempts.Get().(*attempt)
	to := opt.Timeouts.WithDefaults()
	a.send, a.read = to.Send, to.Read
	// The dial is bounded by the dialer's connect timeout; the watchdog
	// covers the rest: send timeout once a connection is in hand (and after
	// every chunk of request body), read timeout once the request is out
	// and between response reads.
	a.start(ctx, cancel, to.Connect+a.send)
	ctx = httptrace.WithClientTrace(ctx, &a.trace)
	defer func() {
		// gRPC attempts stay out of the pool: the h2 transport's body
		// writer and response body outlive the checks release makes.
		if a.release() && !h2 {
			f.attempts.Put(a)
		}
	}()

	scheme := "http"
	if isTLS(t.Scheme) {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: t.Addr, Opaque: rawPath, RawQuery: query}
	if strings.HasPrefix(rawPath, "//") {
		// Opaque "//x" would be written as an absolute URI; use Path/RawPath.
		p, _ := url.PathUnescape(rawPath)
		u = url.URL{Scheme: scheme, Host: t.Addr, Path: p, RawPath: rawPath, RawQuery: query}
	}
	host := t.Host
	if host == "" {
		host = c.RawHost
	}
	var b *body
	var rb io.ReadCloser
	if c.Body != nil && c.ContentLength != 0 {
		a.body = body{r: c.Body, a: a}
		b = &a.body
		rb = b
	}
	var r0 http.Request
	req := r0.WithContext(ctx)
	req.Method = c.Method
	req.URL = &u
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	req.Header = http.Header(c.Header)
	req.Body = rb
	req.ContentLength = c.ContentLength
	if rb == nil {
		req.ContentLength = 0
	}
	req.Host = host
	if len(c.Trailer) > 0 {
		req.Trailer = http.Header(c.Trailer)
	}

	resp, err := tr.RoundTrip(req)
	// gRPC streams are full duplex: an HTTP/2 upstream answers while the
	// request body still flows, so a successful h2 attempt keeps feeding
	// the body until the response is done (finish below).
	var sent int64
	if b != nil && (err != nil || !h2) {
		sent = b.read()
	}
	if err != nil {
		st, retry := AttemptFailed(c, err, clientGone(parent), timedOut(ctx), sent, idempotent)
		return st, err, retry
	}
	c.UpstreamStatus = append(c.UpstreamStatus, resp.StatusCode)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if upgrade {
			a.timer.Stop()
			return f.tunnel(c, resp)
		}
		resp.Body.Close()
		return http.StatusBadGateway, errors.New("unexpected 101 from upstream"), false
	}
	if b != nil && h2 {
		resp.Body = &h2RespBody{ReadCloser: resp.Body, b: b, cancel: cancel,
			closeClient: c.Proto == "HTTP/2.0"}
	}
	return f.copyResponse(c, resp, a, opt)
}

func (f *Forwarder) copyResponse(c *engine.Ctx, resp *http.Response, a *attempt, opt *Options) (int, error, bool) {
	defer resp.Body.Close()
	dst := c.W.Header()
	copyResponseHeader(dst, resp.Header)
	var announced []string
	if len(resp.Trailer) > 0 {
		announced = make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			announced = append(announced, k)
		}
		dst["Trailer"] = []string{strings.Join(announced, ", ")}
	}
	SetResponseHeaders(dst, c, resp.StatusCode, opt)
	c.W.WriteHeader(resp.StatusCode)

	// Stream unknown-length and event-stream bodies: flush after each read
	// so SSE events and chunks reach the client as they arrive.
	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	for {
		a.arm(a.read)
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := c.W.Write(buf[:n]); werr != nil {
				return StatusClientClosed, nil, false
			}
			if flush {
				_ = c.W.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The header is out: the only honest signal is a truncated
			// response, so abort the client connection.
			if ab, ok := c.W.(engine.Aborter); ok {
				ab.Abort()
			}
			st, _ := Classify(clientGone(c.Context), timedOut(a.ctx), rerr)
			f.logger.Debug("upstream body read failed", "status", st, "err", rerr)
			return resp.StatusCode, nil, false
		}
	}
	for k, vv := range resp.Trailer {
		if slices.Contains(announced, k) {
			dst[k] = vv
		} else {
			// Trailers the upstream did not announce up front.
			dst[http.TrailerPrefix+k] = vv
		}
	}
	return resp.StatusCode, nil, false
}

// clientGone reports whether the request's context (the client) is done,
// for Classify.
func clientGone(parent context.Context) bool {
	return parent != nil && parent.Err() != nil
}

// timedOut reports whether the attempt's watchdog cancelled ctx, for
// Classify.
func timedOut(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errTimeout)
}

// copyResponseHeader moves the upstream's end-to-end headers into dst,
// sharing the value slices (the response is ours).
func copyResponseHeader(dst engine.Header, src http.Header) {
	for _, v := range src["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = strings.TrimSpace(tok); tok != "" {
				delete(src, http.CanonicalHeaderKey(tok))
			}
		}
	}
	for k, vv := range src {
		if engine.IsHopByHop(k) {
			continue
		}
		dst[k] = vv
	}
}

// values hands out one-element header value slices from one backing
// array, so the up to six values forwarding adds cost one allocation.
type values struct{ buf []string }

func (a *values) one(v string) []string {
	if len(a.buf) == cap(a.buf) {
		a.buf = make([]string, 0, 6)
	}
	a.buf = append(a.buf, v)
	n := len(a.buf)
	return a.buf[n-1 : n : n]
}

func setHeader(h engine.Header, vals *values, k, v string) {
	if vv := h[k]; len(vv) > 0 {
		vv[0] = v
		h[k] = vv[:1]
		return
	}
	h[k] = vals.one(v)
}

// Forwarding is what the gateway needs from a forwarder; the net/http
// based Forwarder and the fast engine's upstream client both implement it.
type Forwarding interface {
	Forward(c *engine.Ctx, pick Picker, opt *Options) (int, error)
}

// HeaderPlan is what forwarding changes in the request header, computed
// without touching the map, so an engine that writes the upstream request
// straight to the wire (engine/fast) applies exactly the rules this
// package applies.
type HeaderPlan struct {
	// Upgrade: the request is a WebSocket upgrade to tunnel; send
	// Upgrade (the client's values) and "Connection: Upgrade".
	Upgrade bool
	// TETrailers: send "Te: trailers".
	TETrailers bool
	// ClientIP is the address appended to X-Forwarded-For and sent as
	// X-Real-Ip.
	ClientIP string
	// XFFPrior are the incoming X-Forwarded-For values kept in front of
	// ClientIP (nil when there are none or they are not trusted).
	XFFPrior []string
	// Proto, Host and Port are the X-Forwarded-Proto/-Host/-Port values to
	// send when the matching Set flag is true; otherwise the client's value
	// (from a trusted peer) stays.
	Proto, Host, Port          string
	SetProto, SetHost, SetPort bool
}

// Replaces reports whether forwarding drops or rewrites the client's
// header k (canonical), so a wire writer skips it and writes the plan's
// value instead. Host, Content-Length and framing are the writer's own.
func (p *HeaderPlan) Replaces(k string) bool {
	switch k {
	case "Forwarded", "X-Forwarded-For", "X-Real-Ip":
		return true
	case "X-Forwarded-Proto":
		return p.SetProto
	case "X-Forwarded-Host":
		return p.SetHost
	case "X-Forwarded-Port":
		return p.SetPort
	}
	return engine.IsHopByHop(k)
}

// PlanHeaders computes the header changes for forwarding c (APISIX
// semantics, apisix-core.md §3.11). ip is the client address as text, or
// "" to use c.RemoteIP().
func PlanHeaders(c *engine.Ctx, opt *Options, ip string) HeaderPlan {
	h := c.Header
	var p HeaderPlan
	p.Upgrade = opt.WebSocket && h.HasToken("Connection", "upgrade") &&
		strings.EqualFold(h.Get("Upgrade"), "websocket")
	p.TETrailers = h.HasToken("Te", "trailers")
	if ip == "" {
		ip = c.RemoteIP()
	}
	p.ClientIP = ip
	trusted := false
	if opt.TrustedProxy != nil {
		trusted = c.RemoteAddr.IsValid() && opt.TrustedProxy(c.RemoteAddr.Addr().Unmap())
	}
	if opt.TrustedProxy == nil || trusted {
		p.XFFPrior = h["X-Forwarded-For"]
	}
	keep := opt.PluginForwarded
	if (!trusted || len(h["X-Forwarded-Proto"]) == 0) && keep&ForwardedProto == 0 {
		p.Proto, p.SetProto = c.Scheme, true
	}
	if (!trusted || len(h["X-Forwarded-Host"]) == 0) && keep&ForwardedHost == 0 {
		fh := c.RawHost
		if fh == "" {
			fh = c.Host
		}
		p.Host, p.SetHost = fh, true
	}
	if (!trusted || len(h["X-Forwarded-Port"]) == 0) && keep&ForwardedPort == 0 {
		p.Port, p.SetPort = forwardedPort(c), true
	}
	return p
}

// prepareHeaders turns the client's headers into the upstream request's, in
// place, following PlanHeaders. Connection-listed headers were already
// removed by the engine before any plugin ran, so nothing a plugin or this
// function adds can be stripped by the client. It reports whether the
// request is a WebSocket upgrade to tunnel.
func prepareHeaders(c *engine.Ctx, opt *Options) bool {
	h := c.Header
	if h == nil {
		h = engine.Header{}
		c.Header = h
	}
	p := PlanHeaders(c, opt, "")
	var upg []string
	if p.Upgrade {
		upg = h["Upgrade"]
	}
	for k := range h {
		if engine.IsHopByHop(k) {
			delete(h, k)
		}
	}
	var vals values
	if p.Upgrade {
		h["Upgrade"] = upg
		h["Connection"] = vals.one("Upgrade")
	}
	if p.TETrailers {
		h["Te"] = vals.one("trailers")
	}
	delete(h, "Forwarded")
	if len(p.XFFPrior) > 0 {
		setHeader(h, &vals, "X-Forwarded-For", strings.Join(p.XFFPrior, ", ")+", "+p.ClientIP)
	} else {
		delete(h, "X-Forwarded-For")
		h["X-Forwarded-For"] = vals.one(p.ClientIP)
	}
	setHeader(h, &vals, "X-Real-Ip", p.ClientIP)
	if p.SetProto {
		setHeader(h, &vals, "X-Forwarded-Proto", p.Proto)
	}
	if p.SetHost {
		setHeader(h, &vals, "X-Forwarded-Host", p.Host)
	}
	if p.SetPort {
		setHeader(h, &vals, "X-Forwarded-Port", p.Port)
	}
	return p.Upgrade
}

func forwardedPort(c *engine.Ctx) string {
	hostport := c.RawHost
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		return hostport[i+1:]
	}
	if v, ok := c.Var("server_port"); ok {
		return v
	}
	if c.Scheme == "https" {
		return "443"
	}
	return "80"
}
