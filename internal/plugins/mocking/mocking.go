// Package mocking implements APISIX's mocking plugin: it answers requests
// with a fixed example or with data generated from a JSON schema, without
// calling the upstream.
package mocking

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/vartpl"
	"github.com/sluice-gw/sluice/internal/version"
)

// Name is the plugin name.
const Name = "mocking"

// Priority is APISIX's priority for mocking.
const Priority = 10900

var schema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"delay": {"type": "integer", "default": 0},
		"response_status": {"type": "integer", "default": 200, "minimum": 100},
		"content_type": {"type": "string", "default": "application/json;charset=utf8"},
		"response_example": {"type": "string"},
		"response_schema": {"type": "object"},
		"with_mock_header": {"type": "boolean", "default": true},
		"response_headers": {"type": "object", "minProperties": 1,
			"patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}}
	},
	"anyOf": [
		{"required": ["response_example"]},
		{"required": ["response_schema"]}
	]
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Config is mocking's configuration.
type Config struct {
	// Delay is how long to wait before answering, in seconds.
	Delay int `json:"delay"`
	// ResponseStatus is the status of the mocked response (200).
	ResponseStatus int `json:"response_status"`
	// ContentType is the Content-Type of the mocked response.
	ContentType string `json:"content_type"`
	// ResponseExample is the body; "$var" references are resolved. It wins
	// over ResponseSchema.
	ResponseExample *string `json:"response_example"`
	// ResponseSchema is a JSON schema to generate a body from.
	ResponseSchema map[string]any `json:"response_schema"`
	// WithMockHeader adds "x-mock-by: APISIX/<version>".
	WithMockHeader bool `json:"with_mock_header"`
	// ResponseHeaders are added to the response; "$var" resolved.
	ResponseHeaders json.RawMessage `json:"response_headers"`
}

var supported = map[string]bool{
	"application/xml":  true,
	"application/json": true,
	"text/plain":       true,
	"text/html":        true,
	"text/xml":         true,
}

// mediaType is mocking.lua's parse_content_type: everything before the
// last ';' when there is one.
func mediaType(ct string) string {
	if i := strings.LastIndexByte(ct, ';'); i >= 0 {
		return ct[:i]
	}
	return ct
}

type header struct{ name, value string }

// Plugin is a built mocking instance.
type Plugin struct {
	cfg     Config
	typ     string
	headers []header
	// key marks requests this instance answered, so HeaderFilter can put
	// back the configured Content-Type that Exit replaced.
	key string
}

// New decodes and checks conf as mocking's check_schema does.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	p := &Plugin{cfg: Config{ResponseStatus: 200, ContentType: "application/json;charset=utf8", WithMockHeader: true}}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, err
	}
	p.typ = mediaType(p.cfg.ContentType)
	if !supported[p.typ] {
		return nil, errors.New("unsupported content type!")
	}
	if len(p.cfg.ResponseHeaders) > 0 {
		ms, err := vartpl.Members(p.cfg.ResponseHeaders)
		if err != nil {
			return nil, fmt.Errorf("invalid response_headers: %w", err)
		}
		for _, m := range ms {
			v, ok := vartpl.Scalar(m.Value)
			if !ok {
				return nil, fmt.Errorf("invalid response_headers: %s is not a string or number", m.Name)
			}
			p.headers = append(p.headers, header{textproto.CanonicalMIMEHeaderKey(m.Name), v})
		}
	}
	p.key = fmt.Sprintf("%s@%p", Name, p)
	return p, nil
}

// Access answers the request with the mocked response.
func (p *Plugin) Access(r *plugin.Request) {
	c := &p.cfg
	body := ""
	if c.ResponseExample != nil {
		body = *c.ResponseExample
	} else {
		body = p.generate()
	}
	h := r.W.Header()
	if c.WithMockHeader {
		h["X-Mock-By"] = []string{"APISIX/" + version.APISIXVersion}
	}
	for _, hd := range p.headers {
		h[hd.name] = append(h[hd.name], vartpl.Resolve(hd.value, r))
	}
	if c.Delay > 0 {
		r.Ctx.Wait(time.Duration(c.Delay) * time.Second)
	}
	r.SetValue(p.key, true)
	r.Exit(c.ResponseStatus, vartpl.Resolve(body, r))
}

// HeaderFilter restores the configured Content-Type on the mocked
// response: plugin.Request.Exit sets text/plain for string bodies, APISIX
// keeps the Content-Type the plugin set.
func (p *Plugin) HeaderFilter(r *plugin.Request) {
	if v, _ := r.Values[p.key].(bool); v {
		r.W.Header()["Content-Type"] = []string{p.cfg.ContentType}
	}
}

// generate builds a body from response_schema: JSON for json and
// text/plain, XML with root "data" for xml types, "" otherwise.
func (p *Plugin) generate() string {
	out := genObject(p.cfg.ResponseSchema)
	switch p.typ {
	case "application/xml", "text/xml":
		var b strings.Builder
		b.WriteString("<data>")
		writeXML(&b, out, 1)
		b.WriteString("\n</data>\n")
		return b.String()
	case "application/json", "text/plain":
		j, err := json.Marshal(out)
		if err != nil {
			return ""
		}
		return string(j)
	}
	return ""
}

func genObject(s map[string]any) map[string]any {
	out := map[string]any{}
	props, _ := s["properties"].(map[string]any)
	for k, v := range props {
		ps, _ := v.(map[string]any)
		if g := genProperty(ps); g != nil {
			out[k] = g
		}
	}
	return out
}

func genProperty(s map[string]any) any {
	typ, _ := s["type"].(string)
	ex := s["example"]
	switch strings.ToLower(typ) {
	case "array":
		items, ok := s["items"].(map[string]any)
		if !ok {
			return nil
		}
		n := rand.IntN(3) + 1
		arr := make([]any, 0, n)
		for i := 0; i < n; i++ {
			if g := genProperty(items); g != nil {
				arr = append(arr, g)
			}
		}
		return arr
	case "object":
		return genObject(s)
	case "string":
		if e, ok := ex.(string); ok {
			return e
		}
		b := make([]byte, rand.IntN(10)+1)
		for i := range b {
			b[i] = byte('a' + rand.IntN(26))
		}
		return string(b)
	case "number":
		if e, ok := ex.(float64); ok {
			return e
		}
		return rand.Float64() * 10000
	case "integer":
		if e, ok := ex.(float64); ok {
			return int64(math.Floor(e))
		}
		return int64(rand.IntN(10000) + 1)
	case "boolean":
		if e, ok := ex.(bool); ok {
			return e
		}
		return rand.IntN(2) == 1
	}
	return nil
}

// writeXML renders v the way xml2lua.toXml lays out a table: one element
// per line, two spaces per level, arrays as repeated elements.
func writeXML(b *strings.Builder, m map[string]any, level int) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		writeXMLValue(b, k, m[k], level)
	}
}

func writeXMLValue(b *strings.Builder, k string, v any, level int) {
	indent := strings.Repeat("  ", level)
	switch x := v.(type) {
	case map[string]any:
		b.WriteString("\n" + indent + "<" + k + ">")
		writeXML(b, x, level+1)
		b.WriteString("\n" + indent + "</" + k + ">")
	case []any:
		for _, e := range x {
			writeXMLValue(b, k, e, level)
		}
	default:
		b.WriteString("\n" + indent + "<" + k + ">" + xmlScalar(x) + "</" + k + ">")
	}
}

func xmlScalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return vartpl.LuaNumber(x)
	case int64:
		return fmt.Sprint(x)
	case bool:
		if x {
			return "true"
		}
		return "false"
	}
	return ""
}
