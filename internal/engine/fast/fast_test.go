package fast

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/enginetest"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// pair runs the same handler-to-upstream setup on both engines: each
// engine forwards with its own forwarder to its own recording upstream.
type pair struct {
	stdAddr, fastAddr string
	stdUp, fastUp     *upstream
}

func newPair(t testing.TB, lim std.Limits, resp func(*http.Request) string) *pair {
	p := &pair{stdUp: startUpstream(t, resp), fastUp: startUpstream(t, resp)}
	opt := proxy.Options{Timeouts: proxy.Timeouts{Connect: time.Second, Send: 2 * time.Second, Read: 2 * time.Second}}
	p.stdAddr = startStd(t, forwardTo(proxy.NewForwarder(nil), p.stdUp.addr(), opt), lim)
	p.fastAddr = startFast(t, forwardTo(NewForwarder(nil, nil), p.fastUp.addr(), opt), lim)
	return p
}

func TestProxyBasics(t *testing.T) {
	p := newPair(t, std.DefaultLimits(), nil)
	tests := []struct {
		name string
		req  string
	}{
		{"get", "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"},
		{"post cl", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"},
		{"post empty", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"},
		{"chunked", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
		{"chunked empty", "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"xff appended", "GET / HTTP/1.1\r\nHost: a:8080\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=x\r\nX-Real-IP: 9.9.9.9\r\n\r\n"},
		{"connection listed", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n"},
		{"underscore dropped", "GET / HTTP/1.1\r\nHost: a\r\nX_Api_Key: k\r\nX-Api-Key: ok\r\n\r\n"},
		{"absolute form", "GET http://Other.Host:81/abs?q HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"http10", "GET /ten HTTP/1.0\r\n\r\n"},
		{"expect", "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"},
		{"dup header", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := rawExchange(t, p.stdAddr, tt.req+"GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3*time.Second)
			rf := rawExchange(t, p.fastAddr, tt.req+"GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3*time.Second)
			ss, fs := responses(rs, "GET"), responses(rf, "GET")
			if fmt.Sprint(ss) != fmt.Sprint(fs) {
				t.Fatalf("statuses std %v fast %v\nstd:\n%s\nfast:\n%s", ss, fs, rs, rf)
			}
			us, uf := p.stdUp.take(), p.fastUp.take()
			if strings.Join(us, "\n---\n") != strings.Join(uf, "\n---\n") {
				t.Fatalf("upstream saw different requests\nstd:\n%s\nfast:\n%s", strings.Join(us, "\n---\n"), strings.Join(uf, "\n---\n"))
			}
		})
	}
}

// TestFraming sends every hardening.md §A case followed by a pipelined
// probe to both engines; the fast engine must answer the same status and
// serve (or not) the probe the same way. The std engine is the reference.
func TestFraming(t *testing.T) {
	p := newPair(t, std.DefaultLimits(), nil)
	many := strings.Repeat("X-H: a\r\n", 101)
	cases := []struct {
		name       string
		req        string
		wantStatus int
		wantProbe  bool
	}{
		{"plain", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, true},
		{"CL body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 200, true},
		{"chunked body", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 200, true},
		{"A1 CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400, false},
		{"A2 TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400, false},
		{"A3 dup CL differ", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400, false},
		{"A4 dup CL same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200, true},
		{"A4 CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400, false},
		{"A5 CL +5", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, false},
		{"A5 CL -1", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, false},
		{"A5 CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400, false},
		{"A5 CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\nhellohello", 400, false},
		{"A5 CL 25 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000000000\r\n\r\n", 400, false},
		{"A6 space before colon CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400, false},
		{"A6 space before colon TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"A7 xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, false},
		{"A7 chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501, false},
		{"A7 identity, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", 501, false},
		{"A7 two TE lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, false},
		{"A7 VT chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400, false},
		{"A8 CHUNKED", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, true},
		{"A8 tab chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, true},
		{"A9 TE in 1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, false},
		{"A10 chunk overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nx\r\n0\r\n\r\n", 502, false},
		{"A11 chunk 0x5", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 502, false},
		{"A11 bare LF after size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 502, false},
		{"A11 missing CRLF after data", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 502, false},
		{"A12 huge chunk ext", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("a", 65536) + "\r\nhello\r\n0\r\n\r\n", 502, false},
		{"A13 bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400, false},
		{"A14 bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, false},
		{"A15 obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, false},
		{"A16 GET with body", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 200, true},
		{"A18 expect 100-continuex", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\nContent-Length: 1\r\n\r\nx", 417, false},
		{"B1 NUL", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, false},
		{"B3 empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400, false},
		{"B3 no colon", "GET / HTTP/1.1\r\nHost: a\r\nfoo\r\n\r\n", 400, false},
		{"B5 101 headers", "GET / HTTP/1.1\r\nHost: a\r\n" + many + "\r\n", 431, false},
		{"B6 bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"B6 http/1.1 lower", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"B6 HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, false},
		{"C1 long URI", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, false},
		{"C2 huge header", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431, false},
		{"E6 dup host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, false},
		{"E6 host a@b", "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400, false},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400, false},
		{"F path above root", "GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", 400, false},
		{"F NUL escape", "GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probe := "GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
			for _, e := range []struct{ name, addr string }{{"std", p.stdAddr}, {"fast", p.fastAddr}} {
				raw := rawExchange(t, e.addr, tc.req+probe, 3*time.Second)
				st := responses(raw, "GET")
				if len(st) == 0 || st[0] != tc.wantStatus {
					t.Errorf("%s: statuses %v, want first %d\n%.300s", e.name, st, tc.wantStatus, raw)
					continue
				}
				if probed := len(st) == 2; probed != tc.wantProbe {
					t.Errorf("%s: probe served=%v want %v (%v)", e.name, probed, tc.wantProbe, st)
				}
			}
			us, uf := p.stdUp.take(), p.fastUp.take()
			if strings.Join(us, "\n---\n") != strings.Join(uf, "\n---\n") {
				t.Errorf("upstream saw different requests\nstd:\n%s\nfast:\n%s", strings.Join(us, "\n---\n"), strings.Join(uf, "\n---\n"))
			}
		})
	}
}

// rawOrigin is an allocation-free keep-alive origin for benchmarks.
func rawOrigin(b *testing.B) string {
	return enginetest.Origin(b, []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello world!\n"))
}

// BenchmarkProxy measures client -> engine -> forwarder -> origin on one
// keep-alive connection. Client and origin allocate nothing, so allocs/op
// are the engine's and the forwarder's.
func BenchmarkProxy(b *testing.B) {
	for _, eng := range []string{"std", "fast"} {
		b.Run(eng, func(b *testing.B) {
			up := rawOrigin(b)
			opt := proxy.Options{}
			var addr string
			if eng == "std" {
				addr = startStd(b, forwardTo(proxy.NewForwarder(nil), up, opt), std.DefaultLimits())
			} else {
				addr = startFast(b, forwardTo(NewForwarder(nil, nil), up, opt), std.DefaultLimits())
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req := []byte("GET /bench HTTP/1.1\r\nHost: bench.local:9080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
			for i := 0; i < 100; i++ { // warm pools and string caches
				c.Write(req)
				if _, err := enginetest.ReadResponse(br); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := enginetest.ReadResponse(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var _ = engine.ErrBodyTooLarge
var _ = io.EOF
var _ = fmt.Sprint
