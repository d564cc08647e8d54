package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/all"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/testpki"
)

// decodeInto decodes a JSON resource into the snapshot as the builder does.
func decodeInto(b testing.TB, s *Snapshot, kind, id, raw string) {
	b.Helper()
	k, _ := resource.ByName(kind)
	obj, err := resource.Decode(k, []byte(raw))
	if err != nil {
		b.Fatalf("%s %s: %v", kind, id, err)
	}
	m := s.Objects[kind]
	if m == nil {
		m = map[string]any{}
		s.Objects[kind] = m
	}
	m[id] = obj
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// BenchmarkSnapshotBuild10000 measures compiling a snapshot of 10,000
// routes (router, upstreams, plugin chains) from decoded objects.
func BenchmarkSnapshotBuild10000(b *testing.B) {
	reg, _ := plugin.NewRegistry(all.Defs(), nil)
	s := &Snapshot{Objects: map[string]map[string]any{}}
	decodeInto(b, s, "upstreams", "u", `{"nodes":{"127.0.0.1:8080":1}}`)
	for i := 0; i < 10000; i++ {
		decodeInto(b, s, "routes", fmt.Sprint(i), fmt.Sprintf(`{"uri":"/r/%d/*","hosts":["h%d.example.com"],"upstream_id":"u"}`, i, i%50))
	}
	compile := compileFunc("radixtree_host_uri", healthEnv{}, reg, &plugin.Shared{}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, errs := compile(s, nil); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// discardWriter is a ResponseWriter that drops the body.
type discardWriter struct {
	h      engine.Header
	status int
}

func (w *discardWriter) Header() engine.Header       { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) Flush() error                { return nil }

// benchPlaneOf compiles the objects fill decodes into an empty snapshot
// (all built-in plugins, radixtree_host_uri) and returns a data plane
// serving it through proxy.Forwarder, with quiet logs.
func benchPlaneOf(b testing.TB, fill func(s *Snapshot)) *dataPlane {
	reg, _ := plugin.NewRegistry(all.Defs(), nil)
	s := &Snapshot{Objects: map[string]map[string]any{}}
	fill(s)
	data, errs := compileFunc("radixtree_host_uri", healthEnv{}, reg, &plugin.Shared{}, nil)(s, nil)
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	s.Data = data
	bld := &Builder{}
	bld.current.Store(s)
	return &dataPlane{builder: bld, fwd: proxy.NewForwarder(quietLogger()), logger: quietLogger()}
}

// benchServe runs the whole request path through the engine-neutral
// context (router, plugin phases, balancer, proxy.Forwarder, the
// net/http Transport the std engine forwards with) to a loopback origin,
// without a client-side engine. The origin (benchOrigin) allocates
// nothing, so allocs/op are the gateway's and the Transport's.
func benchServe(b *testing.B, routePlugins string, hdr map[string]string) {
	addr := benchOrigin(b)
	plugins := ""
	if routePlugins != "" {
		plugins = `"plugins":` + routePlugins + `,`
	}
	dp := benchPlaneOf(b, func(s *Snapshot) {
		decodeInto(b, s, "consumers", "jack", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}}`)
		decodeInto(b, s, "routes", "1", fmt.Sprintf(`{"uri":"/api/v1/orders/*",%s"upstream":{"nodes":{"%s":1}}}`, plugins, addr))
	})
	remote := netip.MustParseAddrPort("10.0.0.1:40000")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := engine.AcquireCtx()
		w := &discardWriter{h: engine.Header{}}
		c.Method, c.Proto, c.Scheme = "GET", "HTTP/1.1", "http"
		c.RequestURI, c.Path, c.RawPath = "/api/v1/orders/42", "/api/v1/orders/42", "/api/v1/orders/42"
		c.Host, c.RawHost = "example.com", "example.com"
		c.Header = engine.Header{}
		for k, v := range hdr {
			c.Header.Set(k, v)
		}
		c.RemoteAddr = remote
		c.W = w
		dp.Serve(c)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
		engine.ReleaseCtx(c)
	}
}

// BenchmarkServePlain is the request path with no plugins.
func BenchmarkServePlain(b *testing.B) { benchServe(b, "", nil) }

// BenchmarkServeSeed is the request path with the seed's gateway plugins
// (profile c): key-auth + limit-count + proxy-rewrite.
func BenchmarkServeSeed(b *testing.B) {
	plugins, _ := json.Marshal(map[string]any{
		"key-auth":      map[string]any{},
		"limit-count":   map[string]any{"count": 1 << 30, "time_window": 60, "key_type": "var", "key": "consumer_name"},
		"proxy-rewrite": map[string]any{"regex_uri": []string{"^/api/v1/orders/(.*)", "/orders/$1"}},
	})
	benchServe(b, string(plugins), map[string]string{"apikey": "jack-key"})
}

// benchDataPlane is the data plane of the engine benchmarks: a
// catch-all route to an upstream object with origin as its node, realip
// trusting 127.0.0.1. It has no fast forwarder, so every request goes
// through proxy.Forwarder as with sluice.engine: std (or h2 with engine
// fast); BenchmarkServeFast adds one.
func benchDataPlane(b testing.TB, origin string) *dataPlane {
	dp := benchPlaneOf(b, func(s *Snapshot) {
		decodeInto(b, s, "upstreams", "1", fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, origin))
		decodeInto(b, s, "routes", "catchall", `{"uri":"/*","upstream_id":"1"}`)
	})
	dp.realIP = newRealIP("X-Real-IP", []string{"127.0.0.1"}, "off")
	return dp
}

// startStd serves dp with the std engine on a loopback listener, over TLS
// (ALPN h2, http/1.1) when tlsCfg is set, else cleartext with h2c.
func startStd(b testing.TB, dp *dataPlane, tlsCfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := std.New(dp, std.DefaultLimits(), quietLogger(), std.WithH2C())
	if tlsCfg != nil {
		go srv.ServeTLS(ln, tlsCfg)
	} else {
		go srv.Serve(ln)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// BenchmarkServeStd is BenchmarkServeFast on the std engine: an HTTP/1.1
// keep-alive client, net/http's server, the engine adapter,
// dataPlane.Serve and proxy.Forwarder, all in-process.
func BenchmarkServeStd(b *testing.B) {
	benchKeepAlive(b, startStd(b, benchDataPlane(b, benchOrigin(b)), nil))
}

// BenchmarkServeH2 is bench/run.sh's profile f in-process: one HTTP/2
// client connection keeping 10 streams in flight (h2load -m10), GET
// /hello through the std engine (net/http's HTTP/2 server), the adapter,
// dataPlane.Serve and proxy.Forwarder to an allocation-free origin. The
// client is hand-rolled on raw frames and allocates nothing in steady
// state, so allocs/op are the server's. h2c is prior knowledge on a
// cleartext listener; tls is ALPN h2 over TLS 1.3, as profile f.
func BenchmarkServeH2(b *testing.B) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		b.Run(tc.name, func(b *testing.B) {
			dp := benchDataPlane(b, benchOrigin(b))
			var srvCfg *tls.Config
			if tc.tls {
				srvCfg = benchTLSConfig(b)
			}
			addr := startStd(b, dp, srvCfg)
			var conn net.Conn
			var err error
			if tc.tls {
				conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // self-signed test cert
				if err == nil && conn.(*tls.Conn).ConnectionState().NegotiatedProtocol != "h2" {
					err = fmt.Errorf("ALPN %q", conn.(*tls.Conn).ConnectionState().NegotiatedProtocol)
				}
			} else {
				conn, err = net.Dial("tcp", addr)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			scheme := "http"
			if tc.tls {
				scheme = "https"
			}
			cl := newH2BenchClient(conn, scheme, "localhost:9443", 10)
			cl.run(b, 200) // warm pools, upstream connections, HPACK tables
			b.ReportAllocs()
			b.ResetTimer()
			cl.run(b, b.N)
		})
	}
}

// h2BenchClient is a minimal HTTP/2 client: raw frames, a live HPACK
// encoder for the request (indexed after the first one, as h2load's),
// responses checked for :status 200 without decoding the rest.
type h2BenchClient struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	fields []hpack.HeaderField
	next   uint32
	window int // connection window bytes received since the last update
	depth  int
	hdr    [9]byte
	buf    []byte
}

func newH2BenchClient(conn net.Conn, scheme, authority string, depth int) *h2BenchClient {
	c := &h2BenchClient{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 16<<10),
		next: 1, depth: depth, buf: make([]byte, 1<<20)}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fields = []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/hello"},
		{Name: ":scheme", Value: scheme}, {Name: ":authority", Value: authority},
		{Name: "accept", Value: "*/*"}, {Name: "accept-encoding", Value: "gzip, deflate"},
		{Name: "user-agent", Value: "h2load nghttp2/1.52.0"},
	}
	c.bw.WriteString(http2.ClientPreface)
	// SETTINGS: no push, 1 GiB stream windows; then a 1 GiB connection window.
	c.frame(0x4, 0, 0, []byte{0, 2, 0, 0, 0, 0, 0, 4, 0x40, 0, 0, 0})
	c.frame(0x8, 0, 0, []byte{0x40, 0, 0, 0})
	return c
}

func (c *h2BenchClient) frame(typ, flags byte, stream uint32, payload []byte) {
	n := len(payload)
	h := c.hdr[:]
	h[0], h[1], h[2], h[3], h[4] = byte(n>>16), byte(n>>8), byte(n), typ, flags
	binary.BigEndian.PutUint32(h[5:], stream)
	c.bw.Write(h)
	c.bw.Write(payload)
}

func (c *h2BenchClient) send() {
	c.hbuf.Reset()
	for _, f := range c.fields {
		c.enc.WriteField(f)
	}
	c.frame(0x1, 0x1|0x4, c.next, c.hbuf.Bytes()) // HEADERS, END_STREAM|END_HEADERS
	c.next += 2
}

// run completes n requests with c.depth in flight.
func (c *h2BenchClient) run(b *testing.B, n int) {
	sent, done := 0, 0
	for ; sent < n && sent < c.depth; sent++ {
		c.send()
	}
	for done < n {
		if c.br.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := io.ReadFull(c.br, c.hdr[:]); err != nil {
			b.Fatal(err)
		}
		size := int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		typ, flags := c.hdr[3], c.hdr[4]
		stream := binary.BigEndian.Uint32(c.hdr[5:]) & 0x7fffffff
		p := c.buf[:size]
		if _, err := io.ReadFull(c.br, p); err != nil {
			b.Fatal(err)
		}
		end := false
		switch typ {
		case 0x0: // DATA
			end = flags&0x1 != 0
			c.window += size
			if c.window > 1<<28 {
				var inc [4]byte
				binary.BigEndian.PutUint32(inc[:], uint32(c.window))
				c.frame(0x8, 0, 0, inc[:])
				c.window = 0
			}
		case 0x1: // HEADERS: the server's HPACK sends :status 200 as static index 8
			if flags&0x20 != 0 || len(p) == 0 || p[0] != 0x88 {
				b.Fatalf("stream %d: response is not a plain :status 200 (% x)", stream, p[:min(len(p), 8)])
			}
			end = flags&0x1 != 0
		case 0x3, 0x7: // RST_STREAM, GOAWAY
			b.Fatalf("frame type %d on stream %d", typ, stream)
		case 0x4: // SETTINGS
			if flags&0x1 == 0 {
				c.frame(0x4, 0x1, 0, nil)
			}
		case 0x6: // PING
			if flags&0x1 == 0 {
				c.frame(0x6, 0x1, 0, p)
			}
		}
		if end {
			done++
			if sent < n {
				c.send()
				sent++
			}
		}
	}
}

// benchTLSConfig is a server config with a fresh self-signed ECDSA P-256
// certificate for localhost, as bench/run.sh's.
func benchTLSConfig(b *testing.B) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testpki.SelfSigned(b, "localhost").TLS()}}
}
