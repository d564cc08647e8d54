package limitkit

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const shardCount = 64

// shard is one lock-striped part of a Table, padded so neighbouring
// shards' locks do not share a cache line.
type shard[E any] struct {
	mu sync.RWMutex
	m  map[string]*E
	_  [40]byte
}

// Table maps limit keys to per-key state (*E) for one counter scope. Reads
// take only a shard's read lock; inserts take one shard's write lock, so no
// request ever waits on a table-wide lock. A table that a sweep found empty
// is marked dead and dropped from its Registry; users then fetch a fresh
// one, so dropping it loses nothing.
type Table[E any] struct {
	seed   maphash.Seed
	shards [shardCount]shard[E]
	dead   atomic.Bool
}

func newTable[E any]() *Table[E] {
	t := &Table[E]{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = map[string]*E{}
	}
	return t
}

func (t *Table[E]) shardOf(key string) *shard[E] {
	return &t.shards[maphash.String(t.seed, key)&(shardCount-1)]
}

func (t *Table[E]) shardOfBytes(key []byte) *shard[E] {
	return &t.shards[maphash.Bytes(t.seed, key)&(shardCount-1)]
}

// Lookup returns the state under key, or nil.
func (t *Table[E]) Lookup(key string) *E {
	s := t.shardOf(key)
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	return e
}

// LookupBytes is Lookup for a key in a byte slice; it does not allocate.
func (t *Table[E]) LookupBytes(key []byte) *E {
	s := t.shardOfBytes(key)
	s.mu.RLock()
	e := s.m[string(key)]
	s.mu.RUnlock()
	return e
}

// GetOrCreate returns the state under key, creating it with mk. It returns
// nil if the table is dead; the caller then fetches a live table.
func (t *Table[E]) GetOrCreate(key string, mk func() *E) *E {
	s := t.shardOf(key)
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.dead.Load() {
		return nil
	}
	if e = s.m[key]; e == nil {
		e = mk()
		s.m[strings.Clone(key)] = e
	}
	return e
}

// GetOrCreateBytes is GetOrCreate for a key in a byte slice; finding an
// existing entry does not allocate.
func (t *Table[E]) GetOrCreateBytes(key []byte, mk func() *E) *E {
	s := t.shardOfBytes(key)
	s.mu.RLock()
	e := s.m[string(key)]
	s.mu.RUnlock()
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.dead.Load() {
		return nil
	}
	if e = s.m[string(key)]; e == nil {
		e = mk()
		s.m[string(key)] = e
	}
	return e
}

// Delete removes key if it still maps to e.
func (t *Table[E]) Delete(key string, e *E) {
	s := t.shardOf(key)
	s.mu.Lock()
	if s.m[key] == e {
		delete(s.m, key)
	}
	s.mu.Unlock()
}

// Len counts the entries (for tests and sweeps).
func (t *Table[E]) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// sweep deletes the entries for which remove returns true (remove runs
// under the shard's write lock, so it may retire the entry atomically) and
// marks the table dead when it ends up empty. It reports whether the table
// died.
func (t *Table[E]) sweep(remove func(*E) bool) bool {
	empty := true
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if remove(e) {
				delete(s.m, k)
			}
		}
		if len(s.m) > 0 {
			empty = false
		}
		s.mu.Unlock()
	}
	if !empty {
		return false
	}
	// Lock every shard so no insert races the decision.
	for i := range t.shards {
		t.shards[i].mu.Lock()
	}
	for i := range t.shards {
		if len(t.shards[i].m) > 0 {
			empty = false
			break
		}
	}
	if empty {
		t.dead.Store(true)
	}
	for i := range t.shards {
		t.shards[i].mu.Unlock()
	}
	return empty
}

// Registry holds a plugin's tables by scope. It lives in plugin.Shared, so
// it outlives snapshots; sweeps keep its memory bounded by the live state.
type Registry[E any] struct {
	mu       sync.Mutex // guards tables; taken only to create or drop a table
	tables   map[string]*Table[E]
	interval int64 // nanoseconds between sweeps
	next     atomic.Int64
	sweeping atomic.Bool
	// remove reports whether an entry is stale at now (unix nanoseconds)
	// and retires it; it runs under the entry's shard write lock.
	remove func(e *E, now int64) bool
}

// NewRegistry returns a registry that sweeps at most every interval,
// dropping entries for which remove returns true.
func NewRegistry[E any](interval time.Duration, remove func(e *E, now int64) bool) *Registry[E] {
	r := &Registry[E]{tables: map[string]*Table[E]{}, interval: int64(interval), remove: remove}
	r.next.Store(time.Now().UnixNano() + int64(interval))
	return r
}

// Table returns the live table for scope, creating it if needed.
func (r *Registry[E]) Table(scope string) *Table[E] {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tables[scope]
	if t == nil || t.dead.Load() {
		t = newTable[E]()
		r.tables[scope] = t
	}
	return t
}

// Tables returns how many tables are live (for tests).
func (r *Registry[E]) Tables() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tables)
}

// MaybeSweep starts a background sweep when one is due. Requests call it;
// it costs one atomic load when no sweep is due.
func (r *Registry[E]) MaybeSweep(now int64) {
	next := r.next.Load()
	if now < next || !r.next.CompareAndSwap(next, now+r.interval) {
		return
	}
	if !r.sweeping.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.sweeping.Store(false)
		r.Sweep(now)
	}()
}

// Sweep drops stale entries and empty tables now.
func (r *Registry[E]) Sweep(now int64) {
	r.mu.Lock()
	tables := make(map[string]*Table[E], len(r.tables))
	for k, t := range r.tables {
		tables[k] = t
	}
	r.mu.Unlock()
	for scope, t := range tables {
		if t.sweep(func(e *E) bool { return r.remove(e, now) }) {
			r.mu.Lock()
			if r.tables[scope] == t {
				delete(r.tables, scope)
			}
			r.mu.Unlock()
		}
	}
}

// Handle is an instance's way to its table: it caches the table and
// fetches a fresh one when a sweep retired it.
type Handle[E any] struct {
	reg   *Registry[E]
	scope string
	t     atomic.Pointer[Table[E]]
}

// NewHandle returns a handle on scope's table in reg.
func NewHandle[E any](reg *Registry[E], scope string) *Handle[E] {
	return &Handle[E]{reg: reg, scope: scope}
}

// Table returns the live table.
func (h *Handle[E]) Table() *Table[E] {
	t := h.t.Load()
	if t == nil || t.dead.Load() {
		t = h.reg.Table(h.scope)
		h.t.Store(t)
	}
	return t
}

// Get returns the state under key, creating it with mk.
func (h *Handle[E]) Get(key string, mk func() *E) *E {
	for {
		if e := h.Table().GetOrCreate(key, mk); e != nil {
			return e
		}
	}
}

// Registry returns the handle's registry.
func (h *Handle[E]) Registry() *Registry[E] { return h.reg }
