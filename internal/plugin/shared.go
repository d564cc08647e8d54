package plugin

import (
	"io"
	"iter"
	"sync"
	"time"
)

// DefaultSharedGrace is how long a closable shared value nobody in the
// current snapshot uses is kept before it is closed: requests still running
// on an older snapshot may hold it, and a config flapping back and forth
// should not reconnect every time.
const DefaultSharedGrace = 30 * time.Second

// Shared is long-lived plugin state that survives snapshot swaps, e.g. the
// counters of limit-count keyed by parent and conf hash, or one Redis client
// per connection config.
//
// Keys derived from config (a Redis address, transport settings) pile up as
// config changes, so values that implement io.Closer are swept: the gateway
// builds each plugin instance with its own Scope, and after every snapshot
// build it calls Sweep with the snapshot's entries. A closable value that was
// made through a scope and that no entry of the snapshot uses is closed and
// removed once it has been unused for the grace period (DefaultSharedGrace).
// Values made or loaded through the Shared itself (Def.Init at boot, tests)
// are kept for the life of the process.
//
// The zero value is ready to use; a nil *Shared makes a fresh value on every
// LoadOrStore.
type Shared struct {
	// root is the Shared a scope views; nil on the Shared itself.
	root *Shared

	mu sync.Mutex
	// keys are the keys used through a scope (scopes only; few, so a slice).
	keys []string
	// m holds the values (root only).
	m     map[string]*sharedValue
	grace time.Duration
	// timer sweeps again when the grace of a retired value ends, so it is
	// closed without waiting for another build.
	timer *time.Timer
}

// sharedValue is one value of a Shared and its sweep state.
type sharedValue struct {
	v any
	// pinned values were made or loaded outside a scope and are never
	// swept.
	pinned bool
	// retired is when a sweep found no entry using the value; zero while
	// some entry does.
	retired time.Time
}

func (s *Shared) base() *Shared {
	if s.root != nil {
		return s.root
	}
	return s
}

// Scope returns a view of s for building one plugin instance: LoadOrStore
// through it reads and writes s and remembers the keys, so that Sweep knows
// which values the instance uses for as long as it is part of a snapshot.
// A nil s gives a nil scope.
func (s *Shared) Scope() *Shared {
	if s == nil {
		return nil
	}
	return &Shared{root: s.base()}
}

// SetGrace sets how long an unused closable value is kept before Sweep
// closes it (DefaultSharedGrace when unset or <= 0).
func (s *Shared) SetGrace(d time.Duration) {
	if s == nil {
		return
	}
	r := s.base()
	r.mu.Lock()
	r.grace = d
	r.mu.Unlock()
}

// LoadOrStore returns the value under key, storing the result of mk if
// there is none yet. mk runs without locks held (it may use s itself); when
// two callers race, the first value stored wins and the other is closed if
// it is an io.Closer.
func (s *Shared) LoadOrStore(key string, mk func() any) any {
	if s == nil {
		return mk()
	}
	r := s.base()
	scoped := s != r
	r.mu.Lock()
	e, ok := r.m[key]
	if ok {
		e.use(scoped)
		r.mu.Unlock()
		s.record(key)
		return e.v
	}
	r.mu.Unlock()
	v := mk()
	r.mu.Lock()
	if e, ok = r.m[key]; ok {
		e.use(scoped)
		r.mu.Unlock()
		if c, ok := v.(io.Closer); ok {
			_ = c.Close()
		}
		s.record(key)
		return e.v
	}
	if r.m == nil {
		r.m = map[string]*sharedValue{}
	}
	r.m[key] = &sharedValue{v: v, pinned: !scoped}
	r.mu.Unlock()
	s.record(key)
	return v
}

// use marks a value as in use again (a build picked it up while it was
// retired); a load outside a scope pins it.
func (e *sharedValue) use(scoped bool) {
	e.retired = time.Time{}
	if !scoped {
		e.pinned = true
	}
}

// record remembers a key used through a scope.
func (s *Shared) record(key string) {
	if s.root == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k == key {
			return
		}
	}
	s.keys = append(s.keys, key)
}

// Sweep is called after each snapshot build with the snapshot's plugin
// entries. Closable values made through a scope that none of the entries'
// scopes used are retired; values retired for the grace period are closed
// and removed, by this call or by a timer when no build comes. A retired
// value a later build uses again is kept. It returns how many values it
// closed.
func (s *Shared) Sweep(live iter.Seq[*Entry]) int {
	if s == nil {
		return 0
	}
	r := s.base()
	r.mu.Lock()
	candidates := false
	for _, e := range r.m {
		if e.sweepable() {
			candidates = true
			break
		}
	}
	r.mu.Unlock()
	if !candidates {
		return 0
	}
	used := map[string]struct{}{}
	for e := range live {
		sc := e.Shared
		if sc == nil || sc.root == nil {
			continue
		}
		sc.mu.Lock()
		for _, k := range sc.keys {
			used[k] = struct{}{}
		}
		sc.mu.Unlock()
	}
	now := time.Now()
	r.mu.Lock()
	for k, e := range r.m {
		if !e.sweepable() {
			continue
		}
		if _, ok := used[k]; ok {
			e.retired = time.Time{}
		} else if e.retired.IsZero() {
			e.retired = now
		}
	}
	closers := r.reapLocked(now)
	r.mu.Unlock()
	return closeAll(closers)
}

// sweepable reports a value Sweep may close.
func (e *sharedValue) sweepable() bool {
	if e.pinned {
		return false
	}
	_, ok := e.v.(io.Closer)
	return ok
}

// reapLocked removes the values retired for the grace period and returns
// them for closing outside the lock; it arms the timer for the next one.
func (r *Shared) reapLocked(now time.Time) []io.Closer {
	grace := r.grace
	if grace <= 0 {
		grace = DefaultSharedGrace
	}
	var out []io.Closer
	var next time.Duration
	for k, e := range r.m {
		if e.retired.IsZero() || !e.sweepable() {
			continue
		}
		if left := grace - now.Sub(e.retired); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		out = append(out, e.v.(io.Closer))
		delete(r.m, k)
	}
	if next > 0 {
		if r.timer == nil {
			r.timer = time.AfterFunc(next, r.reapTimer)
		} else {
			r.timer.Reset(next)
		}
	}
	return out
}

// reapTimer closes what has been retired long enough when no build came.
func (r *Shared) reapTimer() {
	r.mu.Lock()
	closers := r.reapLocked(time.Now())
	r.mu.Unlock()
	closeAll(closers)
}

func closeAll(cs []io.Closer) int {
	for _, c := range cs {
		_ = c.Close()
	}
	return len(cs)
}
