// Package limitconn implements APISIX's limit-conn plugin: at most conn
// concurrent requests per key, up to burst more delayed, the rest
// rejected. The count goes up in access and down in log; the log phase runs
// for every request that passed access, whatever happened upstream or to
// the client, so every increment is undone. Only the local policy runs;
// redis policies are accepted by the schema but refused until a Redis
// backend exists.
package limitconn

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/limitconf"
	"github.com/sluice-gw/sluice/internal/plugins/limit-count/limitkit"
)

// Name is the plugin name.
const Name = "limit-conn"

// Priority is APISIX's priority for limit-conn.
const Priority = 1003

// valueKey is where a request keeps the counters it incremented
// (engine.Ctx.Values), for the log phase to decrement.
const valueKey = "limit-conn"

// sweepInterval bounds how often idle keys are dropped.
const sweepInterval = 10 * time.Second

// retired marks a counter that a sweep removed; increments that land on it
// stay negative and retry on a fresh counter.
const retired = math.MinInt64 / 2

const connType = `{"oneOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}]}`
const burstType = `{"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}`

// schema transcribes apisix/plugins/limit-conn.lua. The "if"s also require
// policy: the Lua validator fills in the default before evaluating them.
const schema = `{
    "type": "object",
    "properties": {
        "conn": ` + connType + `,
        "burst": ` + burstType + `,
        "default_conn_delay": {"type": "number", "exclusiveMinimum": 0},
        "only_use_default_delay": {"type": "boolean", "default": false},
        "key": {"type": "string"},
        "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
        "policy": {"type": "string", "enum": ["redis", "redis-cluster", "local"], "default": "local"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
        "rejected_msg": {"type": "string", "minLength": 1},
        "allow_degradation": {"type": "boolean", "default": false},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "conn": ` + connType + `,
                    "burst": ` + burstType + `,
                    "key": {"type": "string"}
                },
                "required": ["conn", "burst", "key"]
            }
        }
    },
    "oneOf": [
        {"required": ["conn", "burst", "default_conn_delay", "key"]},
        {"required": ["default_conn_delay", "rules"]}
    ],
    ` + limitconf.RedisPoliciesKeyTTL + `
}`

// Rule is one entry of the rules field.
type Rule struct {
	Conn  json.RawMessage `json:"conn"`
	Burst json.RawMessage `json:"burst"`
	Key   string          `json:"key"`
}

// Config is limit-conn's conf with APISIX's defaults.
type Config struct {
	Conn                json.RawMessage `json:"conn,omitempty"`
	Burst               json.RawMessage `json:"burst,omitempty"`
	DefaultConnDelay    float64         `json:"default_conn_delay"`
	OnlyUseDefaultDelay bool            `json:"only_use_default_delay"`
	Key                 string          `json:"key"`
	KeyType             string          `json:"key_type"`
	Policy              string          `json:"policy"`
	RejectedCode        int             `json:"rejected_code"`
	RejectedMsg         *string         `json:"rejected_msg,omitempty"`
	AllowDegradation    bool            `json:"allow_degradation"`
	Rules               []Rule          `json:"rules,omitempty"`
}

type rule struct {
	conn, burst limitkit.Num
	key         limitkit.Key
	keyTpl      *limitkit.Template // rules only
}

// Plugin is a built limit-conn instance.
type Plugin struct {
	conf    Config
	rules   []rule
	hasRule bool
	delay   float64 // default_conn_delay, seconds
	body    any
	handle  *limitkit.Handle[counter]
}

// counter is one key's number of requests in flight.
type counter struct{ n atomic.Int64 }

// pending lists the counters one request incremented; pooled so requests
// do not allocate it.
type pending struct {
	items [4]*counter
	more  []*counter
	n     int
}

func (p *pending) add(c *counter) {
	if p.n < len(p.items) {
		p.items[p.n] = c
	} else {
		p.more = append(p.more, c)
	}
	p.n++
}

// release decrements every counter once and empties the list.
func (p *pending) release() {
	for i := 0; i < p.n; i++ {
		var c *counter
		if i < len(p.items) {
			c, p.items[i] = p.items[i], nil
		} else {
			c = p.more[i-len(p.items)]
		}
		c.n.Add(-1)
	}
	clear(p.more)
	p.more, p.n = p.more[:0], 0
}

var pendingPool = sync.Pool{New: func() any { return new(pending) }}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: Priority,
		Schema:   json.RawMessage(schema),
		New:      New,
	}
}

func newRegistry() any {
	return limitkit.NewRegistry(sweepInterval, func(c *counter, _ int64) bool {
		return c.n.CompareAndSwap(0, retired)
	})
}

// New builds an instance from conf.
func New(raw json.RawMessage, env *plugin.BuildEnv) (any, error) {
	c := Config{KeyType: limitkit.KeyVar, Policy: "local", RejectedCode: 503}
	if err := limitconf.Decode(raw, &c); err != nil {
		return nil, err
	}
	if c.DefaultConnDelay <= 0 {
		return nil, errors.New("value should match only one schema, but matches none")
	}
	if c.Policy != "local" {
		return nil, fmt.Errorf("policy %s is not supported yet", c.Policy)
	}
	p := &Plugin{conf: c, delay: c.DefaultConnDelay, hasRule: c.Rules != nil, body: limitconf.RejectBody(c.RejectedMsg)}
	if c.Rules == nil {
		if len(c.Conn) == 0 || len(c.Burst) == 0 {
			return nil, errors.New("value should match only one schema, but matches none")
		}
		cn, err := limitkit.ParseNum(c.Conn)
		if err != nil {
			return nil, fmt.Errorf("conn: %w", err)
		}
		b, err := limitkit.ParseNum(c.Burst)
		if err != nil {
			return nil, fmt.Errorf("burst: %w", err)
		}
		p.rules = []rule{{conn: cn, burst: b, key: limitkit.NewKey(c.KeyType, c.Key)}}
	}
	for i, r := range c.Rules {
		cn, err := limitkit.ParseNum(r.Conn)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].conn: %w", i+1, err)
		}
		b, err := limitkit.ParseNum(r.Burst)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].burst: %w", i+1, err)
		}
		p.rules = append(p.rules, rule{conn: cn, burst: b, keyTpl: limitkit.CompileTemplate(r.Key)})
	}
	p.handle = limitconf.Handle[counter](env, Name, newRegistry)
	return p, nil
}

func newCounter() *counter { return &counter{} }

// acquire increments key's counter unless that passes max+burst; it
// returns the counter and the new count, or nil when rejected.
func (p *Plugin) acquire(key string, max int64) (*counter, int64) {
	for {
		c := p.handle.Get(key, newCounter)
		n := c.n.Add(1)
		if n <= 0 {
			continue // retired by a sweep; Get makes a fresh one
		}
		if n > max {
			c.n.Add(-1)
			return nil, n
		}
		return c, n
	}
}

// Access counts the request in each applicable rule's key, rejecting it
// past conn+burst and delaying it by default_conn_delay per conn excess
// requests (resty.limit.conn's unit delay).
func (p *Plugin) Access(r *plugin.Request) {
	if p.handle == nil {
		return
	}
	p.handle.Registry().MaybeSweep(time.Now().UnixNano())
	applied := 0
	for i := range p.rules {
		ru := &p.rules[i]
		conn, err := ru.conn.Resolve(r.Ctx, false)
		if err != nil {
			if p.hasRule {
				continue // APISIX skips a rule whose limits do not resolve
			}
			p.fail(r)
			return
		}
		burst, err := ru.burst.Resolve(r.Ctx, true)
		if err != nil {
			if p.hasRule {
				continue
			}
			p.fail(r)
			return
		}
		var key string
		if p.hasRule {
			k, n := ru.keyTpl.Resolve(r.Ctx)
			if n == 0 {
				continue
			}
			key = k
		} else {
			key = ru.key.Resolve(r.Ctx)
		}
		applied++
		c, n := p.acquire(key, conn+burst)
		if c == nil {
			r.Exit(p.conf.RejectedCode, p.body)
			return
		}
		p.remember(r, c)
		if n > conn {
			d := time.Duration(p.delay * float64((n-1)/conn) * float64(time.Second))
			if d >= time.Millisecond {
				limitkit.Sleep(r, d)
				if r.Exited() {
					return
				}
			}
		}
	}
	if applied == 0 {
		p.fail(r)
	}
}

func (p *Plugin) fail(r *plugin.Request) {
	if r.Env != nil && r.Env.Logger != nil {
		r.Env.Logger.Error("failed to get limit conn rules", "plugin", Name)
	}
	if !p.conf.AllowDegradation {
		r.Exit(500, nil)
	}
}

// remember records c for the log phase.
func (p *Plugin) remember(r *plugin.Request, c *counter) {
	if v, ok := r.Values[valueKey].(*pending); ok {
		v.add(c)
		return
	}
	pd := pendingPool.Get().(*pending)
	pd.add(c)
	r.SetValue(valueKey, pd)
}

// Log releases every counter this request took, whichever limit-conn
// instance took it (global rule, route or consumer), as APISIX's
// ctx.limit_conn list does.
func (p *Plugin) Log(r *plugin.Request) {
	pd, ok := r.Values[valueKey].(*pending)
	if !ok {
		return
	}
	delete(r.Values, valueKey)
	pd.release()
	pendingPool.Put(pd)
}

// InFlight returns key's current count (for tests).
func (p *Plugin) InFlight(key string) int64 {
	if p.handle == nil {
		return 0
	}
	if c := p.handle.Table().Lookup(key); c != nil {
		return max(c.n.Load(), 0)
	}
	return 0
}
