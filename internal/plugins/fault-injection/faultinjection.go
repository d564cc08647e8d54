// Package faultinjection implements APISIX's fault-injection plugin: it
// delays requests and/or aborts them with a fixed response, each for a
// percentage of requests and optionally only when vars expressions match.
package faultinjection

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/textproto"
	"time"

	"github.com/sluice-gw/sluice/internal/expr"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/vartpl"
)

// Name is the plugin name.
const Name = "fault-injection"

// Priority is APISIX's priority for fault-injection.
const Priority = 11000

const varsSchema = `{"type": "array", "maxItems": 20, "items": {"type": "array"}}`

var schema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"abort": {
			"type": "object",
			"properties": {
				"http_status": {"type": "integer", "minimum": 200},
				"body": {"type": "string", "minLength": 0},
				"headers": {"type": "object", "minProperties": 1,
					"patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}},
				"percentage": {"type": "integer", "minimum": 0, "maximum": 100},
				"vars": ` + varsSchema + `
			},
			"required": ["http_status"]
		},
		"delay": {
			"type": "object",
			"properties": {
				"duration": {"type": "number", "minimum": 0},
				"percentage": {"type": "integer", "minimum": 0, "maximum": 100},
				"vars": ` + varsSchema + `
			},
			"required": ["duration"]
		}
	},
	"minProperties": 1
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Abort is the abort half of the configuration.
type Abort struct {
	// HTTPStatus is the status to answer with.
	HTTPStatus int `json:"http_status"`
	// Body is the response body; "$var" references are resolved. Absent:
	// nginx's page for the status.
	Body *string `json:"body"`
	// Headers are response headers; string values resolve "$var".
	Headers json.RawMessage `json:"headers"`
	// Percentage of requests aborted; absent means all.
	Percentage *int `json:"percentage"`
	// Vars is a list of lua-resty-expr expressions, any of which must match.
	Vars []json.RawMessage `json:"vars"`
}

// Delay is the delay half of the configuration.
type Delay struct {
	// Duration is the delay in seconds.
	Duration float64 `json:"duration"`
	// Percentage of requests delayed; absent means all.
	Percentage *int `json:"percentage"`
	// Vars is a list of lua-resty-expr expressions, any of which must match.
	Vars []json.RawMessage `json:"vars"`
}

// Config is fault-injection's configuration.
type Config struct {
	Abort *Abort `json:"abort"`
	Delay *Delay `json:"delay"`
}

// cond is a compiled percentage + vars condition.
type cond struct {
	pct     int // -1: always
	hasVars bool
	vars    []*expr.Expr
}

func (c *cond) hit(r *plugin.Request) bool {
	if c.hasVars {
		// APISIX ORs the expressions; an empty list matches nothing.
		ok := false
		for _, e := range c.vars {
			if e.Eval(r) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return c.pct < 0 || rand.IntN(100)+1 <= c.pct
}

type header struct{ name, value string }

// Plugin is a built fault-injection instance.
type Plugin struct {
	abort    *Abort
	abortIf  cond
	headers  []header
	delay    time.Duration
	delayIf  cond
	hasDelay bool
	// ctKey marks requests this instance aborted, so HeaderFilter can put
	// back a configured Content-Type that Exit replaced.
	ctKey string
	ct    string
}

// withCT is the instance type when abort.headers sets Content-Type.
type withCT struct{ *Plugin }

func compileCond(pct *int, vars []json.RawMessage) (cond, error) {
	c := cond{pct: -1, hasVars: vars != nil}
	if pct != nil {
		c.pct = *pct
	}
	for _, raw := range vars {
		e, err := expr.Compile(raw)
		if err != nil {
			return c, err
		}
		c.vars = append(c.vars, e)
	}
	return c, nil
}

// New decodes and checks conf as fault-injection's check_schema does.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	var cfg Config
	if err := json.Unmarshal(conf, &cfg); err != nil {
		return nil, err
	}
	p := &Plugin{abort: cfg.Abort}
	var err error
	if a := cfg.Abort; a != nil {
		if p.abortIf, err = compileCond(a.Percentage, a.Vars); err != nil {
			return nil, err
		}
		if len(a.Headers) > 0 {
			ms, err := vartpl.Members(a.Headers)
			if err != nil {
				return nil, fmt.Errorf("invalid abort.headers: %w", err)
			}
			for _, m := range ms {
				v, ok := vartpl.Scalar(m.Value)
				if !ok {
					return nil, fmt.Errorf("invalid abort.headers: %s is not a string or number", m.Name)
				}
				name := textproto.CanonicalMIMEHeaderKey(m.Name)
				p.headers = append(p.headers, header{name, v})
				if name == "Content-Type" {
					p.ct = v
				}
			}
		}
	}
	if d := cfg.Delay; d != nil {
		if p.delayIf, err = compileCond(d.Percentage, d.Vars); err != nil {
			return nil, err
		}
		p.hasDelay = true
		p.delay = time.Duration(d.Duration * float64(time.Second))
	}
	if p.ct != "" {
		p.ctKey = fmt.Sprintf("%s@%p", Name, p)
		return withCT{p}, nil
	}
	return p, nil
}

// Rewrite delays first, then aborts, as APISIX does.
func (p *Plugin) Rewrite(r *plugin.Request) {
	if p.hasDelay && p.delayIf.hit(r) && p.delay > 0 {
		if !r.Ctx.Wait(p.delay) {
			r.Exit(499, "") // the client left during the delay
			return
		}
	}
	if p.abort == nil || !p.abortIf.hit(r) {
		return
	}
	h := r.W.Header()
	for _, hd := range p.headers {
		h[hd.name] = []string{vartpl.Resolve(hd.value, r)}
	}
	if p.ctKey != "" {
		r.SetValue(p.ctKey, true)
	}
	if p.abort.Body == nil {
		r.Exit(p.abort.HTTPStatus, nil)
		return
	}
	r.Exit(p.abort.HTTPStatus, vartpl.Resolve(*p.abort.Body, r))
}

// HeaderFilter restores the configured Content-Type on responses this
// instance produced: plugin.Request.Exit sets text/plain for string bodies,
// APISIX keeps what the plugin set.
func (p withCT) HeaderFilter(r *plugin.Request) {
	if v, _ := r.Values[p.ctKey].(bool); v {
		r.W.Header()["Content-Type"] = []string{vartpl.Resolve(p.ct, r)}
	}
}
