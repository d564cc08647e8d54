package encoding

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
)

// TypesSchema is the JSON Schema of the "types" field gzip and brotli
// share (APISIX transcribes the same definition into both plugins).
const TypesSchema = `{
			"anyOf": [
				{"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
				{"enum": ["*"]}
			],
			"default": ["text/html"]
		}`

// Qualifies runs the checks gzip and brotli both make on a response
// before compressing it, in APISIX's order: its Content-Type is one of
// the types, its Content-Length (when known) is at least minLength, and
// the request's HTTP version is at least httpVersion.
func Qualifies(h engine.Header, proto string, m TypeMatcher, minLength int, httpVersion float64) bool {
	if !m.Match(h.Get("Content-Type")) {
		return false
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n < int64(minLength) {
			return false
		}
	}
	return ProtoVersion(proto) >= httpVersion
}

// Encoder is a streaming compressor that can be reset onto a new output,
// as *gzip.Writer and brotli's *Writer are; resetting is what lets one
// (large) encoder serve many responses through a pool.
type Encoder interface {
	io.WriteCloser
	Flush() error
	Reset(w io.Writer)
}

// Stream is one response's encoder and output buffer. Bodyless marks a
// response whose headers announce the encoding but that carries no body
// (HEAD, 204, 304): Filter then writes nothing, not even a trailer.
type Stream struct {
	buf      bytes.Buffer
	enc      Encoder
	Bodyless bool
}

// SharedPool returns the pool of streams kept in shared under key,
// creating it with encoders from mk. Keeping it in plugin.Shared shares it
// by every instance with the same settings and across snapshots, so a
// config change does not throw warm encoders away. shared may be nil
// (validation), which gives a private pool.
func SharedPool(shared *plugin.Shared, key string, mk func(w io.Writer) Encoder) *sync.Pool {
	return shared.LoadOrStore(key, func() any {
		return &sync.Pool{New: func() any {
			s := new(Stream)
			s.enc = mk(&s.buf)
			return s
		}}
	}).(*sync.Pool)
}

// Start takes a stream from pool, resets it and keeps it in the request's
// values under key, where Filter finds it.
func Start(r *plugin.Request, pool *sync.Pool, key string) *Stream {
	s := pool.Get().(*Stream)
	s.buf.Reset()
	s.enc.Reset(&s.buf)
	s.Bodyless = false
	r.SetValue(key, s)
	return s
}

// Filter is the body filter of a response Start was called for (other
// responses pass through): it compresses each chunk and flushes it, so
// streamed responses (SSE, long polls) reach the client as they arrive,
// and at eof closes the encoder and returns the stream to pool.
func Filter(r *plugin.Request, pool *sync.Pool, key string, chunk []byte, eof bool) []byte {
	v, ok := r.Values[key]
	if !ok || v == nil {
		return chunk
	}
	s := v.(*Stream)
	s.buf.Reset()
	if len(chunk) > 0 && !s.Bodyless {
		_, _ = s.enc.Write(chunk)
		if !eof {
			_ = s.enc.Flush()
		}
	}
	if eof {
		var out []byte
		if !s.Bodyless {
			_ = s.enc.Close()
			out = append([]byte(nil), s.buf.Bytes()...)
		}
		r.Values[key] = nil
		pool.Put(s)
		return out
	}
	return s.buf.Bytes()
}

// Compressor is the per-instance state gzip and brotli share: the key of
// the request value holding a response's Stream (its own per instance, so
// both plugins, or two instances, on one request never share a stream)
// and the shared encoder pool. A plugin embeds it and so gets its
// BodyFilter.
type Compressor struct {
	key  string
	pool *sync.Pool
}

// NewCompressor returns the state of one instance of the plugin name, its
// encoders from the pool kept under poolKey in env's Shared (SharedPool;
// env may be nil, for validation), made by mk when the pool is empty.
func NewCompressor(name string, env *plugin.BuildEnv, poolKey string, mk func(w io.Writer) Encoder) *Compressor {
	c := &Compressor{}
	c.key = fmt.Sprintf("%s@%p", name, c)
	var shared *plugin.Shared
	if env != nil {
		shared = env.Shared
	}
	c.pool = SharedPool(shared, poolKey, mk)
	return c
}

// Start compresses the current response: see the function Start.
func (c *Compressor) Start(r *plugin.Request) *Stream { return Start(r, c.pool, c.key) }

// BodyFilter compresses each chunk of a response Start was called for and
// flushes it, so streamed responses (SSE, long polls) reach the client as
// they arrive, as APISIX does; see Filter.
func (c *Compressor) BodyFilter(r *plugin.Request, chunk []byte, eof bool) []byte {
	return Filter(r, c.pool, c.key, chunk, eof)
}
