// Package echo implements APISIX's echo plugin: it replaces or wraps the
// response body and sets response headers.
package echo

import (
	"encoding/json"
	"fmt"
	"net/textproto"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/vartpl"
)

// Name is the plugin name.
const Name = "echo"

// Priority is APISIX's priority for echo.
const Priority = 412

var schema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"before_body": {"description": "body before the filter phase.", "type": "string"},
		"body": {"description": "body to replace upstream response.", "type": "string"},
		"after_body": {"description": "body after the modification of filter phase.", "type": "string"},
		"headers": {"description": "new headers for response", "type": "object", "minProperties": 1}
	},
	"anyOf": [
		{"required": ["before_body"]},
		{"required": ["body"]},
		{"required": ["after_body"]}
	],
	"minProperties": 1
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Config is echo's configuration.
type Config struct {
	// BeforeBody is sent before the response body.
	BeforeBody *string `json:"before_body"`
	// Body replaces the response body.
	Body *string `json:"body"`
	// AfterBody is sent after the response body.
	AfterBody *string `json:"after_body"`
	// Headers are set on the response (string or number values).
	Headers json.RawMessage `json:"headers"`
}

type header struct{ name, value string }

// Plugin is a built echo instance.
type Plugin struct {
	cfg      Config
	modifies bool
	whole    []byte // before + body + after, when body is set
	before   []byte
	after    []byte
	headers  []header
	// key marks, per request, that before_body was sent.
	key string
}

// New decodes conf. Header values that are not strings or numbers are
// skipped, as APISIX's header_filter stops at them.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	p := &Plugin{}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, err
	}
	c := &p.cfg
	p.modifies = c.Body != nil || c.BeforeBody != nil || c.AfterBody != nil
	if c.BeforeBody != nil {
		p.before = []byte(*c.BeforeBody)
	}
	if c.AfterBody != nil {
		p.after = []byte(*c.AfterBody)
	}
	if c.Body != nil {
		p.whole = append(append(append([]byte{}, p.before...), *c.Body...), p.after...)
	}
	if len(c.Headers) > 0 {
		ms, err := vartpl.Members(c.Headers)
		if err != nil {
			return nil, fmt.Errorf("invalid headers: %w", err)
		}
		for _, m := range ms {
			if v, ok := vartpl.Scalar(m.Value); ok && m.Name != "" {
				p.headers = append(p.headers, header{textproto.CanonicalMIMEHeaderKey(m.Name), v})
			}
		}
	}
	p.key = fmt.Sprintf("%s@%p", Name, p)
	return p, nil
}

// HeaderFilter drops the headers a changed body invalidates and sets the
// configured headers.
func (p *Plugin) HeaderFilter(r *plugin.Request) {
	h := r.W.Header()
	if p.modifies {
		delete(h, "Content-Length")
		delete(h, "Content-Encoding")
		delete(h, "Last-Modified")
		delete(h, "Etag")
	}
	for _, hd := range p.headers {
		h[hd.name] = []string{hd.value}
	}
}

// BodyFilter replaces or wraps the body.
func (p *Plugin) BodyFilter(r *plugin.Request, chunk []byte, eof bool) []byte {
	if p.whole != nil {
		// body replaces the response and ends it; later chunks are dropped.
		if !eof {
			return nil
		}
		return p.whole
	}
	if p.before != nil {
		if started, _ := r.Values[p.key].(bool); !started {
			r.SetValue(p.key, true)
			out := make([]byte, 0, len(p.before)+len(chunk)+len(p.after))
			out = append(append(out, p.before...), chunk...)
			if eof {
				out = append(out, p.after...)
			}
			return out
		}
	}
	if eof && p.after != nil {
		return append(append(make([]byte, 0, len(chunk)+len(p.after)), chunk...), p.after...)
	}
	return chunk
}
