// Package limitcount implements APISIX's limit-count plugin: at most count
// requests per key in each time_window seconds (fixed or sliding window),
// with X-RateLimit-* quota headers, counters shared across routes by group,
// and per-key rules. The local policy counts in process; the redis and
// redis-cluster policies count in Redis with one atomic script call per
// request, so every node sharing the Redis enforces one limit.
// redis-sentinel is accepted by the schema but refused.
package limitcount

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/limit-count/limitkit"
)

// Name is the plugin name.
const Name = "limit-count"

// Priority is APISIX's priority for limit-count.
const Priority = 1002

// groupConfTTL is how long a group's conf is remembered for the
// "group conf mismatched" check; APISIX keeps it in a plugin lrucache with
// a 5 minute TTL.
const groupConfTTL = 5 * time.Minute

// sweepInterval bounds how often stale windows are dropped.
const sweepInterval = 10 * time.Second

// Rule is one entry of the rules field.
type Rule struct {
	Count        json.RawMessage `json:"count"`
	TimeWindow   json.RawMessage `json:"time_window"`
	Key          string          `json:"key"`
	HeaderPrefix *string         `json:"header_prefix,omitempty"`
}

// Config is limit-count's conf with APISIX's defaults.
type Config struct {
	Count                json.RawMessage `json:"count,omitempty"`
	TimeWindow           json.RawMessage `json:"time_window,omitempty"`
	WindowType           string          `json:"window_type"`
	Rules                []Rule          `json:"rules,omitempty"`
	Group                string          `json:"group,omitempty"`
	Key                  string          `json:"key"`
	KeyType              string          `json:"key_type"`
	RejectedCode         int             `json:"rejected_code"`
	RejectedMsg          *string         `json:"rejected_msg,omitempty"`
	Policy               string          `json:"policy"`
	AllowDegradation     bool            `json:"allow_degradation"`
	ShowLimitQuotaHeader bool            `json:"show_limit_quota_header"`
	SyncInterval         float64         `json:"sync_interval"`
	RedisConfig
}

// rule is a compiled rule: limits (maybe variables) and the key.
type rule struct {
	count, window limitkit.Num
	key           limitkit.Key
	keyTpl        *limitkit.Template // rules: key template, skipped when nothing resolves
	prefix        string             // header prefix; "" for the plain headers
	idx           int
}

// Plugin is a built limit-count instance.
type Plugin struct {
	limitTxt lastText // the limit header's text, by limit
	resetTxt lastText // the reset header's text, by hundredths of a second
	conf     Config
	rules    []rule
	hasRule  bool // conf uses rules
	sliding  bool
	body     any // rejection body, nil for none
	handle   *limitkit.Handle[counter]
	st       *state
	names    atomic.Pointer[ruleNameCache]

	// redis is the shared Redis backend of the redis policies, nil for
	// local. redisScope is APISIX's counter key prefix ("<resource
	// key>:<conf version>:" or "<group>:"); redisFixed is the full
	// fixed-window key prefix built on it.
	redis      *redisBackend
	redisScope string
	redisFixed string
}

// ruleNameCache holds each rule's header names for one set of base names.
type ruleNameCache struct {
	base  *headerNames
	rules [][3]string
}

// window is one fixed window of a key: its end and how much it consumed.
type window struct {
	end int64 // unix nanoseconds
	n   atomic.Int64
}

// counter is one key's state. Fixed windows swap win atomically; sliding
// windows keep two counts under a per-key mutex (only requests for the
// same key share it).
type counter struct {
	win atomic.Pointer[window]

	mu             sync.Mutex
	dead           bool
	wsize          int64 // sliding window size, ns
	wid, cur, prev int64
}

// state is limit-count's long-lived state in plugin.Shared.
type state struct {
	reg  *limitkit.Registry[counter]
	tomb *window // marks a retired fixed-window counter
	meta atomic.Pointer[headerNames]
}

// headerNames are the quota header names from plugin_metadata.
type headerNames struct {
	raw                     []byte
	limit, remaining, reset string
}

// failedBody is APISIX's body when the counter backend fails.
var failedBody = map[string]string{"error_msg": "failed to limit count"}

var defaultNames = &headerNames{limit: "X-RateLimit-Limit", remaining: "X-RateLimit-Remaining", reset: "X-RateLimit-Reset"}

func newState() any {
	st := &state{tomb: &window{}}
	st.reg = limitkit.NewRegistry(sweepInterval, func(c *counter, now int64) bool {
		if w := c.win.Load(); w != nil {
			return now >= w.end && c.win.CompareAndSwap(w, st.tomb)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.wsize > 0 && now/c.wsize > c.wid+1 {
			c.dead = true
			return true
		}
		return false
	})
	return st
}

// groupConfs remembers the first conf seen per group, as APISIX's
// group_conf_lru does, to reject a different conf for the same group.
type groupConfs struct {
	mu sync.Mutex
	m  map[string]groupConf
}

type groupConf struct {
	conf string
	seen time.Time
}

func (g *groupConfs) check(group, conf string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if prev, ok := g.m[group]; ok && now.Sub(prev.seen) < groupConfTTL {
		if prev.conf != conf {
			return errors.New("group conf mismatched")
		}
		return nil
	}
	if g.m == nil {
		g.m = map[string]groupConf{}
	}
	g.m[group] = groupConf{conf: conf, seen: now}
	return nil
}

// Def returns the plugin's definition. Each call has its own group conf
// memory, like each APISIX worker.
func Def() *plugin.Def {
	groups := &groupConfs{}
	return &plugin.Def{
		Name:           Name,
		Priority:       Priority,
		Schema:         json.RawMessage(schema),
		MetadataSchema: json.RawMessage(metadataSchema),
		New: func(conf json.RawMessage, env *plugin.BuildEnv) (any, error) {
			return build(conf, env, groups)
		},
	}
}

// whitelist is the set of fields compared for the group check: the
// schema's properties plus the policy's (APISIX ignores injected fields).
var whitelist = map[string]bool{
	"count": true, "time_window": true, "window_type": true, "rules": true, "group": true,
	"key": true, "key_type": true, "rejected_code": true, "rejected_msg": true, "policy": true,
	"allow_degradation": true, "show_limit_quota_header": true, "sync_interval": true,
}

func build(raw json.RawMessage, env *plugin.BuildEnv, groups *groupConfs) (any, error) {
	c := Config{WindowType: "fixed", Key: "remote_addr", KeyType: limitkit.KeyVar, RejectedCode: 503,
		Policy: "local", ShowLimitQuotaHeader: true, SyncInterval: -1, RedisConfig: defaultRedis}
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("[]")) {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("invalid conf: %w", err)
		}
	}
	hasCount := len(c.Count) > 0 || len(c.TimeWindow) > 0
	if c.Rules != nil && hasCount {
		return nil, errors.New("count/time_window and rules cannot be specified at the same time")
	}
	if c.Rules == nil && (len(c.Count) == 0 || len(c.TimeWindow) == 0) {
		return nil, errors.New("value should match only one schema, but matches none")
	}
	if c.Group != "" && c.Rules != nil {
		return nil, errors.New("group and rules cannot be specified at the same time")
	}
	if c.Group != "" {
		if err := groups.check(c.Group, groupFingerprint(raw, c)); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, r := range c.Rules {
		if seen[r.Key] {
			return nil, fmt.Errorf("duplicate key '%s' in rules", r.Key)
		}
		seen[r.Key] = true
	}
	switch c.Policy {
	case "local":
	case "redis", "redis-cluster":
		if c.SyncInterval != -1 {
			if c.SyncInterval < 0.1 {
				return nil, errors.New("sync_interval should not be smaller than 0.1")
			}
			if tw, err := strconv.ParseFloat(string(c.TimeWindow), 64); err == nil && c.SyncInterval >= tw {
				return nil, errors.New("sync_interval should be smaller than time_window")
			}
		}
	default:
		return nil, fmt.Errorf("policy %s is not supported yet", c.Policy)
	}
	p := &Plugin{conf: c, sliding: c.WindowType == "sliding", hasRule: c.Rules != nil}
	if c.RejectedMsg != nil {
		p.body = map[string]string{"error_msg": *c.RejectedMsg}
	}
	if c.Rules == nil {
		cnt, err := limitkit.ParseNum(c.Count)
		if err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		tw, err := limitkit.ParseNum(c.TimeWindow)
		if err != nil {
			return nil, fmt.Errorf("time_window: %w", err)
		}
		p.rules = []rule{{idx: 0, count: cnt, window: tw, key: limitkit.NewKey(c.KeyType, c.Key)}}
	}
	for i, r := range c.Rules {
		cnt, err := limitkit.ParseNum(r.Count)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].count: %w", i+1, err)
		}
		tw, err := limitkit.ParseNum(r.TimeWindow)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].time_window: %w", i+1, err)
		}
		prefix := strconv.Itoa(i + 1)
		if r.HeaderPrefix != nil {
			prefix = *r.HeaderPrefix
		}
		p.rules = append(p.rules, rule{idx: i, count: cnt, window: tw, keyTpl: limitkit.CompileTemplate(r.Key), prefix: prefix})
	}
	if env == nil {
		return p, nil
	}
	p.st = env.Shared.LoadOrStore(Name, newState).(*state)
	scope := limitkit.Scope(Name, env.Parent, env.ConfHash)
	if c.Group != "" {
		scope = Name + "\x00group\x00" + c.Group
	}
	p.handle = limitkit.NewHandle(p.st.reg, scope)
	if c.Policy != "local" {
		p.redis = redisBackendFor(env.Shared, c.Policy, &c.RedisConfig)
		// APISIX's key: plugin-limit-count:v1:<resource key>:<conf version>:<key>,
		// or plugin-limit-count:v1:<group>:<key> for a group.
		if c.Group != "" {
			p.redisScope = c.Group + ":"
		} else {
			p.redisScope = "/apisix" + env.Parent + ":" + env.ConfHash + ":"
		}
		p.redisFixed = redisKeyPrefix + ":" + keyVersion + ":" + p.redisScope
	}
	return p, nil
}

// groupFingerprint renders the whitelisted fields of conf, with defaults,
// in a canonical form for the group check.
func groupFingerprint(raw json.RawMessage, c Config) string {
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	out := map[string]any{}
	for k, v := range m {
		if whitelist[k] || strings.HasPrefix(k, "redis_") || strings.HasPrefix(k, "sentinel_") {
			out[k] = v
		}
	}
	out["window_type"], out["key"], out["key_type"] = c.WindowType, c.Key, c.KeyType
	out["rejected_code"], out["policy"], out["allow_degradation"] = c.RejectedCode, c.Policy, c.AllowDegradation
	out["show_limit_quota_header"], out["sync_interval"] = c.ShowLimitQuotaHeader, c.SyncInterval
	b, _ := json.Marshal(out)
	return string(b)
}

// resolved is a rule that applies to this request, with its limits.
type resolved struct {
	ru        *rule
	key       string
	count, tw int64
}

// Access counts the request against every applicable rule and rejects it
// once a rule's quota is used up. As in APISIX, all rules are resolved
// first: an invalid variable limit fails the request (500) before anything
// is counted, and a request no rule applies to fails too, unless
// allow_degradation lets it through.
func (p *Plugin) Access(r *plugin.Request) {
	now := time.Now().UnixNano()
	if p.handle != nil {
		p.handle.Registry().MaybeSweep(now)
	}
	var buf [4]resolved
	todo := buf[:0]
	for i := range p.rules {
		ru := &p.rules[i]
		var key string
		if p.hasRule {
			k, n := ru.keyTpl.Resolve(r.Ctx)
			if n == 0 {
				// A rule keyed on variables absent from this request does not apply.
				continue
			}
			key = k
		} else {
			key = ru.key.Resolve(r.Ctx)
		}
		count, err := ru.count.Resolve(r.Ctx, false)
		var tw int64
		if err == nil {
			tw, err = ru.window.Resolve(r.Ctx, false)
		}
		if err != nil {
			p.fail(r, err)
			return
		}
		todo = append(todo, resolved{ru: ru, key: key, count: count, tw: tw})
	}
	if len(todo) == 0 {
		p.fail(r, errors.New("no rule applies"))
		return
	}
	for i := range todo {
		if p.limit(r, todo[i].ru, todo[i].key, todo[i].count, todo[i].tw, now) {
			return
		}
	}
}

// fail answers 500 unless allow_degradation lets the request pass.
func (p *Plugin) fail(r *plugin.Request, err error) {
	p.logf(r, "failed to get rate limit rules", err)
	if !p.conf.AllowDegradation {
		r.Exit(500, nil)
	}
}

func (p *Plugin) logf(r *plugin.Request, msg string, err error) {
	if r.Env != nil && r.Env.Logger != nil {
		r.Env.Logger.Error(msg, "plugin", Name, "error", err)
	}
}

// limit runs one rule; it reports whether the request was rejected.
func (p *Plugin) limit(r *plugin.Request, ru *rule, key string, count, tw, now int64) bool {
	var remaining int64
	var reset float64
	var ok bool
	if p.handle == nil {
		// Built without an environment (validation only): nothing to count.
		return false
	}
	switch {
	case p.redis != nil:
		var err error
		if p.redis.err != nil {
			// APISIX cannot make the limiter ("failed to fetch limit.count
			// object"): 500 without a body unless allow_degradation.
			p.redis.logFailure(r, "failed to fetch limit.count object", p.conf.AllowDegradation, p.redis.err)
			if p.conf.AllowDegradation {
				return false
			}
			r.Exit(500, nil)
			return true
		}
		if p.sliding {
			remaining, reset, ok, err = p.redis.incomingSliding(r, p.redisScope+key, count, tw, now)
		} else {
			remaining, reset, ok, err = p.redis.incomingFixed(r, p.redisFixed+key, count, tw)
		}
		if err != nil {
			// APISIX: "failed to limit count: <err>", then 500 with a JSON
			// body unless allow_degradation lets the request through.
			p.redis.logFailure(r, "failed to limit count", p.conf.AllowDegradation, err)
			if p.conf.AllowDegradation {
				return false
			}
			r.Exit(500, failedBody)
			return true
		}
	case p.sliding:
		remaining, reset, ok = p.incomingSliding(key, count, tw, now)
	default:
		remaining, reset, ok = p.incomingFixed(key, count, tw, now)
	}
	if p.conf.ShowLimitQuotaHeader {
		if !ok {
			remaining = 0
		}
		// The reset header shows whole hundredths of a second.
		p.setHeaders(r, ru, count, remaining, int64(math.Floor(reset*100)))
	}
	if !ok {
		r.Exit(p.conf.RejectedCode, p.body)
		return true
	}
	return false
}

func (p *Plugin) setHeaders(r *plugin.Request, ru *rule, limit, remaining, resetHundredths int64) {
	names := p.ruleNames(r, ru)
	// Keys are canonical already (nothing re-canonicalised per request);
	// values from the request's slices and texts (engine.Ctx) and, for
	// counts under 1000, from a table: no allocation of their own.
	h := r.W.Header()
	h[names[0]] = r.Ctx.HeaderValue(p.limitText(limit))
	h[names[1]] = r.Ctx.HeaderValue(r.Ctx.IntText(remaining))
	h[names[2]] = r.Ctx.HeaderValue(p.resetText(resetHundredths))
}

// lastText remembers the text of the last number it formatted, for a
// header value that repeats from request to request (no formatting, no
// allocation while it does).
type lastText struct{ p atomic.Pointer[numText] }

// numText is a number with its text.
type numText struct {
	n int64
	s string
}

// text returns format(n), from the last call when n is the same.
func (l *lastText) text(n int64, format func(int64) string) string {
	if c := l.p.Load(); c != nil && c.n == n {
		return c.s
	}
	c := &numText{n, format(n)}
	l.p.Store(c)
	return c.s
}

// limitText formats limit: nearly always the same for every request of
// an instance.
func (p *Plugin) limitText(limit int64) string { return p.limitTxt.text(limit, engine.FormatInt) }

// ruleNames returns the canonical quota header names for a rule, with the
// rule's prefix inserted before "RateLimit-" as APISIX does.
func (p *Plugin) ruleNames(r *plugin.Request, ru *rule) *[3]string {
	base := p.headerNames(r)
	if c := p.names.Load(); c != nil && c.base == base {
		return &c.rules[ru.idx]
	}
	c := &ruleNameCache{base: base, rules: make([][3]string, len(p.rules))}
	for i := range p.rules {
		n := [3]string{base.limit, base.remaining, base.reset}
		for j := range n {
			if pre := p.rules[i].prefix; pre != "" {
				n[j] = strings.Replace(n[j], "RateLimit-", pre+"-RateLimit-", 1)
			}
			n[j] = textproto.CanonicalMIMEHeaderKey(n[j])
		}
		c.rules[i] = n
	}
	p.names.Store(c)
	return &c.rules[ru.idx]
}

// resetText formats the reset time given in whole hundredths of a
// second: for one key it changes every 10 ms, so the requests in between
// reuse its text.
func (p *Plugin) resetText(hundredths int64) string {
	return p.resetTxt.text(hundredths, formatHundredths)
}

func formatHundredths(c int64) string { return formatLuaNumber(float64(c) / 100) }

// formatLuaNumber prints a number as Lua's tostring does (%.14g).
func formatLuaNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return engine.FormatInt(int64(f))
	}
	return strconv.FormatFloat(f, 'g', 14, 64)
}

// headerNames returns the quota header names, re-reading plugin_metadata
// only when it changed.
func (p *Plugin) headerNames(r *plugin.Request) *headerNames {
	raw := r.Metadata(Name)
	if raw == nil || p.st == nil {
		return defaultNames
	}
	if hn := p.st.meta.Load(); hn != nil && bytes.Equal(hn.raw, raw) {
		return hn
	}
	var md struct {
		Limit     *string `json:"limit_header"`
		Remaining *string `json:"remaining_header"`
		Reset     *string `json:"reset_header"`
	}
	hn := &headerNames{raw: append([]byte(nil), raw...), limit: defaultNames.limit, remaining: defaultNames.remaining, reset: defaultNames.reset}
	if json.Unmarshal(raw, &md) == nil {
		if md.Limit != nil {
			hn.limit = *md.Limit
		}
		if md.Remaining != nil {
			hn.remaining = *md.Remaining
		}
		if md.Reset != nil {
			hn.reset = *md.Reset
		}
	}
	p.st.meta.Store(hn)
	return hn
}

func newCounter() *counter { return &counter{} }

// incomingFixed counts one request in key's fixed window of tw seconds.
// The first request opens the window; every request, rejected or not, is
// counted, as resty.limit.count's incr does.
func (p *Plugin) incomingFixed(key string, limit, tw, now int64) (remaining int64, reset float64, ok bool) {
	wsize := tw * int64(time.Second)
	for {
		c := p.handle.Get(key, newCounter)
		w := c.win.Load()
		if w == p.st.tomb {
			continue // retired by a sweep; Get makes a fresh one
		}
		if w == nil || now >= w.end {
			nw := &window{end: now + wsize}
			nw.n.Store(1)
			if !c.win.CompareAndSwap(w, nw) {
				continue
			}
			return limit - 1, float64(tw), limit-1 >= 0
		}
		n := w.n.Add(1)
		reset = float64(w.end-now) / float64(time.Second)
		if reset < 0 {
			reset = 0
		}
		if n > limit {
			return 0, reset, false
		}
		return limit - n, reset, true
	}
}

// incomingSliding implements APISIX's sliding window: the previous
// window's count weighted by how much of it still overlaps, plus the
// current window's count; rejected requests are not counted.
func (p *Plugin) incomingSliding(key string, limit, tw, now int64) (remaining int64, reset float64, ok bool) {
	wsize := tw * int64(time.Second)
	for {
		c := p.handle.Get(key, newCounter)
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			continue
		}
		wid := now / wsize
		if c.wsize != wsize || c.wid != wid {
			if c.wsize == wsize && c.wid == wid-1 {
				c.prev = c.cur
			} else {
				c.prev = 0
			}
			c.cur, c.wid, c.wsize = 0, wid, wsize
		}
		remTime := float64(wsize-now%wsize) / float64(time.Second)
		last := min(c.prev, limit)
		lastRate := float64(last) / float64(tw)
		cur := c.cur
		estimated := lastRate*remTime + float64(cur)
		if cur >= limit || estimated >= float64(limit) {
			c.mu.Unlock()
			if cur >= limit {
				return 0, ceil2(remTime), false
			}
			delay := remTime
			if lastRate != 0 {
				delay = remTime - float64(limit-cur)/lastRate
				if delay < 0 {
					delay = 0
				}
			}
			return 0, ceil2(delay), false
		}
		c.cur++
		cur = c.cur
		c.mu.Unlock()
		return int64(math.Floor(float64(limit-cur) - lastRate*remTime)), ceil2(remTime), true
	}
}

func ceil2(f float64) float64 { return math.Ceil(f*100) / 100 }

// Counters returns how many keys the instance's counter table holds (for
// tests of memory bounds).
func (p *Plugin) Counters() int {
	if p.handle == nil {
		return 0
	}
	return p.handle.Table().Len()
}
