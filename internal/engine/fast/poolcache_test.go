package fast

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// TestPoolCachePerConnection: a client connection remembers its last
// upstream pool (Forwarder.pool), so requests on one keep-alive
// connection that alternate between nodes, and between pool settings for
// the same node, must each reach the right node through the right pool.
func TestPoolCachePerConnection(t *testing.T) {
	ups := []*upstream{
		startUpstream(t, func(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA" }),
		startUpstream(t, func(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB" }),
	}
	fwd := NewForwarder(nil, nil)
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		var i, size int
		fmt.Sscanf(c.Path, "/%d/%d", &i, &size)
		pick := func(n int) (proxy.Target, bool) {
			return proxy.Target{Scheme: "http", Addr: ups[i].addr()}, n == 0
		}
		fwd.Forward(c, pick, &proxy.Options{KeepalivePool: proxy.Pool{Size: size}})
	})
	addr := startFast(t, h, std.DefaultLimits())
	nc, br := dialClient(t, addr, 30*time.Second)
	var got strings.Builder
	want := ""
	// Same node with a new pool size, new node with the same size, and
	// repeats (the cached pool).
	steps := [][2]int{{0, 10}, {0, 10}, {0, 11}, {1, 11}, {1, 11}, {1, 12}, {0, 12}, {1, 10}, {0, 10}, {1, 12}}
	for _, st := range steps {
		i, size := st[0], st[1]
		fmt.Fprintf(nc, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", i, size)
		_, b, err := readFull(br, "GET")
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(b)
		want += string("AB"[i])
	}
	if got.String() != want {
		t.Fatalf("answers %q, want %q", got.String(), want)
	}
	// One pool per node and size: 2 nodes x 3 sizes (a cache that
	// matched on the node alone would have made fewer).
	fwd.mu.RLock()
	n := len(fwd.pools)
	fwd.mu.RUnlock()
	if n != 6 {
		t.Fatalf("%d pools, want 6", n)
	}
}

// TestPoolsBounded: past maxPools every pool is retired (idle
// connections closed, later ones not pooled) and the map starts over,
// so node churn cannot grow it without bound; a connection's memo never
// hands out a retired pool.
func TestPoolsBounded(t *testing.T) {
	defer func(n int) { maxPools = n }(maxPools)
	maxPools = 3
	up := startUpstream(t, nil)
	fwd := NewForwarder(nil, nil)
	var (
		mu   sync.Mutex
		seen []*pool // every pool the Forwarder held, from the handler
	)
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		var size int
		fmt.Sscanf(c.Path, "/%d", &size)
		pick := func(n int) (proxy.Target, bool) {
			return proxy.Target{Scheme: "http", Addr: up.addr()}, n == 0
		}
		opt := &proxy.Options{KeepalivePool: proxy.Pool{Size: size}}
		fwd.Forward(c, pick, opt)
		fwd.mu.RLock()
		mu.Lock()
		for _, p := range fwd.pools {
			if !slices.Contains(seen, p) {
				seen = append(seen, p)
			}
		}
		mu.Unlock()
		fwd.mu.RUnlock()
	})
	addr := startFast(t, h, std.DefaultLimits())
	c1, br1 := dialClient(t, addr, 30*time.Second)
	c2, br2 := dialClient(t, addr, 30*time.Second)
	get := func(nc net.Conn, br *bufio.Reader, size int) {
		t.Helper()
		fmt.Fprintf(nc, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
		wantResponse(t, br, "GET", 200, "ok")
		fwd.mu.RLock()
		n := len(fwd.pools)
		fwd.mu.RUnlock()
		if n > maxPools {
			t.Fatalf("%d pools kept, bound %d", n, maxPools)
		}
	}
	// c1's memo holds the size-10 pool; c2 then fills the map and
	// retires every pool; c1's next size-10 request must not go through
	// its retired memo (it gets a new pool in the map).
	get(c1, br1, 10)
	for _, size := range []int{11, 12, 13, 14} {
		get(c2, br2, size)
	}
	get(c1, br1, 10)
	fwd.mu.RLock()
	found := false
	for k := range fwd.pools {
		found = found || k.size == 10
	}
	fwd.mu.RUnlock()
	if !found {
		t.Fatal("a request went through a retired pool remembered by its connection")
	}
	for _, size := range []int{15, 16, 10, 10} {
		get(c1, br1, size)
	}
	retired := 0
	mu.Lock()
	defer mu.Unlock()
	for _, p := range seen {
		if p.retired.Load() {
			retired++
			p.mu.Lock()
			idle := len(p.conns)
			p.mu.Unlock()
			if idle != 0 {
				t.Fatalf("retired pool (size %d) holds %d idle connections", p.size, idle)
			}
		}
	}
	if retired == 0 {
		t.Fatal("no pool was retired")
	}
}

// A connection handed back to a retired pool is closed, not kept (a
// request in flight when its pool was retired ends there).
func TestRetiredPoolKeepsNothing(t *testing.T) {
	a, b := tcpPair(t)
	p := &pool{size: 4}
	p.retired.Store(true)
	p.put(&upConn{nc: a, p: p}, time.Now())
	if len(p.conns) != 0 {
		t.Fatalf("retired pool kept %d connections", len(p.conns))
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %v, want EOF (connection closed)", err)
	}
	// The same hand-back to a live pool keeps the connection.
	c, _ := tcpPair(t)
	live := &pool{size: 4}
	live.put(&upConn{nc: c, p: live}, time.Now())
	if len(live.conns) != 1 {
		t.Fatalf("live pool kept %d connections, want 1", len(live.conns))
	}
}
