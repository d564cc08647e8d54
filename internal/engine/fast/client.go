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
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/proxy"
)

const (
	copyBufSize    = 32 << 10
	upReadBufSize  = 16 << 10
	upWriteBufSize = 16 << 10
	maxRespHead    = 1 << 20 // http.Transport's MaxResponseHeaderBytes in proxy
	// expectContinueTimeout is how long a request with "Expect:
	// 100-continue" waits for the upstream's 100 before its body is sent
	// anyway: proxy's Transport.ExpectContinueTimeout.
	expectContinueTimeout = time.Second
	// earlyResponseWait bounds the look for a response the upstream sent
	// before a request body write failed (within the read timeout).
	earlyResponseWait = time.Second
)

var (
	errBadResponse   = errors.New("malformed upstream response")
	errUnexpected101 = errors.New("unexpected 101 from upstream")
	errInvalidHeader = errors.New("invalid request header field")
	// errFinalFirst: the upstream answered an "Expect: 100-continue"
	// request with a final response; the body is not sent.
	errFinalFirst = errors.New("upstream answered before the request body")
)

// upWriteError is a failed socket write of the request (head or body):
// the upstream may have answered and closed, its response still readable.
type upWriteError struct{ err error }

func (e *upWriteError) Error() string { return e.err.Error() }
func (e *upWriteError) Unwrap() error { return e.err }

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
	// yield: right after writing a request, let the other ready
	// connections run before reading the upstream's answer. With one P
	// and many busy connections the answer has usually arrived by then,
	// which saves the EAGAIN read, the park and the netpoll wake-up
	// (strace: ~1.9 -> ~0 EAGAIN reads per request; +10-17 % requests per
	// CPU-second, docs/engine.md). Only with GOMAXPROCS 1 (a pinned
	// worker). The server does not yield before a client's next request:
	// see conn.waitRequest.
	yield bool
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
	// retired: dropped from the Forwarder's map (maxPools); its idle
	// connections are closed and those in use are closed when they end.
	retired atomic.Bool
}

// maxPools bounds the pools a Forwarder keeps, as proxy.Forwarder bounds
// its transports: keys follow nodes (service discovery may churn them),
// TLS identities and pool settings, so past the bound every pool is
// retired and the map starts over. A variable for tests.
var maxPools = 4096

// upConn is one upstream connection with its buffers and the strings its
// responses repeat.
type upConn struct {
	p        *pool
	nc       net.Conn
	s        sock // nc's reads and writes
	br       *bufio.Reader
	bw       *bufio.Writer
	sc       strCache
	lastUsed time.Time
	long     []byte
	fields   []field
	connVals []string // backing array of respHead.connListed
	trailer  engine.Header
	body     body
	// rd is what br reads from: the socket under the read timeout and
	// the client's disconnect watch.
	rd upReader
	// wr is what bw writes to: the socket, and while a request body is
	// written, the send timeout with a look for an early answer.
	wr upWriter
	// rdl and wdl are the deadlines set on nc (deadline.go).
	rdl, wdl time.Time
	// noReuse keeps the connection out of the pool after this response:
	// it came before the request body was (all) sent.
	noReuse bool
}

type field struct{ k, v string }

// pool returns the pool for t; *last is the client connection's last one,
// tried first unless it was retired (maxPools): a keep-alive client mostly goes
// to the same node, and the comparison is cheaper than the shared map's
// lock and hash.
func (f *Forwarder) pool(t *proxy.Target, opt *proxy.Options, last **pool) *pool {
	key := poolKey{https: t.Scheme == "https", addr: t.Addr, tls: t.TLS,
		size: opt.KeepalivePool.Size, idle: opt.KeepalivePool.IdleTimeout,
		connect: opt.Timeouts.Connect}
	if key.https {
		key.sni = t.ServerName()
	}
	if p := *last; p != nil && p.f == f && p.key == key && !p.retired.Load() {
		return p
	}
	f.mu.RLock()
	p := f.pools[key]
	f.mu.RUnlock()
	if p != nil {
		*last = p
		return p
	}
	p, retired := f.addPool(t, key)
	// Closing the retired pools' sockets is I/O: done here, not under
	// the lock every request's pool lookup takes.
	for _, o := range retired {
		o.closeIdle()
	}
	*last = p
	return p
}

// addPool returns the pool for key, making it if needed; past maxPools it
// first retires every pool and returns them (the caller closes their idle
// connections).
func (f *Forwarder) addPool(t *proxy.Target, key poolKey) (p *pool, retired []*pool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p = f.pools[key]; p != nil {
		return p, nil
	}
	if len(f.pools) >= maxPools {
		retired = make([]*pool, 0, len(f.pools))
		for _, o := range f.pools {
			o.retired.Store(true)
			retired = append(retired, o)
		}
		clear(f.pools)
	}
	ps := proxy.Pool{Size: key.size, IdleTimeout: key.idle}.WithDefaults()
	p = &pool{f: f, key: key, size: ps.Size, idle: ps.IdleTimeout,
		connect: proxy.Timeouts{Connect: key.connect}.WithDefaults().Connect}
	if key.https {
		cfg := t.ClientTLS(key.sni)
		cfg.NextProtos = []string{"http/1.1"}
		p.tlsCfg = cfg
	}
	f.pools[key] = p
	return p, retired
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
	uc.s.init(nc)
	uc.rd.uc = uc
	uc.br = p.f.readers.Get().(*bufio.Reader)
	uc.br.Reset(&uc.rd)
	uc.bw = p.f.writers.Get().(*bufio.Writer)
	uc.wr.uc = uc
	uc.bw.Reset(&uc.wr)
	return uc, nil
}

func (p *pool) put(uc *upConn, now time.Time) {
	uc.lastUsed = now
	p.mu.Lock()
	if len(p.conns) < p.size && !p.retired.Load() {
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
	idempotent := proxy.IsIdempotent(c.Method)
	r := proxy.Retry{Options: opt}
	for {
		t, ok := r.Next(pick)
		if !ok {
			break
		}
		if t.Scheme != "http" && t.Scheme != "https" && f.fallback != nil {
			// grpc/grpcs speak HTTP/2 upstream: net/http's Transport.
			base, first := r.Attempt(), t
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
		if !r.Failed(st, err, retry) {
			break
		}
		f.logger.Debug("upstream attempt failed", "addr", t.Addr, "status", st, "err", err)
	}
	return r.Reply(c)
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
	p := f.pool(t, opt, &cn.lastPool)
	to := opt.Timeouts.WithDefaults()
	send, read := to.Send, to.Read
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
			// A failed dial: nothing was sent, so only the client's
			// departure stops a retry (proxy.AttemptFailed).
			st, retry := proxy.AttemptFailed(c, err, cn.cctx.Err() != nil, false, 0, idempotent)
			return st, err, retry
		}
		sent, werr := f.writeRequest(uc, c, cn, t, plan, send, read, now)
		var respRead bool
		switch {
		case werr == nil:
			var st int
			st, respRead, err = f.roundTripResponse(c, cn, uc, plan, opt, read, now)
			if err == nil {
				return st, nil, false
			}
		case werr == errFinalFirst:
			// A final answer to "Expect: 100-continue": forwarded, the
			// body never sent (nor read), the connection not reused.
			uc.noReuse = true
			var st int
			st, respRead, err = f.roundTripResponse(c, cn, uc, plan, opt, read, time.Time{})
			if err == nil {
				return st, nil, false
			}
		case isWriteFailure(werr) && cn.cctx.Err() == nil:
			// The upstream may have answered (413, 401, ...) and closed
			// before taking the whole request: forward that response if
			// its head is there, else fail as the write did.
			if st, ok, got := f.earlyResponse(c, cn, uc, plan, opt, read); ok {
				return st, nil, false
			} else if got {
				respRead = true
			}
			err = werr
		default:
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
		st, retry := proxy.AttemptFailed(c, err, cn.cctx.Err() != nil, false, sent, idempotent)
		return st, err, retry
	}
}

// isWriteFailure reports a failed socket write of the request (a type
// assertion: errors.As would move its target to the heap on every call).
func isWriteFailure(err error) bool {
	_, ok := err.(*upWriteError)
	return ok
}

// earlyResponse looks, after a failed request write, for a response the
// upstream already sent: within earlyResponseWait (and the read timeout)
// for its first byte, then as any response. ok reports that a response was
// forwarded (the connection is not reused); got that response bytes
// arrived even if they did not make a response.
func (f *Forwarder) earlyResponse(c *engine.Ctx, cn *conn, uc *upConn, plan *proxy.HeaderPlan,
	opt *proxy.Options, read time.Duration) (status int, ok, got bool) {
	// The failed write may have left bytes in the writer; nothing more is
	// written on this connection.
	uc.rd.begin(cn, min(read, earlyResponseWait), time.Time{})
	_, err := uc.br.Peek(1)
	uc.rd.end()
	if err != nil {
		return 0, false, false
	}
	uc.noReuse = true
	st, _, err := f.roundTripResponse(c, cn, uc, plan, opt, read, time.Time{})
	if err != nil {
		f.logger.Debug("early upstream response unreadable", "err", err)
		return 0, false, true
	}
	return st, true, true
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
//
// A request with a body and "Expect: 100-continue" waits, after its head,
// for the upstream's answer as http.Transport does (awaitContinue): the
// body follows a 100 or the timeout; a final response returns
// errFinalFirst with the body untouched.
func (f *Forwarder) writeRequest(uc *upConn, c *engine.Ctx, cn *conn, t *proxy.Target, plan *proxy.HeaderPlan,
	send, read time.Duration, now time.Time) (int64, error) {
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
			return 0, &upWriteError{err}
		}
		return 0, nil
	}
	if ev := c.Header["Expect"]; len(ev) > 0 && hasToken(ev[0], "100-continue") {
		if err := bw.Flush(); err != nil {
			return 0, &upWriteError{err}
		}
		if err := f.awaitContinue(uc, cn, read); err != nil {
			return 0, err
		}
	}
	buf := *bp
	chunked := cl < 0
	var written int64
	// Body writes go through uc.wr's stall watch: an upstream that has
	// answered (413, 401, ...) and stopped reading is noticed within
	// watchDelay, not after the send timeout.
	uc.wr.begin(send)
	defer uc.wr.end()
	writeChunk := func(p []byte) error {
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
				return sent, &upWriteError{werr}
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
		return sent, &upWriteError{err}
	}
	return sent, nil
}

// errAnsweredEarly ends a request body write that stalled while the
// upstream had already started its response.
var errAnsweredEarly = errors.New("upstream answered while the request body was being sent")

// upWriter is the socket under an upstream connection's bufio.Writer.
// Outside a body it writes straight through (the head's write deadline is
// set by writeRequest). While a body is written (begin..end) each write
// runs under the send timeout, counted from the last progress as nginx's
// proxy_send_timeout, but in steps of watchDelay: a step that makes no
// progress peeks for response bytes, and if the upstream has answered the
// write ends with errAnsweredEarly, so the answer is forwarded
// (Forwarder.earlyResponse) instead of waiting out the send timeout. A
// write deadline per body write costs a timer update: requests without a
// body never pay it.
type upWriter struct {
	uc          *upConn
	send        time.Duration
	body, watch bool
}

// begin starts a body. TLS upstreams get no stall watch, only the send
// timeout per write: a write that times out corrupts a crypto/tls
// connection.
func (w *upWriter) begin(send time.Duration) {
	_, isTLS := w.uc.nc.(*tls.Conn)
	w.send, w.body, w.watch = send, true, !isTLS
}

func (w *upWriter) end() {
	if w.watch {
		// Leave the deadline as the head's path expects it: unknown.
		w.uc.wdl = time.Time{}
	}
	w.body, w.watch = false, false
}

func (w *upWriter) Write(p []byte) (int, error) {
	uc := w.uc
	if !w.watch {
		if w.body {
			if dl, set := loose(&uc.wdl, time.Now(), w.send); set {
				_ = uc.nc.SetWriteDeadline(dl)
			}
		}
		return uc.s.Write(p)
	}
	now := time.Now()
	send := w.send
	if send <= 0 {
		send = 1 << 62 // no send timeout: only the stall watch
	}
	limit := now.Add(send)
	total := 0
	for {
		dl := now.Add(watchDelay)
		if limit.Before(dl) {
			dl = limit
		}
		if !dl.Equal(uc.wdl) {
			uc.wdl = dl
			_ = uc.nc.SetWriteDeadline(dl)
		}
		n, err := uc.s.Write(p[total:])
		total += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
		now = time.Now()
		if n > 0 {
			limit = now.Add(send)
		}
		if !now.Before(limit) {
			return total, err
		}
		if w.answered() {
			return total, errAnsweredEarly
		}
	}
}

// answered reports whether response bytes are waiting on the upstream
// connection, looking for at most a millisecond.
func (w *upWriter) answered() bool {
	uc := w.uc
	if uc.br.Buffered() > 0 {
		return true
	}
	uc.rdl = time.Now().Add(time.Millisecond)
	_ = uc.nc.SetReadDeadline(uc.rdl)
	_, err := uc.br.Peek(1)
	return err == nil
}

// awaitContinue waits up to expectContinueTimeout, after the head of an
// "Expect: 100-continue" request was flushed, for the upstream's first
// answer, as http.Transport does: nil after a 100 Continue (other 1xx are
// skipped and the wait goes on) or when the time is up (the body is sent
// anyway); errFinalFirst when a final response (or bytes that are no
// interim head) arrived, which the caller reads and forwards without
// sending the body; any other error ends the attempt as a failed write.
// The client's disconnect watch works as for a response.
func (f *Forwarder) awaitContinue(uc *upConn, cn *conn, read time.Duration) error {
	end := time.Now().Add(expectContinueTimeout)
	for interim := 0; ; interim++ {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		uc.rd.begin(cn, min(left, read), time.Time{})
		p, err := uc.br.Peek(12) // "HTTP/1.1 100"
		uc.rd.end()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			if len(p) == 0 {
				return &upWriteError{err}
			}
			return errFinalFirst // a short answer: roundTripResponse judges it
		}
		if string(p[:7]) != "HTTP/1." || p[9] != '1' || string(p[9:12]) == "101" || interim >= 5 {
			return errFinalFirst
		}
		// An interim head: consume it within the read timeout.
		var h respHead
		uc.rd.begin(cn, read, time.Time{})
		err = uc.readHead(&h)
		uc.rd.end()
		if err != nil {
			return err
		}
		if h.code == http.StatusContinue {
			return nil
		}
	}
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
	if bw.Available() >= len(k)+len(v)+4 {
		// One append into the buffer's free space (Write then copies
		// the bytes onto themselves) instead of four calls.
		b := bw.AvailableBuffer()
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
		bw.Write(b)
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// upReader is the reader under an upstream connection's bufio.Reader.
// Every socket read is bounded by the read timeout (a deadline per read,
// as nginx's proxy_read_timeout), refreshed loosely. While a response is
// awaited, a read that sees watchDelay of silence (at least a quarter of
// it: looseWatch) arms the client connection's disconnect watcher first,
// so a client that leaves cancels the wait (head or body, streamed or
// not), and fast responses never pay for the watcher.
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
		return uc.s.Read(p)
	}
	now := r.now
	if now.IsZero() {
		now = time.Now()
	} else {
		r.now = time.Time{}
		if uc.p.f.yield {
			// The request was just written: let the other ready
			// connections run before reading, so the answer is likely
			// there (no EAGAIN read, no park; see Forwarder.yield).
			runtime.Gosched()
		}
	}
	if !r.watching && !r.noWatch && r.read > watchDelay {
		if dl, set := looseWatch(&uc.rdl, now); set {
			_ = uc.nc.SetReadDeadline(dl)
		}
		n, err := uc.s.Read(p)
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
	n, err := uc.s.Read(p)
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
	var h respHead
	informations := 0
	for {
		if _, err := uc.br.Peek(1); err != nil {
			return 0, respRead, err
		}
		respRead = true
		if err := uc.readHead(&h); err != nil {
			return 0, true, err
		}
		if h.interim() {
			// Interim responses are not relayed (as with proxy.Forwarder).
			informations++
			if informations > 5 {
				return 0, true, errBadResponse
			}
			continue
		}
		break
	}
	var (
		code       = h.code
		cl         = int64(-1)
		chunked    bool
		closeDelim bool
		connClose  = h.connClose
		teSeen     = h.teSeen
		clSeen     = h.clSeen
		connListed = h.connListed
		ctype      = h.ctype
		noBody     bool
	)
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
		n, ok := parseContentLength(h.clVal)
		if !ok {
			return 0, true, errBadResponse
		}
		cl = n
	default:
		closeDelim = true
	}
	if h.proto10 && !h.keepAlive10 {
		connClose = true
	}

	// Headers to the client: end-to-end fields only. With no plugin
	// between this forwarder and the engine's writer, nothing to add and
	// nothing in the header map that bears on framing (limit-count's
	// quota headers, set in access, are fine: they are written first),
	// they go to the writer as a field list (no map writes).
	var trailerNames []string
	if rw, ok := c.W.(*respWriter); !ok || rw.cn != cn || rw.wroteHeader || !plainFields(cn.respHdr) ||
		len(c.UpstreamStatus) > 0 && (code >= 500 || opt.ShowUpstreamStatus) ||
		!rw.headDirect(code, uc.fields, connListed, chunked, h.clSeen, h.clVal) {
		trailerNames = cn.headToMap(c, uc.fields, connListed, chunked, code, opt)
	}

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
	if chunked && len(uc.trailer) > 0 {
		dst := c.W.Header()
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
	if reusable && !uc.noReuse && uc.br.Buffered() == 0 {
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

// endToEnd reports whether upstream field k goes to the client: not
// hop-by-hop, not named in Connection, and no Content-Length on a body
// the engine re-frames (chunked).
func endToEnd(k string, connListed []string, chunked bool) bool {
	return !engine.IsHopByHop(k) && !listed(connListed, k) && !(k == "Content-Length" && chunked)
}

// headToMap puts the end-to-end fields of an upstream head into the
// client's header map and sets the status; it returns the trailer names
// the head announces for a chunked body.
func (cn *conn) headToMap(c *engine.Ctx, fields []field, connListed []string, chunked bool, code int, opt *proxy.Options) []string {
	dst := c.W.Header()
	var trailerNames []string
	for i := range fields {
		fd := &fields[i]
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
		if !endToEnd(fd.k, connListed, chunked) {
			continue
		}
		cn.addRespHeader(dst, fd.k, fd.v)
	}
	if !chunked {
		trailerNames = nil
	}
	if len(trailerNames) > 0 {
		dst["Trailer"] = []string{strings.Join(trailerNames, ", ")}
	}
	proxy.SetResponseHeaders(dst, c, code, opt)
	c.W.WriteHeader(code)
	return trailerNames
}

// plainFields reports whether the header map a plugin filled before the
// response holds only fields the direct head can write ahead of the
// upstream's as they are: none that frames the body or that the engine
// sets itself.
func plainFields(h engine.Header) bool {
	if len(h) == 0 {
		return true
	}
	for k := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Trailer", "Connection", "Server", "Date",
			"Content-Type", "Content-Encoding":
			return false
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return false
		}
	}
	return true
}

// headDirect sets the status and head of a response no plugin filters
// and the forwarder adds nothing to: the upstream's end-to-end fields as
// a list (what headToMap puts in the map, less Server, which commit
// writes), no header map. It returns false, having done nothing, for
// heads headToMap must handle (a Trailer field, a bad length).
func (w *respWriter) headDirect(code int, fields []field, connListed []string, chunked, clSeen bool, clVal string) bool {
	cl := int64(-1)
	if clSeen && !chunked {
		n, ok := parseContentLength(clVal)
		if !ok {
			return false
		}
		cl = n
	}
	dst := w.dfields[:0]
	for i := range fields {
		fd := &fields[i]
		switch {
		case fd.k == "Trailer":
			clear(dst)
			return false
		case fd.k == "Server", !endToEnd(fd.k, connListed, chunked):
			continue
		}
		dst = append(dst, *fd)
	}
	w.writeHeaderDirect(code, dst, cl)
	return true
}

// respHead is what readHead learns from one response head; the fields
// themselves are in upConn.fields.
type respHead struct {
	code        int
	proto10     bool
	keepAlive10 bool // Connection lists keep-alive
	connClose   bool // Connection lists close
	teSeen      bool
	clSeen      bool
	clVal       string
	ctype       string
	connListed  []string // the Connection values
}

// interim reports a 1xx response other than 101: skipped, the final one
// follows.
func (h *respHead) interim() bool { return h.code >= 100 && h.code < 200 && h.code != 101 }

// readHead reads one response head (status line and fields, into
// uc.fields) with the response parser's strict rules.
func (uc *upConn) readHead(h *respHead) error {
	*h = respHead{connListed: uc.connVals[:0]}
	uc.fields = uc.fields[:0]
	var bare bool
	line, headBytes, err := readLine(uc.br, &uc.long, maxRespHead, true, &bare)
	if err != nil {
		return fmt.Errorf("status line: %w", err)
	}
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return errBadResponse
	}
	h.proto10 = line[7] == '0'
	code := 0
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return errBadResponse
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 || (len(line) > 12 && line[12] != ' ') || !validValue(line[12:]) {
		return errBadResponse
	}
	h.code = code
	vi := 0
	for {
		l, n, err := readLine(uc.br, &uc.long, maxRespHead, true, &bare)
		headBytes += n
		if err != nil {
			return fmt.Errorf("response header: %w", err)
		}
		if headBytes > maxRespHead {
			return errBadResponse
		}
		if len(l) == 0 {
			uc.connVals = h.connListed // keep the backing array
			return nil
		}
		// An origin repeats most of its head (all but Date, mostly):
		// a line seen at this position last time is taken as it was.
		k, val, ok := uc.sc.field(vi, l)
		if !ok {
			name, v, valid := splitField(l)
			if !valid {
				return errBadResponse
			}
			k = uc.sc.name(vi, name)
			val = uc.sc.keepLine(vi, l, v)
		}
		vi++
		switch k {
		case "Content-Length":
			if h.clSeen && val != h.clVal {
				return errBadResponse
			}
			h.clSeen, h.clVal = true, val
		case "Transfer-Encoding":
			if h.teSeen {
				return errBadResponse
			}
			h.teSeen = true
			if !equalFoldTrim(val, "chunked") {
				return errBadResponse
			}
		case "Connection":
			h.connListed = append(h.connListed, val)
			if listHasToken(val, "close") {
				h.connClose = true
			}
			if listHasToken(val, "keep-alive") {
				h.keepAlive10 = true
			}
		case "Content-Type":
			if h.ctype == "" {
				h.ctype = val
			}
		}
		uc.fields = append(uc.fields, field{k, val})
	}
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
	writeField(bw, "Server", cn.s.server[0])
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
