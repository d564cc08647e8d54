package gateway

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/expr"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/resource"
)

// pluginBuild compiles plugin confs into chain entries for one snapshot,
// reusing entries of the previous snapshot whose parent and conf are
// unchanged, so plugin state (counters, clients) survives unrelated edits.
type pluginBuild struct {
	reg    *plugin.Registry
	shared *plugin.Shared
	attrs  map[string]map[string]any
	prev   map[string]*plugin.Entry
	next   map[string]*plugin.Entry
	errs   []BuildError
	// consumerFilters records whether any consumer brings a header or
	// body filter plugin.
	consumerFilters bool
}

// confRef is one plugin conf and the object holding it.
type confRef struct {
	raw    json.RawMessage
	parent string
}

// entries builds the entries of a merged plugin set. Plugins that are not
// enabled are skipped silently, as APISIX does in etcd mode; disabled ones
// (_meta.disable) are left out.
//
// A conf that fails to build fails closed: failed is true and the caller
// must not serve the object without it (a route would otherwise run
// without its auth or limit plugin).
func (b *pluginBuild) entries(confs map[string]confRef, fromConsumer bool) (out []*plugin.Entry, failed bool) {
	names := make([]string, 0, len(confs))
	for n := range confs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		e, err := b.entry(name, confs[name], fromConsumer)
		if err != nil {
			b.errs = append(b.errs, BuildError{Key: confs[name].parent, Error: fmt.Sprintf("plugin %s: %v", name, err)})
			failed = true
			continue
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, failed
}

func (b *pluginBuild) entry(name string, c confRef, fromConsumer bool) (*plugin.Entry, error) {
	def, ok := b.reg.Lookup(name)
	if !ok {
		return nil, nil
	}
	var conf map[string]json.RawMessage
	if err := json.Unmarshal(c.raw, &conf); err != nil {
		// "[]" is an empty conf in Lua.
		conf = map[string]json.RawMessage{}
	}
	sum := sha256.Sum256(c.raw)
	hash := hex.EncodeToString(sum[:8])
	cacheKey := c.parent + "\x00" + name + "\x00" + hash + "\x00" + strconv.FormatBool(fromConsumer)
	if e := b.prev[cacheKey]; e != nil {
		b.next[cacheKey] = e
		return e, nil
	}
	e := &plugin.Entry{Def: def, Priority: def.Priority, Parent: c.parent, FromConsumer: fromConsumer}
	if rawMeta, ok := conf["_meta"]; ok {
		delete(conf, "_meta")
		var meta struct {
			Disable       bool            `json:"disable"`
			Priority      *int            `json:"priority"`
			Filter        json.RawMessage `json:"filter"`
			ErrorResponse json.RawMessage `json:"error_response"`
		}
		if err := json.Unmarshal(rawMeta, &meta); err != nil {
			return nil, fmt.Errorf("_meta: %w", err)
		}
		if meta.Disable {
			return nil, nil
		}
		if meta.Priority != nil {
			e.Priority = *meta.Priority
		}
		if len(meta.Filter) > 0 {
			f, err := expr.Compile(meta.Filter)
			if err != nil {
				return nil, fmt.Errorf("_meta.filter: %w", err)
			}
			e.Filter = f
		}
		if len(meta.ErrorResponse) > 0 {
			var s string
			if json.Unmarshal(meta.ErrorResponse, &s) == nil {
				e.ErrorResponse = []byte(s)
			} else {
				e.ErrorResponse = append(append([]byte{}, meta.ErrorResponse...), '\n')
			}
		}
	}
	body, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	if def.New == nil {
		return nil, fmt.Errorf("plugin has no runtime")
	}
	scope := b.shared.Scope() // Shared.Sweep keeps what the instance uses
	inst, err := def.New(body, &plugin.BuildEnv{Parent: c.parent, ConfHash: hash, Shared: scope, Attr: b.attrs[name]})
	if err != nil {
		return nil, err
	}
	e.Instance, e.Shared = inst, scope
	b.next[cacheKey] = e
	return e, nil
}

// withParent attaches a parent key to every conf of a plugins map.
func withParent(dst map[string]confRef, plugins map[string]json.RawMessage, parent string) {
	for n, raw := range plugins {
		dst[n] = confRef{raw: raw, parent: parent}
	}
}

// globalChain merges every global rule into one chain; a plugin found in
// two global rules is dropped, as APISIX does at runtime.
func (b *pluginBuild) globalChain(s *Snapshot) *plugin.Chain {
	confs := map[string]confRef{}
	seen := map[string]int{}
	ids := sortedIDs(s.Objects["global_rules"])
	for _, id := range ids {
		g, ok := s.Objects["global_rules"][id].(*resource.GlobalRule)
		if !ok {
			continue
		}
		for n, raw := range g.Plugins {
			seen[n]++
			confs[n] = confRef{raw: raw, parent: "/global_rules/" + id}
		}
	}
	for n, c := range seen {
		if c > 1 {
			delete(confs, n)
			b.errs = append(b.errs, BuildError{Key: "/global_rules/", Error: "plugin " + n + " is configured in several global rules; none of them runs"})
		}
	}
	es, failed := b.entries(confs, false)
	if failed {
		// A global rule that cannot run as configured must not be
		// skipped silently: every request is refused until it is fixed.
		ch := plugin.NewChain([]*plugin.Entry{brokenEntry("/global_rules/")})
		ch.Global = true
		return ch
	}
	if len(es) == 0 {
		return nil
	}
	ch := plugin.NewChain(es)
	ch.Global = true
	return ch
}

// consumers builds the consumer index: every auth plugin conf on consumers
// and credentials indexed by its key, and each consumer's non-auth plugins
// (its group's, overridden by its own) ready to merge after authentication.
func (b *pluginBuild) consumers(s *Snapshot) *plugin.Consumers {
	idx := plugin.NewConsumers()
	byName := map[string]*plugin.Consumer{}
	for _, name := range sortedIDs(s.Objects["consumers"]) {
		c, ok := s.Objects["consumers"][name].(*resource.Consumer)
		if !ok {
			continue
		}
		pc := &plugin.Consumer{Username: c.Username, GroupID: c.GroupID, Labels: c.Labels}
		merged := map[string]confRef{}
		groupMissing := false
		if c.GroupID != "" {
			if g, ok := s.Objects["consumer_groups"][c.GroupID].(*resource.ConsumerGroup); ok {
				withParent(merged, g.Plugins, "/consumer_groups/"+c.GroupID)
			} else {
				// APISIX answers 503 for a consumer whose group is gone
				// rather than running without the group's limits.
				groupMissing = true
				b.errs = append(b.errs, BuildError{Key: "/consumers/" + name, Error: "consumer group " + c.GroupID + " not found"})
			}
		}
		own := map[string]confRef{}
		withParent(own, c.Plugins, "/consumers/"+name)
		for n, cr := range own {
			if def, ok := b.reg.Lookup(n); ok && def.Auth {
				b.indexAuth(idx, def, cr, pc, "")
				continue
			}
			merged[n] = cr
		}
		es, failed := b.entries(merged, true)
		if failed {
			// The consumer cannot be served as configured: its
			// credentials are not indexed, so it cannot authenticate.
			continue
		}
		pc.Plugins = es
		if groupMissing {
			broken := brokenEntry("/consumers/" + name)
			broken.FromConsumer = true
			pc.Plugins = append(pc.Plugins, broken)
		}
		if plugin.NewChain(es).HasResponseFilters() {
			b.consumerFilters = true
		}
		idx.AddConsumer(pc)
		byName[name] = pc
	}
	for _, id := range sortedIDs(s.Objects["credentials"]) {
		cr, ok := s.Objects["credentials"][id].(*resource.Credential)
		if !ok {
			continue
		}
		// id is "<username>/credentials/<cid>".
		user, cid := splitCredentialID(id)
		pc := byName[user]
		if pc == nil {
			continue
		}
		for n, raw := range cr.Plugins {
			if def, ok := b.reg.Lookup(n); ok && def.Auth {
				b.indexAuth(idx, def, confRef{raw: raw, parent: "/consumers/" + id}, pc, cid)
			}
		}
	}
	return idx
}

func (b *pluginBuild) indexAuth(idx *plugin.Consumers, def *plugin.Def, cr confRef, pc *plugin.Consumer, credID string) {
	if def.NewConsumer == nil {
		return
	}
	var conf map[string]json.RawMessage
	_ = json.Unmarshal(cr.raw, &conf)
	delete(conf, "_meta")
	body, _ := json.Marshal(conf)
	key, data, err := def.NewConsumer(body)
	if err != nil {
		b.errs = append(b.errs, BuildError{Key: cr.parent, Error: fmt.Sprintf("plugin %s: %v", def.Name, err)})
		return
	}
	idx.Add(def.Name, key, &plugin.Credential{Consumer: pc, ID: credID, Data: data})
}

func splitCredentialID(id string) (string, string) {
	for i := 0; i+len("/credentials/") <= len(id); i++ {
		if id[i:i+len("/credentials/")] == "/credentials/" {
			return id[:i], id[i+len("/credentials/"):]
		}
	}
	return id, ""
}

func sortedIDs[T any](m map[string]T) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// filterWriter runs the header_filter and body_filter phases around the
// engine's response writer, for plugin responses and proxied ones alike.
type filterWriter struct {
	w        engine.ResponseWriter
	r        *plugin.Request
	global   *plugin.Chain
	route    *plugin.Chain
	wrote    bool
	finished bool
}

func (f *filterWriter) Header() engine.Header { return f.w.Header() }

func (f *filterWriter) WriteHeader(status int) {
	if f.wrote {
		return
	}
	if status >= 100 && status < 200 && status != 101 {
		f.w.WriteHeader(status)
		return
	}
	f.wrote = true
	f.r.RespStatus = status
	f.global.HeaderFilter(f.r)
	f.route.HeaderFilter(f.r)
	f.w.WriteHeader(f.r.RespStatus)
}

func (f *filterWriter) Write(p []byte) (int, error) {
	if !f.wrote {
		f.WriteHeader(200)
	}
	n := len(p)
	out := f.global.BodyFilter(f.r, p, false)
	out = f.route.BodyFilter(f.r, out, false)
	if len(out) > 0 {
		if _, err := f.w.Write(out); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (f *filterWriter) Flush() error { return f.w.Flush() }

// finish sends the final body-filter chunk (eof).
func (f *filterWriter) finish() {
	if f.finished {
		return
	}
	f.finished = true
	if !f.wrote {
		return
	}
	out := f.global.BodyFilter(f.r, nil, true)
	out = f.route.BodyFilter(f.r, out, true)
	if len(out) > 0 {
		_, _ = f.w.Write(out)
	}
}

// Hijack passes WebSocket upgrades through to the engine.
func (f *filterWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := f.w.(engine.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, fmt.Errorf("response writer cannot hijack")
}

// Abort passes a mid-response abort through to the engine.
func (f *filterWriter) Abort() {
	if a, ok := f.w.(engine.Aborter); ok {
		a.Abort()
	}
}

// brokenDef is the stand-in for plugin configuration that failed to build;
// it answers 503 so a broken security setting fails closed.
var brokenDef = &plugin.Def{Name: "sluice-broken-config", Priority: 1 << 30}

type brokenPlugin struct{}

func (brokenPlugin) Rewrite(r *plugin.Request) { r.Exit(503, nil) }

func brokenEntry(parent string) *plugin.Entry {
	return &plugin.Entry{Def: brokenDef, Instance: brokenPlugin{}, Priority: brokenDef.Priority, Parent: parent}
}
