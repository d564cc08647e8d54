package e2e

import (
	"context"
	"crypto/tls"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// grpcMsg encodes one length-prefixed, uncompressed gRPC message.
func grpcMsg(s string) []byte {
	b := make([]byte, 5+len(s))
	be.BigEndian.PutUint32(b[1:5], uint32(len(s)))
	copy(b[5:], s)
	return b
}

// readGRPCMsg reads one length-prefixed gRPC message.
func readGRPCMsg(r io.Reader) (string, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	b := make([]byte, be.BigEndian.Uint32(hdr[1:]))
	_, err := io.ReadFull(r, b)
	return string(b), err
}

// grpcEchoUpstream is an h2c (cleartext HTTP/2, prior knowledge) server
// that answers each gRPC message as it arrives and ends with gRPC
// trailers; it reports the protocol and TE it saw in response headers.
func grpcEchoUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("X-Upstream-Proto", r.Proto)
		w.Header().Set("X-Upstream-Te", r.Header.Get("Te"))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		n := 0
		for {
			msg, err := readGRPCMsg(r.Body)
			if err != nil {
				break
			}
			n++
			w.Write(grpcMsg(strings.ToUpper(msg)))
			w.(http.Flusher).Flush()
		}
		// Undeclared trailers, as gRPC servers send them.
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", fmt.Sprintf("%d messages", n))
	})
	s := httptest.NewUnstartedServer(h2c.NewHandler(h, &http2.Server{}))
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// TestGRPCUpstreamH2C: a route with upstream scheme grpc reaches an h2c
// server over HTTP/2; a gRPC client on the TLS listener (ALPN h2) gets
// its messages streamed both ways and the grpc-status trailer.
func TestGRPCUpstreamH2C(t *testing.T) {
	tlsPort := freePort(t)
	a, h := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`apisix:
  node_listen:
    - ip: 127.0.0.1
      port: %d
  ssl:
    enable: true
    listen:
      - ip: 127.0.0.1
        port: %d
deployment:
  admin:
    admin_key:
      - name: admin
        key: %s
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: %d
`, h, tlsPort, adminKey, a)
	g := start(t, newDir(t), a, h, cfg)
	up := grpcEchoUpstream(t)
	cert, key := selfSigned(t, "grpc.test")
	body, _ := json.Marshal(map[string]any{"cert": cert, "key": key, "snis": []string{"grpc.test"}})
	if r := g.admin("PUT", "/apisix/admin/ssls/grpc", string(body)); r.Status != 201 {
		t.Fatalf("ssl: %d %s", r.Status, r.Body)
	}
	route := fmt.Sprintf(`{"uri":"/pkg.Echo/*","upstream":{"scheme":"grpc","type":"roundrobin","nodes":{"%s":1}}}`,
		up.Listener.Addr().String())
	if r := g.admin("PUT", "/apisix/admin/routes/grpc", route); r.Status != 201 && r.Status != 200 {
		t.Fatalf("route: %d %s", r.Status, r.Body)
	}
	g.waitRoute("/pkg.Echo/Ping", nil)

	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "grpc.test", InsecureSkipVerify: true, //nolint:gosec // test
		NextProtos: []string{"h2"}}}
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := fmt.Sprintf("https://127.0.0.1:%d/pkg.Echo/Say", tlsPort)
	// The SSL object reaches the snapshot asynchronously.
	var dialErr error
	for i := 0; i < 100; i++ {
		d := tls.Dialer{Config: &tls.Config{ServerName: "grpc.test", InsecureSkipVerify: true}} //nolint:gosec // test
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort))
		cancel()
		if dialErr = err; err == nil {
			conn.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if dialErr != nil {
		t.Fatalf("tls listener: %v", dialErr)
	}

	t.Run("tls h2 client streams both ways", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequest("POST", url, pr)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		go pw.Write(grpcMsg("one"))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %d %s", resp.Proto, resp.StatusCode, b)
		}
		for i, m := range []string{"one", "two", "three"} {
			if i > 0 {
				if _, err := pw.Write(grpcMsg(m)); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := readGRPCMsg(resp.Body); err != nil || got != strings.ToUpper(m) {
				t.Fatalf("message %d: %q %v", i, got, err)
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Fatalf("tail %q %v", rest, err)
		}
		checks := []struct{ name, got, want string }{
			{"upstream proto", resp.Header.Get("X-Upstream-Proto"), "HTTP/2.0"},
			{"upstream te", resp.Header.Get("X-Upstream-Te"), "trailers"},
			{"grpc-status", resp.Trailer.Get("Grpc-Status"), "0"},
			{"grpc-message", resp.Trailer.Get("Grpc-Message"), "3 messages"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s: got %q, want %q (header %v trailer %v)", c.name, c.got, c.want, resp.Header, resp.Trailer)
			}
		}
	})

	// An HTTP/1.1 client on the plain listener is not gRPC, but the
	// upstream is still spoken to over HTTP/2 (also with the fast engine,
	// whose own client is HTTP/1.1 only) and the trailers come back
	// chunked.
	t.Run("http1 client still reaches upstream over h2", func(t *testing.T) {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/pkg.Echo/Say", h),
			strings.NewReader(string(grpcMsg("hi"))))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := readGRPCMsg(resp.Body)
		io.Copy(io.Discard, resp.Body)
		if err != nil || got != "HI" {
			t.Fatalf("%d: %q %v", resp.StatusCode, got, err)
		}
		if p := resp.Header.Get("X-Upstream-Proto"); p != "HTTP/2.0" {
			t.Errorf("upstream proto %q", p)
		}
		if st := resp.Trailer.Get("Grpc-Status"); st != "0" {
			t.Errorf("grpc-status %q (trailer %v)", st, resp.Trailer)
		}
	})

	t.Run("dead upstream is 502", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		route := fmt.Sprintf(`{"uri":"/dead.Svc/*","upstream":{"scheme":"grpc","nodes":{"%s":1}}}`, dead)
		g.admin("PUT", "/apisix/admin/routes/grpc-dead", route)
		if r := g.waitRoute("/dead.Svc/Call", nil); r.Status != http.StatusBadGateway {
			t.Fatalf("status %d %s", r.Status, r.Body)
		}
	})
}
