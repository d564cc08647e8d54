// Package gateway wires the store, the snapshot builder, the Admin API and
// the data-plane listeners together and runs their lifecycle.
package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
	"github.com/sluice-gw/sluice/internal/stream"
)

// BuildError reports one stored object that could not be built. It is left
// out of the snapshot; everything else keeps serving.
type BuildError struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// Snapshot is an immutable view of the whole configuration. The data plane
// loads it once per request through an atomic pointer and never locks.
type Snapshot struct {
	// Revision is the store revision the snapshot reflects.
	Revision int64
	// BuiltAt is when the snapshot was published.
	BuiltAt time.Time
	// Objects holds decoded resources by kind name ("routes") and id.
	// Credentials are keyed "<username>/credentials/<id>".
	Objects map[string]map[string]any
	// Errors lists objects that failed to build.
	Errors []BuildError
	// Data is the data plane's compiled form (router, upstreams), built by
	// the compile hook; nil when no hook is set.
	Data any
	// stream is the compiled stream_routes; nil outside the stream proxy
	// modes.
	stream *streamCompiled
}

// Get returns one decoded object.
func (s *Snapshot) Get(kind, id string) (any, bool) {
	v, ok := s.Objects[kind][id]
	return v, ok
}

// CompileFunc turns a snapshot's decoded objects into the data plane's
// compiled form. Errors it reports for single objects go in the returned
// slice; it must not fail as a whole.
type CompileFunc func(s *Snapshot, prev *Snapshot) (any, []BuildError)

// DecryptFunc restores encrypted fields of a stored object before it is
// decoded.
type DecryptFunc func(kind *resource.Kind, raw []byte) []byte

// Builder watches a store and publishes snapshots.
type Builder struct {
	store   store.Store
	logger  *slog.Logger
	compile CompileFunc
	decrypt DecryptFunc
	// compileStream compiles stream_routes after compile (it reuses the
	// upstreams compile built); nil when proxy_mode has no stream.
	compileStream func(s, prev *Snapshot) (*streamCompiled, []BuildError)
	current       atomic.Pointer[Snapshot]
	// releaseIdle, when positive, returns freed heap memory to the OS once
	// no build has happened for that long (sluice.release_memory_idle):
	// each build of a large configuration leaves garbage the size of a
	// snapshot, and after a burst of Admin API writes the runtime would
	// otherwise keep the heap at the burst's high-water mark until its
	// periodic collection minutes later.
	releaseIdle time.Duration

	// objs holds every stored key with its decoded object. A value is
	// decoded once per ModRev and its raw bytes are then dropped: with
	// 10,000 routes, keeping the JSON next to the decoded form would cost
	// more than the form itself.
	mu    sync.Mutex
	objs  map[string]*stored
	ready chan struct{}
	once  sync.Once
}

// stored is one store key as the builder knows it (48 bytes: one per
// object, so it is kept small).
type stored struct {
	modRev int64
	kind   *resource.Kind
	id     string
	// obj is the raw value (a rawValue) until the next build decodes it,
	// then the decoded object or a decodeError.
	obj any
}

// rawValue is a stored value not decoded yet.
type rawValue []byte

// decodeError is the outcome of a value that failed to decode.
type decodeError struct{ err error }

// NewBuilder returns a builder; call Run to start it.
func NewBuilder(st store.Store, logger *slog.Logger, compile CompileFunc, decrypt DecryptFunc) *Builder {
	return &Builder{store: st, logger: logger, compile: compile, decrypt: decrypt,
		objs: map[string]*stored{}, ready: make(chan struct{})}
}

// Current returns the latest snapshot (never nil after Ready is closed).
func (b *Builder) Current() *Snapshot { return b.current.Load() }

// Ready is closed once the first snapshot is published.
func (b *Builder) Ready() <-chan struct{} { return b.ready }

// coalesceDelay lets a burst of writes become one build.
const coalesceDelay = 5 * time.Millisecond

// Run lists the store, publishes a snapshot, then follows the store's
// watch until ctx ends. A compacted watch leads to a full re-list.
func (b *Builder) Run(ctx context.Context) {
	for ctx.Err() == nil {
		rev, err := b.relist(ctx)
		if err != nil {
			b.logger.Error("config list failed, retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		b.build(rev)
		b.follow(ctx, rev)
	}
}

func (b *Builder) relist(ctx context.Context) (int64, error) {
	kvs, rev, err := b.store.List(ctx, "/")
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	objs := make(map[string]*stored, len(kvs))
	for _, kv := range kvs {
		if e := b.put(kv); e != nil {
			objs[kv.Key] = e
		}
	}
	b.objs = objs
	b.mu.Unlock()
	return rev, nil
}

// put returns the entry for kv: the known one when its ModRev is
// unchanged (no new decode), else a fresh one holding the raw value. Keys
// that are no resource (gen_id) get nil.
func (b *Builder) put(kv store.KV) *stored {
	if e := b.objs[kv.Key]; e != nil && e.modRev == kv.ModRev {
		return e
	}
	kind, id, ok := kindOf(kv.Key)
	if !ok {
		return nil
	}
	return &stored{modRev: kv.ModRev, kind: kind, id: id, obj: rawValue(kv.Value)}
}

// follow applies watch events until the watch ends.
func (b *Builder) follow(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := b.store.Watch(wctx, rev)
	var settle *time.Timer // armed after each build when releaseIdle is set
	var settled <-chan time.Time
	defer func() {
		if settle != nil {
			settle.Stop()
		}
	}()
	for {
		if b.releaseIdle > 0 {
			if settle == nil {
				settle = time.NewTimer(b.releaseIdle)
			} else {
				settle.Reset(b.releaseIdle)
			}
			settled = settle.C
		}
		var resp store.WatchResponse
		var ok bool
	wait:
		select {
		case <-ctx.Done():
			return
		case <-settled:
			// The configuration has been quiet for releaseIdle since
			// the last build: collect and hand the burst's garbage back.
			settled = nil
			debug.FreeOSMemory()
			goto wait
		case resp, ok = <-ch:
		}
		if !ok {
			return
		}
		if resp.Err != nil {
			if !errors.Is(resp.Err, store.ErrClosed) {
				b.logger.Warn("config watch interrupted, re-listing", "err", resp.Err)
			}
			return
		}
		b.apply(resp)
		rev = resp.Revision
		// Coalesce: drain whatever else arrives within a short window.
		timer := time.NewTimer(coalesceDelay)
	drain:
		for {
			select {
			case more, ok := <-ch:
				if !ok {
					timer.Stop()
					b.build(rev)
					return
				}
				if more.Err != nil {
					timer.Stop()
					b.build(rev)
					return
				}
				b.apply(more)
				rev = more.Revision
			case <-timer.C:
				break drain
			}
		}
		b.build(rev)
	}
}

func (b *Builder) apply(resp store.WatchResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range resp.Events {
		if ev.Type == store.EventDelete {
			delete(b.objs, ev.KV.Key)
		} else if e := b.put(ev.KV); e != nil {
			b.objs[ev.KV.Key] = e
		}
	}
}

// kindOf maps a store key to its kind and the id used in the snapshot.
func kindOf(key string) (*resource.Kind, string, bool) {
	parts := strings.Split(strings.TrimPrefix(key, "/"), "/")
	if len(parts) < 2 || parts[len(parts)-1] == "" {
		return nil, "", false
	}
	switch {
	case parts[0] == "consumers" && len(parts) == 4 && parts[2] == "credentials":
		k, ok := resource.ByName("credentials")
		return k, parts[1] + "/credentials/" + parts[3], ok
	case parts[0] == "secrets" && len(parts) == 3:
		k, ok := resource.ByName("secrets")
		return k, parts[1] + "/" + parts[2], ok
	case len(parts) == 2:
		k, ok := resource.ByName(parts[0])
		return k, parts[1], ok
	}
	return nil, "", false
}

// build decodes every object not decoded yet and publishes a new
// snapshot.
func (b *Builder) build(rev int64) {
	start := time.Now()
	b.mu.Lock()
	snap := &Snapshot{Revision: rev, Objects: map[string]map[string]any{}}
	// Decode what is new and count per kind, so that each kind's map is
	// allocated once at its final size: growing maps of 10,000 entries
	// leaves garbage several times the map's size on every build.
	counts := map[string]int{}
	for key, e := range b.objs {
		if raw, ok := e.obj.(rawValue); ok {
			val := []byte(raw)
			if b.decrypt != nil {
				val = b.decrypt(e.kind, val)
			}
			obj, err := resource.Decode(e.kind, val)
			if err != nil {
				e.obj = decodeError{err}
			} else {
				e.obj = obj
			}
		}
		if de, ok := e.obj.(decodeError); ok {
			snap.Errors = append(snap.Errors, BuildError{Key: key, Error: de.err.Error()})
			continue
		}
		counts[e.kind.Name]++
	}
	sort.Slice(snap.Errors, func(i, j int) bool { return snap.Errors[i].Key < snap.Errors[j].Key })
	for name, n := range counts {
		snap.Objects[name] = make(map[string]any, n)
	}
	for _, e := range b.objs {
		if _, failed := e.obj.(decodeError); !failed {
			snap.Objects[e.kind.Name][e.id] = e.obj
		}
	}
	b.mu.Unlock()

	prev := b.current.Load()
	if b.compile != nil {
		data, errs := b.compile(snap, prev)
		snap.Data = data
		snap.Errors = append(snap.Errors, errs...)
	}
	if b.compileStream != nil {
		sc, errs := b.compileStream(snap, prev)
		snap.stream = sc
		snap.Errors = append(snap.Errors, errs...)
	}
	snap.BuiltAt = time.Now()
	b.current.Store(snap)
	for _, e := range snap.Errors {
		b.logger.Warn("config object skipped", "key", e.Key, "err", e.Error)
	}
	b.logger.Debug("snapshot published", "revision", rev, "took", time.Since(start))
	b.once.Do(func() { close(b.ready) })
}

// StatusHandler serves the builder's state: the snapshot revision, object
// counts and the objects that failed to build.
func (b *Builder) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := b.Current()
		out := map[string]any{"ready": s != nil}
		if rev, err := b.store.Revision(r.Context()); err == nil {
			out["store_revision"] = rev
		}
		if s != nil {
			counts := map[string]int{}
			for k, m := range s.Objects {
				counts[k] = len(m)
			}
			errs := s.Errors
			if errs == nil {
				errs = []BuildError{}
			}
			out["revision"] = s.Revision
			out["built_at"] = s.BuiltAt.UTC().Format(time.RFC3339Nano)
			out["objects"] = counts
			out["errors"] = errs
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// streamCompiled is a snapshot's stream_routes in the stream proxy's form,
// plus the runtimes of the routes' inline upstreams, which the next build
// reuses by config hash so their balancer and health state survive.
type streamCompiled struct {
	table  *stream.Table
	inline map[string]*upstream // by config hash
}

// streamTable is the stream proxy's view of the current snapshot.
func (b *Builder) streamTable() *stream.Table {
	if s := b.Current(); s != nil && s.stream != nil {
		return s.stream.table
	}
	return nil
}

// streamCompileFunc returns the hook that compiles stream_routes. Routes
// by upstream_id share the HTTP data plane's upstream runtime (balancer,
// health checker); inline upstreams get their own, kept across builds.
// Routes with plugins proxy without them: the first build that sees such
// a route logs a warning, once per route id.
func streamCompileFunc(hc healthEnv, log *slog.Logger) func(s, prev *Snapshot) (*streamCompiled, []BuildError) {
	// warned is only touched by the builder goroutine (builds never run
	// concurrently).
	warned := map[string]bool{}
	return func(s, prevSnap *Snapshot) (*streamCompiled, []BuildError) {
		var errs []BuildError
		data, _ := s.Data.(*compiled)
		prev := map[string]*upstream{}
		if prevSnap != nil && prevSnap.stream != nil {
			prev = prevSnap.stream.inline
		}
		hc := hc
		hc.clientCert = func(id string) (string, string) {
			if ssl, ok := s.Objects["ssls"][id].(*resource.SSL); ok && ssl.Type == "client" {
				return ssl.Cert, ssl.Key
			}
			return "", ""
		}
		out := &streamCompiled{inline: map[string]*upstream{}}
		byID := func(id string) *upstream {
			if data == nil {
				return nil
			}
			return data.upstreams[id]
		}
		// known holds the previous build's inline runtimes and this
		// build's, so that identical upstreams (a route's and a
		// service's) share one runtime and one health checker.
		known := make(map[string]*upstream, len(prev))
		for h, u := range prev {
			known[h] = u
		}
		inline := func(u *resource.Upstream, key string) *upstream {
			cu, err := newUpstream(u, known, hc)
			if err != nil {
				errs = append(errs, BuildError{Key: key, Error: err.Error()})
				return nil
			}
			known[cu.hash] = cu
			out.inline[cu.hash] = cu
			return cu
		}
		objs := s.Objects["stream_routes"]
		ids := make([]string, 0, len(objs))
		for id := range objs {
			ids = append(ids, id)
		}
		// APISIX matches stream routes in load order, which is key
		// order; generated ids are zero-padded, so that is creation order.
		sort.Strings(ids)
		routes := make([]*stream.Route, 0, len(ids))
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			r, ok := objs[id].(*resource.StreamRoute)
			if !ok {
				continue
			}
			key := "/stream_routes/" + id
			seen[id] = true
			if len(r.Plugins) > 0 && !warned[id] {
				warned[id] = true
				names := make([]string, 0, len(r.Plugins))
				for n := range r.Plugins {
					names = append(names, n)
				}
				slices.Sort(names)
				log.Warn("stream route plugins are not supported yet; the route proxies without them",
					"stream_route", id, "plugins", strings.Join(names, ","))
			}
			rt := &stream.Route{ID: id, ServerPort: r.ServerPort, SNI: strings.ToLower(r.SNI)}
			if r.ServerAddr != "" {
				a, err := netip.ParseAddr(r.ServerAddr)
				if err != nil {
					// APISIX compares the string and never matches; leaving
					// the route out is the same, and says why.
					errs = append(errs, BuildError{Key: key, Error: fmt.Sprintf("server_addr %q: %v", r.ServerAddr, err)})
					continue
				}
				rt.ServerAddr = a.Unmap()
			}
			if r.RemoteAddr != "" {
				p, err := parsePrefix(r.RemoteAddr)
				if err != nil {
					errs = append(errs, BuildError{Key: key, Error: fmt.Sprintf("remote_addr %q: %v", r.RemoteAddr, err)})
					continue
				}
				if p.Addr().Is4In6() {
					p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
				}
				rt.RemoteAddr = p
			}
			// The upstream, in APISIX's order (init.lua
			// stream_preread_phase): the route's upstream_id, else the
			// route merged over its service, else the inline upstream.
			// A missing one leaves the route in place and its
			// connections are closed.
			var u *upstream
			switch {
			case r.UpstreamID != "":
				if u = byID(r.UpstreamID); u == nil {
					errs = append(errs, BuildError{Key: key, Error: fmt.Sprintf("upstream %s not found", r.UpstreamID)})
				}
			case r.ServiceID != "":
				svc, ok := s.Objects["services"][r.ServiceID].(*resource.Service)
				switch {
				case !ok:
					errs = append(errs, BuildError{Key: key, Error: fmt.Sprintf("service %s not found", r.ServiceID)})
				case r.Upstream != nil:
					u = inline(r.Upstream, key)
				case svc.UpstreamID != "":
					if u = byID(svc.UpstreamID); u == nil {
						errs = append(errs, BuildError{Key: key, Error: fmt.Sprintf("upstream %s not found", svc.UpstreamID)})
					}
				case svc.Upstream != nil:
					u = inline(svc.Upstream, "/services/"+svc.ID)
				}
			case r.Upstream != nil:
				u = inline(r.Upstream, key)
			}
			if u != nil {
				rt.Upstream = streamUpstream(u)
			}
			routes = append(routes, rt)
		}
		for id := range warned {
			if !seen[id] {
				delete(warned, id) // a route created again warns again
			}
		}
		// Health checkers of inline upstreams no stream route uses any
		// more stop; reused ones keep their state.
		for h, u := range prev {
			if _, kept := out.inline[h]; !kept && u.checker != nil {
				u.checker.Stop()
			}
		}
		out.table = stream.NewTable(routes)
		return out, errs
	}
}

// streamUpstream is an upstream runtime in the stream proxy's form:
// timeout.connect bounds each connect, max(send, read) is the session's
// idle timeout (lua-resty-core's stream set_timeouts), and scheme tls
// speaks TLS to the nodes (verifying them only with tls.verify).
func streamUpstream(u *upstream) *stream.Upstream {
	su := &stream.Upstream{Balancer: u.bal, Checker: u.checker,
		Retries: u.opts.Retries, RetryTimeout: u.opts.RetryTimeout}
	if t := u.cfg.Timeout; t != nil {
		to := timeouts(t)
		su.ConnectTimeout, su.IdleTimeout = to.Connect, max(to.Send, to.Read)
	}
	if u.cfg.Scheme == "tls" {
		su.TLS = u.tls
		if su.TLS == nil {
			su.TLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // APISIX verifies upstreams only when asked
		}
	}
	return su
}
