package fast

import (
	"bufio"
	"io"

	"github.com/sluice-gw/sluice/internal/engine"
)

// eofBody is the Body of requests without one; a value, so storing it in
// the Ctx allocates nothing.
type eofBody struct{}

func (eofBody) Read([]byte) (int, error) { return 0, io.EOF }
func (eofBody) Close() error             { return nil }

// body reads a request body straight from the connection's bufio.Reader:
// Content-Length or chunked framing, the body size limit, the deferred
// "100 Continue" and request trailers. It never buffers more than bufio
// already holds.
type body struct {
	cn      *conn
	br      *bufio.Reader
	chunked bool
	left    int64 // CL bytes, or bytes of the current chunk, still to read
	limit   int64 // bytes the limit still allows; <0 = unlimited
	done    bool  // EOF reached (all framing consumed)
	err     error // sticky framing error
	closed  bool
	// continue100 is set while a "100 Continue" is owed on first read.
	continue100 bool
	// chunk state
	inChunk bool
	line    []byte
	// tr receives trailer fields (nil: they are parsed and dropped).
	tr engine.Header
}

func (b *body) reset(cn *conn, br *bufio.Reader) {
	*b = body{cn: cn, br: br, line: b.line[:0], limit: -1}
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done || b.closed {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.continue100 {
		b.continue100 = false
		b.cn.sendContinue()
	}
	if !b.chunked {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			b.done = true
			err = nil
			if n == 0 {
				err = io.EOF
			}
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			b.err = err
		}
		return n, err
	}
	return b.readChunked(p)
}

func (b *body) fail(err error) (int, error) {
	b.err = err
	return 0, err
}

func (b *body) readChunked(p []byte) (int, error) {
	for !b.inChunk || b.left == 0 {
		if b.inChunk {
			// CRLF after chunk data; anything else is a framing error
			// (CVE-2025-22871 class: no bare LF).
			c1, err := b.br.ReadByte()
			if err != nil {
				return b.fail(io.ErrUnexpectedEOF)
			}
			c2, err := b.br.ReadByte()
			if err != nil {
				return b.fail(io.ErrUnexpectedEOF)
			}
			if c1 != '\r' || c2 != '\n' {
				return b.fail(errMalformedChunks)
			}
			b.inChunk = false
		}
		size, err := b.chunkSize()
		if err != nil {
			return b.fail(err)
		}
		if size == 0 {
			if err := b.readTrailers(); err != nil {
				return b.fail(err)
			}
			b.done = true
			return 0, io.EOF
		}
		b.inChunk = true
		b.left = size
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	if b.limit >= 0 {
		if b.limit == 0 {
			return b.fail(engine.ErrBodyTooLarge)
		}
		if int64(len(p)) > b.limit {
			p = p[:b.limit]
		}
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if b.limit >= 0 {
		b.limit -= int64(n)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
		if n > 0 {
			return n, nil
		}
	}
	return n, err
}

// chunkSize parses "hex[;ext]CRLF" as net/http's chunked reader does (and
// as nginx, extensions are skipped whatever they hold): CRLF required and
// no other CR, the line under 4 KiB, trailing blanks dropped, then
// everything from ';' on ignored, leaving 1-16 hex digits (a size past
// 2^63-1 is refused).
func (b *body) chunkSize() (int64, error) {
	var bare bool
	line, _, err := readLine(b.br, &b.line, 4096, false, &bare)
	if err != nil {
		if err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, errMalformedChunks
	}
	if len(line) >= 4096 {
		return 0, errMalformedChunks
	}
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	for i, c := range line {
		if c == '\r' {
			return 0, errMalformedChunks
		}
		if c == ';' {
			for _, c := range line[i:] {
				if c == '\r' {
					return 0, errMalformedChunks
				}
			}
			line = line[:i]
			break
		}
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, errMalformedChunks
	}
	var n uint64
	for _, c := range line {
		v, ok := hexVal(c)
		if !ok {
			return 0, errMalformedChunks
		}
		n = n<<4 | uint64(v)
	}
	if n > 1<<63-1 {
		return 0, errMalformedChunks
	}
	return int64(n), nil
}

// readTrailers reads the trailer section after the last chunk into the
// request's Trailer map (when the client declared trailers), as net/http
// merges them into Request.Trailer.
func (b *body) readTrailers() error {
	for n := 0; ; n++ {
		var bare bool
		// Trailer lines may end in a bare LF, as net/http (textproto)
		// accepts there; chunk-size lines may not.
		line, _, err := readLine(b.br, &b.line, 8192, true, &bare)
		if err != nil {
			return errMalformedChunks
		}
		if len(line) == 0 {
			return nil
		}
		if n > 100 {
			return errMalformedChunks
		}
		name, v, ok := splitField(line)
		if !ok {
			return errMalformedChunks
		}
		if b.tr == nil {
			continue
		}
		key := string(canonicalKey(nil, name))
		b.tr[key] = append(b.tr[key], string(v))
	}
}

// splitField splits a header or trailer field line into its name and its
// value without surrounding white space, with the strict rules both the
// upstream response reader and the chunked-body trailer reader apply: ok
// is false when the name is empty or not a token (white space before the
// colon included) or the value holds bytes a field value may not.
func splitField(line []byte) (name, value []byte, ok bool) {
	colon := -1
	for i, c := range line {
		if c == ':' {
			colon = i
			break
		}
		if !tokenTable[c] {
			return nil, nil, false
		}
	}
	if colon <= 0 {
		return nil, nil, false
	}
	value = trimOWS(line[colon+1:])
	if !validValue(value) {
		return nil, nil, false
	}
	return line[:colon], value, true
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

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
