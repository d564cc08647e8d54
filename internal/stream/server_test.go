package stream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/balancer"
)

// origin is a TCP server on loopback that runs fn for each connection.
func origin(t *testing.T, fn func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

// echo copies what it reads back and half-closes at EOF.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// replyAfterEOF reads the whole request first and only then answers: it
// only answers when the proxy passes the client's half-close on.
func replyAfterEOF(c *net.TCPConn) {
	b, _ := io.ReadAll(c)
	io.WriteString(c, "got "+strconv.Itoa(len(b))+" bytes")
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func upstreamOf(t *testing.T, typ string, addrs ...string) *Upstream {
	t.Helper()
	var nodes []balancer.Node
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		nodes = append(nodes, balancer.Node{Host: ap.Addr().String(), Port: int(ap.Port()), Weight: 1})
	}
	b, err := balancer.New(balancer.Config{Type: typ, Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	return &Upstream{Balancer: b, Retries: len(nodes) - 1}
}

// proxy runs a Server with one TCP listener whose table the test can swap.
type proxy struct {
	srv   *Server
	addr  string
	table atomic.Pointer[Table]
}

func startProxy(t *testing.T, routes ...*Route) *proxy {
	t.Helper()
	return startProxyWith(t, Options{}, routes...)
}

// startProxyWith is startProxy with Options (Table is set here).
func startProxyWith(t *testing.T, opt Options, routes ...*Route) *proxy {
	t.Helper()
	p := &proxy{}
	p.table.Store(NewTable(routes))
	opt.Table = p.table.Load
	p.srv = New(opt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- p.srv.ServeTCP(ln, false) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTCP returned %v", err)
		}
	})
	return p
}

func (p *proxy) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip sends msg, half-closes and reads everything back.
func roundTrip(t *testing.T, c *net.TCPConn, msg string) (string, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestProxyCopy(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: many buffers
	cases := []struct {
		name   string
		origin func(*net.TCPConn)
		msg    string
		want   string
	}{
		{"echo", echo, "hello stream", "hello stream"},
		{"echo 1 MiB", echo, big, big},
		{"half-close reaches origin", replyAfterEOF, "abc", "got 3 bytes"},
		{"half-close after 1 MiB", replyAfterEOF, big, "got 1048576 bytes"},
		{"empty request", replyAfterEOF, "", "got 0 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := upstreamOf(t, "roundrobin", origin(t, c.origin))
			p := startProxy(t, &Route{ID: "r", Upstream: up})
			got, err := roundTrip(t, p.dial(t), c.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(c.want), c.want)
			}
		})
	}
}

func TestProxyOriginClosesFirst(t *testing.T) {
	// The origin answers and closes without waiting: the client reads the
	// answer and EOF while its own write half is still open.
	addr := origin(t, func(c *net.TCPConn) { io.WriteString(c, "banner") })
	p := startProxy(t, &Route{ID: "r", Upstream: upstreamOf(t, "roundrobin", addr)})
	c := p.dial(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "banner" {
		t.Fatalf("read %q, %v", b, err)
	}
}

func TestNoMatchCloses(t *testing.T) {
	up := upstreamOf(t, "roundrobin", origin(t, echo))
	cases := []struct {
		name   string
		routes []*Route
	}{
		{"empty table", nil},
		{"port mismatch", []*Route{{ID: "r", ServerPort: 1, Upstream: up}}},
		{"remote mismatch", []*Route{{ID: "r", RemoteAddr: netip.MustParsePrefix("10.0.0.0/8"), Upstream: up}}},
		{"missing upstream", []*Route{{ID: "r"}}},
		{"upstream refuses", []*Route{{ID: "r", Upstream: upstreamOf(t, "roundrobin", refusedAddr(t))}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startProxy(t, c.routes...)
			conn := p.dial(t)
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			b, err := io.ReadAll(conn)
			if err != nil && !isReset(err) || len(b) != 0 {
				t.Fatalf("read %q, %v; want the connection closed", b, err)
			}
		})
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

func TestRetryOnConnectFailure(t *testing.T) {
	good := origin(t, echo)
	bad := refusedAddr(t)
	cases := []struct {
		name    string
		typ     string
		retries int
		wantAll bool
	}{
		{"roundrobin retries", "roundrobin", 1, true},
		{"least_conn retries", "least_conn", 1, true},
		{"chash retries", "chash", 1, true},
		{"ewma retries", "ewma", 1, true},
		{"no retries", "roundrobin", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := upstreamOf(t, c.typ, bad, good)
			up.Retries = c.retries
			p := startProxy(t, &Route{ID: "r", Upstream: up})
			ok := 0
			const n = 6
			for i := range n {
				got, _ := roundTrip(t, p.dial(t), "ping"+strconv.Itoa(i))
				if got == "ping"+strconv.Itoa(i) {
					ok++
				}
			}
			if c.wantAll && ok != n {
				t.Fatalf("%d of %d connections proxied, want all", ok, n)
			}
			if !c.wantAll && (ok == 0 || ok == n) {
				// Round robin alternates: without retries, the
				// connections that pick the refusing node fail.
				t.Fatalf("%d of %d connections proxied, want some but not all", ok, n)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Run("silent session closes", func(t *testing.T) {
		addr := origin(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
		up := upstreamOf(t, "roundrobin", addr)
		up.IdleTimeout = 200 * time.Millisecond
		p := startProxy(t, &Route{ID: "r", Upstream: up})
		c := p.dial(t)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !isReset(err) {
			t.Fatalf("read: %v; want EOF from the idle timeout", err)
		}
	})
	t.Run("traffic one way keeps the session", func(t *testing.T) {
		// The origin only sends, a byte per 100 ms for twice the idle
		// timeout; the client never sends. nginx's proxy_timeout counts
		// silence on the whole session, so this must not time out. (Each
		// gap is a tenth of the timeout, so a loaded machine that delays
		// a write does not make the session idle.)
		addr := origin(t, func(c *net.TCPConn) {
			for range 20 {
				time.Sleep(100 * time.Millisecond)
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
			}
		})
		up := upstreamOf(t, "roundrobin", addr)
		up.IdleTimeout = time.Second
		p := startProxy(t, &Route{ID: "r", Upstream: up})
		c := p.dial(t)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != strings.Repeat("x", 20) {
			t.Fatalf("read %q, %v", b, err)
		}
	})
}

func TestTableChange(t *testing.T) {
	a := origin(t, func(c *net.TCPConn) { io.WriteString(c, "A"); io.Copy(c, c) })
	b := origin(t, func(c *net.TCPConn) { io.WriteString(c, "B"); io.Copy(c, c) })
	p := startProxy(t, &Route{ID: "r", Upstream: upstreamOf(t, "roundrobin", a)})
	old := p.dial(t)
	old.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(old, buf); err != nil || buf[0] != 'A' {
		t.Fatalf("first connection: %q %v", buf, err)
	}
	p.table.Store(NewTable([]*Route{{ID: "r", Upstream: upstreamOf(t, "roundrobin", b)}}))
	c := p.dial(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'B' {
		t.Fatalf("new connection: %q %v, want the new upstream", buf, err)
	}
	// The established session keeps its upstream.
	if got, err := roundTrip(t, old, "still here"); got != "still here" {
		t.Fatalf("old connection: %q %v", got, err)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("waits for sessions", func(t *testing.T) {
		p := startProxy(t, &Route{ID: "r", Upstream: upstreamOf(t, "roundrobin", origin(t, replyAfterEOF))})
		c := p.dial(t)
		io.WriteString(c, "abcd")
		waitActive(t, p.srv, 1)
		done := make(chan error, 1)
		go func() { done <- p.srv.Shutdown(context.Background()) }()
		// New connections are refused once the listener is closed.
		waitRefused(t, p.addr)
		c.CloseWrite()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "got 4 bytes" {
			t.Fatalf("in-flight session: %q %v", b, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
	t.Run("closes sessions at the deadline", func(t *testing.T) {
		p := startProxy(t, &Route{ID: "r", Upstream: upstreamOf(t, "roundrobin", origin(t, echo))})
		c := p.dial(t)
		if got := func() string {
			io.WriteString(c, "x")
			b := make([]byte, 1)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.ReadFull(c, b)
			return string(b)
		}(); got != "x" {
			t.Fatalf("echo: %q", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := p.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want the deadline", err)
		}
		if _, err := io.ReadAll(c); err != nil && !isReset(err) {
			t.Fatalf("read after forced shutdown: %v", err)
		}
		if n := p.srv.active(); n != 0 {
			t.Fatalf("%d sessions left", n)
		}
	})
}

func waitActive(t *testing.T, s *Server, n int) {
	t.Helper()
	for i := 0; i < 500 && s.active() != n; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.active(); got != n {
		t.Fatalf("%d active sessions, want %d", got, n)
	}
}

func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for range 500 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("listener still accepts after Shutdown")
}

func TestUDP(t *testing.T) {
	// A UDP echo origin that prefixes its answers.
	opc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer opc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := opc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			opc.WriteToUDPAddrPort(append([]byte("re:"), buf[:n]...), a)
		}
	}()
	up := upstreamOf(t, "roundrobin", opc.LocalAddr().String())
	up.IdleTimeout = 200 * time.Millisecond
	var tbl atomic.Pointer[Table]
	tbl.Store(NewTable([]*Route{{ID: "u", RemoteAddr: netip.MustParsePrefix("127.0.0.0/8"), Upstream: up}}))
	srv := New(Options{Table: tbl.Load})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeUDP(pc) }()

	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", pc.LocalAddr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, 64)
			for j := range 3 {
				msg := "c" + strconv.Itoa(i) + "m" + strconv.Itoa(j)
				// UDP may drop: resend until answered.
				var got []byte
				for try := 0; try < 20 && !bytes.Equal(got, []byte("re:"+msg)); try++ {
					c.Write([]byte(msg))
					c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
					n, _ := c.Read(buf)
					got = buf[:n]
				}
				if string(got) != "re:"+msg {
					t.Errorf("got %q, want %q", got, "re:"+msg)
				}
			}
		}()
	}
	wg.Wait()
	// Sessions idle out.
	waitActive(t, srv, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeUDP: %v", err)
	}
}

// A node named by host goes through Options.Resolve (the gateway's
// caching resolver): a name only it knows reaches the origin.
func TestResolveNodeNames(t *testing.T) {
	ap := netip.MustParseAddrPort(origin(t, echo))
	b, err := balancer.New(balancer.Config{Type: "roundrobin", Nodes: []balancer.Node{{Host: "origin.sluice.test", Port: int(ap.Port()), Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	resolve := func(_ context.Context, host string) (netip.Addr, error) {
		asked.Add(1)
		if host != "origin.sluice.test" {
			return netip.Addr{}, errors.New("unknown host " + host)
		}
		return ap.Addr(), nil
	}
	p := startProxyWith(t, Options{Resolve: resolve}, &Route{ID: "1", Upstream: &Upstream{Balancer: b}})
	c := p.dial(t)
	defer c.Close()
	got, err := roundTrip(t, c, "hello")
	if err != nil || got != "hello" {
		t.Fatalf("round trip through a named node: %q, %v", got, err)
	}
	if asked.Load() == 0 {
		t.Fatal("Resolve was not asked for the node's name")
	}
}
