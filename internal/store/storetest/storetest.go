// Package storetest is the conformance suite every store.Store backend
// (bbolt, etcd, ...) must pass, so that the Admin API and the gateway can
// rely on one set of semantics whatever the backend.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/store"
)

// Run runs the whole suite. open must return a fresh, empty store for the
// given subtest and arrange (via t.Cleanup) for it to be closed; subtests
// run in parallel, each with its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetPut", testGetPut},
		{"InvalidKey", testInvalidKey},
		{"ListOrder", testListOrder},
		{"RevisionsMonotonic", testRevisionsMonotonic},
		{"Delete", testDelete},
		{"DeletePrefix", testDeletePrefix},
		{"CompareAndSwap", testCAS},
		{"TTL", testTTL},
		{"TTLClearedByPut", testTTLClearedByPut},
		{"NextID", testNextID},
		{"WatchFromRevision", testWatchFromRevision},
		{"WatchResume", testWatchResume},
		{"WatchCancel", testWatchCancel},
		{"WatchAfterList", testWatchAfterList},
		{"ConcurrentWriters", testConcurrentWriters},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// waitTimeout bounds every wait on a watch so a broken backend fails the
// test instead of hanging it.
const waitTimeout = 5 * time.Second

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s store.Store, key, val string, opts store.PutOptions) (store.KV, bool) {
	t.Helper()
	kv, created, err := s.Put(ctxT(t), key, []byte(val), opts)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return kv, created
}

func mustRev(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Revision(ctxT(t))
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	return rev
}

func testGetPut(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.Get(ctx, "/routes/1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: err = %v, want ErrNotFound", err)
	}
	before := mustRev(t, s)
	kv1, created := mustPut(t, s, "/routes/1", `{"uri":"/a"}`, store.PutOptions{})
	if !created {
		t.Error("first Put: created = false, want true")
	}
	if kv1.Key != "/routes/1" || string(kv1.Value) != `{"uri":"/a"}` {
		t.Errorf("first Put returned %+v", kv1)
	}
	if kv1.ModRev <= before || kv1.CreateRev != kv1.ModRev {
		t.Errorf("first Put revs: create %d mod %d, store was at %d", kv1.CreateRev, kv1.ModRev, before)
	}
	got, err := s.Get(ctx, "/routes/1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Key != kv1.Key || string(got.Value) != string(kv1.Value) || got.CreateRev != kv1.CreateRev || got.ModRev != kv1.ModRev {
		t.Errorf("Get = %+v, want %+v", got, kv1)
	}
	// Mutating what Get returned must not affect the store.
	got.Value[0] = 'X'

	kv2, created := mustPut(t, s, "/routes/1", `{"uri":"/b"}`, store.PutOptions{})
	if created {
		t.Error("replacing Put: created = true, want false")
	}
	if kv2.CreateRev != kv1.CreateRev {
		t.Errorf("replace changed CreateRev: %d -> %d", kv1.CreateRev, kv2.CreateRev)
	}
	if kv2.ModRev <= kv1.ModRev {
		t.Errorf("replace ModRev %d not after %d", kv2.ModRev, kv1.ModRev)
	}
	got, err = s.Get(ctx, "/routes/1")
	if err != nil || string(got.Value) != `{"uri":"/b"}` || got.ModRev != kv2.ModRev || got.CreateRev != kv1.CreateRev {
		t.Errorf("Get after replace = %+v, %v", got, err)
	}
	if rev := mustRev(t, s); rev < kv2.ModRev {
		t.Errorf("Revision %d behind last write %d", rev, kv2.ModRev)
	}

	// Empty values are legal and come back as empty, not as missing.
	mustPut(t, s, "/empty", "", store.PutOptions{})
	if got, err := s.Get(ctx, "/empty"); err != nil || len(got.Value) != 0 {
		t.Errorf("Get empty value = %+v, %v", got, err)
	}
}

func testInvalidKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, _, err := s.Put(ctx, "", []byte("x"), store.PutOptions{}); err == nil {
		t.Error("Put with empty key succeeded")
	}
}

func testListOrder(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	keys := []string{"/routes/2", "/routes/10", "/routes/1", "/routes/b", "/routes/a", "/routesx", "/route", "/services/1", "/upstreams/1"}
	for _, k := range keys {
		mustPut(t, s, k, `"`+k+`"`, store.PutOptions{})
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"/routes/", []string{"/routes/1", "/routes/10", "/routes/2", "/routes/a", "/routes/b"}},
		{"/routes", []string{"/routes/1", "/routes/10", "/routes/2", "/routes/a", "/routes/b", "/routesx"}},
		{"/routes/1", []string{"/routes/1", "/routes/10"}},
		{"/nothing/", nil},
		{"/", []string{"/route", "/routes/1", "/routes/10", "/routes/2", "/routes/a", "/routes/b", "/routesx", "/services/1", "/upstreams/1"}},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			kvs, rev, err := s.List(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got []string
			for _, kv := range kvs {
				got = append(got, kv.Key)
				if string(kv.Value) != `"`+kv.Key+`"` {
					t.Errorf("value of %s = %s", kv.Key, kv.Value)
				}
				if kv.ModRev <= 0 || kv.ModRev > rev {
					t.Errorf("%s ModRev %d outside (0, %d]", kv.Key, kv.ModRev, rev)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
			}
			if cur := mustRev(t, s); rev != cur {
				t.Errorf("List revision %d, store revision %d", rev, cur)
			}
		})
	}
}

func testRevisionsMonotonic(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	last := mustRev(t, s)
	for i := range 20 {
		key := fmt.Sprintf("/r/%d", i%5)
		var rev int64
		switch i % 4 {
		case 0, 1:
			kv, _ := mustPut(t, s, key, "v", store.PutOptions{})
			rev = kv.ModRev
		case 2:
			id, err := s.NextID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rev = id
		case 3:
			mustPut(t, s, key+"/x", "v", store.PutOptions{})
			if _, err := s.Delete(ctx, key+"/x"); err != nil {
				t.Fatal(err)
			}
			rev = mustRev(t, s)
		}
		if rev <= last {
			t.Fatalf("step %d: revision %d not after %d", i, rev, last)
		}
		last = rev
		if cur := mustRev(t, s); cur < rev {
			t.Fatalf("step %d: Revision() %d behind %d", i, cur, rev)
		}
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	put, _ := mustPut(t, s, "/upstreams/1", `{"n":1}`, store.PutOptions{})
	old, err := s.Delete(ctx, "/upstreams/1")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if old.Key != "/upstreams/1" || string(old.Value) != `{"n":1}` || old.ModRev != put.ModRev || old.CreateRev != put.CreateRev {
		t.Errorf("Delete returned %+v, want the stored %+v", old, put)
	}
	if _, err := s.Get(ctx, "/upstreams/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, "/upstreams/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, "/never"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete missing: %v, want ErrNotFound", err)
	}
	// Re-creating a deleted key is a create with a fresh CreateRev.
	again, created := mustPut(t, s, "/upstreams/1", `{"n":2}`, store.PutOptions{})
	if !created || again.CreateRev <= put.CreateRev {
		t.Errorf("re-create: created %v CreateRev %d (old %d)", created, again.CreateRev, put.CreateRev)
	}
}

func testDeletePrefix(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, k := range []string{
		"/consumers/jack", "/consumers/jack/credentials/a", "/consumers/jack/credentials/b",
		"/consumers/jackson", "/consumers/jackson/credentials/a", "/consumers/jill/credentials/a",
	} {
		mustPut(t, s, k, "{}", store.PutOptions{})
	}
	n, err := s.DeletePrefix(ctx, "/consumers/jack/")
	if err != nil {
		t.Fatalf("DeletePrefix: %v", err)
	}
	if n != 2 {
		t.Errorf("DeletePrefix removed %d, want 2", n)
	}
	kvs, _, err := s.List(ctx, "/consumers/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key)
	}
	want := []string{"/consumers/jack", "/consumers/jackson", "/consumers/jackson/credentials/a", "/consumers/jill/credentials/a"}
	if !slices.Equal(got, want) {
		t.Errorf("after DeletePrefix: %v, want %v", got, want)
	}
	n, err = s.DeletePrefix(ctx, "/consumers/jack/")
	if err != nil || n != 0 {
		t.Errorf("DeletePrefix of nothing = %d, %v; want 0, nil", n, err)
	}
}

func testCAS(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev := func(v int64) *int64 { return &v }
	kv, created, err := s.Put(ctx, "/ssls/1", []byte("a"), store.PutOptions{IfModRev: rev(0)})
	if err != nil || !created {
		t.Fatalf("create-if-absent: %v created=%v", err, created)
	}
	steps := []struct {
		name     string
		ifModRev int64
		wantErr  error
	}{
		{"must-not-exist on existing", 0, store.ErrConflict},
		{"stale revision", kv.ModRev - 1, store.ErrConflict},
		{"future revision", kv.ModRev + 1000, store.ErrConflict},
		{"current revision", kv.ModRev, nil},
		{"previous revision after swap", kv.ModRev, store.ErrConflict},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, _ := s.Get(ctx, "/ssls/1")
			beforeRev := mustRev(t, s)
			got, created, err := s.Put(ctx, "/ssls/1", []byte(st.name), store.PutOptions{IfModRev: rev(st.ifModRev)})
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("err = %v, want %v", err, st.wantErr)
			}
			after, _ := s.Get(ctx, "/ssls/1")
			if st.wantErr != nil {
				if string(after.Value) != string(before.Value) || after.ModRev != before.ModRev {
					t.Errorf("failed CAS changed the key: %+v -> %+v", before, after)
				}
				if r := mustRev(t, s); r != beforeRev {
					t.Errorf("failed CAS moved revision %d -> %d", beforeRev, r)
				}
				return
			}
			if created || string(after.Value) != st.name || after.ModRev != got.ModRev || after.CreateRev != kv.CreateRev {
				t.Errorf("CAS result %+v created=%v, stored %+v", got, created, after)
			}
		})
	}
	// IfModRev on a missing key must use 0.
	if _, _, err := s.Put(ctx, "/ssls/2", []byte("x"), store.PutOptions{IfModRev: rev(5)}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CAS on missing key with rev 5: %v, want ErrConflict", err)
	}
	if _, err := s.Get(ctx, "/ssls/2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed CAS created the key: %v", err)
	}
}

func testTTL(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	start := mustRev(t, s)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, start)

	// 2s rather than 1s: etcd rounds lease TTLs up to its minimum (about
	// 1.5s with default election settings), so a shorter TTL would not
	// measure the same thing on every backend.
	const ttl = 2 * time.Second
	putAt := time.Now()
	kv, _ := mustPut(t, s, "/protos/ttl", "v", store.PutOptions{TTL: ttl})
	mustPut(t, s, "/protos/keep", "v", store.PutOptions{})
	if _, err := s.Get(ctx, "/protos/ttl"); err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	// Poll until the key is gone; it must go, and not long after its TTL.
	for {
		_, err := s.Get(ctx, "/protos/ttl")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Get while waiting for expiry: %v", err)
		}
		if time.Since(putAt) > ttl+3*time.Second {
			t.Fatalf("key still present %v after a %v TTL", time.Since(putAt), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := time.Since(putAt); d < ttl-100*time.Millisecond {
		t.Errorf("key expired after %v, before its %v TTL", d, ttl)
	}
	kvs, _, err := s.List(ctx, "/protos/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || kvs[0].Key != "/protos/keep" {
		t.Errorf("List after expiry = %v, want only /protos/keep", kvs)
	}
	// The expiry must reach watchers as a delete.
	evs := collect(t, w, func(evs []store.Event) bool {
		for _, ev := range evs {
			if ev.Type == store.EventDelete && ev.KV.Key == "/protos/ttl" {
				return true
			}
		}
		return false
	})
	last := evs[len(evs)-1]
	if last.KV.ModRev <= kv.ModRev {
		t.Errorf("expiry delete at rev %d, not after put at %d", last.KV.ModRev, kv.ModRev)
	}
}

func testTTLClearedByPut(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustPut(t, s, "/protos/p", "1", store.PutOptions{TTL: 2 * time.Second})
	mustPut(t, s, "/protos/p", "2", store.PutOptions{})
	time.Sleep(2500 * time.Millisecond)
	got, err := s.Get(ctx, "/protos/p")
	if err != nil || string(got.Value) != "2" {
		t.Errorf("Put without TTL did not clear the earlier TTL: %+v, %v", got, err)
	}
}

func testNextID(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var last int64
	for range 10 {
		id, err := s.NextID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id <= last {
			t.Fatalf("NextID %d not after %d", id, last)
		}
		last = id
	}
	kv, _ := mustPut(t, s, "/x", "v", store.PutOptions{})
	if kv.ModRev <= last {
		t.Errorf("Put after NextID got rev %d, not after id %d", kv.ModRev, last)
	}
	// Concurrent callers get distinct ids.
	var (
		mu  sync.Mutex
		ids = map[int64]bool{}
		wg  sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				id, err := s.NextID(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ids[id] {
					t.Errorf("duplicate id %d", id)
				}
				ids[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// collect reads from w until done says the events gathered so far are
// enough, checking order and failing on timeout, error or close.
func collect(t *testing.T, w <-chan store.WatchResponse, done func([]store.Event) bool) []store.Event {
	t.Helper()
	var evs []store.Event
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for !done(evs) {
		select {
		case resp, ok := <-w:
			if !ok {
				t.Fatalf("watch closed early after %d events", len(evs))
			}
			if resp.Err != nil {
				t.Fatalf("watch error after %d events: %v", len(evs), resp.Err)
			}
			for _, ev := range resp.Events {
				if n := len(evs); n > 0 && ev.KV.ModRev < evs[n-1].KV.ModRev {
					t.Fatalf("event out of order: rev %d after %d", ev.KV.ModRev, evs[n-1].KV.ModRev)
				}
				if ev.KV.ModRev > resp.Revision {
					t.Fatalf("event rev %d beyond response revision %d", ev.KV.ModRev, resp.Revision)
				}
			}
			evs = append(evs, resp.Events...)
		case <-timer.C:
			t.Fatalf("timed out waiting for watch events; have %d: %v", len(evs), describe(evs))
		}
	}
	return evs
}

func atLeast(n int) func([]store.Event) bool {
	return func(evs []store.Event) bool { return len(evs) >= n }
}

func describe(evs []store.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		typ := "PUT"
		if ev.Type == store.EventDelete {
			typ = "DEL"
		}
		out[i] = fmt.Sprintf("%s %s@%d", typ, ev.KV.Key, ev.KV.ModRev)
	}
	return out
}

// expectQuiet fails if w delivers anything within a short window.
func expectQuiet(t *testing.T, w <-chan store.WatchResponse) {
	t.Helper()
	select {
	case resp, ok := <-w:
		if ok {
			t.Errorf("unexpected watch response: %v err=%v", describe(resp.Events), resp.Err)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func testWatchFromRevision(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustPut(t, s, "/routes/old", "old", store.PutOptions{})
	from := mustRev(t, s)

	a, _ := mustPut(t, s, "/routes/a", "1", store.PutOptions{})
	b, _ := mustPut(t, s, "/routes/b", "2", store.PutOptions{})
	a2, _ := mustPut(t, s, "/routes/a", "3", store.PutOptions{})
	if _, err := s.Delete(ctx, "/routes/b"); err != nil {
		t.Fatal(err)
	}
	delRev := mustRev(t, s)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, from)
	evs := collect(t, w, atLeast(4))
	want := []store.Event{
		{Type: store.EventPut, KV: a},
		{Type: store.EventPut, KV: b},
		{Type: store.EventPut, KV: a2},
		{Type: store.EventDelete, KV: store.KV{Key: "/routes/b", ModRev: delRev}},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %v, want 4 events", describe(evs))
	}
	for i := range want {
		g, w := evs[i], want[i]
		if g.Type != w.Type || g.KV.Key != w.KV.Key || g.KV.ModRev != w.KV.ModRev {
			t.Errorf("event %d = %v, want %v", i, describe(evs[i:i+1]), describe(want[i:i+1]))
		}
		if g.Type == store.EventPut && (string(g.KV.Value) != string(w.KV.Value) || g.KV.CreateRev != w.KV.CreateRev) {
			t.Errorf("event %d KV = %+v, want %+v", i, g.KV, w.KV)
		}
		if g.Type == store.EventDelete && g.KV.Value != nil {
			t.Errorf("delete event carries a value: %q", g.KV.Value)
		}
	}
	expectQuiet(t, w)

	// Live events arrive too.
	c, _ := mustPut(t, s, "/routes/c", "4", store.PutOptions{})
	evs = collect(t, w, atLeast(1))
	if len(evs) != 1 || evs[0].KV.Key != "/routes/c" || evs[0].KV.ModRev != c.ModRev {
		t.Errorf("live event = %v", describe(evs))
	}
}

func testWatchResume(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	from := mustRev(t, s)
	wctx, cancel := context.WithCancel(ctx)
	w := s.Watch(wctx, from)
	for i := range 5 {
		mustPut(t, s, fmt.Sprintf("/k/%d", i), "v", store.PutOptions{})
	}
	var seen []store.Event
	lastRev := from
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for len(seen) < 3 {
		select {
		case resp, ok := <-w:
			if !ok || resp.Err != nil {
				t.Fatalf("watch ended: ok=%v err=%v", ok, resp.Err)
			}
			seen = append(seen, resp.Events...)
			lastRev = resp.Revision
		case <-timer.C:
			t.Fatal("timed out")
		}
	}
	cancel()
	for i := 5; i < 10; i++ {
		mustPut(t, s, fmt.Sprintf("/k/%d", i), "v", store.PutOptions{})
	}
	wctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	w2 := s.Watch(wctx2, lastRev)
	rest := collect(t, w2, func(evs []store.Event) bool {
		return len(seen)+len(evs) >= 10
	})
	all := append(seen, rest...)
	if len(all) != 10 {
		t.Fatalf("events after resume: %v", describe(all))
	}
	for i, ev := range all {
		if want := fmt.Sprintf("/k/%d", i); ev.KV.Key != want {
			t.Errorf("event %d = %s, want %s (gap or duplicate)", i, ev.KV.Key, want)
		}
	}
	expectQuiet(t, w2)
}

func testWatchCancel(t *testing.T, s store.Store) {
	rev := mustRev(t, s)
	ctx, cancel := context.WithCancel(ctxT(t))
	w := s.Watch(ctx, rev)
	mustPut(t, s, "/a", "v", store.PutOptions{})
	cancel()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-w:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

// testWatchAfterList checks the list-then-watch pattern the gateway uses:
// watching from List's revision while writes continue yields every later
// change exactly once.
func testWatchAfterList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.Put(ctx, fmt.Sprintf("/bg/%04d", i), []byte("v"), store.PutOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	time.Sleep(20 * time.Millisecond)
	kvs, rev, err := s.List(ctx, "/bg/")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, rev)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	final, finalRev, err := s.List(ctx, "/bg/")
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, w, func(evs []store.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].KV.ModRev >= finalRev
	})
	keys := map[string]bool{}
	for _, kv := range kvs {
		keys[kv.Key] = true
	}
	for _, ev := range evs {
		if ev.KV.ModRev <= rev {
			t.Errorf("event %s@%d not after list revision %d", ev.KV.Key, ev.KV.ModRev, rev)
		}
		if keys[ev.KV.Key] {
			t.Errorf("duplicate: %s both listed and watched", ev.KV.Key)
		}
		keys[ev.KV.Key] = true
	}
	if len(keys) != len(final) {
		t.Errorf("list+watch saw %d keys, final list has %d", len(keys), len(final))
	}
}

func testConcurrentWriters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const writers, perWriter = 8, 50
	from := mustRev(t, s)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, from)

	var (
		mu   sync.Mutex
		revs = map[int64]string{}
		wg   sync.WaitGroup
	)
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("/cw/%d/%03d", g, i)
				kv, created, err := s.Put(ctx, key, []byte(key), store.PutOptions{})
				if err != nil || !created {
					t.Errorf("Put %s: created=%v err=%v", key, created, err)
					return
				}
				mu.Lock()
				if other, dup := revs[kv.ModRev]; dup {
					t.Errorf("revision %d given to %s and %s", kv.ModRev, other, key)
				}
				revs[kv.ModRev] = key
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	kvs, _, err := s.List(ctx, "/cw/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != writers*perWriter {
		t.Fatalf("List found %d keys, want %d", len(kvs), writers*perWriter)
	}
	for _, kv := range kvs {
		if revs[kv.ModRev] != kv.Key || string(kv.Value) != kv.Key {
			t.Errorf("%s at rev %d (writer saw %q)", kv.Key, kv.ModRev, revs[kv.ModRev])
		}
	}
	evs := collect(t, w, atLeast(writers*perWriter))
	if len(evs) != writers*perWriter {
		t.Fatalf("watch delivered %d events, want %d", len(evs), writers*perWriter)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].KV.ModRev <= evs[i-1].KV.ModRev {
			t.Fatalf("watch revisions not strictly increasing at %d: %d then %d", i, evs[i-1].KV.ModRev, evs[i].KV.ModRev)
		}
	}
}
