// Package apibreaker implements APISIX's api-breaker plugin: a circuit
// breaker keyed by host + URI. The log phase counts unhealthy and healthy
// upstream statuses; every `failures` unhealthy responses trip the breaker,
// and while it is open the access phase answers break_response_code
// without contacting the upstream, for 2^(unhealthy/failures) seconds
// capped at max_breaker_sec. `successes` healthy responses reset it.
package apibreaker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/limit-count/limitkit"
)

// Name is the plugin name.
const Name = "api-breaker"

// Priority is APISIX's priority for api-breaker.
const Priority = 1005

// idleTTL is how long an untouched breaker state is kept. APISIX keeps
// unhealthy counts in a shared dict until LRU eviction; we drop them after
// an hour without traffic so memory stays bounded.
const idleTTL = time.Hour

const sweepInterval = time.Minute

const schema = `{
    "type": "object",
    "properties": {
        "break_response_code": {"type": "integer", "minimum": 200, "maximum": 599},
        "break_response_body": {"type": "string"},
        "break_response_headers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "minLength": 1},
                    "value": {"type": "string", "minLength": 1}
                },
                "required": ["key", "value"]
            }
        },
        "max_breaker_sec": {"type": "integer", "minimum": 3, "default": 300},
        "unhealthy": {
            "type": "object",
            "properties": {
                "http_statuses": {"type": "array", "minItems": 1,
                    "items": {"type": "integer", "minimum": 500, "maximum": 599},
                    "uniqueItems": true, "default": [500]},
                "failures": {"type": "integer", "minimum": 1, "default": 3}
            },
            "default": {"http_statuses": [500], "failures": 3}
        },
        "healthy": {
            "type": "object",
            "properties": {
                "http_statuses": {"type": "array", "minItems": 1,
                    "items": {"type": "integer", "minimum": 200, "maximum": 499},
                    "uniqueItems": true, "default": [200]},
                "successes": {"type": "integer", "minimum": 1, "default": 3}
            },
            "default": {"http_statuses": [200], "successes": 3}
        }
    },
    "required": ["break_response_code"]
}`

// Header is one break_response_headers entry; value may use $vars.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Config is api-breaker's conf with APISIX's defaults.
type Config struct {
	BreakResponseCode    int      `json:"break_response_code"`
	BreakResponseBody    *string  `json:"break_response_body,omitempty"`
	BreakResponseHeaders []Header `json:"break_response_headers,omitempty"`
	MaxBreakerSec        int64    `json:"max_breaker_sec"`
	Unhealthy            struct {
		HTTPStatuses []int `json:"http_statuses"`
		Failures     int64 `json:"failures"`
	} `json:"unhealthy"`
	Healthy struct {
		HTTPStatuses []int `json:"http_statuses"`
		Successes    int64 `json:"successes"`
	} `json:"healthy"`
}

type header struct {
	key string
	val *limitkit.Template
}

// Plugin is a built api-breaker instance.
type Plugin struct {
	conf    Config
	headers []header
	handle  *limitkit.Handle[state]
}

// state is one host+URI's breaker.
type state struct {
	mu        sync.Mutex
	dead      bool
	unhealthy int64
	healthy   int64
	tripped   bool
	lastSec   int64 // unix seconds of the last trip (ngx.time())
	lastUntil int64 // unix ns when the trip record expires (max_breaker_sec TTL)
	touched   int64 // unix ns
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
	return limitkit.NewRegistry(sweepInterval, func(s *state, now int64) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.unhealthy == 0 || now-s.touched > int64(idleTTL) {
			s.dead = true
			return true
		}
		return false
	})
}

// New builds an instance from conf.
func New(raw json.RawMessage, env *plugin.BuildEnv) (any, error) {
	var c Config
	c.MaxBreakerSec = 300
	c.Unhealthy.HTTPStatuses, c.Unhealthy.Failures = []int{500}, 3
	c.Healthy.HTTPStatuses, c.Healthy.Successes = []int{200}, 3
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("[]")) {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("invalid conf: %w", err)
		}
	}
	// An object given without some fields gets their defaults.
	if len(c.Unhealthy.HTTPStatuses) == 0 {
		c.Unhealthy.HTTPStatuses = []int{500}
	}
	if c.Unhealthy.Failures == 0 {
		c.Unhealthy.Failures = 3
	}
	if len(c.Healthy.HTTPStatuses) == 0 {
		c.Healthy.HTTPStatuses = []int{200}
	}
	if c.Healthy.Successes == 0 {
		c.Healthy.Successes = 3
	}
	if c.BreakResponseCode == 0 {
		return nil, fmt.Errorf("property \"break_response_code\" is required")
	}
	p := &Plugin{conf: c}
	for _, h := range c.BreakResponseHeaders {
		p.headers = append(p.headers, header{key: h.Key, val: limitkit.CompileTemplate(h.Value)})
	}
	if env != nil {
		reg := env.Shared.LoadOrStore(Name, newRegistry).(*limitkit.Registry[state])
		// One table for all instances: APISIX keys breaker state by host
		// and URI only, not by route or conf.
		p.handle = limitkit.NewHandle(reg, Name)
	}
	return p, nil
}

// key writes host+uri into buf, as APISIX's "<host><uri>" keys.
func key(buf []byte, c *engine.Ctx) []byte {
	return append(append(buf, c.Host...), c.Path...)
}

// Access answers break_response_code while the breaker is open.
func (p *Plugin) Access(r *plugin.Request) {
	if p.handle == nil {
		return
	}
	now := time.Now()
	p.handle.Registry().MaybeSweep(now.UnixNano())
	var buf [256]byte
	s := p.handle.Table().LookupBytes(key(buf[:0], r.Ctx))
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.dead || s.unhealthy == 0 || !s.tripped || now.UnixNano() >= s.lastUntil {
		s.mu.Unlock()
		return
	}
	failureTimes := max(s.unhealthy/p.conf.Unhealthy.Failures, 1)
	last := s.lastSec
	s.mu.Unlock()
	breaker := math.Min(math.Pow(2, float64(failureTimes)), float64(p.conf.MaxBreakerSec))
	if float64(last)+breaker < float64(now.Unix()) {
		return
	}
	if p.conf.BreakResponseBody == nil {
		r.Exit(p.conf.BreakResponseCode, nil)
		return
	}
	h := r.W.Header()
	ct := ""
	for _, hd := range p.headers {
		v, _ := hd.val.Resolve(r.Ctx)
		h.Add(hd.key, v)
		if ct == "" && textprotoEqual(hd.key, "Content-Type") {
			ct = v
		}
	}
	if ct == "" {
		r.Exit(p.conf.BreakResponseCode, *p.conf.BreakResponseBody)
		return
	}
	// Exit sets a text/plain Content-Type; keep the configured one.
	w := r.W
	r.W = &keepType{ResponseWriter: w, ct: ct}
	r.Exit(p.conf.BreakResponseCode, *p.conf.BreakResponseBody)
	r.W = w
}

func textprotoEqual(a, b string) bool {
	return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b))
}

// keepType restores a plugin-chosen Content-Type just before the status
// line is written.
type keepType struct {
	engine.ResponseWriter
	ct string
}

func (k *keepType) WriteHeader(status int) {
	k.ResponseWriter.Header()["Content-Type"] = []string{k.ct}
	k.ResponseWriter.WriteHeader(status)
}

// Log counts the upstream's last status for host+uri.
func (p *Plugin) Log(r *plugin.Request) {
	if p.handle == nil || len(r.UpstreamStatus) == 0 {
		return
	}
	status := r.UpstreamStatus[len(r.UpstreamStatus)-1]
	now := time.Now()
	var buf [256]byte
	k := key(buf[:0], r.Ctx)
	switch {
	case slices.Contains(p.conf.Unhealthy.HTTPStatuses, status):
		for {
			var s *state
			for s == nil {
				s = p.handle.Table().GetOrCreateBytes(k, newState)
			}
			s.mu.Lock()
			if s.dead {
				s.mu.Unlock()
				continue
			}
			s.unhealthy++
			s.healthy = 0
			s.touched = now.UnixNano()
			if s.unhealthy%p.conf.Unhealthy.Failures == 0 {
				s.tripped = true
				s.lastSec = now.Unix()
				s.lastUntil = now.UnixNano() + p.conf.MaxBreakerSec*int64(time.Second)
			}
			s.mu.Unlock()
			return
		}
	case slices.Contains(p.conf.Healthy.HTTPStatuses, status):
		s := p.handle.Table().LookupBytes(k)
		if s == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.dead || s.unhealthy == 0 {
			return
		}
		s.touched = now.UnixNano()
		s.healthy++
		if s.healthy >= p.conf.Healthy.Successes {
			// Back to normal; the sweep drops the zeroed state.
			s.unhealthy, s.healthy, s.tripped = 0, 0, false
		}
	}
}

func newState() *state { return &state{} }
