package forwardauth

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	hmacauth "github.com/sluice-gw/sluice/internal/plugins/hmac-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// authService is a fake authorization service modelled on APISIX's tests:
// the Authorization header picks the answer.
func authService(t *testing.T, hits *atomic.Int64) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch r.Header.Get("Authorization") {
		case "111":
			w.WriteHeader(200)
		case "222":
			w.Header().Set("X-User-ID", "i-am-an-user")
			w.WriteHeader(200)
		case "333":
			w.Header().Set("Location", "http://example.com/auth")
			w.WriteHeader(403)
		case "444":
			seen := map[string]string{"method": r.Method, "body": string(body)}
			for k := range r.Header {
				seen[strings.ToLower(k)] = r.Header.Get(k)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			_ = json.NewEncoder(w).Encode(seen)
		case "555":
			time.Sleep(500 * time.Millisecond)
			w.WriteHeader(200)
		case "666":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"title":"nope"}`)
		case "redirect":
			if r.URL.Path == "/ok" {
				w.WriteHeader(200)
				return
			}
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			w.WriteHeader(401)
			_, _ = io.WriteString(w, "denied")
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	const pre = "failed to check the configuration of plugin forward-auth err: "
	tests := []struct{ name, conf, msg string }{
		{"ok", `{"uri":"http://127.0.0.1:8199"}`, ""},
		{"post", `{"uri":"http://127.0.0.1:8199","request_method":"POST"}`, ""},
		{"no uri", `{"request_headers":["test"]}`, pre + `property "uri" is required`},
		{"uri number", `{"uri":3233}`, pre + `property "uri" validation failed: wrong type: expected string, got number`},
		{"headers string", `{"uri":"http://127.0.0.1:8199","request_headers":"test"}`, pre + `property "request_headers" validation failed: wrong type: expected array, got string`},
		{"put", `{"uri":"http://127.0.0.1:8199","request_method":"PUT"}`, pre + `property "request_method" validation failed: matches none of the enum values`},
		{"timeout", `{"uri":"http://127.0.0.1:8199","timeout":0}`, pre + `property "timeout" validation failed: expected 0 to be at least 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/v", `{"uri":"/v","plugins":{"forward-auth":`+tt.conf+`},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1":1}}}`)
			if tt.msg == "" {
				if r.Status >= 300 {
					t.Fatalf("status %d %s", r.Status, r.Body)
				}
				return
			}
			var e struct {
				ErrorMsg string `json:"error_msg"`
			}
			_ = json.Unmarshal([]byte(r.Body), &e)
			if r.Status != 400 || e.ErrorMsg != tt.msg {
				t.Fatalf("got %d %q\nwant 400 %q", r.Status, e.ErrorMsg, tt.msg)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	var hits atomic.Int64
	svc := authService(t, &hits)
	dead := "http://" + closedPort(t) + "/auth"
	g := plugintest.Start(t, []*plugin.Def{Def(), hmacauth.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	up := rec.Upstream()
	route := func(id, conf string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/"+id, `{"uri":"/`+id+`","plugins":{"forward-auth":`+conf+`},"upstream":`+up+`}`)
	}
	route("get", `{"uri":"`+svc.URL+`/auth","request_headers":["Authorization"],"upstream_headers":["X-User-ID"],"client_headers":["Location","Content-Type"]}`)
	route("post", `{"uri":"`+svc.URL+`/auth","request_method":"POST","request_headers":["Authorization"],"max_req_body_size":10}`)
	route("extra", `{"uri":"`+svc.URL+`/auth","request_headers":["Authorization"],"extra_headers":{"X-Client":"$remote_addr","X-Arg":"${arg_x ?? none}","X-Lit":"a\\$b"}}`)
	route("nofollow", `{"uri":"`+svc.URL+`/auth","request_headers":["Authorization"]}`)
	route("dead", `{"uri":"`+dead+`"}`)
	route("dead503", `{"uri":"`+dead+`","status_on_error":503}`)
	route("degrade", `{"uri":"`+dead+`","allow_degradation":true}`)
	route("slow", `{"uri":"`+svc.URL+`/auth","request_headers":["Authorization"],"timeout":100}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/ordered", `{"uri":"/ordered","plugins":{"hmac-auth":{},"forward-auth":{"uri":"`+svc.URL+`/auth"}},"upstream":`+up+`}`)

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		respBody                 string
		respHas                  []string
		respHeader               map[string]string
		upHeader                 map[string]string
		authHits                 int64
	}{
		{name: "allowed", method: "GET", path: "/get", hdr: map[string]string{"Authorization": "111", "X-User-ID": "forged"}, status: 200, respBody: "ok",
			upHeader: map[string]string{"X-User-Id": "", "Authorization": "111"}, authHits: 1},
		{name: "upstream header copied", method: "GET", path: "/get", hdr: map[string]string{"Authorization": "222"}, status: 200, respBody: "ok",
			upHeader: map[string]string{"X-User-Id": "i-am-an-user"}, authHits: 1},
		{name: "rejected with client header", method: "GET", path: "/get", hdr: map[string]string{"Authorization": "333"}, status: 403, respBody: "",
			respHeader: map[string]string{"Location": "http://example.com/auth"}, authHits: 1},
		{name: "forwarded headers", method: "GET", path: "/get?a=1", hdr: map[string]string{"Authorization": "444", "Host": "apisix.example"}, status: 403,
			respHas:    []string{`"x-forwarded-proto":"http"`, `"x-forwarded-method":"GET"`, `"x-forwarded-host":"apisix.example"`, `"x-forwarded-uri":"/get?a=1"`, `"x-forwarded-for":"127.0.0.1"`, `"method":"GET"`},
			respHeader: map[string]string{"Content-Type": "application/json"}, authHits: 1},
		{name: "content type relayed", method: "GET", path: "/get", hdr: map[string]string{"Authorization": "666"}, status: 401, respBody: `{"title":"nope"}`,
			respHeader: map[string]string{"Content-Type": "application/problem+json"}, authHits: 1},
		{name: "denied body relayed", method: "GET", path: "/get", status: 401, respBody: "denied", authHits: 1},
		// Following the redirect would reach /ok, which allows the request.
		{name: "redirect not followed", method: "GET", path: "/nofollow", hdr: map[string]string{"Authorization": "redirect"}, status: 302, authHits: 1},
		{name: "post forwards body", method: "POST", path: "/post", body: "hi there", hdr: map[string]string{"Authorization": "444"}, status: 403,
			respHas: []string{`"method":"POST"`, `"body":"hi there"`}, authHits: 1},
		{name: "post body reaches upstream", method: "POST", path: "/post", body: "payload", hdr: map[string]string{"Authorization": "111"}, status: 200, respBody: "ok", authHits: 1},
		{name: "post too large", method: "POST", path: "/post", body: "0123456789x", hdr: map[string]string{"Authorization": "111"}, status: 413, authHits: 0},
		{name: "extra headers", method: "GET", path: "/extra?x=7", hdr: map[string]string{"Authorization": "444"}, status: 403,
			respHas: []string{`"x-client":"127.0.0.1"`, `"x-arg":"7"`, `"x-lit":"a\\$b"`}, authHits: 1},
		{name: "extra header default", method: "GET", path: "/extra", hdr: map[string]string{"Authorization": "444"}, status: 403,
			respHas: []string{`"x-arg":"none"`}, authHits: 1},
		{name: "service down", method: "GET", path: "/dead", status: 403, authHits: 0},
		{name: "service down custom status", method: "GET", path: "/dead503", status: 503, authHits: 0},
		{name: "degradation", method: "GET", path: "/degrade", status: 200, respBody: "ok", authHits: 0},
		{name: "timeout", method: "GET", path: "/slow", hdr: map[string]string{"Authorization": "555"}, status: 403, authHits: 1},
		{name: "auth plugin runs first", method: "GET", path: "/ordered", hdr: map[string]string{"Authorization": "111"}, status: 401,
			respBody: `{"message":"client request can't be validated: Authorization header does not start with 'Signature'"}` + "\n", authHits: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, hitsBefore := rec.Count(), hits.Load()
			resp := g.Do(tt.method, tt.path, tt.hdr, tt.body)
			if resp.Status != tt.status {
				t.Fatalf("status %d, want %d (body %q)", resp.Status, tt.status, resp.Body)
			}
			if tt.respBody != "" && resp.Body != tt.respBody {
				t.Fatalf("body %q, want %q", resp.Body, tt.respBody)
			}
			for _, s := range tt.respHas {
				if !strings.Contains(resp.Body, s) {
					t.Fatalf("body %s lacks %s", resp.Body, s)
				}
			}
			for k, v := range tt.respHeader {
				if got := resp.Header.Get(k); got != v {
					t.Fatalf("response %s = %q, want %q", k, got, v)
				}
			}
			if got := hits.Load() - hitsBefore; got != tt.authHits {
				t.Fatalf("auth service called %d times, want %d", got, tt.authHits)
			}
			arrived := rec.Count() - before
			if tt.status != 200 {
				if arrived != 0 {
					t.Fatal("rejected request reached the upstream")
				}
				return
			}
			if arrived != 1 {
				t.Fatalf("upstream saw %d requests", arrived)
			}
			last := rec.Last()
			for k, v := range tt.upHeader {
				if got := last.Header.Get(k); got != v {
					t.Fatalf("upstream %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestResolveVars(t *testing.T) {
	vars := map[string]string{"remote_addr": "1.2.3.4", "a.b": "dot"}
	get := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct{ in, out string }{
		{"plain", "plain"},
		{"$remote_addr", "1.2.3.4"},
		{"ip=$remote_addr;", "ip=1.2.3.4;"},
		{"${ remote_addr }x", "1.2.3.4x"},
		{"${missing ?? dflt}", "dflt"},
		{"$missing-", "-"},
		{`\$remote_addr`, `\$remote_addr`},
		{"$", "$"},
		{"${}", "${}"},
		{"${open", "${open"},
		{"$a.b", "dot"},
	}
	for _, tt := range tests {
		if got := resolveVars(tt.in, get); got != tt.out {
			t.Errorf("resolveVars(%q) = %q, want %q", tt.in, got, tt.out)
		}
	}
}

func FuzzResolveVars(f *testing.F) {
	for _, s := range []string{"$a", "${a ?? b}", `\$x`, "${", "$$", "a$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := resolveVars(s, func(string) (string, bool) { return "", false })
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("template without $ changed: %q -> %q", s, out)
		}
	})
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

// BenchmarkForwardAuth measures one allowed request including the call to
// a loopback authorization service over a kept-alive connection.
func BenchmarkForwardAuth(b *testing.B) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-User-ID", "u1")
	}))
	defer svc.Close()
	inst, err := New(json.RawMessage(`{"uri":"`+svc.URL+`/auth","upstream_headers":["X-User-ID"],"request_headers":["Authorization"]}`), &plugin.BuildEnv{Shared: &plugin.Shared{}})
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.W = &nopWriter{h: engine.Header{}}
	c.Method, c.RequestURI, c.Host, c.Scheme = "GET", "/x?y=1", "example.com", "http"
	c.RemoteAddr = netip.MustParseAddrPort("127.0.0.1:1")
	c.Header = engine.Header{"Authorization": {"t"}}
	r := &plugin.Request{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Reset()
		r.Ctx = c
		p.Access(r)
		if r.Exited() || c.Header.Get("X-User-Id") != "u1" {
			b.Fatal("not allowed")
		}
	}
}

// TestPostBodyReachesUpstream checks the body buffered for the
// authorization service is still sent upstream in full.
func TestPostBodyReachesUpstream(t *testing.T) {
	var hits atomic.Int64
	svc := authService(t, &hits)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	defer echo.Close()
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	g.MustAdmin("PUT", "/apisix/admin/routes/p", `{"uri":"/p","plugins":{"forward-auth":{"uri":"`+svc.URL+`","request_method":"POST","request_headers":["Authorization"]}},"upstream":{"type":"roundrobin","nodes":{"`+strings.TrimPrefix(echo.URL, "http://")+`":1}}}`)
	body := strings.Repeat("abc", 10000)
	resp := g.Do("POST", "/p", map[string]string{"Authorization": "111"}, body)
	if resp.Status != 200 || resp.Body != body {
		t.Fatalf("got %d, %d bytes", resp.Status, len(resp.Body))
	}
}
