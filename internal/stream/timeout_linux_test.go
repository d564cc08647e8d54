//go:build linux

package stream

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// blackhole returns a loopback address whose listen backlog is full:
// Linux drops further SYNs, so connecting to it times out instead of being
// refused.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "blackhole")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the backlog (0 still admits one connection) and check.
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the listen backlog")
	return ""
}

func TestConnectTimeoutRetries(t *testing.T) {
	hole := blackhole(t)
	t.Run("next node after a connect timeout", func(t *testing.T) {
		up := upstreamOf(t, "roundrobin", hole, origin(t, echo))
		up.ConnectTimeout = 100 * time.Millisecond
		p := startProxy(t, &Route{ID: "r", Upstream: up})
		for i := range 4 {
			if got, err := roundTrip(t, p.dial(t), "x"); got != "x" {
				t.Fatalf("connection %d: got %q, %v", i, got, err)
			}
		}
	})
	t.Run("single node times out and closes", func(t *testing.T) {
		up := upstreamOf(t, "roundrobin", hole)
		up.ConnectTimeout = 100 * time.Millisecond
		p := startProxy(t, &Route{ID: "r", Upstream: up})
		c := p.dial(t)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 1)
		if n, err := c.Read(b); n != 0 || err == nil {
			t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
		}
	})
}
