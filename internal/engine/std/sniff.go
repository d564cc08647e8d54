package std

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
)

// sniffConn watches the bytes net/http reads from an HTTP/1.x connection and
// re-derives the framing of every request, because net/http accepts, and
// then hides from handlers, framing the gateway must refuse (hardening.md
// §2.A): Content-Length together with Transfer-Encoding (Go drops the CL and
// keeps the connection alive, RFC 9112 §6.1 requires closing it),
// Transfer-Encoding on HTTP/1.0, obs-fold (Go unfolds silently), bare LF
// line endings, too many header lines and over-long request lines. For each
// request header block it queues a verdict (0 = fine, else the status to
// answer); the handler pops one per request. Body bytes are skipped using
// the same CL/chunked rules net/http applies, so the next request's header
// block is found where net/http finds it.
type sniffConn struct {
	net.Conn
	tlsState *tls.ConnectionState // set for HTTP/1.1 over TLS

	maxLine, maxHeaders int
	allowBareLF         bool

	mu          sync.Mutex
	passthrough bool // h2c preface or hijacked: stop parsing
	poisoned    bool // a refused request net/http answers itself
	st          sniffState
	line        [96]byte
	lineLen     int
	prevCR      bool
	first       bool
	left        int64 // body or chunk bytes still to skip
	chunkSize   int64
	chunkDigits bool
	req         reqFlags
	verdicts    [16]int
	vHead, vN   int
}

type sniffState uint8

const (
	stHead sniffState = iota
	stBody
	stChunkSize
	stChunkData
	stChunkEnd
	stTrailer
)

type reqFlags struct {
	hasCL, hasTE, chunked, obsFold, bareLF, http10, optionsStar, lineTooLong bool
	cl                                                                       int64
	nHeaders                                                                 int
}

var errPoisoned = errors.New("connection closed after a refused request")

func newSniffConn(c net.Conn, st *tls.ConnectionState, lim *Limits) *sniffConn {
	return &sniffConn{Conn: c, tlsState: st, maxLine: lim.MaxRequestLine,
		maxHeaders: lim.MaxHeaderCount, allowBareLF: lim.AllowBareLF, first: true}
}

// Read feeds what net/http reads through the framing checker.
func (c *sniffConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	poisoned := c.poisoned
	c.mu.Unlock()
	if poisoned {
		return 0, errPoisoned
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if !c.passthrough {
			c.feed(p[:n])
		}
		c.mu.Unlock()
	}
	return n, err
}

// stopParsing is called when the connection stops carrying HTTP/1.x
// messages (hijacked for a tunnel).
func (c *sniffConn) stopParsing() {
	c.mu.Lock()
	c.passthrough = true
	c.mu.Unlock()
}

// verdict pops the verdict of the oldest request not yet served; 0 when the
// request is fine or the queue is empty.
func (c *sniffConn) verdict() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vN == 0 {
		return 0
	}
	v := c.verdicts[c.vHead]
	c.vHead = (c.vHead + 1) % len(c.verdicts)
	c.vN--
	return v
}

func (c *sniffConn) push(v int) {
	if c.vN == len(c.verdicts) {
		// A client pipelining this deep gets no more parsing help; refuse
		// the connection rather than lose a verdict.
		c.poisoned = true
		return
	}
	c.verdicts[(c.vHead+c.vN)%len(c.verdicts)] = v
	c.vN++
}

func (c *sniffConn) feed(b []byte) {
	for len(b) > 0 && !c.passthrough {
		switch c.st {
		case stBody, stChunkData:
			n := int64(len(b))
			if n > c.left {
				n = c.left
			}
			b = b[n:]
			c.left -= n
			if c.left == 0 {
				if c.st == stBody {
					c.st = stHead
				} else {
					c.st = stChunkEnd
				}
			}
		default:
			ch := b[0]
			b = b[1:]
			c.lineByte(ch)
		}
	}
}

func (c *sniffConn) lineByte(ch byte) {
	if ch != '\n' {
		if c.lineLen < len(c.line) {
			c.line[c.lineLen] = ch
		}
		c.lineLen++
		c.prevCR = ch == '\r'
		return
	}
	bare := !c.prevCR
	c.prevCR = false
	n := c.lineLen
	if !bare {
		n-- // drop the CR
	}
	c.lineLen = 0
	kept := n
	if kept > len(c.line) {
		kept = len(c.line)
	}
	line := c.line[:kept]
	switch c.st {
	case stHead:
		c.headLine(line, n, bare)
	case stChunkSize:
		c.chunkSize = 0
		digits := false
		for _, d := range line {
			v, ok := hexVal(d)
			if !ok {
				break
			}
			digits = true
			c.chunkSize = c.chunkSize<<4 | int64(v)
			if c.chunkSize > 1<<40 {
				break
			}
		}
		switch {
		case !digits:
			// net/http fails the body read and closes; stop tracking.
			c.passthrough = true
		case c.chunkSize == 0:
			c.st = stTrailer
		default:
			c.left = c.chunkSize
			c.st = stChunkData
		}
	case stChunkEnd:
		c.st = stChunkSize
	case stTrailer:
		if n == 0 {
			c.st = stHead
		}
	}
}

func (c *sniffConn) headLine(line []byte, n int, bare bool) {
	if c.first {
		if n == 0 {
			return // RFC 9112 §2.2: ignore empty lines before the request line
		}
		c.req = reqFlags{}
		c.first = false
		if hasPrefix(line, "PRI * HTTP/2") {
			c.passthrough = true
			return
		}
		c.req.bareLF = bare
		c.req.lineTooLong = c.maxLine > 0 && n > c.maxLine
		c.req.optionsStar = hasPrefix(line, "OPTIONS * ")
		if n <= len(c.line) {
			c.req.http10 = hasSuffix(line, " HTTP/1.0")
		}
		return
	}
	if bare {
		c.req.bareLF = true
	}
	if n == 0 {
		c.endHead()
		return
	}
	if line[0] == ' ' || line[0] == '\t' {
		c.req.obsFold = true
		return
	}
	c.req.nHeaders++
	colon := -1
	for i, b := range line {
		if b == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return
	}
	name, val := line[:colon], trimOWS(line[colon+1:])
	switch {
	case equalFold(name, "content-length"):
		c.req.hasCL = true
		var v int64
		for _, d := range val {
			if d < '0' || d > '9' || v > 1<<50 {
				break
			}
			v = v*10 + int64(d-'0')
		}
		c.req.cl = v
	case equalFold(name, "transfer-encoding"):
		c.req.hasTE = true
		c.req.chunked = equalFold(val, "chunked")
	}
}

func (c *sniffConn) endHead() {
	r := &c.req
	v := 0
	switch {
	case r.lineTooLong:
		v = 414
	case c.maxHeaders > 0 && r.nHeaders > c.maxHeaders:
		v = 431
	case r.hasCL && r.hasTE, r.obsFold, r.http10 && r.hasTE, r.bareLF && !c.allowBareLF:
		v = 400
	}
	if r.optionsStar {
		// net/http answers OPTIONS * itself without calling the handler.
		if v != 0 {
			c.poisoned = true
		}
	} else {
		c.push(v)
	}
	c.first = true
	switch {
	case r.hasTE && !r.http10:
		c.st = stChunkSize
	case r.hasCL && r.cl > 0:
		c.left = r.cl
		c.st = stBody
	default:
		c.st = stHead
	}
}

func hexVal(d byte) (byte, bool) {
	switch {
	case '0' <= d && d <= '9':
		return d - '0', true
	case 'a' <= d && d <= 'f':
		return d - 'a' + 10, true
	case 'A' <= d && d <= 'F':
		return d - 'A' + 10, true
	}
	return 0, false
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }
func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
