// Package fast is the raw-socket HTTP/1.1 engine: one goroutine per client
// connection, pooled buffers, a strict parser and an upstream client with
// keep-alive pools, filling the same engine.Ctx as the net/http engine
// (engine/std) so every layer above behaves identically. HTTP/2 is not
// spoken here: on TLS listeners connections that negotiate "h2" are handed
// to a std.Server. docs/engine.md describes the differences and limits.
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
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

const (
	readBufSize  = 8 << 10
	writeBufSize = 8 << 10
	// maxDrain is how much unread request body is discarded after the
	// handler to keep the connection (net/http's maxPostHandlerReadBytes).
	maxDrain = 256 << 10
)

// Server serves HTTP/1.1 on raw connections and hands each request to an
// engine.Handler as a pooled engine.Ctx.
type Server struct {
	h      engine.Handler
	lim    std.Limits
	logger *slog.Logger
	server []string    // the Server header value (Limits.Server)
	h2     *std.Server // serves ALPN "h2" connections of ServeTLS

	readers sync.Pool
	writers sync.Pool
	dates   dateCache

	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	conns    map[*conn]struct{}
	shutdown atomic.Bool
	wg       sync.WaitGroup

	// ftw counts flush-then-wait waits (added when a connection ends,
	// not per request: no shared write on the hot path) and those that
	// timed out (rare).
	ftw struct{ waits, timeouts atomic.Int64 }
}

// New returns a Server for h with the std engine's limits. h2 serves
// connections that negotiate HTTP/2 on ServeTLS; nil makes ServeTLS offer
// http/1.1 only.
func New(h engine.Handler, lim std.Limits, logger *slog.Logger, h2 *std.Server) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{h: h, lim: lim, logger: logger, h2: h2, server: lim.ServerHeader(),
		lns: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	s.readers.New = func() any { return bufio.NewReaderSize(nil, readBufSize) }
	s.writers.New = func() any { return bufio.NewWriterSize(nil, writeBufSize) }
	return s
}

// yieldBeforeRead reports whether the upstream client yields before
// awaiting a response (Forwarder.yield): only with a single P.
func yieldBeforeRead() bool { return runtime.GOMAXPROCS(0) == 1 }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("fast: server closed")

// Serve accepts cleartext HTTP/1.1 connections on ln until Shutdown; it
// returns nil after a clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, nil)
}

func (s *Server) serve(ln net.Listener, handoff func(net.Conn)) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
		delay = 0
		if handoff != nil {
			go handoff(nc)
			continue
		}
		s.startConn(nc, nil)
	}
}

func (s *Server) startConn(nc net.Conn, st *tls.ConnectionState) {
	cn := &conn{s: s, nc: nc, tlsState: st}
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go cn.serve()
}

// Shutdown stops accepting, closes idle connections and waits for
// in-flight requests until ctx ends; then it closes what is left.
// Hijacked connections (WebSocket tunnels) are not waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for ln := range s.lns {
		_ = ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		for cn := range s.conns {
			if cn.state.Load() == stateIdle {
				_ = cn.nc.Close()
			}
		}
		s.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.mu.Lock()
			for cn := range s.conns {
				_ = cn.nc.Close()
			}
			s.mu.Unlock()
			return fmt.Errorf("shutdown: %w", ctx.Err())
		case <-t.C:
		}
	}
}

const (
	stateIdle int32 = iota
	stateActive
)

// conn is one client connection and everything its requests reuse: the
// Ctx, the header maps, the response writer and the body reader.
// sink is the client socket under a connection's bufio.Writer. It counts
// the bytes written through it, so that the size of a response head is
// known exactly whether or not the buffer flushed while it was written
// (Ctx.ResponseHeadBytes).
type sink struct {
	s *sock
	n int64
}

func (s *sink) Write(p []byte) (int, error) {
	n, err := s.s.Write(p)
	s.n += int64(n)
	return n, err
}

// written is the number of bytes handed to bw so far (sent or buffered).
func (s *sink) written(bw *bufio.Writer) int64 { return s.n + int64(bw.Buffered()) }

type conn struct {
	s        *Server
	nc       net.Conn
	tlsState *tls.ConnectionState
	br       *bufio.Reader
	bw       *bufio.Writer
	src      srcReader
	sk       sock  // the socket under src and out
	lastPool *pool // the upstream pool of the last request (Forwarder.pool)
	state    atomic.Int32

	remote, local netip.AddrPort
	remoteText    string // remote's address as text, formatted once per connection
	out           sink   // the socket under bw
	ctx           engine.Ctx
	cctx          *connCtx // replaced when a request's context was observed (connCtx.used)
	rw            respWriter
	body          body
	reqHdr        engine.Header
	respHdr       engine.Header
	trailer       engine.Header
	vals          []string // backing for request header value slices
	rvals         []string // backing for response header value slices
	sc            strCache
	long          []byte
	hijacked      bool
	werr          error

	// per-request
	closeAfter   bool
	keepAlive10  bool
	expect100    bool
	sent100      bool
	reqTrailers  bool
	headerCount  int
	watch        watcher
	lastMethod   string
	remoteIPAddr netip.Addr
	remoteIP     string
	// rdl is the read deadline set on nc (zero: none), so a long one is
	// refreshed only when it moved (deadline.go).
	rdl time.Time
	// clock is a time read from the clock at the end of the last
	// response, reused for the next idle deadline.
	clock time.Time

	// Flush-then-wait (waitReady, on plain TCP: cn.sk.rc): waitFn is its
	// bound RawConn.Read callback (nil: off); pendingFlush says the last
	// response is still in bw; hot that the last request followed its
	// predecessor's response closely; waitFrom is when the wait began;
	// noFTW marks a pipelining client.
	waitFn       func(uintptr) bool
	waitFlushed  bool
	flushErr     error
	pendingFlush bool
	hot          bool
	noFTW        bool
	ftwTimedOut  bool
	ftwDeadline  time.Time // the read deadline waitReady set
	ftwWaits     int64     // waitReady calls, added to Server.ftw when the connection ends
	waitFrom     time.Time
}

func (cn *conn) serve() {
	s := cn.s
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("panic serving connection", "remote", cn.nc.RemoteAddr().String(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			_ = cn.nc.Close()
		}
		cn.watch.close(cn)
		if cn.pendingFlush && !cn.hijacked {
			_ = cn.bw.Flush() // the last response (shutdown came first)
		}
		if !cn.hijacked {
			_ = cn.nc.Close()
			if cn.br != nil {
				cn.br.Reset(nil)
				s.readers.Put(cn.br)
				cn.bw.Reset(nil)
				s.writers.Put(cn.bw)
			}
		}
		s.ftw.waits.Add(cn.ftwWaits)
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
		s.wg.Done()
	}()
	if tcp, ok := cn.nc.RemoteAddr().(*net.TCPAddr); ok {
		cn.remote = tcp.AddrPort()
		cn.remoteText = cn.remote.Addr().Unmap().String()
	}
	if tcp, ok := cn.nc.LocalAddr().(*net.TCPAddr); ok {
		cn.local = tcp.AddrPort()
	}
	cn.src.cn = cn
	cn.br = s.readers.Get().(*bufio.Reader)
	cn.br.Reset(&cn.src)
	cn.bw = s.writers.Get().(*bufio.Writer)
	cn.sk.init(cn.nc)
	cn.out.s = &cn.sk
	cn.bw.Reset(&cn.out)
	// Header maps start small (up to 8 fields in one group): setting,
	// walking and clearing a few fields per request costs ~40 % less than
	// in a map made for 16 (a table); a client that sends more grows it
	// once and keeps it.
	cn.reqHdr = make(engine.Header, 8)
	cn.respHdr = make(engine.Header, 8)
	cn.rw.cn = cn
	cn.cctx = new(connCtx)
	cn.ctx.ContentLength = -1
	if cn.sk.rc != nil && flushThenWait {
		cn.waitFn = cn.flushedReadable
	}
	for {
		if !cn.serveOne() || s.shutdown.Load() {
			return
		}
	}
}

// waitRequest waits for the first byte of the next request under the idle
// timeout (the read-header timeout for the first request), then bounds
// the rest of the head by the read-header timeout unless it is already
// buffered: one deadline per request in the common case.
func (cn *conn) waitRequest(first bool) bool {
	lim := &cn.s.lim
	if cn.br.Buffered() == 0 {
		ready := false
		if cn.pendingFlush {
			switch cn.waitReady() {
			case waitFailed:
				return false
			case waitReadable:
				ready = true
			}
		}
		if !ready {
			now := cn.now()
			cn.waitFrom = now
			switch d := lim.IdleTimeout; {
			case !first && d > 0:
				// Refreshed loosely: the idle timeout is long.
				if t, set := loose(&cn.rdl, now, d); set {
					_ = cn.nc.SetReadDeadline(t)
				}
			case lim.ReadHeaderTimeout > 0:
				cn.setReadDeadline(now.Add(lim.ReadHeaderTimeout))
			default:
				cn.setReadDeadline(time.Time{})
			}
		}
		// No yield here (unlike the upstream client, see
		// Forwarder.yield): a connection that yields before its next
		// request mostly finds it and never parks, so the run queue
		// never drains, the netpoller is consulted only by sysmon
		// every 10 ms, and parked connections wait: p99 at 50
		// connections was 3-4x nginx's with this yield and 1.2-1.9x
		// without, at the same requests per CPU-second (docs/engine.md).
		if _, err := cn.br.Peek(1); err != nil {
			if !ready || !errors.Is(err, os.ErrDeadlineExceeded) {
				return false
			}
			// A spurious wake-up: nothing came after all. Wait again,
			// under the idle timeout.
			cn.hot = false
			return cn.waitRequest(first)
		}
	}
	cn.clock = time.Time{}
	cn.state.Store(stateActive)
	if !headComplete(cn.br) {
		switch {
		case lim.ReadHeaderTimeout > 0:
			cn.setReadDeadline(time.Now().Add(lim.ReadHeaderTimeout))
		case cn.rdl.Equal(cn.ftwDeadline) && !cn.rdl.IsZero():
			// The rest of the head comes under the idle timeout, as on
			// the plain path, not under flush-then-wait's short one.
			if d := lim.IdleTimeout; d > 0 && !first {
				cn.setReadDeadline(time.Now().Add(d))
			} else {
				cn.setReadDeadline(time.Time{})
			}
		}
	}
	return true
}

// flushThenWait enables the flush-then-wait path (waitReady).
const flushThenWait = true

// Flush-then-wait. After a response, a connection would flush it and read
// at once: the client has not answered yet, so that read fails (EAGAIN)
// and only then does the goroutine wait for the socket. nginx does
// without that read: epoll told it the socket was drained. Go's poller
// forgets readiness before every read, so the engine gets the same effect
// by resetting it first: waitReady enters the socket's RawConn.Read (which
// resets readiness), flushes the response from inside its callback, and
// asks to wait. A client that sends its next request only once it has
// the response can only do so after that reset, so the wait cannot miss
// it. A client that sent it earlier (pipelining) may have had its
// readiness forgotten: the wait is bounded by ftwWait, after which the
// connection reads as usual, and a connection seen pipelining never
// takes this path again. Only connections whose requests follow their
// responses closely (hot) take it, so a mostly idle keep-alive
// connection pays no extra timer.
const (
	ftwWait = 40 * time.Millisecond // the longest wait before an ordinary read
	hotGap  = 10 * time.Millisecond // a request this soon after the response: hot
)

type waitResult int

const (
	waitFailed   waitResult = iota // flush failed or the connection closed
	waitReadable                   // the socket has become readable
	waitTimedOut                   // nothing within ftwWait: wait as usual
)

// waitReady flushes the pending response and waits, without a read
// attempt, for the socket to become readable, at most ftwWait.
func (cn *conn) waitReady() waitResult {
	cn.pendingFlush = false
	now := cn.now()
	cn.waitFrom = now
	// A deadline between ftwWait/4 and ftwWait away stays: a hot
	// connection resets it about every 30 ms, not per request (each
	// reset is a runtime timer update: at 200 connections a reset every
	// 10 ms was half a timer update per request).
	if !cn.rdl.Equal(cn.ftwDeadline) || !within(cn.rdl, now, ftwWait) {
		cn.setReadDeadline(now.Add(ftwWait))
		cn.ftwDeadline = cn.rdl
	}
	cn.waitFlushed, cn.flushErr = false, nil
	cn.ftwWaits++
	err := cn.sk.rc.Read(cn.waitFn)
	if !cn.waitFlushed {
		// The callback never ran (the connection is closing).
		cn.flushErr = cn.bw.Flush()
		cn.state.Store(stateIdle)
	}
	switch {
	case cn.flushErr != nil:
		return waitFailed
	case err == nil:
		return waitReadable
	case errors.Is(err, os.ErrDeadlineExceeded):
		cn.hot, cn.ftwTimedOut = false, true
		cn.s.ftw.timeouts.Add(1)
		return waitTimedOut
	}
	return waitFailed
}

// flushedReadable is the RawConn.Read callback of waitReady: the first
// call (readiness just reset) flushes the response and asks to wait, the
// next (the socket became readable, or a spurious wake-up) ends the wait;
// the read itself is the bufio.Reader's.
func (cn *conn) flushedReadable(uintptr) bool {
	if cn.waitFlushed {
		return true
	}
	cn.waitFlushed = true
	if err := cn.bw.Flush(); err != nil {
		cn.flushErr = err
		return true
	}
	cn.state.Store(stateIdle)
	return false
}

// headComplete reports whether br already holds a whole header block.
func headComplete(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	for i := 3; i < len(b); i++ {
		if b[i] == '\n' && b[i-1] == '\r' && b[i-2] == '\n' && b[i-3] == '\r' {
			return true
		}
	}
	return false
}

// serveOne reads, serves and finishes one request; it reports whether the
// connection may carry another.
func (cn *conn) serveOne() bool {
	first := cn.rw.requests == 0
	if !cn.waitRequest(first) {
		return false
	}
	cn.rw.requests++
	herr := cn.readRequest()
	if herr == errHandled {
		cn.state.Store(stateIdle)
		return true
	}
	if herr != nil {
		if herr.status != 0 {
			cn.reject(herr.status)
		}
		return false
	}
	c := &cn.ctx
	cn.rw.reset(cn)
	c.W = &cn.rw
	if c.ContentLength != 0 {
		// A body is streamed under no deadline (net/http's ReadTimeout 0);
		// the proxy's send timeout governs slow uploads.
		cn.setReadDeadline(time.Time{})
	}
	cn.s.h.Serve(c)
	cn.watch.stop(cn)
	if cn.hijacked {
		cn.releaseRequest()
		return false
	}
	cn.rw.finish()
	keep := !cn.closeAfter && !cn.rw.closeAfter && cn.werr == nil && !cn.rw.aborted
	if keep {
		keep = cn.drainBody()
	}
	cn.releaseRequest()
	if cn.rw.aborted {
		_ = cn.bw.Flush()
		return false
	}
	// Pipelined requests already buffered get their responses batched
	// into one write; otherwise the response goes out now, or, for a hot
	// connection, from inside the wait for the next request (waitReady).
	if cn.br.Buffered() > 0 {
		cn.noFTW = true // a pipelining client
	}
	if cn.br.Buffered() == 0 || !keep {
		if keep && cn.waitFn != nil && cn.hot && !cn.noFTW && cn.bw.Buffered() > 0 &&
			len(cn.src.stash) == 0 && cn.src.err == nil && !cn.s.shutdown.Load() {
			cn.pendingFlush = true // the connection stays active until then
			return true
		}
		if err := cn.bw.Flush(); err != nil {
			return false
		}
	}
	cn.state.Store(stateIdle)
	return keep
}

// drainBody discards what the handler left of the request body so the
// next request starts where it should; more than maxDrain, a framing error
// or an unanswered 100-continue closes the connection instead (A16).
func (cn *conn) drainBody() bool {
	b := &cn.body
	if cn.ctx.ContentLength == 0 || b.done {
		return b.err == nil
	}
	if b.err != nil {
		return false
	}
	if cn.expect100 && !cn.sent100 {
		return false
	}
	b.closed = false
	b.continue100 = false
	var buf [512]byte
	var total int64
	for total <= maxDrain {
		n, err := b.Read(buf[:])
		total += int64(n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

func (cn *conn) releaseRequest() {
	cn.cctx.finish()
	clear(cn.reqHdr)
	clear(cn.respHdr)
	cn.rvals = cn.rvals[:0]
	if cn.trailer != nil {
		clear(cn.trailer)
	}
	cn.ctx.Reset()
}

// reject answers a request the engine refuses itself (nginx's error page,
// as the std engine's reject) and marks the connection for closing.
func (cn *conn) reject(status int) {
	page := engine.ErrorPage(status)
	bw := cn.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(status))
	bw.WriteString("\r\nServer: ")
	bw.WriteString(cn.s.server[0])
	bw.WriteString("\r\nDate: ")
	bw.Write(cn.s.date())
	bw.WriteString("\r\nContent-Type: ")
	bw.WriteString(engine.ErrorPageContentType)
	bw.WriteString("\r\nContent-Length: ")
	writeInt(bw, int64(len(page)))
	bw.WriteString("\r\nConnection: close\r\n\r\n")
	bw.Write(page)
	_ = bw.Flush()
}

func (cn *conn) sendContinue() {
	if cn.rw.headerSent || cn.sent100 {
		return
	}
	cn.sent100 = true
	cn.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	if err := cn.bw.Flush(); err != nil {
		cn.werr = err
	}
}

// readRequest parses one request head into cn.ctx. A nil return means the
// handler may run; a status of 0 means the connection just ended.
func (cn *conn) readRequest() *httpError {
	s := cn.s
	lim := &s.lim
	c := &cn.ctx
	maxHead := lim.MaxHeaderBytes
	if maxHead <= 0 {
		maxHead = 1 << 20
	}
	maxHead += 4096 // net/http's slack over MaxHeaderBytes
	var soft *httpError
	setSoft := func(e *httpError) {
		if soft == nil {
			soft = e
		}
	}
	total := 0
	var bare bool
	if cn.lastMethod == "POST" {
		// net/http's tolerance for old clients that send CRLF after a
		// POST body.
		peek, _ := cn.br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		_, _ = cn.br.Discard(n)
	}
	// Request line. RFC 9112 §2.2 lets a server skip empty lines first;
	// net/http does not (400), and neither do we, to stay identical.
	var line []byte
	for {
		l, n, err := readLine(cn.br, &cn.long, maxHead, lim.AllowBareLF, &bare)
		total += n
		if err == errBareLF {
			setSoft(errBadRequest)
			err = nil
		}
		if err != nil {
			if err == errLineTooLong {
				return errHeaderTooLarge
			}
			if total == 0 || errors.Is(err, io.EOF) && total == 0 {
				return &httpError{}
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() && total == 0 {
				return &httpError{}
			}
			return &httpError{} // EOF or timeout mid-head: just close (net/http)
		}
		if len(l) == 0 {
			return errBadRequest
		}
		line = l
		break
	}
	if lim.MaxRequestLine > 0 && len(line) > lim.MaxRequestLine {
		setSoft(errURITooLong)
	}
	sp1 := indexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequest
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 < 0 {
		return errBadRequest
	}
	mb, target, vb := line[:sp1], rest[:sp2], rest[sp2+1:]
	for _, ch := range mb {
		if !tokenTable[ch] {
			return errBadRequest
		}
	}
	if len(target) == 0 {
		return errBadRequest
	}
	for _, ch := range target {
		if ch <= ' ' || ch == 0x7f {
			return errBadRequest
		}
	}
	proto, major, minor, verr := parseVersion(vb)
	if verr == errBadRequest {
		return verr
	}
	// net/http reads the framing of any HTTP/x.y (0.0 counts as 1.1, TE is
	// ignored below 1.1) and answers 505 only after the whole head parsed.
	teApplies := major > 1 || major == 1 && minor >= 1 || major == 0 && minor == 0
	versionErr := verr
	if versionErr != nil {
		proto, minor = "HTTP/1.1", 1
	}
	c.Method = internMethod(&cn.sc, mb)
	// The target is parsed (url.ParseRequestURI) before the header.
	urlHost, ok := checkTarget(c.Method, target)
	if !ok {
		return errBadRequest
	}
	cn.lastMethod = c.Method
	uri := cn.sc.slot(0, target)
	c.Proto = proto

	// Header fields.
	h := cn.reqHdr
	var (
		hostSeen, clSeen, teSeen bool
		clConflict, badName      bool
		host, clVal, teVal       string
		nTE                      int
		nFields                  int
		obsFold                  bool
		hardErr                  *httpError
		vi                       int
		last                     int // what a continuation line extends
		lastKey                  string
		underscore               bool // some field name has '_' (hardening B4)
	)
	cn.vals = cn.vals[:0]
	for {
		l, n, err := readLine(cn.br, &cn.long, maxHead, lim.AllowBareLF, &bare)
		total += n
		if err == errBareLF {
			setSoft(errBadRequest)
			err = nil
		}
		if err != nil {
			if err == errLineTooLong {
				return errHeaderTooLarge
			}
			return &httpError{}
		}
		if total > maxHead {
			return errHeaderTooLarge
		}
		if len(l) == 0 {
			c.RequestHeadBytes = total
			break
		}
		if hardErr != nil {
			continue // keep reading to the end of the head for the status
		}
		if l[0] == ' ' || l[0] == '\t' {
			if nFields == 0 {
				hardErr = errBadRequest
				continue
			}
			// net/http unfolds (and judges the unfolded value: TE, CL,
			// Expect, ...); the std engine refuses it afterwards.
			obsFold = true
			cont := trimOWS(l)
			if !validValue(cont) {
				hardErr = errBadRequest
				continue
			}
			switch last {
			case lastHost:
				host = unfold(host, cont)
			case lastField:
				vv := h[lastKey]
				vv[len(vv)-1] = unfold(vv[len(vv)-1], cont)
			}
			continue
		}
		last = lastNone
		nFields++
		colon := -1
		spaced := false
		for i, ch := range l {
			if ch == ':' {
				colon = i
				break
			}
			if ch == ' ' {
				// textproto keeps such a name; net/http refuses it only
				// after its version and Host checks.
				spaced = true
				continue
			}
			if !tokenTable[ch] {
				break
			}
			if ch == '_' {
				underscore = true
			}
		}
		if colon <= 0 {
			hardErr = errBadRequest
			continue
		}
		v := trimOWS(l[colon+1:])
		if !validValue(v) {
			hardErr = errBadRequest
			continue
		}
		if spaced {
			badName = true
			continue
		}
		key := cn.sc.name(vi, l[:colon])
		val := cn.sc.val(vi, v)
		vi++
		switch key {
		case "Host":
			if hostSeen {
				hardErr = errBadRequest
				continue
			}
			hostSeen, host = true, val
			last = lastHost
			continue // net/http removes Host from the header map
		case "Content-Length":
			if clSeen && val != clVal {
				clConflict = true
			}
			clSeen, clVal = true, val
		case "Transfer-Encoding":
			nTE++
			teSeen, teVal = true, val
		}
		cn.addHeader(h, key, val)
		last, lastKey = lastField, key
	}
	if hardErr != nil {
		return hardErr
	}
	if obsFold {
		// Judge the unfolded values, as net/http does.
		cl := h["Content-Length"]
		clConflict = false
		for _, v := range cl {
			if trimSpace(v) != trimSpace(cl[0]) {
				clConflict = true
			}
		}
		if len(cl) > 0 {
			clVal = cl[0]
		}
		if te := h["Transfer-Encoding"]; len(te) > 0 {
			teVal = te[0]
		}
	}
	if lim.MaxHeaderCount > 0 && nFields > lim.MaxHeaderCount {
		setSoft(errTooManyHeaders)
	}

	// Framing (hardening.md §A), in net/http's order: TE, then CL (a bad
	// CL is refused even next to chunked), then the Trailer names.
	c.ContentLength = 0
	chunked := false
	if len(cn.trailer) > 0 {
		clear(cn.trailer) // OPTIONS * skips releaseRequest
	}
	if teSeen && teApplies {
		if nTE != 1 || !asciiEqualFold(teVal, "chunked") {
			return errNotImplemented
		}
		chunked = true
	}
	if clSeen {
		n, ok := parseContentLength(clVal)
		if !ok || clConflict {
			return errBadRequest
		}
		c.ContentLength = n
	}
	if chunked {
		c.ContentLength = -1
		if tr, ok := h["Trailer"]; ok {
			if herr := cn.declareTrailers(tr); herr != nil {
				return herr
			}
			delete(h, "Trailer") // net/http moves it to Request.Trailer
		}
	}
	if versionErr != nil {
		return versionErr
	}

	// Target and Host (RFC 9112 §3.2: absolute-form wins over Host).
	// net/http lets CONNECT go without a Host.
	if minor == 1 && !hostSeen && c.Method != "CONNECT" {
		return errBadRequest
	}
	if hostSeen && !validHost(host) || badName {
		return errBadRequest
	}
	rawHost := host
	if urlHost != "" {
		rawHost = urlHost
	}
	badTarget := false
	if uri != "*" && uri[0] != '/' {
		uri = engine.OriginForm(uri)
	} else if uri == "*" && c.Method != "OPTIONS" {
		badTarget = true
	}
	if pv, ok := h["Pragma"]; ok && len(pv) > 0 && pv[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			// net/http's fixPragmaCacheControl (HTTP/1.0 compatibility).
			h["Cache-Control"] = pragmaNoCache
		}
	}
	if teSeen && clSeen || obsFold || teSeen && minor == 0 {
		setSoft(errBadRequest)
	}
	// Expect (net/http: 100-continue on HTTP/1.1 with a body is honoured,
	// on anything else ignored; other expectations get 417).
	// The header stays, as with net/http, and travels upstream.
	cn.expect100, cn.sent100 = false, false
	if ev, ok := h["Expect"]; ok {
		if hasToken(ev[0], "100-continue") {
			if minor == 1 && c.ContentLength != 0 {
				cn.expect100 = true
			}
		} else if ev[0] != "" {
			// net/http answers 417 before the std engine's checks run.
			return errExpectation
		}
	}
	// Connection management as net/http decides it: Request.Close from all
	// Connection values (comma lists), wantsClose and the HTTP/1.0
	// keep-alive wish from the first value only (space or comma bounded).
	var firstConn string
	connVals := h["Connection"]
	if len(connVals) > 0 {
		firstConn = connVals[0]
	}
	reqClose := valuesHaveToken(connVals, "close")
	if minor == 0 && !reqClose {
		reqClose = !valuesHaveToken(connVals, "keep-alive")
	}
	cn.keepAlive10 = minor == 0 && hasToken(firstConn, "keep-alive")
	cn.closeAfter = !cn.keepAlive10 && (minor == 0 || reqClose || hasToken(firstConn, "close"))
	if uri == "*" && !badTarget {
		// net/http answers OPTIONS * itself, before the std engine's
		// framing verdicts (which then only close the connection).
		if !cn.replyOptions(c.ContentLength, chunked, minor, soft != nil) {
			return &httpError{}
		}
		return errHandled
	}
	if soft != nil {
		return soft
	}
	if lim.MaxBodyBytes > 0 && c.ContentLength > lim.MaxBodyBytes {
		return errBodyTooLarge
	}
	rawPath, query := engine.SplitRequestURI(uri)
	path, ok := engine.NormalizePath(rawPath)
	if !ok || badTarget {
		return errBadRequest
	}

	if underscore {
		dropUnderscoreHeaders(h)
	}
	h.RemoveConnectionListed()

	c.StartTime = time.Now()
	gap := c.StartTime.Sub(cn.waitFrom)
	cn.hot = !cn.waitFrom.IsZero() && gap < hotGap
	if cn.ftwTimedOut {
		// A request there the moment a flush-then-wait gave up was sent
		// early and its readiness forgotten: a pipelining client.
		cn.ftwTimedOut = false
		cn.noFTW = cn.noFTW || gap < time.Millisecond
	}
	c.RequestURI = uri
	c.RawPath = rawPath
	c.Path = path
	c.Query = query
	c.RawHost = rawHost
	c.Host = engine.NormHost(rawHost)
	c.Header = h
	c.SetRemote(cn.remote, cn.remoteText)
	c.LocalAddr = cn.local
	c.TLS = cn.tlsState
	c.Scheme = "http"
	c.ServerHeader = cn.s.server
	if c.TLS != nil {
		c.Scheme = "https"
	}
	if cn.cctx == nil || cn.cctx.used() {
		// Someone took the last request's Done channel or registered a
		// callback: code that outlives the request (a context wrapping
		// it, a goroutine) may still read it, so the next request gets
		// a fresh one rather than a reset one.
		cn.cctx = new(connCtx)
	}
	cn.cctx.start()
	c.Context = cn.cctx
	c.EngineData = cn
	cn.body.reset(cn, cn.br)
	if c.ContentLength == 0 {
		c.Body = eofBody{}
	} else {
		b := &cn.body
		b.chunked = chunked
		b.left = c.ContentLength
		b.continue100 = cn.expect100
		if chunked && lim.MaxBodyBytes > 0 {
			b.limit = lim.MaxBodyBytes
		}
		c.Body = b
		if chunked && len(cn.trailer) > 0 {
			c.Trailer = cn.trailer
			b.tr = cn.trailer
		}
	}
	return nil
}

// What an obs-fold continuation line extends.
const (
	lastNone = iota
	lastHost
	lastField
)

// unfold joins a continuation to a field value as textproto does: one
// space between, leading white space of the whole value dropped.
func unfold(prev string, cont []byte) string {
	if prev == "" {
		return string(cont)
	}
	return prev + " " + string(cont)
}

// declareTrailers fills cn.trailer with the names a chunked request's
// Trailer fields announce, as net/http's fixTrailer: the body reader keeps
// only those.
func (cn *conn) declareTrailers(tr []string) *httpError {
	if cn.trailer == nil {
		cn.trailer = make(engine.Header, 2)
	}
	for _, v := range tr {
		for v != "" {
			var tok string
			tok, v, _ = cutComma(v)
			if tok == "" {
				continue
			}
			k := http.CanonicalHeaderKey(tok)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return errBadRequest
			}
			cn.trailer[k] = nil
		}
	}
	return nil
}

// pragmaNoCache is shared; the proxy never mutates header values in place
// except X-Forwarded-*/X-Real-Ip, which it owns.
var pragmaNoCache = []string{"no-cache"}

// addHeader appends val to key's values, taking one-element slices from a
// per-connection backing array so steady-state requests allocate nothing.
func (cn *conn) addHeader(h engine.Header, key, val string) {
	if vv, ok := h[key]; ok {
		h[key] = append(vv[:len(vv):len(vv)], val)
		return
	}
	if cap(cn.vals)-len(cn.vals) == 0 {
		// A fresh array: slices handed out earlier keep the old one.
		cn.vals = make([]string, 0, max(32, 2*cap(cn.vals)))
	}
	i := len(cn.vals)
	cn.vals = append(cn.vals, val)
	h[key] = cn.vals[i : i+1 : i+1]
}

// replyOptions answers "OPTIONS *" as net/http's globalOptionsHandler
// (200, Content-Length: 0, at most 4 KiB of body read, more closes the
// connection); it reports whether the connection may go on. refused is
// set when the std engine's framing checks would have closed the
// connection after the answer.
func (cn *conn) replyOptions(cl int64, chunked bool, minor int, refused bool) bool {
	keep := !cn.closeAfter && !refused
	tooBig := false
	if cl != 0 {
		cn.body.reset(cn, cn.br)
		cn.body.chunked, cn.body.left = chunked, cl
		cn.body.continue100 = cn.expect100
		var buf [512]byte
		var total int64
		for {
			n, err := cn.body.Read(buf[:])
			total += int64(n)
			if total > 4<<10 {
				keep, tooBig = false, true
				break
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				keep = false
				break
			}
		}
		if cn.werr != nil {
			return false
		}
	}
	clear(cn.reqHdr)
	bw := cn.bw
	if minor == 0 {
		bw.WriteString("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nDate: ")
	} else {
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: ")
	}
	bw.Write(cn.s.date())
	switch {
	case tooBig || !keep && minor == 1:
		bw.WriteString("\r\nConnection: close")
	case keep && cn.keepAlive10:
		bw.WriteString("\r\nConnection: keep-alive")
	}
	bw.WriteString("\r\n\r\n")
	if cn.br.Buffered() == 0 || !keep {
		if bw.Flush() != nil {
			return false
		}
	}
	return keep
}

// valuesHaveToken reports whether one of the comma-separated lists vv
// holds token, ASCII case-insensitively (httpguts.HeaderValuesContainsToken).
func valuesHaveToken(vv []string, token string) bool {
	for _, v := range vv {
		if listHasToken(v, token) {
			return true
		}
	}
	return false
}

// listHasToken reports whether the comma-separated list v holds token.
func listHasToken(v, token string) bool {
	for v != "" {
		var tok string
		tok, v, _ = cutComma(v)
		if asciiEqualFold(tok, token) {
			return true
		}
	}
	return false
}

func cutComma(v string) (tok, rest string, found bool) {
	for i := 0; i < len(v); i++ {
		if v[i] == ',' {
			return trimSpace(v[:i]), v[i+1:], true
		}
	}
	return trimSpace(v), "", false
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func equalFoldTrim(s, t string) bool {
	s = trimSpace(s)
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a := s[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if a != t[i] {
			return false
		}
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// dropUnderscoreHeaders removes names with '_' as nginx does by default
// (underscores_in_headers off; hardening B4), like the std engine.
func dropUnderscoreHeaders(h engine.Header) {
	for k := range h {
		for i := 0; i < len(k); i++ {
			if k[i] == '_' {
				delete(h, k)
				break
			}
		}
	}
}

// srcReader is what the connection's bufio.Reader reads from: bytes the
// disconnect watcher read ahead come first, then the socket.
type srcReader struct {
	cn    *conn
	stash []byte
	err   error
}

func (r *srcReader) Read(p []byte) (int, error) {
	if len(r.stash) > 0 {
		n := copy(p, r.stash)
		r.stash = r.stash[n:]
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.cn.sk.Read(p)
}
