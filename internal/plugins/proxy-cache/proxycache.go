// Package proxycache implements APISIX's proxy-cache plugin: responses
// are stored in a byte-bounded in-memory LRU per cache zone and served
// from it while fresh, with APISIX's Apisix-Cache-Status values, Vary
// variants, PURGE, cache_bypass / no_cache and request Cache-Control.
//
// The memory strategy follows APISIX's memory_handler. The disk strategy
// (APISIX's default, backed by nginx proxy_cache) is served by the same
// in-memory store with nginx's semantics: the TTL comes from the upstream's
// Cache-Control / Expires or 10 s, nothing is written to disk, and the
// status values are nginx's.
package proxycache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name.
const Name = "proxy-cache"

// Priority is APISIX's priority for proxy-cache.
const Priority = 1085

// DefaultMemorySize is a zone's byte budget unless
// plugin_attr.proxy-cache.memory_size says otherwise; it is the
// memory_size of APISIX's default memory_cache zone.
const DefaultMemorySize = 50 << 20

// diskTTL is apisix.proxy_cache.cache_ttl's default: how long the disk
// strategy keeps a response that carries no Cache-Control or Expires.
const diskTTL = 10 * time.Second

// maxVariants bounds the Vary variants per cache key, as APISIX does.
const maxVariants = 64

const keyPattern = `(^[^\\$].+$|^\\$[0-9a-zA-Z_]+$)`

var schema = json.RawMessage(`{
	"type": "object",
	"properties": {
		"max_resp_body_size": {"type": "integer", "minimum": 1, "default": 67108864},
		"cache_zone": {"type": "string", "minLength": 1, "maxLength": 100, "default": "disk_cache_one"},
		"cache_strategy": {"type": "string", "enum": ["disk", "memory"], "default": "disk"},
		"cache_key": {"type": "array", "minItems": 1,
			"items": {"description": "a key for caching", "type": "string", "pattern": "` + keyPattern + `"},
			"default": ["$host", "$request_uri"]},
		"cache_http_status": {"type": "array", "minItems": 1,
			"items": {"description": "http response status", "type": "integer", "minimum": 200, "maximum": 599},
			"uniqueItems": true, "default": [200, 301, 404]},
		"cache_method": {"type": "array", "minItems": 1,
			"items": {"description": "supported http method", "type": "string", "enum": ["GET", "POST", "HEAD"]},
			"uniqueItems": true, "default": ["GET", "HEAD"]},
		"hide_cache_headers": {"type": "boolean", "default": false},
		"cache_control": {"type": "boolean", "default": false},
		"cache_bypass": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "` + keyPattern + `"}},
		"no_cache": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "` + keyPattern + `"}},
		"cache_ttl": {"type": "integer", "minimum": 1, "default": 300},
		"consumer_isolation": {"type": "boolean", "default": true},
		"cache_set_cookie": {"type": "boolean", "default": false}
	}
}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Config is proxy-cache's configuration.
type Config struct {
	// MaxRespBodySize is the largest body buffered for caching; larger
	// responses stream through uncached.
	MaxRespBodySize int `json:"max_resp_body_size"`
	// CacheZone names the store; routes naming the same zone share it.
	CacheZone string `json:"cache_zone"`
	// CacheStrategy is "memory" or "disk" (see the package doc).
	CacheStrategy string `json:"cache_strategy"`
	// CacheKey items are concatenated; "$name" items are variables.
	CacheKey []string `json:"cache_key"`
	// CacheHTTPStatus lists the response statuses stored.
	CacheHTTPStatus []int `json:"cache_http_status"`
	// CacheMethod lists the request methods served from and stored in the
	// cache.
	CacheMethod []string `json:"cache_method"`
	// HideCacheHeaders removes Cache-Control and Expires from responses.
	HideCacheHeaders bool `json:"hide_cache_headers"`
	// CacheControl honours request and response Cache-Control (memory).
	CacheControl bool `json:"cache_control"`
	// CacheBypass: when the concatenated value is non-empty and not "0",
	// the cache is not read.
	CacheBypass []string `json:"cache_bypass"`
	// NoCache: when the concatenated value is non-empty and not "0", the
	// response is not stored.
	NoCache []string `json:"no_cache"`
	// CacheTTL is the memory strategy's TTL in seconds without
	// cache_control.
	CacheTTL int `json:"cache_ttl"`
	// ConsumerIsolation prefixes the key with the consumer's name.
	ConsumerIsolation bool `json:"consumer_isolation"`
	// CacheSetCookie allows storing responses with Set-Cookie (memory).
	CacheSetCookie bool `json:"cache_set_cookie"`
}

// defaultZones are the zones of APISIX's default config.yaml with their
// kind (true = disk); a strategy that does not fit its zone is refused as
// APISIX does. Other zone names are accepted: Sluice creates them on use.
var defaultZones = map[string]bool{"disk_cache_one": true, "memory_cache": false}

// identityVars are cache_key items that already identify the requester,
// so consumer_isolation adds nothing.
var identityVars = map[string]bool{"$consumer_name": true, "$consumer_group_id": true, "$remote_user": true, "$http_authorization": true}

// Plugin is a built proxy-cache instance.
type Plugin struct {
	cfg       Config
	disk      bool
	isolate   bool
	store     *Store
	methods   map[string]bool
	statuses  map[int]bool
	ttl       time.Duration
	key       string // engine.Ctx.Values key of the per-request *state
	pool      sync.Pool
	now       func() time.Time
	maxObject int
}

// New decodes conf with APISIX's defaults, runs check_schema's checks and
// binds the instance to its zone's store (kept across snapshots in
// env.Shared).
func New(conf json.RawMessage, env *plugin.BuildEnv) (any, error) {
	p := &Plugin{cfg: Config{
		MaxRespBodySize: 67108864, CacheZone: "disk_cache_one", CacheStrategy: "disk",
		CacheKey: []string{"$host", "$request_uri"}, CacheHTTPStatus: []int{200, 301, 404},
		CacheMethod: []string{"GET", "HEAD"}, CacheTTL: 300, ConsumerIsolation: true,
	}}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	c := &p.cfg
	for _, k := range c.CacheKey {
		if k == "$request_method" {
			return nil, fmt.Errorf("cache_key variable %s unsupported", k)
		}
	}
	if c.CacheStrategy != "disk" && c.CacheStrategy != "memory" {
		return nil, fmt.Errorf(`property "cache_strategy" validation failed: matches none of the enum values`)
	}
	if disk, known := defaultZones[c.CacheZone]; known && disk != (c.CacheStrategy == "disk") {
		return nil, fmt.Errorf("invalid or empty cache_zone for cache_strategy: %s", c.CacheStrategy)
	}
	if c.CacheTTL < 1 || c.MaxRespBodySize < 1 || len(c.CacheKey) == 0 {
		return nil, fmt.Errorf("cache_ttl, max_resp_body_size and cache_key must be positive / non-empty")
	}
	p.disk = c.CacheStrategy == "disk"
	p.isolate = c.ConsumerIsolation
	for _, k := range c.CacheKey {
		if identityVars[k] {
			p.isolate = false
		}
	}
	p.methods = map[string]bool{}
	for _, m := range c.CacheMethod {
		p.methods[m] = true
	}
	p.statuses = map[int]bool{}
	for _, s := range c.CacheHTTPStatus {
		p.statuses[s] = true
	}
	p.ttl = time.Duration(c.CacheTTL) * time.Second
	p.maxObject = c.MaxRespBodySize
	p.now = time.Now
	p.key = fmt.Sprintf("%s@%p", Name, p)
	p.pool.New = func() any { return new(state) }
	var shared *plugin.Shared
	var attr map[string]any
	if env != nil {
		shared, attr = env.Shared, env.Attr
	}
	size, err := memorySize(attr["memory_size"])
	if err != nil {
		return nil, fmt.Errorf("plugin_attr.proxy-cache.memory_size: %w", err)
	}
	p.store = shared.LoadOrStore("proxy-cache/zone/"+c.CacheZone, func() any { return NewStore(size) }).(*Store)
	return p, nil
}

// memorySize reads a byte budget: a number of bytes or a string with an
// nginx size suffix ("50m", "1g", "512k").
func memorySize(v any) (int64, error) {
	switch x := v.(type) {
	case nil:
		return DefaultMemorySize, nil
	case float64:
		if x < 1 {
			return 0, fmt.Errorf("must be positive")
		}
		return int64(x), nil
	case string:
		s := strings.ToLower(strings.TrimSpace(x))
		mul := int64(1)
		switch {
		case strings.HasSuffix(s, "k"):
			mul, s = 1<<10, s[:len(s)-1]
		case strings.HasSuffix(s, "m"):
			mul, s = 1<<20, s[:len(s)-1]
		case strings.HasSuffix(s, "g"):
			mul, s = 1<<30, s[:len(s)-1]
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("invalid size %q", x)
		}
		return n * mul, nil
	}
	return 0, fmt.Errorf("invalid size %v", v)
}

// Store returns the instance's zone store (tests, metrics).
func (p *Plugin) Store() *Store { return p.store }

// state is one request's cache bookkeeping.
type state struct {
	base   []byte // cache key value
	kbuf   []byte // storage key scratch
	status string // Apisix-Cache-Status to send ("" = none)
	lookup bool   // the request may be stored (ctx.cache in APISIX)
	hit    bool
	obj    *Object
	vary   []string
	body   []byte
	shim   ctWriter
}

func (st *state) reset() {
	*st = state{base: st.base[:0], kbuf: st.kbuf[:0], body: st.body[:0]}
}

func (p *Plugin) release(r *plugin.Request, st *state) {
	if r.Values != nil {
		if _, ok := r.Values[p.key]; ok {
			r.Values[p.key] = nil
		}
	}
	if cap(st.body) > 1<<20 {
		st.body = nil // do not pin large buffers in the pool
	}
	st.obj, st.vary = nil, nil
	p.pool.Put(st)
}

// complexValue concatenates items, resolving "$var" ones (unset → "").
func complexValue(r *plugin.Request, items []string, dst []byte) []byte {
	for _, it := range items {
		if len(it) > 0 && it[0] == '$' {
			v, _ := r.Var(it[1:])
			dst = append(dst, v...)
		} else {
			dst = append(dst, it...)
		}
	}
	return dst
}

// truthy evaluates cache_bypass / no_cache: any value but "" and "0".
func (p *Plugin) truthy(r *plugin.Request, items []string, scratch []byte) bool {
	if items == nil {
		return false
	}
	v := complexValue(r, items, scratch[:0])
	return len(v) > 0 && !(len(v) == 1 && v[0] == '0')
}

// Access computes the cache key, handles PURGE, and serves fresh hits.
func (p *Plugin) Access(r *plugin.Request) {
	st := p.pool.Get().(*state)
	st.reset()
	base := complexValue(r, p.cfg.CacheKey, st.base[:0])
	if p.isolate {
		id := r.ConsumerName
		if id == "" {
			id, _ = r.Var("remote_user")
		}
		if id != "" {
			base = append(append(append(st.kbuf[:0], id...), 1), base...)
		}
	}
	st.base = append(st.base[:0], base...)
	r.SetValue(p.key, st)

	if r.Method == "PURGE" {
		found := p.purge(st)
		p.release(r, st)
		if found {
			r.Exit(200, "")
		} else {
			r.Exit(404, nil)
		}
		return
	}
	var cc directives
	if p.cfg.CacheControl && !p.disk {
		cc = parseDirectives(r.Header["Cache-Control"])
	}
	if !p.methods[r.Method] {
		st.status = "MISS"
		if p.disk {
			st.status = "BYPASS"
		}
		return
	}
	if p.truthy(r, p.cfg.CacheBypass, st.kbuf) {
		st.status = "BYPASS"
		// nginx's proxy_cache_bypass still stores the fresh response.
		st.lookup = p.disk
		return
	}
	if !p.disk && p.cfg.CacheControl && (cc.noStore || cc.noCache) {
		st.status = "BYPASS"
		return
	}
	st.lookup = true
	now := p.now()
	val, expired, ok := p.store.get(p.storageKey(r, st, now), now)
	obj, _ := val.(*Object)
	switch {
	case !ok || obj == nil:
		st.status = "MISS"
		if p.cfg.CacheControl && !p.disk && cc.onlyIfCached {
			r.W.Header().Set("Apisix-Cache-Status", "MISS")
			p.release(r, st)
			r.Exit(504, nil)
		}
		return
	case expired:
		st.status = "EXPIRED"
		return
	}
	age := now.Sub(obj.Stamp)
	if !p.disk {
		if p.stale(cc, obj, age) {
			st.status = "STALE"
			return
		}
	}
	p.serve(r, st, obj, age)
}

// stale applies the memory strategy's freshness rules.
func (p *Plugin) stale(cc directives, obj *Object, age time.Duration) bool {
	secs := age.Seconds()
	ttl := obj.TTL.Seconds()
	if p.cfg.CacheControl {
		return cc.hasMaxAge && secs > cc.maxAge ||
			cc.hasMaxStale && secs-ttl > cc.maxStale ||
			cc.hasMinFresh && ttl-secs < cc.minFresh
	}
	return secs > ttl
}

// serve answers from the cache with the stored status, headers and body.
func (p *Plugin) serve(r *plugin.Request, st *state, obj *Object, age time.Duration) {
	st.hit, st.status = true, ""
	h := r.W.Header()
	for k, vv := range obj.Header {
		if p.cfg.HideCacheHeaders && (k == "Cache-Control" || k == "Expires") {
			delete(h, k)
			continue
		}
		h[k] = vv
	}
	if !p.disk {
		h["Age"] = []string{strconv.FormatInt(int64(math.Floor(age.Seconds())), 10)}
	}
	h["Apisix-Cache-Status"] = hitValue
	// Exit labels []byte bodies text/plain; the shim puts the stored
	// Content-Type back before the header filters and the engine see it.
	st.shim = ctWriter{ResponseWriter: r.W, ct: obj.Header["Content-Type"]}
	r.Ctx.W = &st.shim
	r.Exit(obj.Status, obj.Body)
	r.Ctx.W = st.shim.ResponseWriter
}

var hitValue = []string{"HIT"}

// ctWriter restores a cached response's Content-Type at WriteHeader.
type ctWriter struct {
	engine.ResponseWriter
	ct []string
}

// WriteHeader puts the stored Content-Type back, then writes the header.
func (w *ctWriter) WriteHeader(status int) {
	h := w.ResponseWriter.Header()
	if w.ct != nil {
		h["Content-Type"] = w.ct
	} else {
		delete(h, "Content-Type")
	}
	w.ResponseWriter.WriteHeader(status)
}

// HeaderFilter sets Apisix-Cache-Status and decides whether the response
// is stored.
func (p *Plugin) HeaderFilter(r *plugin.Request) {
	v := r.Values[p.key]
	st, _ := v.(*state)
	if st == nil || st.hit {
		return
	}
	h := r.W.Header()
	if st.status != "" {
		h.Set("Apisix-Cache-Status", st.status)
	}
	if !st.lookup {
		if p.disk && p.cfg.HideCacheHeaders {
			delete(h, "Cache-Control")
			delete(h, "Expires")
		}
		return
	}
	cc := parseDirectives(h["Cache-Control"])
	expires := h["Expires"]
	varyRaw := h["Vary"]
	ttl, ok := p.cacheable(r, st, h, cc, expires, varyRaw)
	if ok {
		st.obj = &Object{Status: r.RespStatus, Header: storedHeader(h), TTL: ttl}
	} else {
		st.lookup = false
	}
	if p.cfg.HideCacheHeaders {
		delete(h, "Cache-Control")
		delete(h, "Expires")
	}
}

// cacheable is APISIX's cacheable_response (memory) or nginx's rules
// (disk); it returns the TTL to store with.
func (p *Plugin) cacheable(r *plugin.Request, st *state, h engine.Header, cc directives, expires, varyRaw []string) (time.Duration, bool) {
	if !p.statuses[r.RespStatus] || r.Method == "HEAD" {
		return 0, false
	}
	if p.truthy(r, p.cfg.NoCache, st.kbuf) {
		return 0, false
	}
	if cc.private || cc.noStore || cc.noCache {
		return 0, false
	}
	ttl := p.ttl
	if p.disk {
		ttl = diskTTL
		if cc.hasSMaxAge || cc.hasMaxAge || len(expires) > 0 {
			ttl = resourceTTL(cc, expires, p.now())
		}
		if ttl <= 0 {
			return 0, false
		}
	} else if p.cfg.CacheControl {
		ttl = resourceTTL(cc, expires, p.now())
		if ttl <= 0 {
			return 0, false
		}
	}
	if (p.disk || !p.cfg.CacheSetCookie) && len(h["Set-Cookie"]) > 0 {
		return 0, false
	}
	vary, ok := parseVary(varyRaw)
	if !ok {
		return 0, false
	}
	st.vary = vary
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= int64(p.maxObject) {
			return 0, false
		}
	}
	return ttl, true
}

// hopByHop are the headers never replayed from the cache (APISIX's list:
// connection-level ones plus Content-Length and Apisix-Cache-Status).
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailers": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Apisix-Cache-Status": true,
}

// storedHeader copies the headers a hit may replay: not hop-by-hop and
// not rate-limit counters, which belong to the request that made them.
func storedHeader(h engine.Header) engine.Header {
	out := make(engine.Header, len(h))
	for k, vv := range h {
		if hopByHop[k] || strings.Contains(strings.ToLower(k), "ratelimit-remaining") {
			continue
		}
		// Full slice expressions: appending to a replayed value always
		// copies, so a hit can never write into the stored object.
		c := append([]string(nil), vv...)
		out[k] = c[:len(c):len(c)]
	}
	return out
}

// parseVary returns the sorted, lowercased Vary header names; ok is false
// for "*" (never reusable).
func parseVary(values []string) ([]string, bool) {
	var out []string
	for _, v := range values {
		for _, tok := range strings.Split(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "*" {
				return nil, false
			}
			if tok != "" {
				out = append(out, strings.ToLower(tok))
			}
		}
	}
	sort.Strings(out)
	return out, true
}

// BodyFilter buffers a storable response and stores it at the end.
func (p *Plugin) BodyFilter(r *plugin.Request, chunk []byte, eof bool) []byte {
	v := r.Values[p.key]
	st, _ := v.(*state)
	if st == nil {
		return chunk
	}
	if st.lookup && st.obj != nil {
		if len(st.body)+len(chunk) >= p.maxObject {
			st.lookup, st.body = false, st.body[:0]
		} else {
			st.body = append(st.body, chunk...)
		}
	}
	if eof {
		if st.lookup && st.obj != nil {
			p.save(r, st)
		}
		p.release(r, st)
	}
	return chunk
}

// save stores the buffered response under its storage key, maintaining
// the Vary index as APISIX's memory handler does.
func (p *Plugin) save(r *plugin.Request, st *state) {
	obj := st.obj
	if cl := obj.Header.Get("Content-Length"); cl != "" {
		// A body shorter than announced was cut off upstream.
		if n, err := strconv.Atoi(cl); err == nil && n != len(st.body) {
			return
		}
	}
	now := p.now()
	obj.Body = append([]byte(nil), st.body...)
	obj.Stamp = now
	var skey []byte
	if len(st.vary) > 0 {
		sig := signature(r, st.vary)
		p.updateIndex(st, st.vary, sig, obj.TTL, now)
		p.store.del(entryKey(st.kbuf[:0], st.base))
		skey = variantKey(st.kbuf[:0], st.base, sig)
	} else {
		if _, _, ok := p.store.get(indexKey(st.kbuf[:0], st.base), now); ok {
			p.purge(st)
		}
		skey = entryKey(st.kbuf[:0], st.base)
	}
	st.kbuf = skey
	p.store.set(skey, obj, objectSize(obj), obj.TTL, now)
}

// updateIndex records sig among the variants of the key, replacing an
// index built for other Vary headers and evicting the oldest variant
// beyond maxVariants. Indexes are replaced, never modified in place.
func (p *Plugin) updateIndex(st *state, vary []string, sig string, ttl time.Duration, now time.Time) {
	ik := indexKey(nil, st.base)
	cur, _, _ := p.store.get(ik, now)
	idx, _ := cur.(*index)
	var variants []string
	if idx != nil && equal(idx.vary, vary) {
		for _, s := range idx.variants {
			if s == sig {
				return
			}
		}
		variants = append(variants, idx.variants...)
		for len(variants) >= maxVariants {
			p.store.del(variantKey(nil, st.base, variants[0]))
			variants = variants[1:]
		}
	} else if idx != nil {
		for _, s := range idx.variants {
			p.store.del(variantKey(nil, st.base, s))
		}
	}
	variants = append(variants, sig)
	n := int64(0)
	for _, s := range variants {
		n += int64(len(s))
	}
	p.store.set(ik, &index{vary: vary, variants: variants}, n, ttl, now)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// storageKey is where the request's response lives: its Vary variant when
// a live index exists for the key, else the key itself.
func (p *Plugin) storageKey(r *plugin.Request, st *state, now time.Time) []byte {
	ik := indexKey(st.kbuf[:0], st.base)
	st.kbuf = ik
	if v, expired, ok := p.store.get(ik, now); ok && !expired {
		if idx, _ := v.(*index); idx != nil && len(idx.vary) > 0 {
			return variantKey(st.kbuf[:0], st.base, signature(r, idx.vary))
		}
	}
	return entryKey(st.kbuf[:0], st.base)
}

// purge removes the key, its Vary index and every variant; it reports
// whether the key or an index existed (expired ones included).
func (p *Plugin) purge(st *state) bool {
	now := p.now()
	ik := indexKey(nil, st.base)
	v, _, hasIndex := p.store.get(ik, now)
	if idx, _ := v.(*index); idx != nil {
		for _, s := range idx.variants {
			p.store.del(variantKey(nil, st.base, s))
		}
	}
	p.store.del(ik)
	hasEntry := p.store.del(entryKey(nil, st.base))
	return hasIndex || hasEntry
}

// Keys are length-prefixed so no cache key can collide with another key's
// variant or index key.
func entryKey(dst, base []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(base)), 10)
	dst = append(dst, ':')
	return append(dst, base...)
}

func variantKey(dst, base []byte, sig string) []byte {
	return append(append(entryKey(dst, base), "::"...), sig...)
}

func indexKey(dst, base []byte) []byte {
	return append(entryKey(dst, base), "::__vary"...)
}

// signature hashes the request's values of the Vary headers.
func signature(r *plugin.Request, vary []string) string {
	h := sha256.New()
	for i, name := range vary {
		if i > 0 {
			h.Write([]byte{0})
		}
		v, _ := r.Var("http_" + strings.ReplaceAll(name, "-", "_"))
		h.Write([]byte(v))
	}
	return hex.EncodeToString(h.Sum(nil))
}
