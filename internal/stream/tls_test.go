package stream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testpki"
)

// selfSigned makes a certificate for names.
func selfSigned(t *testing.T, names ...string) tls.Certificate {
	return testpki.SelfSigned(t, names...).TLS()
}

func TestTLSListenerSNI(t *testing.T) {
	a := origin(t, func(c *net.TCPConn) { b, _ := io.ReadAll(c); io.WriteString(c, "A:"+string(b)) })
	b := origin(t, func(c *net.TCPConn) { b, _ := io.ReadAll(c); io.WriteString(c, "B:"+string(b)) })
	plain := origin(t, func(c *net.TCPConn) { b, _ := io.ReadAll(c); io.WriteString(c, "P:"+string(b)) })
	var tbl atomic.Pointer[Table]
	tbl.Store(NewTable([]*Route{
		{ID: "a", SNI: "a.example.com", Upstream: upstreamOf(t, "roundrobin", a)},
		{ID: "wild", SNI: "*.example.com", Upstream: upstreamOf(t, "roundrobin", b)},
		{ID: "plain", Upstream: upstreamOf(t, "roundrobin", plain)},
	}))
	cert := selfSigned(t, "a.example.com", "*.example.com", "other.org")
	srv := New(Options{Table: tbl.Load, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTCP(ln, true)
	defer srv.Shutdown(context.Background())
	for _, c := range []struct{ sni, want string }{
		{"a.example.com", "A:hi"},
		{"x.example.com", "B:hi"},
		{"other.org", "P:hi"},
	} {
		t.Run(c.sni, func(t *testing.T) {
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: c.sni, InsecureSkipVerify: true}) //nolint:gosec // test certificate
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "hi")
			// close_notify is the TLS half-close the proxy passes on.
			if err := conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(conn)
			if err != nil || string(got) != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
