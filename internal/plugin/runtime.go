package plugin

import (
	"encoding/json"
	"log/slog"
	"sort"
	"sync"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/expr"
)

// Phase methods. A plugin instance (what Def.New returns) implements the
// ones for the phases it uses; the runtime finds them once, when a chain is
// compiled, not per request.
type (
	// Rewriter runs in the rewrite phase (auth plugins, proxy-rewrite, ...).
	Rewriter interface{ Rewrite(r *Request) }
	// Accesser runs in the access phase (limits, restrictions, ...).
	Accesser interface{ Access(r *Request) }
	// BeforeProxier runs after a node is picked, before every attempt.
	BeforeProxier interface{ BeforeProxy(r *Request) }
	// HeaderFilterer runs before the response status and headers are sent;
	// it may change r.RespStatus and r.W.Header().
	HeaderFilterer interface{ HeaderFilter(r *Request) }
	// BodyFilterer sees every response body chunk and returns what to send
	// instead; eof is true once, for the final (possibly empty) chunk.
	BodyFilterer interface {
		BodyFilter(r *Request, chunk []byte, eof bool) []byte
	}
	// Logger runs after the response is complete.
	Logger interface{ Log(r *Request) }
)

// Entry is one configured plugin instance in a chain.
type Entry struct {
	Def *Def
	// Instance is what Def.New built from the conf.
	Instance any
	// Priority is the effective priority (_meta.priority or Def.Priority).
	Priority int
	// Filter is _meta.filter; nil always runs.
	Filter *expr.Expr
	// ErrorResponse replaces the body of any >= 400 exit of this plugin
	// (_meta.error_response); nil keeps the plugin's own body.
	ErrorResponse []byte
	// Parent is the key of the object holding the conf ("/routes/1",
	// "/consumers/jack"); stateful plugins scope their state by it.
	Parent string
	// FromConsumer marks entries merged in from a consumer or its group.
	FromConsumer bool
	// Shared is the scope the instance was built with (Shared.Scope): the
	// shared values it uses stay open while the entry is in a snapshot.
	// nil when built without shared state.
	Shared *Shared
}

// Chain is a compiled, priority-ordered list of plugin instances with the
// per-phase lists precomputed. It is immutable once built.
type Chain struct {
	// Global marks the merged global-rule chain: its PreferRoute plugins
	// step aside when the route configures the same plugin.
	Global bool

	Entries                                                     []*Entry
	rewrite, access, beforeProxy, headerFilter, bodyFilter, log []*Entry
	index                                                       map[*Entry]int

	// merged caches chains merged with consumer plugins, per consumer.
	merged sync.Map // *Consumer -> *Chain
}

// NewChain sorts entries by priority (highest first, then name) and builds
// the phase lists.
func NewChain(entries []*Entry) *Chain {
	es := append([]*Entry(nil), entries...)
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Priority != es[j].Priority {
			return es[i].Priority > es[j].Priority
		}
		return es[i].Def.Name < es[j].Def.Name
	})
	c := &Chain{Entries: es, index: make(map[*Entry]int, len(es))}
	for i, e := range es {
		c.index[e] = i
		if _, ok := e.Instance.(Rewriter); ok {
			c.rewrite = append(c.rewrite, e)
		}
		if _, ok := e.Instance.(Accesser); ok {
			c.access = append(c.access, e)
		}
		if _, ok := e.Instance.(BeforeProxier); ok {
			c.beforeProxy = append(c.beforeProxy, e)
		}
		if _, ok := e.Instance.(HeaderFilterer); ok {
			c.headerFilter = append(c.headerFilter, e)
		}
		if _, ok := e.Instance.(BodyFilterer); ok {
			c.bodyFilter = append(c.bodyFilter, e)
		}
		if _, ok := e.Instance.(Logger); ok {
			c.log = append(c.log, e)
		}
	}
	return c
}

// Empty reports whether the chain has no plugins (nil-safe).
func (c *Chain) Empty() bool { return c == nil || len(c.Entries) == 0 }

// HasResponseFilters reports whether any plugin filters response headers
// or bodies, so the gateway knows whether to wrap the response writer.
func (c *Chain) HasResponseFilters() bool {
	return c != nil && (len(c.headerFilter) > 0 || len(c.bodyFilter) > 0)
}

// Has reports whether the chain has an enabled plugin called name.
func (c *Chain) Has(name string) bool {
	if c == nil {
		return false
	}
	for _, e := range c.Entries {
		if e.Def.Name == name {
			return true
		}
	}
	return false
}

// WithConsumer returns the chain merged with a consumer's (and its
// group's) plugins: same-named plugins are replaced whole, consumer over
// group over route. Results are cached per consumer for the life of the
// snapshot.
func (c *Chain) WithConsumer(cons *Consumer) *Chain {
	if cons == nil || len(cons.Plugins) == 0 {
		return c
	}
	if v, ok := c.merged.Load(cons); ok {
		return v.(*Chain)
	}
	byName := map[string]*Entry{}
	var order []string
	if c != nil {
		for _, e := range c.Entries {
			byName[e.Def.Name] = e
			order = append(order, e.Def.Name)
		}
	}
	for _, e := range cons.Plugins {
		if _, ok := byName[e.Def.Name]; !ok {
			order = append(order, e.Def.Name)
		}
		byName[e.Def.Name] = e
	}
	es := make([]*Entry, 0, len(order))
	for _, n := range order {
		es = append(es, byName[n])
	}
	m := NewChain(es)
	if c != nil {
		v, _ := c.merged.LoadOrStore(cons, m)
		return v.(*Chain)
	}
	return m
}

// Consumer is a consumer as the data plane sees it, with its group's and
// its own plugins already built and merged (consumer over group).
type Consumer struct {
	Username string
	GroupID  string
	Labels   map[string]string
	// Plugins are the non-auth plugins merged in after authentication.
	Plugins []*Entry
}

// Credential is one way to authenticate as a consumer with one auth plugin.
type Credential struct {
	Consumer *Consumer
	// ID is the credential object's id, "" for auth conf inline on the
	// consumer.
	ID string
	// Data is what Def.NewConsumer returned for the consumer-side conf.
	Data any
}

// Consumers indexes consumers by auth plugin and key.
type Consumers struct {
	byKey  map[string]map[string]*Credential
	byName map[string]*Consumer
}

// NewConsumers returns an empty index.
func NewConsumers() *Consumers {
	return &Consumers{byKey: map[string]map[string]*Credential{}, byName: map[string]*Consumer{}}
}

// AddConsumer registers a consumer by name.
func (cs *Consumers) AddConsumer(c *Consumer) { cs.byName[c.Username] = c }

// Add indexes a credential under plugin and key; the last one added wins.
func (cs *Consumers) Add(plugin, key string, cred *Credential) {
	m := cs.byKey[plugin]
	if m == nil {
		m = map[string]*Credential{}
		cs.byKey[plugin] = m
	}
	m[key] = cred
}

// Lookup finds the credential holding key for plugin.
func (cs *Consumers) Lookup(plugin, key string) (*Credential, bool) {
	if cs == nil {
		return nil, false
	}
	c, ok := cs.byKey[plugin][key]
	return c, ok
}

// All returns every credential of plugin (for plugins that cannot index by
// a key, e.g. trying each consumer's secret). The map must not be modified.
func (cs *Consumers) All(plugin string) map[string]*Credential {
	if cs == nil {
		return nil
	}
	return cs.byKey[plugin]
}

// ByName finds a consumer by username (anonymous_consumer).
func (cs *Consumers) ByName(name string) (*Consumer, bool) {
	if cs == nil {
		return nil, false
	}
	c, ok := cs.byName[name]
	return c, ok
}

// Env is the per-snapshot environment plugins read at request time.
type Env struct {
	Consumers *Consumers
	// Metadata holds plugin_metadata objects by plugin name.
	Metadata map[string]json.RawMessage
	Logger   *slog.Logger
}

// Request is what a plugin's phase methods receive: the engine-neutral
// request context plus the plugin runtime's state for this request.
type Request struct {
	*engine.Ctx
	// Env is the snapshot's plugin environment.
	Env *Env
	// Consumer and CredentialID are set once an auth plugin succeeded.
	Consumer     *Consumer
	CredentialID string
	// RespStatus is the response status during HeaderFilter; plugins may
	// change it.
	RespStatus int
	// UpstreamHost, when set by a plugin (proxy-rewrite host), is the Host
	// header sent upstream, overriding pass_host.
	UpstreamHost string
	// Upstream, when set by a plugin (traffic-split), replaces the route's
	// upstream: a string upstream id or an upstream object the gateway
	// knows how to compile.
	Upstream any

	// Route is the route's chain for this request (after the consumer
	// merge), used to apply PreferRoute to global rules.
	Route *Chain

	cur     *Entry
	exited  bool
	filters map[*Entry]bool // cached _meta.filter results
}

// Reset clears r for reuse.
func (r *Request) Reset() {
	*r = Request{filters: r.filters}
	for k := range r.filters {
		delete(r.filters, k)
	}
}

// Exited reports whether a plugin ended the request.
func (r *Request) Exited() bool { return r.exited }

// Exit ends the request with status and body, as APISIX's
// core.response.exit does: nil body → nginx's error page; string or
// []byte → sent verbatim; anything else → JSON plus "\n". A plugin's
// _meta.error_response replaces the body of exits with status >= 400.
// Headers the plugin set on r.W.Header() before calling Exit are kept.
func (r *Request) Exit(status int, body any) {
	r.exited = true
	if r.cur != nil && r.cur.ErrorResponse != nil && status >= 400 {
		ct := "text/plain"
		if json.Valid(r.cur.ErrorResponse) && len(r.cur.ErrorResponse) > 0 && (r.cur.ErrorResponse[0] == '{' || r.cur.ErrorResponse[0] == '[') {
			ct = "application/json"
		}
		r.Reply(status, ct, r.cur.ErrorResponse)
		return
	}
	// A Content-Type the plugin already set (mocking, fault-injection with
	// headers) is kept for string bodies.
	textType := "text/plain; charset=utf-8"
	if len(r.W.Header()["Content-Type"]) > 0 {
		textType = ""
	}
	switch b := body.(type) {
	case nil:
		r.ReplyError(status)
	case string:
		r.Reply(status, textType, []byte(b))
	case []byte:
		r.Reply(status, textType, b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			r.ReplyError(500)
			return
		}
		r.Reply(status, "application/json", append(j, '\n'))
	}
}

// Metadata returns the plugin_metadata object of a plugin, or nil.
func (r *Request) Metadata(plugin string) json.RawMessage {
	if r.Env == nil {
		return nil
	}
	return r.Env.Metadata[plugin]
}

// AttachConsumer records a successful authentication and sets the
// consumer headers for the upstream; absent values remove any header the
// client sent, so they can never be forged on an authenticated route.
func (r *Request) AttachConsumer(c *Consumer, credentialID string) {
	r.Consumer, r.CredentialID = c, credentialID
	r.ConsumerName = c.Username
	h := r.Header
	// Canonical keys, values from the request's arena: no allocation.
	h["X-Consumer-Username"] = r.Ctx.HeaderValue(c.Username)
	if credentialID != "" {
		h["X-Credential-Identifier"] = r.Ctx.HeaderValue(credentialID)
	} else {
		delete(h, "X-Credential-Identifier")
	}
	if id := c.Labels["custom_id"]; id != "" {
		h["X-Consumer-Custom-Id"] = r.Ctx.HeaderValue(id)
	} else {
		delete(h, "X-Consumer-Custom-Id")
	}
}

// runs reports whether e's _meta.filter lets it run for this request; the
// result is computed once per request.
func (r *Request) runs(e *Entry) bool {
	if e.Filter == nil {
		return true
	}
	if v, ok := r.filters[e]; ok {
		return v
	}
	v := e.Filter.Eval(r.Ctx)
	if r.filters == nil {
		r.filters = make(map[*Entry]bool, 4)
	}
	r.filters[e] = v
	return v
}

// Rewrite runs the rewrite phase; it returns true if a plugin exited.
func (c *Chain) Rewrite(r *Request) bool { return c.run(r, phaseRewrite, nil) }

// RewriteConsumerOnly runs the rewrite phase of plugins that came from the
// consumer side and are not auth plugins (APISIX's rewrite_in_consumer).
func (c *Chain) RewriteConsumerOnly(r *Request) bool {
	return c.run(r, phaseRewrite, func(e *Entry) bool { return e.FromConsumer && !e.Def.Auth })
}

// Access runs the access phase.
func (c *Chain) Access(r *Request) bool { return c.run(r, phaseAccess, nil) }

// BeforeProxy runs the before_proxy phase.
func (c *Chain) BeforeProxy(r *Request) bool { return c.run(r, phaseBeforeProxy, nil) }

// HeaderFilter runs the header_filter phase.
func (c *Chain) HeaderFilter(r *Request) { c.run(r, phaseHeaderFilter, nil) }

// Log runs the log phase.
func (c *Chain) Log(r *Request) { c.run(r, phaseLog, nil) }

// BodyFilter passes a chunk through every body filter.
func (c *Chain) BodyFilter(r *Request, chunk []byte, eof bool) []byte {
	if c == nil {
		return chunk
	}
	for _, e := range c.bodyFilter {
		if !r.runs(e) || c.Global && e.Def.PreferRoute && r.Route.Has(e.Def.Name) {
			continue
		}
		r.cur = e
		chunk = e.Instance.(BodyFilterer).BodyFilter(r, chunk, eof)
	}
	r.cur = nil
	return chunk
}

type phase int

const (
	phaseRewrite phase = iota
	phaseAccess
	phaseBeforeProxy
	phaseHeaderFilter
	phaseLog
)

func (c *Chain) run(r *Request, p phase, only func(*Entry) bool) bool {
	if c == nil {
		return r.exited
	}
	var list []*Entry
	switch p {
	case phaseRewrite:
		list = c.rewrite
	case phaseAccess:
		list = c.access
	case phaseBeforeProxy:
		list = c.beforeProxy
	case phaseHeaderFilter:
		list = c.headerFilter
	case phaseLog:
		list = c.log
	}
	for _, e := range list {
		if r.exited && p <= phaseBeforeProxy {
			break
		}
		if only != nil && !only(e) {
			continue
		}
		if c.Global && e.Def.PreferRoute && r.Route.Has(e.Def.Name) {
			continue
		}
		if !r.runs(e) {
			continue
		}
		r.cur = e
		switch p {
		case phaseRewrite:
			e.Instance.(Rewriter).Rewrite(r)
		case phaseAccess:
			e.Instance.(Accesser).Access(r)
		case phaseBeforeProxy:
			e.Instance.(BeforeProxier).BeforeProxy(r)
		case phaseHeaderFilter:
			e.Instance.(HeaderFilterer).HeaderFilter(r)
		case phaseLog:
			e.Instance.(Logger).Log(r)
		}
	}
	r.cur = nil
	return r.exited
}
