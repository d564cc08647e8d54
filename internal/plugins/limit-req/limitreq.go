// Package limitreq implements APISIX's limit-req plugin: a leaky bucket per
// key, as nginx's limit_req and resty.limit.req. Requests above rate but
// within burst are delayed to the rate (unless nodelay); beyond burst they
// are rejected. Only the local policy runs; redis policies are accepted by
// the schema but refused until a Redis backend exists.
package limitreq

import (
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/limitconf"
	"github.com/sluice-gw/sluice/internal/plugins/limit-count/limitkit"
)

// Name is the plugin name.
const Name = "limit-req"

// Priority is APISIX's priority for limit-req.
const Priority = 1001

// sweepInterval bounds how often drained buckets are dropped.
const sweepInterval = 10 * time.Second

// schema transcribes apisix/plugins/limit-req.lua. The "if"s also require
// policy: the Lua validator fills in the default before evaluating them.
const schema = `{
    "type": "object",
    "properties": {
        "rate": {"type": "number", "exclusiveMinimum": 0},
        "burst": {"type": "number", "minimum": 0},
        "key": {"type": "string"},
        "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
        "policy": {"type": "string", "enum": ["redis", "redis-cluster", "local"], "default": "local"},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
        "rejected_msg": {"type": "string", "minLength": 1},
        "nodelay": {"type": "boolean", "default": false},
        "allow_degradation": {"type": "boolean", "default": false}
    },
    "required": ["rate", "burst", "key"],
    ` + limitconf.RedisPolicies + `
}`

// Config is limit-req's conf with APISIX's defaults.
type Config struct {
	Rate             float64 `json:"rate"`
	Burst            float64 `json:"burst"`
	Key              string  `json:"key"`
	KeyType          string  `json:"key_type"`
	Policy           string  `json:"policy"`
	RejectedCode     int     `json:"rejected_code"`
	RejectedMsg      *string `json:"rejected_msg,omitempty"`
	Nodelay          bool    `json:"nodelay"`
	AllowDegradation bool    `json:"allow_degradation"`
}

// bucket is one key's leaky bucket: excess requests (in request units)
// as of last. Only requests for the same key share its mutex.
type bucket struct {
	mu     sync.Mutex
	dead   bool
	excess float64
	last   int64 // unix nanoseconds of the last accepted request
	rate   float64
}

// Plugin is a built limit-req instance.
type Plugin struct {
	conf   Config
	key    limitkit.Key
	body   any
	handle *limitkit.Handle[bucket]
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

func newRegistry() any {
	return limitkit.NewRegistry(sweepInterval, func(b *bucket, now int64) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		// Drained buckets behave exactly like new ones: drop them.
		if b.rate > 0 && float64(now-b.last)/1e9*b.rate >= b.excess+1 {
			b.dead = true
			return true
		}
		return false
	})
}

// New builds an instance from conf.
func New(raw json.RawMessage, env *plugin.BuildEnv) (any, error) {
	c := Config{KeyType: limitkit.KeyVar, Policy: "local", RejectedCode: 503}
	if err := limitconf.Decode(raw, &c); err != nil {
		return nil, err
	}
	if c.Rate <= 0 {
		return nil, fmt.Errorf("property \"rate\" is required")
	}
	if c.Policy != "local" {
		return nil, fmt.Errorf("policy %s is not supported yet", c.Policy)
	}
	return &Plugin{
		conf:   c,
		key:    limitkit.NewKey(c.KeyType, c.Key),
		body:   limitconf.RejectBody(c.RejectedMsg),
		handle: limitconf.Handle[bucket](env, Name, newRegistry),
	}, nil
}

func newBucket() *bucket { return &bucket{} }

// incoming is resty.limit.req's incoming with commit: it returns the delay
// for an accepted request, or ok=false when the bucket overflows (a
// rejected request leaves the bucket unchanged).
func (p *Plugin) incoming(key string, now int64) (delay time.Duration, ok bool) {
	rate, burst := p.conf.Rate, p.conf.Burst
	for {
		b := p.handle.Get(key, newBucket)
		b.mu.Lock()
		if b.dead {
			b.mu.Unlock()
			continue
		}
		excess := 0.0
		if b.rate != 0 {
			// Millisecond resolution, as ngx.now().
			elapsed := math.Abs(float64((now-b.last)/1e6)) / 1000
			excess = math.Max(b.excess-rate*elapsed+1, 0)
			if excess > burst {
				b.mu.Unlock()
				return 0, false
			}
		}
		b.excess, b.last, b.rate = excess, now, rate
		b.mu.Unlock()
		return time.Duration(excess / rate * float64(time.Second)), true
	}
}

// Access accounts the request in its key's bucket, delays it to the rate
// when it is within burst (unless nodelay), and rejects it beyond burst.
func (p *Plugin) Access(r *plugin.Request) {
	if p.handle == nil {
		return
	}
	now := time.Now().UnixNano()
	p.handle.Registry().MaybeSweep(now)
	delay, ok := p.incoming(p.key.Resolve(r.Ctx), now)
	if !ok {
		r.Exit(p.conf.RejectedCode, p.body)
		return
	}
	if delay >= time.Millisecond && !p.conf.Nodelay {
		Sleep(r, delay)
	}
}

// Sleep waits d, or less if the client goes away first; then the request
// ends with 499 instead of being proxied.
func Sleep(r *plugin.Request, d time.Duration) { limitkit.Sleep(r, d) }
