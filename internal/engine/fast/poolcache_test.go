package fast

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

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
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	var got strings.Builder
	want := ""
	// Same node with a new pool size, new node with the same size, and
	// repeats (the cached pool).
	steps := [][2]int{{0, 10}, {0, 10}, {0, 11}, {1, 11}, {1, 11}, {1, 12}, {0, 12}, {1, 10}, {0, 10}, {1, 12}}
	for _, st := range steps {
		i, size := st[0], st[1]
		fmt.Fprintf(nc, "GET /%d/%d HTTP/1.1\r\nHost: x\r\n\r\n", i, size)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got.Write(b)
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
