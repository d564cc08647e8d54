package plugin_test

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// conn stands for a long-lived client kept in Shared; it counts Close.
type conn struct{ closed atomic.Int32 }

func (c *conn) Close() error { c.closed.Add(1); return nil }

// build makes an entry whose instance used key through a fresh scope, as
// the gateway's snapshot build does.
func build(s *plugin.Shared, key string) (*plugin.Entry, *conn) {
	sc := s.Scope()
	c := sc.LoadOrStore(key, func() any { return &conn{} }).(*conn)
	return &plugin.Entry{Shared: sc}, c
}

func live(es ...*plugin.Entry) func(func(*plugin.Entry) bool) { return slices.Values(es) }

// waitClosed waits until c was closed once (the sweep timer runs
// asynchronously).
func waitClosed(t *testing.T, c *conn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.closed.Load(); n != 1 {
		t.Fatalf("closed %d times, want 1", n)
	}
}

func TestSharedSweep(t *testing.T) {
	const grace = 50 * time.Millisecond
	t.Run("unused closable value is closed after the grace, by the timer", func(t *testing.T) {
		s := &plugin.Shared{}
		s.SetGrace(grace)
		e1, c1 := build(s, "redis/a")
		s.Sweep(live(e1))
		e2, c2 := build(s, "redis/b") // the config changed
		start := time.Now()
		if n := s.Sweep(live(e2)); n != 0 {
			t.Fatalf("closed %d at once, want 0 before the grace", n)
		}
		waitClosed(t, c1)
		if time.Since(start) < grace {
			t.Fatalf("closed before the grace period")
		}
		if c2.closed.Load() != 0 {
			t.Fatal("the value in use was closed")
		}
		// The key is gone: using it again makes a new value.
		if _, c := build(s, "redis/a"); c == c1 {
			t.Fatal("closed value handed out again")
		}
	})
	t.Run("a reused entry keeps its value across builds", func(t *testing.T) {
		s := &plugin.Shared{}
		s.SetGrace(grace)
		e, c := build(s, "redis/a")
		for range 5 {
			// Later snapshots reuse the entry without calling New.
			s.Sweep(live(e))
			time.Sleep(grace / 2)
		}
		time.Sleep(2 * grace)
		s.Sweep(live(e))
		if c.closed.Load() != 0 {
			t.Fatal("value of a live entry closed")
		}
	})
	t.Run("a retired value used again before the grace ends is kept", func(t *testing.T) {
		// Its own grace, long enough that the build using the value again
		// surely comes before it ends.
		const grace = time.Second
		s := &plugin.Shared{}
		s.SetGrace(grace)
		e1, c1 := build(s, "redis/a")
		s.Sweep(live(e1))
		e2, _ := build(s, "redis/b")
		s.Sweep(live(e2)) // redis/a retired
		e3, c3 := build(s, "redis/a")
		if c3 != c1 {
			t.Fatal("a retired value must be handed out again during its grace")
		}
		s.Sweep(live(e3))
		time.Sleep(grace + grace/2)
		s.Sweep(live(e3))
		if c1.closed.Load() != 0 {
			t.Fatal("value used again was closed")
		}
	})
	t.Run("values made outside a scope are never swept", func(t *testing.T) {
		s := &plugin.Shared{}
		s.SetGrace(grace)
		boot := s.LoadOrStore("exporter", func() any { return &conn{} }).(*conn)
		e, c := build(s, "redis/a")
		s.LoadOrStore("redis/a", func() any { return &conn{} }) // loaded outside a scope: pinned
		s.Sweep(live())
		time.Sleep(3 * grace)
		s.Sweep(live())
		if boot.closed.Load() != 0 || c.closed.Load() != 0 {
			t.Fatal("pinned value closed")
		}
		_ = e
	})
	t.Run("values that are not closers stay", func(t *testing.T) {
		s := &plugin.Shared{}
		s.SetGrace(time.Nanosecond)
		v := s.Scope().LoadOrStore("counters", func() any { return &sync.Map{} })
		s.Sweep(live())
		time.Sleep(time.Millisecond)
		s.Sweep(live())
		if got := s.LoadOrStore("counters", func() any { return nil }); got != v {
			t.Fatal("non-closable value dropped")
		}
	})
	t.Run("nil Shared", func(t *testing.T) {
		var s *plugin.Shared
		if s.Scope() != nil || s.Sweep(live()) != 0 {
			t.Fatal("nil Shared must stay nil")
		}
		if v := s.LoadOrStore("k", func() any { return 1 }); v != 1 {
			t.Fatal(v)
		}
	})
}

// TestSharedSweepConcurrent runs builds, sweeps and the timer at once
// (go test -race): every value handed to a live entry stays open while it
// is live.
func TestSharedSweepConcurrent(t *testing.T) {
	s := &plugin.Shared{}
	s.SetGrace(time.Millisecond)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				e, c := build(s, fmt.Sprintf("k%d", (i+w)%7))
				s.Sweep(maps.Values(map[string]*plugin.Entry{"e": e}))
				_ = c
			}
		}()
	}
	wg.Wait()
	// The last build's value is in use; the sweep must keep it.
	e, c := build(s, "final")
	for range 3 {
		s.Sweep(live(e))
		time.Sleep(2 * time.Millisecond)
	}
	if c.closed.Load() != 0 {
		t.Fatal("live value closed")
	}
}
