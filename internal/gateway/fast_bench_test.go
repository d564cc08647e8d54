package gateway

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine/enginetest"
	"github.com/sluice-gw/sluice/internal/engine/fast"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

// benchOrigin is an allocation-free HTTP/1.1 origin answering every
// request with a 1 KiB body, like bench/run.sh's nginx origin.
func benchOrigin(b testing.TB) string { return enginetest.Origin(b, benchResponse) }

// benchResponse has the head nginx (bench/run.sh's origin) sends.
var benchResponse = []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 02:00:00 GMT\r\n" +
	"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nX-Bench-Origin: 1\r\n\r\n" +
	strings.Repeat("x", 1024))

// skipResponse reads one Content-Length response without allocating.
var skipResponse = enginetest.ReadResponse

// BenchmarkServeFast is the whole plain proxy path on the fast engine
// (what bench/run.sh profile a measures): a keep-alive client, the fast
// server, dataPlane.Serve (snapshot, router, balancer), the fast upstream
// client and an origin, all in-process. Client and origin allocate
// nothing, so allocs/op are the gateway's and the engine's.
func BenchmarkServeFast(b *testing.B) {
	dp := benchDataPlane(b, benchOrigin(b))
	benchKeepAlive(b, startFast(b, dp))
}

// startFast serves dp with the fast engine (and its upstream client) on
// a loopback listener and returns the address.
func startFast(b testing.TB, dp *dataPlane) string {
	dp.fastFwd = fast.NewForwarder(quietLogger(), dp.fwd)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := fast.New(dp, std.DefaultLimits(), quietLogger(), nil)
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// benchKeepAlive is the client of BenchmarkServeFast and BenchmarkServeStd:
// one keep-alive HTTP/1.1 connection to addr sending wrk's GET /hello,
// b.N times after 200 warm-up requests (pools, string caches); it
// allocates nothing per request.
func benchKeepAlive(b *testing.B, addr string) {
	benchKeepAliveReq(b, addr, "GET /hello HTTP/1.1\r\nHost: 127.0.0.1:9080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
}

// benchKeepAliveReq is benchKeepAlive sending the raw request rawReq.
func benchKeepAliveReq(b *testing.B, addr, rawReq string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte(rawReq)
	do := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		st, err := skipResponse(br)
		if err != nil || st != 200 {
			b.Fatalf("status %d, %v", st, err)
		}
	}
	for i := 0; i < 200; i++ {
		do()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		do()
	}
}
