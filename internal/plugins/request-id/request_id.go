// Package requestid implements APISIX's request-id plugin: every request
// gets an id in a header (X-Request-Id by default), generated unless the
// client sent one, forwarded upstream and echoed in the response.
package requestid

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net/textproto"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name used in configs.
const Name = "request-id"

// Priority is APISIX's priority for request-id.
const Priority = 12015

// defaultCharSet is APISIX's range_id default, including its typo
// ("HIGK": no J, two G), kept so ids look the same.
const defaultCharSet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"

// schema transcribes apisix/plugins/request-id.lua.
const schema = `{
 "type":"object",
 "properties":{
  "header_name":{"type":"string","default":"X-Request-Id"},
  "include_in_response":{"type":"boolean","default":true},
  "algorithm":{"type":"string","enum":["uuid","nanoid","range_id","ksuid","uuidv7"],"default":"uuid"},
  "range_id":{
   "type":"object",
   "properties":{
    "length":{"type":"integer","minimum":6,"default":16},
    "char_set":{"type":"string","minLength":6,"default":"` + defaultCharSet + `"}
   },
   "default":{"length":16,"char_set":"` + defaultCharSet + `"}
  }
 }
}`

// RangeID configures the range_id algorithm.
type RangeID struct {
	// Length is the id length in characters.
	Length int `json:"length"`
	// CharSet is the alphabet ids are drawn from.
	CharSet string `json:"char_set"`
}

// Config is the route-side conf.
type Config struct {
	// HeaderName is the request and response header carrying the id.
	HeaderName string `json:"header_name"`
	// IncludeInResponse echoes the id in the response.
	IncludeInResponse bool `json:"include_in_response"`
	// Algorithm is uuid (v4), uuidv7, nanoid, range_id or ksuid.
	Algorithm string `json:"algorithm"`
	// RangeID configures range_id.
	RangeID RangeID `json:"range_id"`
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: Priority,
		Schema:   json.RawMessage(schema),
		New:      New,
	}
}

// Plugin is a built request-id instance.
type Plugin struct {
	header   string // canonical header key
	valueKey string // the variable the id is kept in for header_filter
	response bool
	gen      func() string
}

// New decodes conf with APISIX's defaults.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	c := Config{
		HeaderName:        "X-Request-Id",
		IncludeInResponse: true,
		Algorithm:         "uuid",
		RangeID:           RangeID{Length: 16, CharSet: defaultCharSet},
	}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("decode conf: %w", err)
	}
	// A range_id object without some fields gets their defaults (the
	// schema's nested defaults).
	if c.RangeID.Length == 0 {
		c.RangeID.Length = 16
	}
	if c.RangeID.CharSet == "" {
		c.RangeID.CharSet = defaultCharSet
	}
	p := &Plugin{
		header:   textproto.CanonicalMIMEHeaderKey(c.HeaderName),
		response: c.IncludeInResponse,
	}
	p.valueKey = "request-id-" + p.header
	switch c.Algorithm {
	case "uuid", "":
		p.gen = UUIDv4
	case "uuidv7":
		p.gen = UUIDv7
	case "nanoid":
		p.gen = NanoID
	case "ksuid":
		p.gen = KSUID
	case "range_id":
		n, cs := c.RangeID.Length, c.RangeID.CharSet
		p.gen = func() string { return RangeIDString(n, cs) }
	default:
		return nil, fmt.Errorf("unknown algorithm %q", c.Algorithm)
	}
	return p, nil
}

// Rewrite keeps a non-empty incoming id, or generates one and sets it on
// the request forwarded upstream; either way the id is remembered for the
// response and $apisix_request_id.
func (p *Plugin) Rewrite(r *plugin.Request) {
	id := ""
	if vv := r.Header[p.header]; len(vv) > 0 {
		id = vv[0]
	}
	if id == "" {
		id = p.gen()
		r.Header[p.header] = []string{id}
	}
	if p.response {
		// Kept as a variable rather than in Values: the vars slice keeps
		// its capacity across pooled requests, so this does not allocate.
		r.SetVar(p.valueKey, id)
	}
	r.SetVar("apisix_request_id", id)
}

// HeaderFilter adds the id to the response unless the upstream already set
// a non-empty value.
func (p *Plugin) HeaderFilter(r *plugin.Request) {
	if !p.response {
		return
	}
	h := r.W.Header()
	if vv := h[p.header]; len(vv) > 0 && vv[0] != "" {
		return
	}
	if id, ok := r.Var(p.valueKey); ok && id != "" {
		h[p.header] = []string{id}
	}
}

const hexDigits = "0123456789abcdef"

func formatUUID(b *[16]byte) string {
	var s [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[c>>4], hexDigits[c&0xf]
		j += 2
	}
	return string(s[:])
}

// UUIDv4 returns a random (version 4) UUID in the canonical lower-case
// form, from crypto/rand.
func UUIDv4() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(&b)
}

// UUIDv7 returns a time-ordered (version 7) UUID: 48 bits of Unix
// milliseconds, then random bits.
func UUIDv7() string {
	var b [16]byte
	rand.Read(b[6:])
	ms := uint64(time.Now().UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(&b)
}

// nanoidAlphabet has 64 characters, so 6 random bits pick one without bias.
const nanoidAlphabet = "-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// NanoID returns a 21-character nanoid from crypto/rand.
func NanoID() string {
	var b [21]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = nanoidAlphabet[b[i]&63]
	}
	return string(b[:])
}

// RangeIDString returns n characters drawn uniformly from charSet. Like
// APISIX (math.random) it uses a fast non-cryptographic generator: these
// ids are for correlation, not secrets.
func RangeIDString(n int, charSet string) string {
	var buf [64]byte
	b := buf[:0]
	if n > len(buf) {
		b = make([]byte, n)
	} else {
		b = buf[:n]
	}
	for i := range b {
		b[i] = charSet[mrand.IntN(len(charSet))]
	}
	return string(b)
}

// ksuidEpoch is KSUID's epoch (2014-05-13T16:53:20Z).
const ksuidEpoch = 1400000000

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// KSUID returns a 27-character KSUID: a 32-bit timestamp (seconds since
// the KSUID epoch) and 128 random bits, base62-encoded, zero-padded.
func KSUID() string {
	var b [20]byte
	binary.BigEndian.PutUint32(b[:4], uint32(time.Now().Unix()-ksuidEpoch))
	rand.Read(b[4:])
	n := new(big.Int).SetBytes(b[:])
	var out [27]byte
	for i := range out {
		out[i] = '0'
	}
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := len(out) - 1; i >= 0 && n.Sign() > 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	return string(out[:])
}
