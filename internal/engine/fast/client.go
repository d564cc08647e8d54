package fast

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/proxy"
)

const (
	defaultTimeout  = 60 * time.Second
	defaultPoolSize = 320
	defaultPoolIdle = 60 * time.Second
	copyBufSize     = 32 << 10
	upReadBufSize   = 16 << 10
	upWriteBufSize  = 16 << 10
	maxRespHead     = 1 << 20 // http.Transport's MaxResponseHeaderBytes in proxy
)

var (
	errNoTarget      = errors.New("no upstream node available")
	errTimeout       = errors.New("upstream timed out")
	errBadResponse   = errors.New("malformed upstream response")
	errUnexpected101 = errors.New("unexpected 101 from upstream")
	errInvalidHeader = errors.New("invalid request header field")
)

// Forwarder is the fast engine's upstream client: HTTP/1.1 keep-alive
// pools per (address, TLS), the request written straight from the Ctx
// with proxy's header rules (proxy.PlanHeaders) and the response streamed
// back through the Ctx's ResponseWriter. Statuses, retries, timeouts and
// error pages are those of proxy.Forwarder. Ctxs that did not come from the
// fast engine go to fallback.
type Forwarder struct {
	logger   *slog.Logger
	fallback proxy.Forwarding

	mu    sync.RWMutex
	pools map[poolKey]*pool

	bufs    sync.Pool // *[]byte of copyBufSize
	readers sync.Pool
	writers sync.Pool
	yield   bool // yield before awaiting a response (Server.yield)
}

// NewForwarder returns a Forwarder; fallback serves Ctxs from other
// engines (the std engine's HTTP/2 requests on a shared TLS port).
func NewForwarder(logger *slog.Logger, fallback proxy.Forwarding) *Forwarder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{logger: logger, fallback: fallback, pools: map[poolKey]*pool{}, yield: yieldBeforeRead()}
	f.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	f.readers.New = func() any { return bufio.NewReaderSize(nil, upReadBufSize) }
	f.writers.New = func() any { return bufio.NewWriterSize(nil, upWriteBufSize) }
	return f
}

// CloseIdle closes every idle upstream connection.
func (f *Forwarder) CloseIdle() {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, p := range f.pools {
		p.closeIdle()
	}
}

type poolKey struct {
	https         bool
	addr, sni     string
	tls           *tls.Config
	size          int
	idle, connect time.Duration
}

// pool is a LIFO stack of idle keep-alive connections to one node.
type pool struct {
	f       *Forwarder
	key     poolKey
	tlsCfg  *tls.Config
	size    int
	idle    time.Duration
	connect time.Duration
	mu      sync.Mutex
	conns   []*upConn
}

// upConn is one upstream connection with its buffers and the strings its
// responses repeat.
type upConn struct {
	p        *pool
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	sc       strCache
	lastUsed time.Time
	long     []byte
	fields   []field
	trailer  engine.Header
	body     body
	// rd is what br reads from: the socket under the read timeout and
	// the client's disconnect watch.
	rd upReader
	// rdl and wdl are the deadlines set on nc (deadline.go).
	rdl, wdl time.Time
}

type field struct{ k, v string }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func sniOf(t *proxy.Target) string {
	if t.SNI != "" {
		return t.SNI
	}
	h := t.Host
	if h == "" {
		h = t.Addr
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func (f *Forwarder) pool(t *proxy.Target, opt *proxy.Options) *pool {
	key := poolKey{https: t.Scheme == "https", addr: t.Addr, tls: t.TLS,
		size: opt.KeepalivePool.Size, idle: opt.KeepalivePool.IdleTimeout,
		connect: opt.Timeouts.Connect}
	if key.https {
		key.sni = sniOf(t)
	}
	f.mu.RLock()
	p := f.pools[key]
	f.mu.RUnlock()
	if p != nil {
		return p
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p = f.pools[key]; p != nil {
		return p
	}
	p = &pool{f: f, key: key, size: key.size, idle: orDefault(key.idle, defaultPoolIdle),
		connect: orDefault(key.connect, defaultTimeout)}
	if p.size <= 0 {
		p.size = defaultPoolSize
	}
	if key.https {
		var cfg *tls.Config
		if t.TLS != nil {
			cfg = t.TLS.Clone()
		} else {
			cfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // APISIX default: no upstream verification
		}
		if cfg.ServerName == "" {
			cfg.ServerName = key.sni
		}
		cfg.NextProtos = []string{"http/1.1"}
		p.tlsCfg = cfg
	}
	f.pools[key] = p
	return p
}

func (p *pool) get(ctx context.Context, now time.Time) (*upConn, bool, error) {
	p.mu.Lock()
	for len(p.conns) > 0 {
		uc := p.conns[len(p.conns)-1]
		p.conns = p.conns[:len(p.conns)-1]
		if now.Sub(uc.lastUsed) > p.idle {
			p.mu.Unlock()
			uc.close()
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		return uc, true, nil
	}
	p.mu.Unlock()
	uc, err := p.dial(ctx)
	return uc, false, err
}

func (p *pool) dial(ctx context.Context) (*upConn, error) {
	d := net.Dialer{Timeout: p.connect, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.key.addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	if p.tlsCfg != nil {
		tc := tls.Client(nc, p.tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, p.connect)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		nc = tc
	}
	uc := &upConn{p: p, nc: nc}
	uc.rd.uc = uc
	uc.br = p.f.readers.Get().(*bufio.Reader)
	uc.br.Reset(&uc.rd)
	uc.bw = p.f.writers.Get().(*bufio.Writer)
	uc.bw.Reset(nc)
	return uc, nil
}

func (p *pool) put(uc *upConn, now time.Time) {
	uc.lastUsed = now
	p.mu.Lock()
	if len(p.conns) < p.size {
		p.conns = append(p.conns, uc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	uc.close()
}

func (p *pool) closeIdle() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, uc := range conns {
		uc.close()
	}
}

func (uc *upConn) close() {
	_ = uc.nc.Close()
	if uc.br != nil {
		uc.br.Reset(nil)
		uc.p.f.readers.Put(uc.br)
		uc.bw.Reset(nil)
		uc.p.f.writers.Put(uc.bw)
		uc.br, uc.bw = nil, nil
	}
}

// clientIP returns the client address text, memoised per connection so
// the X-Forwarded-For/X-Real-Ip values cost no allocation.
func (cn *conn) clientIP(c *engine.Ctx) string {
	a := c.RemoteAddr.Addr().Unmap()
	if cn.remoteIP != "" && cn.remoteIPAddr == a {
		return cn.remoteIP
	}
	cn.remoteIPAddr = a
	cn.remoteIP = a.String()
	return cn.remoteIP
}

// Forward sends c to the node pick chooses, retrying on the next node after
// connect failures and timeouts (as proxy.Forwarder does), and streams the
// upstream's response (or an nginx error page) to c.W. It returns the
// status sent to the client (499 when the client went away) and the last
// upstream error, if any.
func (f *Forwarder) Forward(c *engine.Ctx, pick proxy.Picker, opt *proxy.Options) (int, error) {
	cn, _ := c.EngineData.(*conn)
	if cn == nil {
		if f.fallback == nil {
			return 0, errors.New("fast: request did not come from the fast engine")
		}
		return f.fallback.Forward(c, pick, opt)
	}
	if c.Header == nil {
		c.Header = engine.Header{}
	}
	plan := proxy.PlanHeaders(c, opt, cn.clientIP(c))
	idempotent := isIdempotent(c.Method)
	var (
		start   time.Time
		lastErr error
		status  int
	)
	for n := 0; ; n++ {
		if n > opt.Retries && n > 0 {
			break
		}
		if n > 0 && opt.RetryTimeout > 0 && time.Since(start) > opt.RetryTimeout {
			break
		}
		t, ok := pick(n)
		if !ok {
			if n == 0 {
				status, lastErr = http.StatusServiceUnavailable, errNoTarget
			}
			break
		}
		if n == 0 && opt.RetryTimeout > 0 {
			start = time.Now()
		}
		if t.Scheme != "http" && t.Scheme != "https" && f.fallback != nil {
			// grpc/grpcs speak HTTP/2 upstream: net/http's Transport.
			base, first := n, t
			return f.fallback.Forward(c, func(i int) (proxy.Target, bool) {
				if i == 0 {
					return first, true
				}
				return pick(base + i)
			}, opt)
		}
		c.UpstreamAddr = t.Addr
		st, err, retry := f.try(c, cn, &t, opt, &plan, idempotent)
		if err == nil {
			return st, nil
		}
		lastErr, status = err, st
		if st == proxy.StatusClientClosed {
			return st, err
		}
		if !retry {
			replyError(c, st, opt)
			return st, err
		}
		f.logger.Debug("upstream attempt failed", "addr", t.Addr, "status", st, "err", err)
	}
	replyError(c, status, opt)
	return status, lastErr
}

func replyError(c *engine.Ctx, status int, opt *proxy.Options) {
	if status == proxy.StatusClientClosed {
		return
	}
	if len(c.UpstreamStatus) > 0 && (status >= 500 || opt.ShowUpstreamStatus) {
		c.W.Header()["X-Apisix-Upstream-Status"] = []string{engine.FormatStatusList(c.UpstreamStatus)}
	}
	c.W.Header()["Server"] = serverHeader
	c.ReplyError(status)
}

func isIdempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// replayable is net/http's Request.isReplayable for a body-less request:
// a stale pooled connection may be retried transparently.
func replayable(c *engine.Ctx) bool {
	if c.ContentLength != 0 {
		return false
	}
	switch c.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return len(c.Header["Idempotency-Key"]) > 0 || len(c.Header["X-Idempotency-Key"]) > 0
}

// attemptError carries how far an attempt got, for the retry decision.
type attemptError struct {
	err        error
	status     int
	clientSide bool // the client's body failed, not the upstream
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// try makes one attempt against t. On success the response is written and
// err is nil; on failure nothing was written and retry says whether the
// next node may be tried.
func (f *Forwarder) try(c *engine.Ctx, cn *conn, t *proxy.Target, opt *proxy.Options,
	plan *proxy.HeaderPlan, idempotent bool) (int, error, bool) {
	p := f.pool(t, opt)
	send := orDefault(opt.Timeouts.Send, defaultTimeout)
	read := orDefault(opt.Timeouts.Read, defaultTimeout)
	// One clock read serves the pool's idle check and the first
	// deadlines: the request started a moment ago (plugins aside, and
	// the deadlines are long).
	now := c.StartTime
	if now.IsZero() {
		now = time.Now()
	}
	for fresh := false; ; fresh = true {
		var uc *upConn
		var reused bool
		var err error
		if fresh {
			uc, err = p.dial(c.Context)
		} else {
			uc, reused, err = p.get(c.Context, now)
		}
		if err != nil {
			st, retry := classify(cn, err)
			if st != proxy.StatusClientClosed {
				c.UpstreamStatus = append(c.UpstreamStatus, st)
			}
			return st, err, retry
		}
		sent, werr := f.writeRequest(uc, c, t, plan, send, now)
		var respRead bool
		if werr == nil {
			var st int
			st, respRead, err = f.roundTripResponse(c, cn, uc, plan, opt, read, now)
			if err == nil {
				return st, nil, false
			}
		} else {
			err = werr
		}
		uc.close()
		var ae *attemptError
		if errors.As(err, &ae) && ae.clientSide {
			st := http.StatusBadGateway
			if errors.Is(err, engine.ErrBodyTooLarge) {
				st = http.StatusRequestEntityTooLarge
			}
			if cn.cctx.Err() != nil {
				st = proxy.StatusClientClosed
			}
			if st != proxy.StatusClientClosed {
				c.UpstreamStatus = append(c.UpstreamStatus, st)
			}
			return st, err, false
		}
		if reused && !fresh && !respRead && sent == 0 && replayable(c) && cn.cctx.Err() == nil {
			// A pooled connection the upstream had closed: try once more
			// on a new connection, as http.Transport does.
			continue
		}
		st, retry := classify(cn, err)
		if st != proxy.StatusClientClosed {
			c.UpstreamStatus = append(c.UpstreamStatus, st)
		}
		if retry && sent > 0 {
			retry = false
		}
		if retry && !idempotent && !isDialError(err) {
			retry = false
		}
		return st, err, retry
	}
}

func classify(cn *conn, err error) (int, bool) {
	if cn.cctx.Err() != nil {
		return proxy.StatusClientClosed, false
	}
	if errors.Is(err, engine.ErrBodyTooLarge) {
		return http.StatusRequestEntityTooLarge, false
	}
	if errors.Is(err, errTimeout) {
		return http.StatusGatewayTimeout, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, true
	}
	return http.StatusBadGateway, true
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenTable[k[i]] {
			return false
		}
	}
	return true
}

// writeRequest writes the request head and streams the body. sent counts
// body bytes taken from the client (they cannot be replayed).
func (f *Forwarder) writeRequest(uc *upConn, c *engine.Ctx, t *proxy.Target, plan *proxy.HeaderPlan, send time.Duration, now time.Time) (int64, error) {
	bw := uc.bw
	if dl, set := loose(&uc.wdl, now, send); set {
		_ = uc.nc.SetWriteDeadline(dl)
	}
	host := t.Host
	if host == "" {
		host = c.RawHost
	}
	if host == "" {
		host = t.Addr
	}
	if !validHost(host) || host != "" && host[0] == '[' {
		var err error
		if host, err = cleanHost(host); err != nil {
			return 0, fmt.Errorf("invalid Host: %w", err)
		}
	}
	rawPath, query := engine.SplitRequestURI(c.RequestURI)
	if rawPath == "" {
		rawPath = "/"
	}
	bw.WriteString(c.Method)
	bw.WriteByte(' ')
	bw.WriteString(rawPath)
	if query != "" {
		bw.WriteByte('?')
		bw.WriteString(query)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range c.Header {
		if plan.Replaces(k) || k == "Host" || k == "Content-Length" {
			continue
		}
		if !validName(k) {
			return 0, fmt.Errorf("header name %q: %w", k, errInvalidHeader)
		}
		if k == "User-Agent" {
			// http.Transport sends only the first User-Agent, and none
			// when it is empty.
			if len(vv) > 0 && vv[0] != "" {
				if !validValueString(vv[0]) {
					return 0, fmt.Errorf("header %s: %w", k, errInvalidHeader)
				}
				writeRawField(bw, k, vv[0])
			}
			continue
		}
		for _, v := range vv {
			if !validValueString(v) {
				return 0, fmt.Errorf("header %s: %w", k, errInvalidHeader)
			}
			writeRawField(bw, k, v)
		}
	}
	if plan.Upgrade {
		for _, v := range c.Header["Upgrade"] {
			writeRawField(bw, "Upgrade", v)
		}
		bw.WriteString("Connection: Upgrade\r\n")
	}
	if plan.TETrailers {
		bw.WriteString("Te: trailers\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	for _, v := range plan.XFFPrior {
		bw.WriteString(v)
		bw.WriteString(", ")
	}
	bw.WriteString(plan.ClientIP)
	bw.WriteString("\r\nX-Real-Ip: ")
	bw.WriteString(plan.ClientIP)
	bw.WriteString("\r\n")
	if plan.SetProto {
		writeRawField(bw, "X-Forwarded-Proto", plan.Proto)
	}
	if plan.SetHost {
		writeRawField(bw, "X-Forwarded-Host", plan.Host)
	}
	if plan.SetPort {
		writeRawField(bw, "X-Forwarded-Port", plan.Port)
	}

	cl := c.ContentLength
	if c.Body == nil {
		cl = 0
	}
	var sent int64
	var bp *[]byte
	if cl != 0 {
		bp = f.bufs.Get().(*[]byte)
		defer f.bufs.Put(bp)
	}
	switch {
	case cl > 0:
		bw.WriteString("Content-Length: ")
		writeInt(bw, cl)
		bw.WriteString("\r\n")
	case cl == 0:
		if c.Method == "POST" || c.Method == "PUT" || c.Method == "PATCH" {
			bw.WriteString("Content-Length: 0\r\n")
		}
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(c.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			i := 0
			for k := range c.Trailer {
				if i > 0 {
					bw.WriteByte(',')
				}
				bw.WriteString(k)
				i++
			}
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	if cl == 0 {
		if err := bw.Flush(); err != nil {
			return 0, err
		}
		return 0, nil
	}
	buf := *bp
	chunked := cl < 0
	var written int64
	writeChunk := func(p []byte) error {
		if dl, set := loose(&uc.wdl, time.Now(), send); set {
			_ = uc.nc.SetWriteDeadline(dl)
		}
		if chunked {
			bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
			bw.WriteString("\r\n")
			bw.Write(p)
			_, err := bw.WriteString("\r\n")
			return err
		}
		_, err := bw.Write(p)
		return err
	}
	for {
		n, err := c.Body.Read(buf)
		if n > 0 {
			sent += int64(n)
			written += int64(n)
			if !chunked && written > cl {
				return sent, &attemptError{err: errors.New("request body longer than Content-Length"), clientSide: true}
			}
			if werr := writeChunk(buf[:n]); werr != nil {
				return sent, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sent, &attemptError{err: err, clientSide: true}
		}
	}
	if !chunked && written < cl {
		return sent, &attemptError{err: io.ErrUnexpectedEOF, clientSide: true}
	}
	if chunked {
		bw.WriteString("0\r\n")
		for k, vv := range c.Trailer {
			for _, v := range vv {
				writeRawField(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil {
		return sent, err
	}
	return sent, nil
}

// cleanHost does what http.Transport does to a Host it cannot send as
// is: non-ASCII names become Punycode, an IPv6 zone is dropped, and a
// value that still is not a valid Host header is sent empty (RFC 9112
// §3.2 allows that) rather than altered.
func cleanHost(host string) (string, error) {
	host, err := httpguts.PunycodeHostPort(host)
	if err != nil {
		return "", err
	}
	if !httpguts.ValidHostHeader(host) {
		return "", nil
	}
	if strings.HasPrefix(host, "[") {
		if i := strings.LastIndex(host, "]"); i >= 0 {
			if j := strings.LastIndex(host[:i], "%"); j >= 0 {
				host = host[:j] + host[i:]
			}
		}
	}
	return host, nil
}

func writeRawField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// upReader is the reader under an upstream connection's bufio.Reader.
// Every socket read is bounded by the read timeout (a deadline per read,
// as nginx's proxy_read_timeout), refreshed loosely. While a response is
// awaited, a read that sees watchDelay of silence arms the client
// connection's disconnect watcher first, so a client that leaves cancels
// the wait (head or body, streamed or not), and fast responses never pay
// for the watcher.
type upReader struct {
	uc       *upConn
	cn       *conn // the client of the current response; nil: plain reads
	read     time.Duration
	now      time.Time // the attempt's clock read, for the first read
	watching bool      // the watcher is armed for this response
	noWatch  bool      // the watcher cannot be armed (pipelined bytes)
}

func (r *upReader) Read(p []byte) (int, error) {
	uc, cn := r.uc, r.cn
	if cn == nil {
		return uc.nc.Read(p)
	}
	now := r.now
	if now.IsZero() {
		now = time.Now()
	} else {
		r.now = time.Time{}
		if uc.p.f.yield {
			// The request was just written: let the other ready
			// connections run before reading, so the answer is likely
			// there (no EAGAIN read, no park; see Server.yield).
			runtime.Gosched()
		}
	}
	if !r.watching && !r.noWatch && r.read > watchDelay {
		if dl, set := loose(&uc.rdl, now, watchDelay); set {
			_ = uc.nc.SetReadDeadline(dl)
		}
		n, err := uc.nc.Read(p)
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if cn.watch.start(cn) {
			r.watching = true
			nc := uc.nc
			cn.cctx.setOnCancel(func() { _ = nc.SetReadDeadline(aLongTimeAgo) })
		} else {
			r.noWatch = true
		}
		now = time.Now()
	}
	if dl, set := loose(&uc.rdl, now, r.read); set {
		_ = uc.nc.SetReadDeadline(dl)
	}
	if r.watching && cn.cctx.Err() != nil {
		// The client left before (or while) the deadline above was set,
		// which may have undone the cancel's unblocking deadline.
		uc.rdl = time.Time{}
		return 0, context.Canceled
	}
	n, err := uc.nc.Read(p)
	if err != nil && cn.cctx.Err() != nil {
		uc.rdl = time.Time{} // the cancel moved the deadline
		return n, context.Canceled
	}
	return n, err
}

// begin prepares the reader for one response to cn.
func (r *upReader) begin(cn *conn, read time.Duration, now time.Time) {
	r.cn, r.read, r.now, r.watching, r.noWatch = cn, read, now, false, false
}

// end stops the disconnect watch (if armed) and detaches the client.
func (r *upReader) end() {
	if r.cn == nil {
		return
	}
	if r.watching {
		r.cn.cctx.clearOnCancel()
		r.cn.watch.stop(r.cn)
		r.watching = false
	}
	r.cn = nil
}

// roundTripResponse reads the upstream's response and writes it to the
// client. respRead reports whether any response byte arrived (after which
// a retry on a fresh connection is never safe).
func (f *Forwarder) roundTripResponse(c *engine.Ctx, cn *conn, uc *upConn, plan *proxy.HeaderPlan,
	opt *proxy.Options, read time.Duration, now time.Time) (status int, respRead bool, err error) {
	uc.rd.begin(cn, read, now)
	// The reader is detached before the connection can go back to the
	// pool (where another request may take it at once); the deferred
	// end covers the paths that close it instead.
	ended := false
	defer func() {
		if !ended {
			uc.rd.end()
		}
	}()
	var (
		code         int
		cl           int64
		chunked      bool
		closeDelim   bool
		connClose    bool
		announced    int // index in uc.fields where announced trailer names start
		nAnnounced   int
		ctype        string
		headBytes    int
		proto10      bool
		keepAlive10  bool
		connListed   []string
		noBody       bool
		teSeen       bool
		clSeen       bool
		clVal        string
		informations int
	)
	for {
		if _, err := uc.br.Peek(1); err != nil {
			return 0, respRead, err
		}
		respRead = true
		uc.fields = uc.fields[:0]
		code, cl, chunked, closeDelim, connClose, proto10, keepAlive10 = 0, -1, false, false, false, false, false
		teSeen, clSeen, clVal, ctype, connListed = false, false, "", "", nil
		headBytes = 0
		var bare bool
		line, n, err := readLine(uc.br, &uc.long, maxRespHead, true, &bare)
		headBytes += n
		if err != nil {
			return 0, true, fmt.Errorf("status line: %w", err)
		}
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
			return 0, true, errBadResponse
		}
		proto10 = line[7] == '0'
		for _, d := range line[9:12] {
			if d < '0' || d > '9' {
				return 0, true, errBadResponse
			}
			code = code*10 + int(d-'0')
		}
		if code < 100 || (len(line) > 12 && line[12] != ' ') || !validValue(line[12:]) {
			return 0, true, errBadResponse
		}
		vi := 0
		for {
			l, n, err := readLine(uc.br, &uc.long, maxRespHead, true, &bare)
			headBytes += n
			if err != nil {
				return 0, true, fmt.Errorf("response header: %w", err)
			}
			if headBytes > maxRespHead {
				return 0, true, errBadResponse
			}
			if len(l) == 0 {
				break
			}
			colon := -1
			for i, ch := range l {
				if ch == ':' {
					colon = i
					break
				}
				if !tokenTable[ch] {
					break
				}
			}
			if colon <= 0 {
				return 0, true, errBadResponse
			}
			v := trimOWS(l[colon+1:])
			if !validValue(v) {
				return 0, true, errBadResponse
			}
			k := uc.sc.name(vi, l[:colon])
			val := uc.sc.val(vi, v)
			vi++
			switch k {
			case "Content-Length":
				if clSeen && val != clVal {
					return 0, true, errBadResponse
				}
				clSeen, clVal = true, val
			case "Transfer-Encoding":
				if teSeen {
					return 0, true, errBadResponse
				}
				teSeen = true
				if !equalFoldTrim(val, "chunked") {
					return 0, true, errBadResponse
				}
			case "Connection":
				connListed = append(connListed, val)
				if listHasToken(val, "close") {
					connClose = true
				}
				if listHasToken(val, "keep-alive") {
					keepAlive10 = true
				}
			case "Content-Type":
				if ctype == "" {
					ctype = val
				}
			}
			uc.fields = append(uc.fields, field{k, val})
		}
		if code >= 100 && code < 200 && code != 101 {
			// Interim responses are not relayed (as with proxy.Forwarder).
			informations++
			if informations > 5 {
				return 0, true, errBadResponse
			}
			continue
		}
		break
	}
	c.UpstreamStatus = append(c.UpstreamStatus, code)
	if code == 101 {
		if plan.Upgrade {
			uc.rd.end()
			ended = true
			return f.tunnel(c, cn, uc, code)
		}
		return http.StatusBadGateway, true, &attemptError{err: errUnexpected101}
	}
	noBody = c.Method == "HEAD" || code == 204 || code == 304
	switch {
	case noBody:
		cl = 0
	case teSeen:
		chunked = true
		if clSeen {
			connClose = true // never reuse a connection that sent both
		}
	case clSeen:
		n, ok := parseContentLength(clVal)
		if !ok {
			return 0, true, errBadResponse
		}
		cl = n
	default:
		closeDelim = true
	}
	if proto10 && !keepAlive10 {
		connClose = true
	}
	_ = announced
	_ = nAnnounced

	// Headers to the client: end-to-end fields only.
	dst := c.W.Header()
	var trailerNames []string
	for i := range uc.fields {
		fd := &uc.fields[i]
		if fd.k == "Trailer" {
			for v := fd.v; v != ""; {
				var tok string
				tok, v, _ = cutComma(v)
				if tok != "" {
					trailerNames = append(trailerNames, http.CanonicalHeaderKey(tok))
				}
			}
			continue
		}
		if engine.IsHopByHop(fd.k) || listed(connListed, fd.k) {
			continue
		}
		if fd.k == "Content-Length" && (chunked || noBody && c.Method != "HEAD") {
			if chunked {
				continue
			}
		}
		cn.addRespHeader(dst, fd.k, fd.v)
	}
	if !chunked {
		trailerNames = nil
	}
	if len(trailerNames) > 0 {
		dst["Trailer"] = []string{strings.Join(trailerNames, ", ")}
	}
	if code >= 500 || opt.ShowUpstreamStatus {
		dst["X-Apisix-Upstream-Status"] = []string{engine.FormatStatusList(c.UpstreamStatus)}
	}
	dst["Server"] = serverHeader
	c.W.WriteHeader(code)

	flush := cl < 0 || strings.HasPrefix(ctype, "text/event-stream")
	rb := &uc.body
	rb.reset(nil, uc.br)
	rb.chunked = chunked
	rb.left = cl
	if closeDelim {
		rb.left = 1<<63 - 1
	}
	if chunked {
		if uc.trailer == nil {
			uc.trailer = make(engine.Header, 2)
		}
		clear(uc.trailer)
		rb.tr = uc.trailer
	}
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	reusable := !connClose && !closeDelim
	for !noBody && cl != 0 {
		// Socket reads (deadline, disconnect watch) happen in uc.rd.
		n, rerr := rb.Read(buf)
		if n > 0 {
			if _, werr := c.W.Write(buf[:n]); werr != nil {
				uc.close()
				return proxy.StatusClientClosed, true, nil
			}
			if flush {
				_ = c.W.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if closeDelim && errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			f.abort(c, cn, rerr)
			uc.close()
			return code, true, nil
		}
	}
	uc.rd.end()
	ended = true
	if chunked {
		for k, vv := range uc.trailer {
			announcedKey := false
			for _, a := range trailerNames {
				if a == k {
					announcedKey = true
					break
				}
			}
			if announcedKey {
				dst[k] = append([]string(nil), vv...)
			} else {
				dst[http.TrailerPrefix+k] = append([]string(nil), vv...)
			}
		}
	}
	if reusable && uc.br.Buffered() == 0 {
		// Bytes beyond the response (a body sent with a HEAD or 204
		// response, or junk) would be read as the next response:
		// http.Transport drops such a connection, and so do we.
		// The clock read is shared with the client's idle deadline.
		now := time.Now()
		cn.clock = now
		uc.p.put(uc, now)
	} else {
		uc.close()
	}
	return code, true, nil
}

func (f *Forwarder) abort(c *engine.Ctx, cn *conn, err error) {
	if ab, ok := c.W.(engine.Aborter); ok {
		ab.Abort()
	}
	f.logger.Debug("upstream body read failed", "err", err)
}

// listed reports whether k is named in one of the Connection values.
func listed(conn []string, k string) bool {
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = cutComma(v)
			if strings.EqualFold(tok, k) {
				return true
			}
		}
	}
	return false
}

// addRespHeader is addHeader for the response map, with its own backing
// array (the response map outlives the request map within a request).
func (cn *conn) addRespHeader(h engine.Header, key, val string) {
	if vv, ok := h[key]; ok {
		h[key] = append(vv[:len(vv):len(vv)], val)
		return
	}
	if cap(cn.rvals)-len(cn.rvals) == 0 {
		cn.rvals = make([]string, 0, max(32, 2*cap(cn.rvals)))
	}
	i := len(cn.rvals)
	cn.rvals = append(cn.rvals, val)
	h[key] = cn.rvals[i : i+1 : i+1]
}

// tunnel completes an upgrade the upstream accepted with 101: it takes
// over the client connection, relays the 101 head and copies bytes both
// ways until either side closes.
func (f *Forwarder) tunnel(c *engine.Ctx, cn *conn, uc *upConn, code int) (int, bool, error) {
	hj, ok := c.W.(engine.Hijacker)
	if !ok {
		return http.StatusBadGateway, true, &attemptError{err: errors.New("engine cannot hijack the client connection")}
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return http.StatusBadGateway, true, &attemptError{err: err}
	}
	defer conn.Close()
	defer uc.close()
	c.Status = http.StatusSwitchingProtocols
	_ = uc.nc.SetDeadline(time.Time{})
	uc.rdl, uc.wdl = time.Time{}, time.Time{}
	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for _, fd := range uc.fields {
		writeField(bw, fd.k, fd.v)
	}
	writeField(bw, "Server", serverName)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return http.StatusSwitchingProtocols, true, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bp := f.bufs.Get().(*[]byte)
		defer f.bufs.Put(bp)
		_, _ = io.CopyBuffer(uc.nc, brw.Reader, *bp)
		if cw, ok := uc.nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = uc.nc.Close()
		}
	}()
	bp := f.bufs.Get().(*[]byte)
	n, _ := io.CopyBuffer(conn, uc.br, *bp)
	f.bufs.Put(bp)
	c.BytesSent += n
	_ = conn.Close()
	_ = uc.nc.Close()
	<-done
	return http.StatusSwitchingProtocols, true, nil
}
