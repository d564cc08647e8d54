// Package gateway wires the store, the snapshot builder, the Admin API and
// the data-plane listeners together and runs their lifecycle.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
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
	current atomic.Pointer[Snapshot]

	// cache keeps decoded objects by key and ModRev so a rebuild decodes
	// only what changed.
	mu    sync.Mutex
	raw   map[string]store.KV
	cache map[string]cached
	ready chan struct{}
	once  sync.Once
}

type cached struct {
	modRev int64
	obj    any
	err    error
}

// NewBuilder returns a builder; call Run to start it.
func NewBuilder(st store.Store, logger *slog.Logger, compile CompileFunc, decrypt DecryptFunc) *Builder {
	return &Builder{store: st, logger: logger, compile: compile, decrypt: decrypt,
		raw: map[string]store.KV{}, cache: map[string]cached{}, ready: make(chan struct{})}
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
	b.raw = make(map[string]store.KV, len(kvs))
	for _, kv := range kvs {
		b.raw[kv.Key] = kv
	}
	b.mu.Unlock()
	return rev, nil
}

// follow applies watch events until the watch ends.
func (b *Builder) follow(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := b.store.Watch(wctx, rev)
	for {
		var resp store.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return
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
			delete(b.raw, ev.KV.Key)
		} else {
			b.raw[ev.KV.Key] = ev.KV
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

// build decodes every object (reusing cached decodes) and publishes a new
// snapshot.
func (b *Builder) build(rev int64) {
	start := time.Now()
	b.mu.Lock()
	snap := &Snapshot{Revision: rev, Objects: map[string]map[string]any{}}
	keys := make([]string, 0, len(b.raw))
	for k := range b.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	next := make(map[string]cached, len(keys))
	for _, key := range keys {
		kv := b.raw[key]
		kind, id, ok := kindOf(key)
		if !ok {
			continue // gen_id and other non-resource keys
		}
		c, hit := b.cache[key]
		if !hit || c.modRev != kv.ModRev {
			val := kv.Value
			if b.decrypt != nil {
				val = b.decrypt(kind, val)
			}
			obj, err := resource.Decode(kind, val)
			c = cached{modRev: kv.ModRev, obj: obj, err: err}
		}
		next[key] = c
		if c.err != nil {
			snap.Errors = append(snap.Errors, BuildError{Key: key, Error: c.err.Error()})
			continue
		}
		m := snap.Objects[kind.Name]
		if m == nil {
			m = map[string]any{}
			snap.Objects[kind.Name] = m
		}
		m[id] = c.obj
	}
	b.cache = next
	b.mu.Unlock()

	prev := b.current.Load()
	if b.compile != nil {
		data, errs := b.compile(snap, prev)
		snap.Data = data
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
