package std

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
)

// reqState is what one request borrows from the pool: the Ctx, the
// ResponseWriter adapter and the body limiter, so the adapter allocates
// nothing of its own per request.
type reqState struct {
	c    engine.Ctx
	rw   respWriter
	body limitedBody
}

// respWriter adapts http.ResponseWriter to engine.ResponseWriter.
type respWriter struct {
	w           http.ResponseWriter
	c           *engine.Ctx
	sc          *sniffConn
	wroteHeader bool
	aborted     bool
}

func (w *respWriter) Header() engine.Header { return engine.Header(w.w.Header()) }

func (w *respWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	h := w.w.Header()
	h["Server"] = w.c.ServerHeader
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		w.w.WriteHeader(status) // informational; the final status follows
		return
	}
	w.wroteHeader = true
	w.c.Status = status
	w.w.WriteHeader(status)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.w.Write(p)
	w.c.BytesSent += int64(n)
	return n, err
}

func (w *respWriter) Flush() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.w.(http.Flusher); ok {
		f.Flush()
		return nil
	}
	return errors.New("flush not supported")
}

// Hijack hands over the client connection (HTTP/1.1 only) and stops the
// framing checker, since the bytes that follow are a tunnel.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if w.sc != nil {
		w.sc.stopParsing()
	}
	w.wroteHeader = true
	return conn, brw, nil
}

// Abort makes the server drop the connection after the handler returns
// instead of ending the response cleanly.
func (w *respWriter) Abort() { w.aborted = true }

// limitedBody enforces Limits.MaxBodyBytes on bodies of unknown length.
type limitedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe for one more byte: exactly-at-limit bodies are fine.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, engine.ErrBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.r.Close() }

func (s *Server) reject(w http.ResponseWriter, status int) {
	h := w.Header()
	h["Server"] = s.server
	h["Connection"] = []string{"close"}
	h["Content-Type"] = []string{engine.ErrorPageContentType}
	body := engine.ErrorPage(status)
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ServeHTTP is the net/http handler: it checks what net/http let through,
// fills a pooled Ctx and calls the engine handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		s.serveOnWorker(w, r)
		return
	}
	s.serveRequest(w, r)
}

// h2WorkerIdle is how long an idle HTTP/2 worker goroutine waits for the
// next request before it exits.
const h2WorkerIdle = 10 * time.Second

// h2Job is one HTTP/2 request handed to a worker goroutine; pooled.
type h2Job struct {
	w http.ResponseWriter
	r *http.Request
	// done carries the worker's recovered panic value, or nil.
	done chan any
}

// serveOnWorker serves an HTTP/2 request on a long-lived worker goroutine.
// net/http runs every stream's handler on a new goroutine whose stack
// starts at the runtime's running average (4 KiB here); the proxy path is
// about 7 KiB deep, so every request grew that stack once or twice, each
// time copying it and re-walking every frame: 7 % of the CPU under h2load
// (bench profile f), against two goroutine switches for the hand-off.
// Workers are started on demand, so there are as many as requests in
// flight at the peak, and exit after h2WorkerIdle without work.
func (s *Server) serveOnWorker(w http.ResponseWriter, r *http.Request) {
	j := s.jobs.Get().(*h2Job)
	j.w, j.r = w, r
	select {
	case s.h2jobs <- j:
	default:
		go s.h2Worker(j)
	}
	p := <-j.done
	j.w, j.r = nil, nil
	s.jobs.Put(j)
	if p != nil {
		// The worker logged it; end the stream as net/http does for a
		// panicking handler (RST_STREAM), without a second log.
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) h2Worker(j *h2Job) {
	t := time.NewTimer(h2WorkerIdle)
	defer t.Stop()
	for {
		j.done <- s.runJob(j)
		select {
		case j = <-s.h2jobs:
			t.Reset(h2WorkerIdle)
		case <-t.C:
			return
		case <-s.quit:
			return
		}
	}
}

// runJob serves j and returns what the handler panicked with, if anything.
func (s *Server) runJob(j *h2Job) (p any) {
	defer func() {
		if e := recover(); e != nil {
			p = e
			if e != http.ErrAbortHandler {
				s.logger.Error("panic serving request", "remote", j.r.RemoteAddr, "panic", e, "stack", string(debug.Stack()))
			}
		}
	}()
	s.serveRequest(j.w, j.r)
	return nil
}

// serveRequest is ServeHTTP on the goroutine that runs the request.
func (s *Server) serveRequest(w http.ResponseWriter, r *http.Request) {
	var sc *sniffConn
	if r.ProtoMajor == 1 {
		sc, _ = r.Context().Value(connKey{}).(*sniffConn)
		if sc != nil {
			if v := sc.verdict(); v != 0 {
				s.reject(w, v)
				return
			}
		}
	}
	if s.lim.MaxBodyBytes > 0 && r.ContentLength > s.lim.MaxBodyBytes {
		// Answer before reading or dialling anything (hardening C3).
		s.reject(w, http.StatusRequestEntityTooLarge)
		return
	}
	uri := r.RequestURI
	if uri != "" && uri[0] != '/' {
		uri = engine.OriginForm(uri)
	}
	rawPath, query := engine.SplitRequestURI(uri)
	path, ok := engine.NormalizePath(rawPath)
	if !ok {
		s.reject(w, http.StatusBadRequest)
		return
	}

	st := s.pool.Get().(*reqState)
	c := &st.c
	c.StartTime = time.Now()
	c.Method = r.Method
	c.Proto = r.Proto
	c.RequestURI = uri
	c.RawPath = rawPath
	c.Path = path
	c.Query = query
	c.RawHost = r.Host
	c.Host = engine.NormHost(r.Host)
	hdr := engine.Header(r.Header)
	dropUnderscoreHeaders(hdr)
	hdr.RemoveConnectionListed()
	c.Header = hdr
	c.Trailer = engine.Header(r.Trailer)
	c.ContentLength = r.ContentLength
	c.Body = r.Body
	if s.lim.MaxBodyBytes > 0 && r.ContentLength < 0 {
		st.body = limitedBody{r: r.Body, left: s.lim.MaxBodyBytes}
		c.Body = &st.body
	}
	c.RemoteAddr, _ = netip.ParseAddrPort(r.RemoteAddr)
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		c.LocalAddr = la.AddrPort()
	}
	c.TLS = r.TLS
	if c.TLS == nil && sc != nil {
		c.TLS = sc.tlsState
	}
	c.Scheme = "http"
	if c.TLS != nil {
		c.Scheme = "https"
	}
	c.Context = r.Context()
	c.ServerHeader = s.server
	st.rw = respWriter{w: w, c: c, sc: sc}
	c.W = &st.rw

	s.h.Serve(c)

	if !st.rw.wroteHeader {
		w.Header()["Server"] = s.server
	}
	aborted := st.rw.aborted
	st.rw = respWriter{}
	st.body = limitedBody{}
	c.Reset()
	s.pool.Put(st)
	if aborted {
		panic(http.ErrAbortHandler)
	}
}

// dropUnderscoreHeaders removes header names with '_' as nginx does by
// default (underscores_in_headers off): X_API_KEY must not reach an
// upstream that folds '_' into '-' (hardening B4).
func dropUnderscoreHeaders(h engine.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
}
