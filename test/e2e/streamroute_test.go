package e2e

// stream_routes through the real binary: apisix.stream_proxy TCP
// listeners in proxy_mode http&stream, routes written through the Admin
// API, bytes round-tripping to TCP origins on loopback (docs/stream.md).

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// streamOrigin is a TCP origin on loopback. Each read is answered with
// tag + the bytes read; tag "" echoes verbatim and half-closes at EOF.
func streamOrigin(t *testing.T, tag string) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) {
		if tag == "" {
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
			return
		}
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, err := c.Write(append([]byte(tag), buf[:n]...)); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// streamAsk sends msg on c and reads the tagged answer; "" means the
// connection was closed or answered nothing in time.
func streamAsk(c net.Conn, msg string, answerLen int) string {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return ""
	}
	buf := make([]byte, answerLen)
	n, _ := io.ReadFull(c, buf)
	return string(buf[:n])
}

// streamAskNew opens a connection to addr and asks once.
func streamAskNew(addr, msg string, answerLen int) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	return streamAsk(c, msg, answerLen)
}

// streamEventually polls until f returns want.
func streamEventually(t *testing.T, what, want string, f func() string) {
	t.Helper()
	var got string
	for range 250 {
		if got = f(); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: got %q, want %q", what, got, want)
}

func TestStreamRouteTCP(t *testing.T) {
	a, h, p1, p2 := freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`apisix:
  proxy_mode: http&stream
  node_listen:
    - ip: 127.0.0.1
      port: %d
  ssl:
    enable: false
  stream_proxy:
    tcp:
      - "127.0.0.1:%d"
      - addr: "127.0.0.1:%d"
        tls: false
deployment:
  admin:
    admin_key:
      - name: admin
        key: %s
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: %d
`, h, p1, p2, adminKey, a)
	g := start(t, newDir(t), a, h, cfg)
	addr1, addr2 := fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	originA, originB, echo := streamOrigin(t, "A:"), streamOrigin(t, "B:"), streamOrigin(t, "")

	put := func(path, body string) {
		t.Helper()
		if r := g.admin("PUT", path, body); r.Status != 200 && r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
		}
	}
	node := func(addr string) string {
		return fmt.Sprintf(`{"type":"roundrobin","nodes":{%q:1}}`, addr)
	}

	// Before any route, a connection is accepted and closed.
	if got := streamAskNew(addr1, "x", 3); got != "" {
		t.Fatalf("no route: got %q, want the connection closed", got)
	}

	put("/apisix/admin/stream_routes/1", fmt.Sprintf(`{"server_port":%d,"upstream":%s}`, p1, node(originA)))
	put("/apisix/admin/upstreams/echo", node(echo))
	put("/apisix/admin/stream_routes/2", fmt.Sprintf(`{"server_port":%d,"upstream_id":"echo"}`, p2))
	streamEventually(t, "route 1", "A:x", func() string { return streamAskNew(addr1, "x", 3) })

	t.Run("bytes round-trip with half-close", func(t *testing.T) {
		streamEventually(t, "route 2", "ping", func() string { return streamAskNew(addr2, "ping", 4) })
		c, err := net.Dial("tcp", addr2)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := strings.Repeat("sluice stream ", 80000) // ~1 MiB
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			io.WriteString(c, msg)
			c.(*net.TCPConn).CloseWrite()
		}()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != msg {
			t.Fatalf("read %d of %d bytes, %v", len(b), len(msg), err)
		}
	})

	t.Run("route change applies to new connections", func(t *testing.T) {
		old, err := net.Dial("tcp", addr1)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if got := streamAsk(old, "1", 3); got != "A:1" {
			t.Fatalf("established connection: %q", got)
		}
		put("/apisix/admin/stream_routes/1", fmt.Sprintf(`{"server_port":%d,"upstream":%s}`, p1, node(originB)))
		streamEventually(t, "new connection", "B:y", func() string { return streamAskNew(addr1, "y", 3) })
		if got := streamAsk(old, "2", 3); got != "A:2" {
			t.Fatalf("established connection after the change: %q, want it to keep its upstream", got)
		}
	})

	t.Run("no match closes the connection", func(t *testing.T) {
		// remote_addr no loopback client has.
		put("/apisix/admin/stream_routes/1", fmt.Sprintf(`{"server_port":%d,"remote_addr":"10.0.0.0/8","upstream":%s}`, p1, node(originB)))
		streamEventually(t, "non-matching client", "", func() string { return streamAskNew(addr1, "z", 3) })
		// A route for the other port does not catch it either.
		if got := streamAskNew(addr2, "ping", 4); got != "ping" {
			t.Fatalf("route 2: %q", got)
		}
		put("/apisix/admin/stream_routes/1", fmt.Sprintf(`{"server_port":%d,"remote_addr":"127.0.0.0/8","upstream":%s}`, p1, node(originB)))
		streamEventually(t, "matching client", "B:z", func() string { return streamAskNew(addr1, "z", 3) })
	})

	t.Run("deleted route closes new connections", func(t *testing.T) {
		if r := g.admin("DELETE", "/apisix/admin/stream_routes/1", ""); r.Status != 200 {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		streamEventually(t, "after delete", "", func() string { return streamAskNew(addr1, "z", 3) })
	})

	t.Run("plugins are warned about", func(t *testing.T) {
		r := g.admin("PUT", "/apisix/admin/stream_routes/3", fmt.Sprintf(`{"server_port":%d,"plugins":{"ip-restriction":{"whitelist":["127.0.0.1"]}},"upstream":%s}`, p1, node(originA)))
		if r.Status != 200 && r.Status != 201 {
			t.Skipf("stream route with plugins refused: %d %s", r.Status, r.Body)
		}
		streamEventually(t, "route with plugins", "A:w", func() string { return streamAskNew(addr1, "w", 3) })
		if out := g.output(); !strings.Contains(out, "stream route plugins are not supported yet") {
			t.Fatalf("no warning about stream plugins in the log:\n%s", out)
		}
	})
}
