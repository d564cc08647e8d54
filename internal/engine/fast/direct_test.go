package fast

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// wrappedW hides the engine's writer from the forwarder, as a plugin's
// filter writer does, so the response head goes through the header map.
type wrappedW struct{ engine.ResponseWriter }

// headsBothWays sends req through two fast servers forwarding to upstream
// addr with opt — one where the forwarder sees the engine's writer (the
// direct head), one where a wrapper hides it (the header map) — with
// before and after (either may be nil) run around the forwarding, and
// returns both responses normalised (normaliseResponse).
func headsBothWays(t *testing.T, addr string, opt proxy.Options, req string, before, after func(*engine.Ctx)) (direct, viaMap string) {
	t.Helper()
	inner := forwardTo(NewForwarder(nil, nil), addr, opt)
	serve := func(wrap bool) engine.Handler {
		return engine.HandlerFunc(func(c *engine.Ctx) {
			if before != nil {
				before(c)
			}
			w := c.W
			if wrap {
				c.W = wrappedW{w}
			}
			inner.Serve(c)
			c.W = w
			if after != nil {
				after(c)
			}
		})
	}
	direct = normaliseResponse(rawExchange(t, startFast(t, serve(false), std.Limits{}), req, 3*time.Second))
	viaMap = normaliseResponse(rawExchange(t, startFast(t, serve(true), std.Limits{}), req, 3*time.Second))
	return direct, viaMap
}

// The forwarder writes a response nothing filters straight from the
// upstream's field list (respWriter.headDirect); every head must reach
// the client exactly as through the header map.
func TestDirectHeadMatchesMap(t *testing.T) {
	cases := []struct {
		name, method, resp string
		opt                proxy.Options
	}{
		{"length", "GET", "HTTP/1.1 200 OK\r\nServer: origin\r\nDate: Fri, 27 Nov 2026 02:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello", proxy.Options{}},
		{"no type sniffed", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n<html></html>\n", proxy.Options{}},
		{"connection listed", "GET", "HTTP/1.1 200 OK\r\nConnection: X-Drop, keep-alive\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nX-Keep: 1\r\nContent-Length: 2\r\n\r\nok", proxy.Options{}},
		{"upstream close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", proxy.Options{}},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n0\r\n\r\n", proxy.Options{}},
		{"chunked trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n", proxy.Options{}},
		{"announced trailer", "GET", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n", proxy.Options{}},
		{"length and chunked", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", proxy.Options{}},
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n", proxy.Options{}},
		{"no content", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n", proxy.Options{}},
		{"not modified", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n", proxy.Options{}},
		{"upstream 502", "GET", "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", proxy.Options{}},
		{"show status", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", proxy.Options{ShowUpstreamStatus: true}},
		{"http/1.0 origin", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", proxy.Options{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, func(*http.Request) string { return tc.resp })
			req := tc.method + " / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
			a, b := headsBothWays(t, up.addr(), tc.opt, req, nil, nil)
			if a != b {
				t.Fatalf("direct head differs from the map's:\ndirect:\n%s\nmap:\n%s", a, b)
			}
			if !strings.HasPrefix(a, "HTTP/1.1 ") {
				t.Fatalf("no response: %q", a)
			}
		})
	}
}

// The head a plugin reads after the forwarder wrote it directly (a log
// phase asking for the header map) is the head that was sent.
func TestDirectHeadToMap(t *testing.T) {
	up := startUpstream(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nServer: origin\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
	})
	inner := forwardTo(NewForwarder(nil, nil), up.addr(), proxy.Options{})
	seen := make(chan engine.Header, 1)
	addr := startFast(t, engine.HandlerFunc(func(c *engine.Ctx) {
		inner.Serve(c)
		seen <- c.W.Header().Clone()
	}), std.Limits{})
	raw := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.Contains(raw, "X-A: 1\r\n") {
		t.Fatalf("response: %q", raw)
	}
	h := <-seen
	if h.Get("X-A") != "1" || h.Get("Content-Length") != "2" || !strings.HasPrefix(h.Get("Server"), "APISIX") {
		t.Fatalf("header map after a direct head: %v", h)
	}
}

// Headers a plugin set before forwarding (limit-count's quota headers, in
// access) are sent with the upstream's.
func TestDirectHeadKeepsPluginHeaders(t *testing.T) {
	up := startUpstream(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
	})
	inner := forwardTo(NewForwarder(nil, nil), up.addr(), proxy.Options{})
	addr := startFast(t, engine.HandlerFunc(func(c *engine.Ctx) {
		c.W.Header()["X-Ratelimit-Limit"] = []string{"5"}
		inner.Serve(c)
	}), std.Limits{})
	raw := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.Contains(raw, "X-Ratelimit-Limit: 5\r\n") || !strings.Contains(raw, "X-A: 1\r\n") {
		t.Fatalf("response: %q", raw)
	}
}

// Plugin-set fields (also one the upstream repeats) reach the client as
// through the map; a framing field in the map sends the head through the
// map path.
func TestDirectHeadPluginFieldsMatchMap(t *testing.T) {
	up := startUpstream(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nX-Ratelimit-Limit: 9\r\nX-A: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
	})
	for _, set := range []map[string]string{
		{"X-Ratelimit-Limit": "5", "X-Ratelimit-Remaining": "4"},
		{"Content-Type": "application/json"},
		{"Date": "Thu, 01 Jan 2026 00:00:00 GMT"},
	} {
		req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		a, b := headsBothWays(t, up.addr(), proxy.Options{}, req, func(c *engine.Ctx) {
			for k, v := range set {
				c.W.Header()[k] = []string{v}
			}
		}, nil)
		if a != b || !strings.Contains(a, "X-A: 1") {
			t.Fatalf("%v: direct head differs from the map's:\ndirect:\n%s\nmap:\n%s", set, a, b)
		}
	}
}

// normaliseResponse sorts the head's fields and blanks Date values the
// engine writes (they may fall in different seconds).
func normaliseResponse(raw string) string {
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	fields := lines[1:]
	for i, f := range fields {
		if strings.HasPrefix(f, "Date: ") && !strings.HasPrefix(f, "Date: Fri, 27 Nov 2026 02:00:00") {
			fields[i] = "Date: (engine)"
		}
	}
	sort.Strings(fields)
	return lines[0] + "\n" + strings.Join(fields, "\n") + "\n\n" + body
}
