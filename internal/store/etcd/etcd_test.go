package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/store"
	"github.com/sluice-gw/sluice/internal/store/etcd"
	"github.com/sluice-gw/sluice/internal/store/etcd/etcdtest"
	"github.com/sluice-gw/sluice/internal/store/storetest"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openT(t *testing.T, srv *etcdtest.Server, opts etcd.Options) *etcd.Store {
	t.Helper()
	opts.Endpoints = []string{srv.Endpoint()}
	s, err := etcd.Open(ctxT(t), opts)
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

// TestConformance runs the shared suite. Each subtest gets its own etcd
// process, because the suite checks store-wide revisions (a failed CAS must
// not move the revision, a listing's revision equals Revision()) which
// writes by parallel subtests on a shared etcd would move.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openT(t, etcdtest.Start(t), etcd.Options{})
	})
}

// TestSharedPrefixes checks that stores with different prefixes on one etcd
// do not see each other, including "/apisix" vs "/apisix2".
func TestSharedPrefixes(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	a := openT(t, srv, etcd.Options{Prefix: "/apisix"})
	b := openT(t, srv, etcd.Options{Prefix: "/apisix2/"})
	if _, _, err := a.Put(ctx, "/routes/1", []byte(`{"a":1}`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Put(ctx, "/routes/1", []byte(`{"b":1}`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rev, _ := a.Revision(ctx)
	w := a.Watch(wctx, rev)
	if _, _, err := b.Put(ctx, "/routes/2", []byte(`{}`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Put(ctx, "/routes/3", []byte(`{}`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    *etcd.Store
		want []string
	}{{a, []string{"/routes/1", "/routes/3"}}, {b, []string{"/routes/1", "/routes/2"}}} {
		kvs, _, err := tc.s.List(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(kvs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: List = %v, want %v", tc.s.Prefix(), got, tc.want)
		}
	}
	select {
	case resp := <-w:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.Key != "/routes/3" {
			t.Errorf("watch of /apisix saw %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
}

func keys(kvs []store.KV) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

// TestInterop checks APISIX's layout: what APISIX (or etcdctl) writes under
// /apisix is read through the store, APISIX's own bookkeeping keys are
// not, and what the store writes is at the key APISIX reads.
func TestInterop(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	s := openT(t, srv, etcd.Options{})
	raw := s.Client()
	route := `{"id":"x","uri":"/hello","upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}},"create_time":1700000000,"update_time":1700000000}`
	for k, v := range map[string]string{
		"/apisix/routes/":    "init_dir",
		"/apisix/upstreams/": "init_dir",
		"/apisix/consumers/": "init_dir",
		"/apisix/gen_id":     "7",
		"/apisix/plugins":    `[{"name":"real-ip"}]`,
		"/apisix/routes/x":   route,
		"/apisixx/routes/y":  `{}`,
		"/other/routes/z":    `{}`,
	} {
		if _, err := raw.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Get(ctx, "/routes/x")
	if err != nil || string(got.Value) != route {
		t.Fatalf("Get /routes/x = %q, %v", got.Value, err)
	}
	for _, p := range []string{"/", "/routes/", "/routes"} {
		kvs, _, err := s.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if k := keys(kvs); !slices.Equal(k, []string{"/routes/x"}) {
			t.Errorf("List(%q) = %v, want only /routes/x", p, k)
		}
	}
	if _, err := s.Get(ctx, "/routes/"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the directory marker: %v, want ErrNotFound", err)
	}

	// The reverse: the store's writes are where APISIX looks.
	if _, _, err := s.Put(ctx, "/upstreams/1", []byte(`{"nodes":{"127.0.0.1:80":1}}`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Get(ctx, "/apisix/upstreams/1")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"nodes":{"127.0.0.1:80":1}}` {
		t.Fatalf("raw get = %+v, %v", resp, err)
	}
	// NextID is APISIX's scheme: the revision of a write to gen_id.
	id, err := s.NextID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = raw.Get(ctx, "/apisix/gen_id")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != id {
		t.Fatalf("gen_id after NextID %d: %+v, %v", id, resp, err)
	}

	// Watches skip bookkeeping writes but deliver objects.
	rev, _ := s.Revision(ctx)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, rev)
	for _, kv := range [][2]string{{"/apisix/gen_id", "1"}, {"/apisix/services/", "init_dir"}, {"/apisix/plugins", "[]"}, {"/apisix/services/s1", `{"name":"s"}`}} {
		if _, err := raw.Put(ctx, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-w:
		if r.Err != nil || len(r.Events) != 1 || r.Events[0].KV.Key != "/services/s1" || string(r.Events[0].KV.Value) != `{"name":"s"}` {
			t.Errorf("watch delivered %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
}

// TestCompaction: a watch from a revision etcd has compacted away reports
// store.ErrCompacted once and closes, so the builder re-lists.
func TestCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	s := openT(t, srv, etcd.Options{})
	old, _ := s.Revision(ctx)
	for i := range 10 {
		if _, _, err := s.Put(ctx, fmt.Sprintf("/routes/%d", i), []byte("{}"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := s.Revision(ctx)
	if err := srv.Compact(ctx, cur); err != nil {
		t.Fatalf("compact: %v", err)
	}
	w := s.Watch(ctx, old)
	select {
	case resp, ok := <-w:
		if !ok || !errors.Is(resp.Err, store.ErrCompacted) || len(resp.Events) != 0 {
			t.Fatalf("first response = %+v ok=%v, want ErrCompacted", resp, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no response")
	}
	select {
	case resp, ok := <-w:
		if ok {
			t.Fatalf("watch not closed after ErrCompacted: %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch not closed")
	}
	// Watching from the compaction revision itself works.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w = s.Watch(wctx, cur)
	kv, _, err := s.Put(ctx, "/routes/new", []byte("{}"), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-w:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.ModRev != kv.ModRev {
			t.Fatalf("watch after compaction: %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}

// TestRestart: with etcd killed, requests fail fast with ErrUnavailable
// while a watch stays open; after a restart on the same data directory the
// store works again and the watch resumes without a gap.
func TestRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	// A long request timeout (APISIX's default is 30s) must not make
	// requests wait for it when etcd is gone: they fail once the
	// connection has been down for DialTimeout.
	const reqTimeout, dialTimeout = 20 * time.Second, time.Second
	const failWithin = 2*dialTimeout + 500*time.Millisecond
	s := openT(t, srv, etcd.Options{RequestTimeout: reqTimeout, DialTimeout: dialTimeout})
	kv, _, err := s.Put(ctx, "/routes/1", []byte(`{"v":1}`), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, kv.ModRev)

	// Requests in flight when etcd dies fail fast too.
	inflight := make(chan time.Duration, 2)
	for _, write := range []bool{true, false} {
		go func() {
			for {
				start := time.Now()
				var err error
				if write {
					_, _, err = s.Put(ctx, "/loop", []byte("{}"), store.PutOptions{})
				} else {
					_, err = s.Get(ctx, "/routes/1")
				}
				if err != nil {
					if !errors.Is(err, store.ErrUnavailable) {
						t.Errorf("in-flight request: %v, want ErrUnavailable", err)
					}
					inflight <- time.Since(start)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	srv.Kill()
	for range 2 {
		select {
		case d := <-inflight:
			if d > failWithin {
				t.Errorf("request in flight at the kill took %v", d)
			}
			t.Logf("request in flight at the kill failed after %v", d.Round(time.Millisecond))
		case <-time.After(reqTimeout):
			t.Fatal("request in flight at the kill hangs")
		}
	}
	ops := []struct {
		name string
		fn   func() error
	}{
		{"put", func() error { _, _, err := s.Put(ctx, "/routes/2", []byte("{}"), store.PutOptions{}); return err }},
		{"cas", func() error {
			r := kv.ModRev
			_, _, err := s.Put(ctx, "/routes/1", []byte("{}"), store.PutOptions{IfModRev: &r})
			return err
		}},
		{"ttl", func() error {
			_, _, err := s.Put(ctx, "/routes/3", []byte("{}"), store.PutOptions{TTL: 5 * time.Second})
			return err
		}},
		{"get", func() error { _, err := s.Get(ctx, "/routes/1"); return err }},
		{"list", func() error { _, _, err := s.List(ctx, "/"); return err }},
		{"delete", func() error { _, err := s.Delete(ctx, "/routes/1"); return err }},
		{"delete prefix", func() error { _, err := s.DeletePrefix(ctx, "/consumers/a/"); return err }},
		{"next id", func() error { _, err := s.NextID(ctx); return err }},
		{"revision", func() error { _, err := s.Revision(ctx); return err }},
	}
	for _, op := range ops {
		t.Run("down/"+op.name, func(t *testing.T) {
			start := time.Now()
			err := op.fn()
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
			if took > failWithin {
				t.Errorf("took %v with etcd down", took)
			}
			t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
		})
	}
	// Drop what the in-flight loop wrote before the kill.
	var pending []store.Event
drain:
	for {
		select {
		case resp := <-w:
			if resp.Err != nil {
				t.Fatalf("watch ended while etcd is down: %v", resp.Err)
			}
			for _, ev := range resp.Events {
				if ev.KV.Key != "/loop" {
					pending = append(pending, ev)
				}
			}
		default:
			break drain
		}
	}
	if len(pending) != 0 {
		t.Fatalf("watch delivered unexpected events: %+v", pending)
	}

	srv.Restart()
	restarted := time.Now()
	var kv2 store.KV
	deadline := time.Now().Add(10 * time.Second)
	for {
		kv2, _, err = s.Put(ctx, "/routes/2", []byte(`{"v":2}`), store.PutOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not usable 10s after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes work again %v after etcd restarted", time.Since(restarted).Round(time.Millisecond))
	got, err := s.Get(ctx, "/routes/1")
	if err != nil || string(got.Value) != `{"v":1}` {
		t.Fatalf("data after restart: %+v, %v", got, err)
	}
	// The watch resumes where it was: a /loop write that etcd committed
	// just before it died may come first, then the new write.
	timeout := time.After(15 * time.Second)
	for {
		select {
		case resp := <-w:
			if resp.Err != nil {
				t.Fatalf("watch after restart: %v", resp.Err)
			}
			for _, ev := range resp.Events {
				switch {
				case ev.KV.Key == "/loop" && ev.KV.ModRev < kv2.ModRev:
				case ev.KV.Key == "/routes/2" && ev.KV.ModRev == kv2.ModRev:
					t.Logf("watch resumed %v after etcd restarted", time.Since(restarted).Round(time.Millisecond))
					return
				default:
					t.Fatalf("watch after restart delivered %+v", ev)
				}
			}
		case <-timeout:
			t.Fatal("watch did not resume after restart")
		}
	}
}

// TestOpenUnreachable: Open reports an unreachable etcd promptly.
func TestOpenUnreachable(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Kill()
	start := time.Now()
	_, err := etcd.Open(ctxT(t), etcd.Options{Endpoints: []string{srv.Endpoint()}, DialTimeout: 500 * time.Millisecond, RequestTimeout: 2 * time.Second})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open took %v", d)
	}
}

// TestCloseEndsWatch: Close ends pending watches with ErrClosed and later
// calls fail with ErrClosed.
func TestCloseEndsWatch(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	s, err := etcd.Open(ctx, etcd.Options{Endpoints: []string{srv.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := s.Revision(ctx)
	w := s.Watch(ctx, rev)
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case resp, ok := <-w:
			if !ok {
				if _, err := s.Get(ctx, "/x"); !errors.Is(err, store.ErrClosed) {
					t.Errorf("Get after Close: %v", err)
				}
				return
			}
			if !errors.Is(resp.Err, store.ErrClosed) {
				t.Errorf("watch response after Close: %+v", resp)
			}
		case <-timeout:
			t.Fatal("watch not closed by Close")
		}
	}
}

func TestInvalidKeys(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	s := openT(t, srv, etcd.Options{})
	for _, k := range []string{"", "routes/1"} {
		if _, _, err := s.Put(ctx, k, []byte("x"), store.PutOptions{}); !errors.Is(err, etcd.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", k, err)
		}
	}
}

// TestRevisionWentBack: when etcd comes back with a lower revision (a new,
// empty cluster on the same address), a running watch ends with an error
// so the builder re-lists instead of waiting for revisions that now mean
// something else.
func TestRevisionWentBack(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxT(t)
	s := openT(t, srv, etcd.Options{DialTimeout: time.Second})
	for i := range 20 {
		if _, _, err := s.Put(ctx, fmt.Sprintf("/routes/%d", i), []byte("{}"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := s.Revision(ctx)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, rev)
	srv.Wipe()
	srv.Restart()
	select {
	case resp, ok := <-w:
		if !ok || !errors.Is(resp.Err, store.ErrCompacted) {
			t.Fatalf("watch after revision went back: %+v ok=%v, want ErrCompacted", resp, ok)
		}
		t.Logf("watch ended: %v", resp.Err)
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not notice the lower revision")
	}
	// A re-list sees the new, empty cluster and a new watch follows it.
	kvs, rev2, err := s.List(ctx, "/")
	if err != nil || len(kvs) != 0 || rev2 >= rev {
		t.Fatalf("List after wipe = %d keys at rev %d (was %d), %v", len(kvs), rev2, rev, err)
	}
	w = s.Watch(wctx, rev2)
	if _, _, err := s.Put(ctx, "/routes/new", []byte("{}"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-w:
		if resp.Err != nil || len(resp.Events) != 1 {
			t.Fatalf("watch on the new cluster: %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event on the new cluster")
	}
}
