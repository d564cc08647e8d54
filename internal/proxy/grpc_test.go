package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/testpki"
)

// seen is what a gRPC-like upstream observed about one request.
type seen struct {
	protoMajor  int
	te, ctype   string
	path, host  string
	method      string
	xff         string
	frames      int
	sawEOFFirst bool
}

// grpcFrame encodes one length-prefixed gRPC message (uncompressed).
func grpcFrame(msg string) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// readFrame reads one length-prefixed gRPC message.
func readFrame(r io.Reader) (string, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return "", err
	}
	return string(msg), nil
}

// echoGRPC answers every request message with its upper-cased copy as soon
// as it arrives (full duplex), then ends the RPC with gRPC trailers; with
// stopAfter > 0 it ends the RPC after that many messages with status 3
// while the client may still be sending.
func echoGRPC(got chan<- seen, stopAfter int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := seen{protoMajor: r.ProtoMajor, te: r.Header.Get("Te"), ctype: r.Header.Get("Content-Type"),
			path: r.URL.RequestURI(), host: r.Host, method: r.Method, xff: r.Header.Get("X-Forwarded-For")}
		defer func() { got <- s }()
		w.Header().Set("Content-Type", "application/grpc")
		// Real gRPC servers do not announce their trailers.
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			msg, err := readFrame(r.Body)
			if err != nil {
				s.sawEOFFirst = errors.Is(err, io.EOF)
				break
			}
			s.frames++
			w.Write(grpcFrame(strings.ToUpper(msg)))
			w.(http.Flusher).Flush()
			if stopAfter > 0 && s.frames == stopAfter {
				w.Header().Set(http.TrailerPrefix+"Grpc-Status", "3")
				w.Header().Set(http.TrailerPrefix+"Grpc-Message", "stopped early")
				return
			}
		}
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "")
	}
}

// h2cUpstream serves h on cleartext HTTP/2 with prior knowledge.
func h2cUpstream(t testing.TB, h http.Handler) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h2c.NewHandler(h, &http2.Server{}))
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// tlsUpstream serves h over TLS; h2 enables ALPN h2 (else HTTP/1.1 only).
func tlsUpstream(t testing.TB, h http.Handler, h2 bool) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.EnableHTTP2 = h2
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// selfSigned returns a throwaway certificate for the gateway's TLS listener.
func selfSigned(t testing.TB) tls.Certificate {
	return testpki.Issue(t, nil, testpki.Leaf{CN: "sluice-test", DNS: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}).TLS()
}

// grpcGateway starts the std engine with h2c enabled on a cleartext
// listener and h2 on a TLS listener, forwarding every request to target.
func grpcGateway(t testing.TB, target Target, opt *Options) (plain, secure string) {
	t.Helper()
	f := NewForwarder(nil)
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		f.Forward(c, func(n int) (Target, bool) { return target, n == 0 }, opt)
	})
	srv := std.New(h, std.DefaultLimits(), nil, std.WithH2C())
	lp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lp)
	go srv.ServeTLS(ls, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		f.CloseIdle()
	})
	return lp.Addr().String(), ls.Addr().String()
}

// h2Client returns an HTTP/2-only client: h2c with prior knowledge, or TLS
// with ALPN h2, as gRPC clients connect.
func h2Client(t testing.TB, tlsMode bool) *http.Client {
	tr := &http2.Transport{}
	if tlsMode {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}} //nolint:gosec // test
	} else {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// grpcCall opens a streaming POST the way a gRPC client does; the returned
// writer feeds the request body.
func grpcCall(t testing.TB, cl *http.Client, url string) (*io.PipeWriter, *http.Response) {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	// The client sends its first message before the response header can
	// come back, as a gRPC unary or streaming call does.
	go pw.Write(grpcFrame("first"))
	resp, err := cl.Do(req)
	if err != nil {
		pw.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close(); pw.Close() })
	return pw, resp
}

func TestGRPCUpstream(t *testing.T) {
	got := make(chan seen, 1)
	h := echoGRPC(got, 0)
	plainUp := h2cUpstream(t, h)
	tlsUp := tlsUpstream(t, h, true)
	roots := x509.NewCertPool()
	roots.AddCert(tlsUp.Certificate())
	upstreams := []struct {
		name   string
		target Target
	}{
		{"grpc h2c", Target{Scheme: "grpc", Addr: plainUp}},
		{"grpcs default no verify", Target{Scheme: "grpcs", Addr: tlsUp.Listener.Addr().String()}},
		// httptest's certificate names example.com: SNI and verification
		// follow the same rules as https.
		{"grpcs verified sni", Target{Scheme: "grpcs", Addr: tlsUp.Listener.Addr().String(),
			SNI: "example.com", TLS: &tls.Config{RootCAs: roots}}},
	}
	for _, up := range upstreams {
		plain, secure := grpcGateway(t, up.target, &Options{})
		for _, client := range []struct {
			name string
			tls  bool
			addr string
		}{{"client tls h2", true, secure}, {"client h2c", false, plain}} {
			t.Run(up.name+"/"+client.name, func(t *testing.T) {
				scheme := "http"
				if client.tls {
					scheme = "https"
				}
				pw, resp := grpcCall(t, h2Client(t, client.tls), scheme+"://"+client.addr+"/pkg.Echo/Say?x=1")
				if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
					t.Fatalf("client got %s %d", resp.Proto, resp.StatusCode)
				}
				// Full duplex: each answer arrives before the next message
				// is sent, so neither direction may be buffered whole.
				for i, msg := range []string{"first", "second", "third"} {
					if i > 0 {
						if _, err := pw.Write(grpcFrame(msg)); err != nil {
							t.Fatal(err)
						}
					}
					echo, err := readFrame(resp.Body)
					if err != nil || echo != strings.ToUpper(msg) {
						t.Fatalf("message %d: got %q err %v", i, echo, err)
					}
				}
				pw.Close()
				if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
					t.Fatalf("tail %q err %v", rest, err)
				}
				if st := resp.Trailer.Get("Grpc-Status"); st != "0" {
					t.Errorf("grpc-status trailer %q (trailer %v, header %v)", st, resp.Trailer, resp.Header)
				}
				if _, ok := resp.Trailer["Grpc-Message"]; !ok {
					t.Errorf("grpc-message trailer missing: %v", resp.Trailer)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/grpc" {
					t.Errorf("content-type %q", ct)
				}
				s := <-got
				checks := []struct{ name, got, want string }{
					{"upstream proto", strconv.Itoa(s.protoMajor), "2"},
					{"te trailers", s.te, "trailers"},
					{"content-type", s.ctype, "application/grpc"},
					{"method", s.method, "POST"},
					{"path", s.path, "/pkg.Echo/Say?x=1"},
					{"host passed", s.host, client.addr},
					{"xff", s.xff, "127.0.0.1"},
				}
				for _, c := range checks {
					if c.got != c.want {
						t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
					}
				}
				if s.frames != 3 || !s.sawEOFFirst {
					t.Errorf("upstream read %d frames, clean EOF %v", s.frames, s.sawEOFFirst)
				}
			})
		}
	}
}

// TestGRPCUpstreamEndsFirst: the upstream ends the RPC while the client's
// stream is still open; the status must reach the client without it
// having to close its side first.
func TestGRPCUpstreamEndsFirst(t *testing.T) {
	got := make(chan seen, 1)
	up := h2cUpstream(t, echoGRPC(got, 1))
	_, secure := grpcGateway(t, Target{Scheme: "grpc", Addr: up}, &Options{})
	_, resp := grpcCall(t, h2Client(t, true), "https://"+secure+"/pkg.Echo/Say")
	if echo, err := readFrame(resp.Body); err != nil || echo != "FIRST" {
		t.Fatalf("got %q err %v", echo, err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("response did not end while the client stream stayed open")
	}
	if st, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message"); st != "3" || msg != "stopped early" {
		t.Errorf("trailers %v", resp.Trailer)
	}
	<-got
}

func TestGRPCUpstreamErrors(t *testing.T) {
	h1only := tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), false)
	h2tls := tlsUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), true)
	roots := x509.NewCertPool()
	roots.AddCert(h2tls.Certificate())
	tests := []struct {
		name   string
		target Target
	}{
		{"grpc refused", Target{Scheme: "grpc", Addr: refusedAddr(t)}},
		{"grpcs refused", Target{Scheme: "grpcs", Addr: refusedAddr(t)}},
		{"grpcs upstream without h2", Target{Scheme: "grpcs", Addr: h1only.Listener.Addr().String()}},
		{"grpcs wrong sni verified", Target{Scheme: "grpcs", Addr: h2tls.Listener.Addr().String(),
			SNI: "wrong.test", TLS: &tls.Config{RootCAs: roots}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, secure := grpcGateway(t, tc.target, &Options{Timeouts: Timeouts{Connect: 2 * time.Second}})
			resp, err := h2Client(t, true).Post("https://"+secure+"/pkg.Echo/Say", "application/grpc",
				strings.NewReader(string(grpcFrame("x"))))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || string(b) != string(engine.ErrorPage(502)) {
				t.Errorf("status %d body %q", resp.StatusCode, b)
			}
			if us := resp.Header.Get("X-Apisix-Upstream-Status"); us != "502" {
				t.Errorf("upstream status %q", us)
			}
		})
	}
}

func BenchmarkForwardGRPC(b *testing.B) {
	up := h2cUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Write(grpcFrame("pong"))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}))
	plain, _ := grpcGateway(b, Target{Scheme: "grpc", Addr: up}, &Options{})
	cl := h2Client(b, false)
	msg := grpcFrame("ping")
	url := "http://" + plain + "/pkg.Echo/Say"
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", url, strings.NewReader(string(msg)))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Trailer.Get("Grpc-Status") != "0" {
			b.Fatalf("trailer %v", resp.Trailer)
		}
	}
}
