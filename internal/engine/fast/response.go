package fast

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
)

// bufferBeforeChunking is how much body the writer holds back before it
// commits the header, so short responses get a Content-Length (net/http's
// bufferBeforeChunkingSize).
const bufferBeforeChunking = 2048

var errContentLength = errors.New("fast: wrote more than the declared Content-Length")

// respWriter is the engine.ResponseWriter of a fast connection. Like
// net/http it delays the header until the body overflows a small buffer,
// the handler flushes, or the handler returns, and then chooses
// Content-Length, chunked or close-delimited framing.
type respWriter struct {
	cn          *conn
	requests    int
	status      int
	wroteHeader bool // final status set
	headerSent  bool // head bytes are in bw
	chunked     bool
	noBody      bool
	cl          int64 // declared Content-Length, -1 unknown
	written     int64
	closeAfter  bool
	aborted     bool
	trailers    []string
	// direct: the head is the fields below, not the header map (the
	// upstream client's path for a response no plugin filters: no map
	// writes, no map walk). Header() turns them into the map.
	direct  bool
	dfields []field
	buf     [bufferBeforeChunking]byte
	nbuf    int
}

func (w *respWriter) reset(cn *conn) {
	w.cn = cn
	w.status = 0
	w.wroteHeader, w.headerSent, w.chunked, w.noBody = false, false, false, false
	w.cl, w.written, w.nbuf = -1, 0, 0
	w.closeAfter, w.aborted = false, false
	w.trailers = w.trailers[:0]
	w.direct = false
	clear(w.dfields)
	w.dfields = w.dfields[:0]
}

// Header returns the response header map, reused across requests.
func (w *respWriter) Header() engine.Header {
	if w.direct {
		w.toMap()
	}
	return w.cn.respHdr
}

// toMap moves a direct head into the header map (someone asked for it:
// from then on the map is the head, as if the fields had been set there).
func (w *respWriter) toMap() {
	w.direct = false
	h := w.cn.respHdr
	for _, f := range w.dfields {
		w.cn.addRespHeader(h, f.k, f.v)
	}
	if w.wroteHeader {
		h["Server"] = w.cn.s.server
	}
}

// writeHeaderDirect is WriteHeader for a final status whose head is
// fields (end-to-end fields only, no Server) and whose declared length is
// cl (-1: none); fields must stay valid until the response ends.
func (w *respWriter) writeHeaderDirect(status int, fields []field, cl int64) {
	if w.wroteHeader {
		return
	}
	w.direct, w.dfields = true, fields
	w.wroteHeader = true
	w.status = status
	w.cn.ctx.Status = status
	if w.cn.ctx.Method == "HEAD" || status == 204 || status == 304 || status < 200 {
		w.noBody = true
	}
	w.cl = cl
}

// WriteHeader records the status; 1xx statuses other than 101 are sent at
// once and the final status follows.
func (w *respWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	h := w.cn.respHdr
	h["Server"] = w.cn.s.server
	if status >= 100 && status < 200 && status != 101 {
		bw := w.cn.bw
		bw.WriteString("HTTP/1.1 ")
		bw.WriteString(statusLine(status))
		bw.WriteString("\r\n")
		writeHeaders(bw, h, true)
		bw.WriteString("\r\n")
		if err := bw.Flush(); err != nil {
			w.cn.werr = err
		}
		return
	}
	w.wroteHeader = true
	w.status = status
	w.cn.ctx.Status = status
	if w.cn.ctx.Method == "HEAD" || status == 204 || status == 304 || status < 200 {
		w.noBody = true
	}
	if v, ok := h["Content-Length"]; ok && len(v) > 0 {
		if n, ok := parseContentLength(v[0]); ok {
			w.cl = n
		} else {
			delete(h, "Content-Length")
		}
	}
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	if w.cn.werr != nil {
		return 0, w.cn.werr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, errContentLength
	}
	w.written += int64(len(p))
	w.cn.ctx.BytesSent += int64(len(p))
	if !w.headerSent {
		if w.cl < 0 && w.nbuf+len(p) <= len(w.buf) {
			w.nbuf += copy(w.buf[w.nbuf:], p)
			return len(p), nil
		}
		w.commit(false, p)
	}
	return len(p), w.writeBody(p)
}

func (w *respWriter) writeBody(p []byte) error {
	bw := w.cn.bw
	if w.chunked {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil {
			w.cn.werr = err
		}
		return err
	}
	_, err := bw.Write(p)
	if err != nil {
		w.cn.werr = err
	}
	return err
}

// Flush commits the header and pushes everything buffered to the client.
func (w *respWriter) Flush() error {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	if !w.headerSent {
		w.commit(false, nil)
	}
	if err := w.cn.bw.Flush(); err != nil {
		w.cn.werr = err
		return err
	}
	return nil
}

// commit writes the status line and header. final is true when the
// handler has returned (so buffered bytes are the whole body); p is the
// next body chunk, used for Content-Type sniffing like net/http.
func (w *respWriter) commit(final bool, p []byte) {
	w.headerSent = true
	cn := w.cn
	h := cn.respHdr
	code := w.status
	bodyAllowed := !(code >= 100 && code < 200 || code == 204 || code == 304)
	if !bodyAllowed {
		delete(h, "Content-Length")
		if code == 304 {
			delete(h, "Content-Type")
		}
	}
	bw := cn.bw
	mark := cn.out.written(bw)
	if cn.ctx.Proto == "HTTP/1.0" {
		bw.WriteString("HTTP/1.0 ")
	} else {
		bw.WriteString("HTTP/1.1 ")
	}
	bw.WriteString(statusLine(code))
	bw.WriteString("\r\n")
	// One pass over the fields writes them and notes what the framing
	// decisions below need (a map lookup or iteration each costs).
	var (
		n  headNotes
		tv []string
	)
	if w.direct {
		for _, v := range cn.s.server {
			writeField(bw, "Server", v)
		}
		// Fields a plugin set before the response (plainFields: none that
		// frames it), then the upstream's, as the map would hold them.
		if len(h) > 0 { // (starting a map iteration costs, even on none)
			for k, vv := range h {
				for _, v := range vv {
					writeField(bw, k, v)
				}
			}
		}
		seenCE := false // Content-Encoding counts by its first value, as in the map
		for _, f := range w.dfields {
			if !bodyAllowed && (f.k == "Content-Length" || code == 304 && f.k == "Content-Type") {
				continue
			}
			first := true
			if f.k == "Content-Encoding" {
				first, seenCE = !seenCE, true
			}
			if n.note(f.k, f.v, first) {
				// The upstream's parser let no CR or LF into values.
				writeRawField(bw, f.k, f.v)
			}
		}
	} else {
		for k, vv := range h {
			if k == "Trailer" {
				tv = vv
			}
			v0 := ""
			if len(vv) > 0 {
				v0 = vv[0]
			}
			// A key with no values still counts (Date: nil suppresses
			// the Date field, as with net/http).
			if !n.note(k, v0, true) {
				continue
			}
			for i, v := range vv {
				if i > 0 {
					n.note(k, v, false)
				}
				writeField(bw, k, v)
			}
		}
	}
	hasType, hasCE, hasTE, hasDate, hasConn, prefixTrailers := n.hasType, n.hasCE, n.hasTE, n.hasDate, n.hasConn, n.prefixTrailers
	if n.close {
		w.closeAfter = true
	}
	if hasTE {
		delete(h, "Transfer-Encoding")
	}
	contentType := ""
	if bodyAllowed && !hasType && !hasCE {
		sniff := p
		if w.nbuf > 0 {
			sniff = w.buf[:w.nbuf]
		}
		if len(sniff) > 0 {
			contentType = http.DetectContentType(sniff)
		}
	}
	for _, v := range tv {
		for v != "" {
			var tok string
			tok, v, _ = cutComma(v)
			if tok != "" {
				w.trailers = append(w.trailers, http.CanonicalHeaderKey(tok))
			}
		}
	}
	hasTrailers := len(tv) > 0 || prefixTrailers
	contentLength := ""
	if !w.noBody || cn.ctx.Method == "HEAD" && w.nbuf > 0 {
		if w.cl < 0 && final && !hasTrailers && bodyAllowed {
			w.cl = int64(w.nbuf)
			contentLength = strconv.Itoa(w.nbuf)
		}
	}
	switch {
	case w.noBody, w.cl >= 0:
		// no framing, or the declared length
	case cn.ctx.Proto == "HTTP/1.1":
		w.chunked = true
	default:
		w.closeAfter = true
	}
	closing := cn.closeAfter || w.closeAfter || cn.s.shutdown.Load()
	if !closing && cn.expect100 && !cn.sent100 && cn.ctx.ContentLength != 0 && !cn.body.done {
		// A final answer to an unanswered 100-continue: the client may
		// or may not send the body now, so the connection cannot be
		// reused (drainBody closes it); say so, as net/http does.
		closing = true
	}
	if !closing && !w.noBody && w.cl >= 0 && w.cl != w.written && final {
		closing = true
		w.closeAfter = true
	}
	if contentType != "" {
		bw.WriteString("Content-Type: ")
		bw.WriteString(contentType)
		bw.WriteString("\r\n")
	}
	if contentLength != "" {
		bw.WriteString("Content-Length: ")
		bw.WriteString(contentLength)
		bw.WriteString("\r\n")
	}
	if !hasDate {
		bw.WriteString("Date: ")
		bw.Write(cn.s.date())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !hasConn {
		if closing {
			bw.WriteString("Connection: close\r\n")
			cn.closeAfter = true
		} else if cn.keepAlive10 {
			bw.WriteString("Connection: keep-alive\r\n")
		}
	}
	bw.WriteString("\r\n")
	cn.ctx.ResponseHeadBytes = int(cn.out.written(bw) - mark)
	if w.nbuf > 0 && !w.noBody {
		n := w.nbuf
		w.nbuf = 0
		_ = w.writeBody(w.buf[:n])
	}
	w.nbuf = 0
}

// headNotes is what commit learns from the head's fields.
type headNotes struct {
	hasType, hasCE, hasTE, hasDate, hasConn, prefixTrailers, close bool
}

// note records field k: v (first: k's first value) and reports whether
// it is written as is.
func (n *headNotes) note(k, v string, first bool) bool {
	switch k {
	case "Transfer-Encoding":
		n.hasTE = true
		return false // the engine frames the body itself
	case "Content-Type":
		n.hasType = true
	case "Content-Encoding":
		if first {
			n.hasCE = v != ""
		}
	case "Date":
		n.hasDate = true
	case "Connection":
		n.hasConn = true
		if hasToken(v, "close") {
			n.close = true
		}
	default:
		if strings.HasPrefix(k, http.TrailerPrefix) {
			n.prefixTrailers = true
			return false
		}
	}
	return true
}

// finish ends the response after the handler returned.
func (w *respWriter) finish() {
	if w.aborted {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	if !w.headerSent {
		w.commit(true, nil)
	}
	if w.chunked {
		bw := w.cn.bw
		bw.WriteString("0\r\n")
		h := w.cn.respHdr
		for _, k := range w.trailers {
			for _, v := range h[k] {
				writeField(bw, k, v)
			}
		}
		for k, vv := range h {
			if strings.HasPrefix(k, http.TrailerPrefix) {
				for _, v := range vv {
					writeField(bw, k[len(http.TrailerPrefix):], v)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if !w.noBody && w.cl >= 0 && w.written != w.cl {
		w.closeAfter = true
	}
}

// Hijack hands over the client connection for a tunnel; the server stops
// using it (and its buffers) when the handler returns.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	cn := w.cn
	if cn.hijacked {
		return nil, nil, errors.New("fast: connection already hijacked")
	}
	cn.watch.stop(cn)
	if err := cn.bw.Flush(); err != nil {
		return nil, nil, err
	}
	_ = cn.nc.SetDeadline(time.Time{})
	cn.hijacked = true
	w.wroteHeader = true
	w.headerSent = true
	return &hijackedConn{Conn: cn.nc, src: &cn.src}, bufio.NewReadWriter(cn.br, cn.bw), nil
}

// hijackedConn reads the watcher's stash before the socket.
type hijackedConn struct {
	net.Conn
	src *srcReader
}

func (c *hijackedConn) Read(p []byte) (int, error) {
	if len(c.src.stash) > 0 {
		return c.src.Read(p)
	}
	return c.Conn.Read(p)
}

// Abort drops the connection after the handler returns instead of ending
// the response cleanly, so the client sees a truncated response.
func (w *respWriter) Abort() { w.aborted = true }

func writeHeaders(bw *bufio.Writer, h engine.Header, informational bool) {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if informational && (k == "Content-Length" || k == "Transfer-Encoding") {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
}

// writeField writes "k: v\r\n", replacing CR and LF in v with spaces as
// net/http does, so a value a plugin built cannot split the header.
func writeField(bw *bufio.Writer, k, v string) {
	if !strings.ContainsAny(v, "\r\n") {
		writeRawField(bw, k, v)
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	start := 0
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' {
			bw.WriteString(v[start:i])
			bw.WriteByte(' ')
			start = i + 1
		}
	}
	bw.WriteString(v[start:])
	bw.WriteString("\r\n")
}

func writeInt(bw *bufio.Writer, n int64) {
	var b [20]byte
	bw.Write(strconv.AppendInt(b[:0], n, 10))
}

// statusLines caches "200 OK" and friends.
var statusLines = func() map[int]string {
	m := map[int]string{}
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			m[code] = strconv.Itoa(code) + " " + t
		}
	}
	return m
}()

func statusLine(code int) string {
	if s, ok := statusLines[code]; ok {
		return s
	}
	return strconv.Itoa(code) + " status code " + strconv.Itoa(code)
}

// dateCache formats the Date header at most once per second.
type dateCache struct {
	mu  sync.Mutex
	sec atomic.Int64
	val atomic.Pointer[[]byte]
}

func (s *Server) date() []byte {
	now := time.Now()
	sec := now.Unix()
	d := &s.dates
	if d.sec.Load() == sec {
		if p := d.val.Load(); p != nil {
			return *p
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sec.Load() != sec || d.val.Load() == nil {
		b := now.UTC().AppendFormat(nil, http.TimeFormat)
		d.val.Store(&b)
		d.sec.Store(sec)
	}
	return *d.val.Load()
}
