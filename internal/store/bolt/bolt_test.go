package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/store"
	"github.com/sluice-gw/sluice/internal/store/storetest"
)

func openT(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{ReapInterval: 100 * time.Millisecond})
	})
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "sluice.db")
	openT(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("file mode %v is readable by others", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("dir mode %v is open to others", perm)
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.db")
	openT(t, path, Options{})
	start := time.Now()
	s2, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v", d)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("error %q should name the path and say it is locked", err)
	}
}

func TestInvalidKeys(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{})
	ctx := context.Background()
	for _, key := range []string{"", "/a\x00b", strings.Repeat("k", 40000)} {
		if _, _, err := s.Put(ctx, key, []byte("v"), store.PutOptions{}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%.10q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Delete(ctx, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%.10q): %v, want ErrInvalidKey", key, err)
		}
	}
	if _, err := s.DeletePrefix(ctx, ""); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("DeletePrefix(\"\"): %v, want ErrInvalidKey", err)
	}
}

func TestReopenKeepsDataAndRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.db")
	ctx := context.Background()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv1, _, _ := s.Put(ctx, "/routes/1", []byte("one"), store.PutOptions{})
	kv2, _, _ := s.Put(ctx, "/routes/2", []byte("two"), store.PutOptions{})
	if _, _, err := s.Put(ctx, "/routes/1", []byte("uno"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "/routes/2"); err != nil {
		t.Fatal(err)
	}
	id, _ := s.NextID(ctx)
	ttlKV, _, err := s.Put(ctx, "/routes/ttl", []byte("t"), store.PutOptions{TTL: 800 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := s.Revision(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, "/x", nil, store.PutOptions{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Get(ctx, "/routes/1"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}

	s = openT(t, path, Options{ReapInterval: 50 * time.Millisecond})
	if got, _ := s.Revision(ctx); got != rev {
		t.Errorf("revision after reopen = %d, want %d", got, rev)
	}
	got, err := s.Get(ctx, "/routes/1")
	if err != nil || string(got.Value) != "uno" || got.CreateRev != kv1.CreateRev || got.ModRev <= kv2.ModRev {
		t.Errorf("after reopen /routes/1 = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "/routes/2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted key back after reopen: %v", err)
	}
	if _, err := s.Get(ctx, "/routes/ttl"); err != nil {
		t.Errorf("ttl key gone too early: %v", err)
	}
	next, _ := s.NextID(ctx)
	if next <= id || next <= rev {
		t.Errorf("NextID after reopen = %d, want > %d", next, rev)
	}
	// Watching from before the open is impossible; from the open revision
	// it works and sees the TTL expiry persisted across the restart.
	w0 := s.Watch(ctx, 0)
	if resp := <-w0; !errors.Is(resp.Err, store.ErrCompacted) {
		t.Errorf("Watch(0) after reopen: %+v, want ErrCompacted", resp)
	}
	if _, ok := <-w0; ok {
		t.Error("compacted watch channel not closed")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w := s.Watch(wctx, rev)
	var evs []store.Event
	for resp := range w {
		if resp.Err != nil {
			t.Fatalf("watch: %v", resp.Err)
		}
		evs = append(evs, resp.Events...)
		if n := len(evs); n > 0 && evs[n-1].Type == store.EventDelete && evs[n-1].KV.Key == "/routes/ttl" {
			break
		}
	}
	if n := len(evs); n == 0 || evs[n-1].KV.ModRev <= next {
		t.Fatalf("no expiry event after reopen: %+v", evs)
	}
	if _, err := s.Get(ctx, "/routes/ttl"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ttl key after expiry: %v", err)
	}
	_ = ttlKV
}

func TestWatchCompacted(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{WatchHistory: 10})
	ctx := context.Background()
	for i := range 30 {
		if _, _, err := s.Put(ctx, fmt.Sprintf("/k/%d", i), []byte("v"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := s.Revision(ctx)
	tests := []struct {
		from      int64
		compacted bool
		events    int
	}{
		{0, true, 0},
		{rev - 15, true, 0},
		{rev - 10, false, 10},
		{rev - 3, false, 3},
		{rev, false, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.from), func(t *testing.T) {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			w := s.Watch(wctx, tc.from)
			if tc.compacted {
				resp, ok := <-w
				if !ok || !errors.Is(resp.Err, store.ErrCompacted) {
					t.Fatalf("got %+v ok=%v, want ErrCompacted", resp, ok)
				}
				if _, ok := <-w; ok {
					t.Error("channel not closed after ErrCompacted")
				}
				return
			}
			if tc.events == 0 {
				select {
				case resp := <-w:
					t.Fatalf("unexpected %+v", resp)
				case <-time.After(100 * time.Millisecond):
				}
				return
			}
			resp := <-w
			if resp.Err != nil || len(resp.Events) != tc.events || resp.Events[0].KV.ModRev != tc.from+1 {
				t.Fatalf("got %d events err=%v", len(resp.Events), resp.Err)
			}
		})
	}
}

// A DeletePrefix spreads several events over one revision; trimming the
// history must not split that revision.
func TestWatchHistoryKeepsRevisionsWhole(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{WatchHistory: 3})
	ctx := context.Background()
	for i := range 3 {
		s.Put(ctx, fmt.Sprintf("/c/jack/%d", i), []byte("v"), store.PutOptions{})
	}
	if n, err := s.DeletePrefix(ctx, "/c/jack/"); err != nil || n != 3 {
		t.Fatalf("DeletePrefix = %d, %v", n, err)
	}
	delRev, _ := s.Revision(ctx)
	s.Put(ctx, "/z", []byte("v"), store.PutOptions{}) // pushes one delete event out
	w := s.Watch(ctx, delRev-1)
	if resp := <-w; !errors.Is(resp.Err, store.ErrCompacted) {
		t.Fatalf("watch from inside a split revision: %+v, want ErrCompacted", resp)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp := <-s.Watch(wctx, delRev)
	if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.Key != "/z" {
		t.Fatalf("watch from delete revision: %+v", resp)
	}
}

func TestSlowWatcherIsCutOff(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{WatchBuffer: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, _ := s.Revision(ctx)
	w := s.Watch(ctx, rev)
	// Nobody reads w while we write far more than its buffer; writes must
	// not block. The deadline only catches a hang, so it is generous.
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 10 {
					if _, _, err := s.Put(ctx, fmt.Sprintf("/k/%d/%d", g, i), []byte("v"), store.PutOptions{}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(25 * time.Second):
		t.Fatal("writers blocked by a slow watcher")
	}
	var last store.WatchResponse
	for resp := range w {
		last = resp
	}
	if !errors.Is(last.Err, store.ErrCompacted) {
		t.Fatalf("slow watcher ended with %+v, want ErrCompacted", last)
	}
}

func TestCloseEndsWatches(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "sluice.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := s.Watch(ctx, 0)
	// An unread watch with a full channel must not block Close either.
	w2 := s.Watch(ctx, 0)
	for i := range 5 {
		s.Put(ctx, fmt.Sprintf("/k/%d", i), []byte("v"), store.PutOptions{})
	}
	time.Sleep(50 * time.Millisecond)
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
	for range w {
	}
	for range w2 {
	}
	resp, ok := <-s.Watch(ctx, 0)
	if !ok || !errors.Is(resp.Err, store.ErrClosed) {
		t.Errorf("Watch after Close: %+v ok=%v", resp, ok)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestExpiredKeyReplacedIsCreate(t *testing.T) {
	// A huge reap interval leaves the expired key on disk, so Put meets it.
	s := openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{ReapInterval: time.Hour})
	ctx := context.Background()
	old, _, _ := s.Put(ctx, "/k", []byte("1"), store.PutOptions{TTL: 50 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	// Reads hide the key although the reaper has not removed it.
	if _, err := s.Get(ctx, "/k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of expired key: %v, want ErrNotFound", err)
	}
	if kvs, _, err := s.List(ctx, "/"); err != nil || len(kvs) != 0 {
		t.Errorf("List with only an expired key = %v, %v", kvs, err)
	}
	if _, err := s.Delete(ctx, "/k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete of expired key: %v, want ErrNotFound", err)
	}
	zero := int64(0)
	kv, created, err := s.Put(ctx, "/k", []byte("2"), store.PutOptions{IfModRev: &zero})
	if err != nil || !created || kv.CreateRev == old.CreateRev {
		t.Fatalf("Put over expired key: %+v created=%v err=%v", kv, created, err)
	}
	resp := <-s.Watch(ctx, old.ModRev)
	if len(resp.Events) != 2 || resp.Events[0].Type != store.EventDelete || resp.Events[1].Type != store.EventPut {
		t.Errorf("events = %+v, want delete then put", resp.Events)
	}
}

// Writes racing Close either fail with ErrClosed or are on disk afterwards.
func TestCloseWaitsForWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("/c/%d/%d", g, i)
				_, _, err := s.Put(ctx, key, []byte(key), store.PutOptions{})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openT(t, path, Options{})
	for _, k := range acked {
		if kv, err := s.Get(ctx, k); err != nil || string(kv.Value) != k {
			t.Errorf("acknowledged %s after Close: %+v, %v", k, kv, err)
		}
	}
	t.Logf("%d writes acknowledged before Close", len(acked))
}

// The history is bounded by bytes as well as by events, so a burst of
// large values (certificates) cannot pin them in memory.
func TestWatchHistoryBytes(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "sluice.db"), Options{WatchHistory: 1000, WatchHistoryBytes: 10 << 10})
	ctx := context.Background()
	val := bytes.Repeat([]byte("x"), 1000)
	for i := range 30 {
		if _, _, err := s.Put(ctx, fmt.Sprintf("/k/%d", i), val, store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := s.Revision(ctx)
	tests := []struct {
		from      int64
		compacted bool
	}{
		{rev - 20, true}, // 20 values of 1000 bytes exceed 10 KiB
		{rev - 9, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(rev-tc.from), func(t *testing.T) {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			resp := <-s.Watch(wctx, tc.from)
			if got := errors.Is(resp.Err, store.ErrCompacted); got != tc.compacted {
				t.Fatalf("compacted = %v (%+v), want %v", got, resp.Err, tc.compacted)
			}
			if !tc.compacted && (len(resp.Events) != int(rev-tc.from) || resp.Events[0].KV.ModRev != tc.from+1) {
				t.Fatalf("got %d events", len(resp.Events))
			}
		})
	}
}
