// Package csrf implements APISIX's csrf plugin (double-submit cookie):
// every response carries a signed token cookie, and requests with an unsafe
// method must send the same token in a header. Tokens have APISIX's exact
// format, so a token issued by APISIX verifies here and the other way
// round, given the same key.
package csrf

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name.
const Name = "csrf"

// Priority is APISIX's priority for csrf.
const Priority = 2980

var schemaDoc = json.RawMessage(`{
  "type": "object",
  "properties": {
    "key": {"description": "use to generate csrf token", "type": "string"},
    "expires": {"description": "expires time(s) for csrf token", "type": "integer", "default": 7200},
    "name": {"description": "the csrf token name", "type": "string", "default": "apisix-csrf-token"}
  },
  "required": ["key"]
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:          Name,
		Priority:      Priority,
		Schema:        schemaDoc,
		EncryptFields: []string{"key"},
		New:           func(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) { return New(conf) },
	}
}

// Config is the plugin configuration, with APISIX's defaults.
type Config struct {
	// Key is the secret mixed into each token's signature.
	Key string `json:"key"`
	// Expires is the token lifetime in seconds; 0 or less never expires.
	Expires int64 `json:"expires"`
	// Name is the cookie and header name carrying the token.
	Name string `json:"name"`
}

// Rejection bodies, exactly as APISIX sends them.
var (
	errNoHeader  = map[string]string{"error_msg": "no csrf token in headers"}
	errNoCookie  = map[string]string{"error_msg": "no csrf cookie"}
	errMismatch  = map[string]string{"error_msg": "csrf token mismatch"}
	errSignature = map[string]string{"error_msg": "Failed to verify the csrf token signature"}
)

// Plugin is a configured csrf instance.
type Plugin struct {
	conf      Config
	header    string // canonical header key of conf.Name
	cookieVar string // "cookie_" + conf.Name
	// now is the clock; tests replace it.
	now func() time.Time
}

// New decodes conf with APISIX's defaults.
func New(conf json.RawMessage) (*Plugin, error) {
	c := Config{Expires: 7200, Name: "apisix-csrf-token"}
	if err := json.Unmarshal(conf, &c); err != nil {
		return nil, fmt.Errorf("invalid conf: %w", err)
	}
	var present struct {
		Key *string `json:"key"`
	}
	if json.Unmarshal(conf, &present) != nil || present.Key == nil {
		return nil, errors.New(`property "key" is required`)
	}
	return &Plugin{
		conf:      c,
		header:    canonical(c.Name),
		cookieVar: "cookie_" + c.Name,
		now:       time.Now,
	}, nil
}

// canonical returns the canonical MIME header key of name, as the engine
// stores request headers.
func canonical(name string) string {
	b := []byte(name)
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 32
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
		upper = c == '-'
	}
	return string(b)
}

// Access lets GET, HEAD and OPTIONS through and checks every other method
// for a header token equal to the cookie token with a valid signature.
func (p *Plugin) Access(r *plugin.Request) {
	switch r.Method {
	case "GET", "HEAD", "OPTIONS":
		return
	}
	var headerToken string
	if vs := r.Header[p.header]; len(vs) > 0 {
		headerToken = vs[0]
	}
	if headerToken == "" {
		r.Exit(401, errNoHeader)
		return
	}
	cookieToken, ok := r.Var(p.cookieVar)
	if !ok {
		r.Exit(401, errNoCookie)
		return
	}
	if headerToken != cookieToken {
		r.Exit(401, errMismatch)
		return
	}
	if err := p.verify(cookieToken); err != nil {
		if r.Env != nil && r.Env.Logger != nil {
			r.Env.Logger.Warn("csrf token rejected", "reason", err.Error())
		}
		r.Exit(401, errSignature)
	}
}

// HeaderFilter adds a fresh token cookie to every response, as APISIX
// does.
func (p *Plugin) HeaderFilter(r *plugin.Request) {
	now := p.now()
	tok := p.token(rand.Float64(), now.Unix())
	b := make([]byte, 0, len(p.conf.Name)+len(tok)+64)
	b = append(b, p.conf.Name...)
	b = append(b, '=')
	b = append(b, tok...)
	b = append(b, ";path=/;SameSite=Lax;Expires="...)
	b = appendCookieTime(b, now.Unix()+p.conf.Expires)
	r.W.Header().Add("Set-Cookie", string(b))
}

// luaNumber formats a number as Lua's tostring (and lua-cjson) do: "%.14g".
func luaNumber(f float64) string {
	return strconv.FormatFloat(f, 'g', 14, 64)
}

// sign is APISIX's gen_sign: hex SHA-256 of
// "{expires:<expires>,random:<random>,key:<key>}".
func sign(random, expires, key string) string {
	h := sha256.New()
	h.Write([]byte("{expires:"))
	h.Write([]byte(expires))
	h.Write([]byte(",random:"))
	h.Write([]byte(random))
	h.Write([]byte(",key:"))
	h.Write([]byte(key))
	h.Write([]byte("}"))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// token builds a token: base64 of the JSON {random, expires, sign} that
// APISIX's gen_csrf_token encodes. expires is the issue time (APISIX's
// naming); numbers are written as lua-cjson writes them.
func (p *Plugin) token(random float64, issued int64) string {
	rs := luaNumber(random)
	es := strconv.FormatInt(issued, 10)
	js := `{"random":` + rs + `,"expires":` + es + `,"sign":"` + sign(rs, es, p.conf.Key) + `"}`
	return base64.StdEncoding.EncodeToString([]byte(js))
}

// verify is APISIX's check_csrf_token; the error says why, for the log
// only (the client always gets the same message).
func (p *Plugin) verify(tok string) error {
	raw, err := decodeBase64(tok)
	if err != nil {
		return errors.New("csrf token base64 decode error")
	}
	// Raw members keep Lua's view of them: a string is used as is, a
	// number as Lua prints it.
	var t struct {
		Random  json.RawMessage `json:"random"`
		Expires json.RawMessage `json:"expires"`
		Sign    json.RawMessage `json:"sign"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode token error: %w", err)
	}
	random, ok := luaString(t.Random)
	if !ok {
		return errors.New("no random in token")
	}
	expires, ok := luaString(t.Expires)
	if !ok {
		return errors.New("no expires in token")
	}
	issued, err := strconv.ParseFloat(expires, 64)
	if err != nil {
		return errors.New("no expires in token")
	}
	if p.conf.Expires > 0 && float64(p.now().Unix())-issued > float64(p.conf.Expires) {
		return errors.New("token has expired")
	}
	var got string
	_ = json.Unmarshal(t.Sign, &got)
	want := sign(random, expires, p.conf.Key)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errors.New("Invalid signatures")
	}
	return nil
}

// luaString is what Lua's ".." makes of a decoded JSON member: a string
// as it is, a number as "%.14g"; anything else (absent, null, objects)
// cannot be used.
func luaString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case c == '-' || ('0' <= c && c <= '9'):
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return "", false
		}
		return luaNumber(f), true
	}
	return "", false
}

// decodeBase64 decodes like nginx's ngx_decode_base64: standard alphabet,
// padding optional, anything from the first '=' on ignored.
func decodeBase64(s string) ([]byte, error) {
	if i := strings.IndexByte(s, '='); i >= 0 {
		s = s[:i]
	}
	if len(s)%4 == 1 {
		return nil, errors.New("bad length")
	}
	return base64.RawStdEncoding.DecodeString(s)
}

var (
	weekdays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	months   = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// appendCookieTime appends t as nginx's ngx.cookie_time does:
// "Thu, 18-Nov-10 11:27:35 GMT" (two-digit years up to 2037).
func appendCookieTime(b []byte, unix int64) []byte {
	t := time.Unix(unix, 0).UTC()
	b = append(b, weekdays[t.Weekday()]...)
	b = append(b, ", "...)
	b = append2(b, t.Day())
	b = append(b, '-')
	b = append(b, months[t.Month()-1]...)
	b = append(b, '-')
	if y := t.Year(); y > 2037 {
		b = strconv.AppendInt(b, int64(y), 10)
	} else {
		b = append2(b, y%100)
	}
	b = append(b, ' ')
	b = append2(b, t.Hour())
	b = append(b, ':')
	b = append2(b, t.Minute())
	b = append(b, ':')
	b = append2(b, t.Second())
	return append(b, " GMT"...)
}

func append2(b []byte, n int) []byte {
	return append(b, byte('0'+n/10%10), byte('0'+n%10))
}
