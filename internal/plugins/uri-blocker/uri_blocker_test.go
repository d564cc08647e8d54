package uriblocker_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	uriblocker "github.com/sluice-gw/sluice/internal/plugins/uri-blocker"
)

func TestNew(t *testing.T) {
	tests := []struct{ name, conf, err string }{
		{"one", `{"block_rules":["aa"]}`, ""},
		{"several", `{"block_rules":["^a","^b"],"rejected_code":410,"rejected_msg":"gone","case_insensitive":true}`, ""},
		{"invalid", `{"block_rules":[".+("]}`, `pcre_compile() failed: missing ) in ".+("`},
		{"one invalid of several", `{"block_rules":["^a","^b("]}`, `pcre_compile() failed: missing ) in "^b("`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := uriblocker.New(json.RawMessage(tt.conf), nil)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.err {
				t.Fatalf("error %q, want %q", got, tt.err)
			}
		})
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{uriblocker.Def()}, nil)
	tests := []struct{ name, conf, want string }{
		// APISIX t/plugin/uri-blocker.t TEST 1.
		{"invalid rule", `{"block_rules":[".+("]}`, `failed to check the configuration of plugin uri-blocker err: pcre_compile() failed: missing ) in ".+("`},
		{"missing rules", `{}`, `failed to check the configuration of plugin uri-blocker err: property "block_rules" is required`},
		{"duplicate rules", `{"block_rules":["a","a"]}`, `failed to check the configuration of plugin uri-blocker err: property "block_rules" validation failed: expected unique items but items 1 and 2 are equal`},
		{"empty msg", `{"block_rules":["a"],"rejected_msg":""}`, `failed to check the configuration of plugin uri-blocker err: property "rejected_msg" validation failed: string too short, expected at least 1, got 0`},
		{"code too low", `{"block_rules":["a"],"rejected_code":199}`, `failed to check the configuration of plugin uri-blocker err: property "rejected_code" validation failed: expected 199 to be at least 200`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"uri-blocker":`+tt.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			var e struct {
				ErrorMsg string `json:"error_msg"`
			}
			_ = json.Unmarshal([]byte(r.Body), &e)
			if r.Status != 400 || e.ErrorMsg != tt.want {
				t.Fatalf("got %d %s\nwant %q", r.Status, r.Body, tt.want)
			}
		})
	}
}

// raw sends a request line exactly as given, so path tricks reach the
// gateway unaltered by Go's client.
func raw(t *testing.T, g *plugintest.Gateway, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.ProxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{uriblocker.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name, conf, uri, target string
		status                  int
		body                    string // checked when not empty
	}{
		// From APISIX t/plugin/uri-blocker.t.
		{"hit", `{"block_rules":["aa"]}`, "/hello", "/hello?aa=1", 403, string(engine.ErrorPage(403))},
		{"miss", `{"block_rules":["aa"]}`, "/hello", "/hello?bb=1", 200, "ok"},
		{"several rules", `{"block_rules":["aa","bb","c\\d+"]}`, "/hello", "/hello?c1=2", 403, ""},
		{"several rules miss", `{"block_rules":["aa","bb","c\\d+"]}`, "/hello", "/hello?cc=2", 200, "ok"},
		{"sql injection", `{"block_rules":["select.+(from|limit)","(?:(union(.*?)select))"]}`, "/hello", "/hello?name=;select%20from%20sys", 403, ""},
		{"sql injection 2", `{"block_rules":["select.+(from|limit)","(?:(union(.*?)select))"]}`, "/hello", "/hello?name=;union%20select%20", 403, ""},
		{"rejected_msg", `{"block_rules":["aa"],"rejected_msg":"access is not allowed"}`, "/hello", "/hello?aa=1", 403, `{"error_msg":"access is not allowed"}` + "\n"},
		{"case insensitive", `{"block_rules":["AA"],"rejected_msg":"access is not allowed","case_insensitive":true}`, "/hello", "/hello?aa=1", 403, `{"error_msg":"access is not allowed"}` + "\n"},
		{"case sensitive", `{"block_rules":["AA"]}`, "/hello", "/hello?aa=1", 200, "ok"},
		{"rejected_code", `{"block_rules":["aa"],"rejected_code":410}`, "/hello", "/hello?xaa", 410, ""},
		{"no normalization bypass", `{"block_rules":["^/internal/"]}`, "/internal/*", "/./internal/x?aa=1", 403, ""},

		// Path tricks: APISIX matches the normalised path, so these are
		// blocked there too.
		{"dot dot", `{"block_rules":["^/admin"]}`, "/*", "/public/../admin/x", 403, ""},
		{"encoded dot dot", `{"block_rules":["^/admin"]}`, "/*", "/public/%2e%2e/admin/x", 403, ""},
		{"mixed-case encoded dot dot", `{"block_rules":["^/admin"]}`, "/*", "/public/.%2E/admin/x", 403, ""},
		{"encoded letter", `{"block_rules":["^/admin"]}`, "/*", "/%61dmin/x", 403, ""},
		{"encoded slash", `{"block_rules":["^/admin/x"]}`, "/*", "/admin%2fx", 403, ""},
		{"double slash", `{"block_rules":["^/admin"]}`, "/*", "//admin/x", 403, ""},
		{"slash dot dot slash", `{"block_rules":["^/admin"]}`, "/*", "/public//../admin", 403, ""},

		// Stricter than APISIX: readings an upstream may apply.
		{"double encoded", `{"block_rules":["^/admin"]}`, "/*", "/%2561dmin/x", 403, ""},
		{"double encoded dots", `{"block_rules":["^/admin"]}`, "/*", "/public/%252e%252e/admin", 403, ""},
		{"matrix params", `{"block_rules":["^/admin/secret"]}`, "/*", "/admin;x=1/secret", 403, ""},
		{"dot dot params", `{"block_rules":["^/admin"]}`, "/*", "/public/..;/admin", 403, ""},
		{"backslash", `{"block_rules":["^/admin"]}`, "/*", "/public\\..\\admin", 403, ""},
		{"encoded backslash", `{"block_rules":["^/admin"]}`, "/*", "/public%5c..%5cadmin", 403, ""},
		{"encoded query", `{"block_rules":["<script"]}`, "/*", "/x?q=%3Cscript%3E", 403, ""},
		{"plus in query", `{"block_rules":["union select"]}`, "/*", "/x?q=union+select", 403, ""},
		{"raw query still matched", `{"block_rules":["%3Cscript"]}`, "/*", "/x?q=%3Cscript%3E", 403, ""},

		// Not blocked.
		{"similar path", `{"block_rules":["^/admin"]}`, "/*", "/administrator-not/../public", 200, "ok"},
		{"other path", `{"block_rules":["^/admin"]}`, "/*", "/public/admin", 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"`+tt.uri+`","plugins":{"uri-blocker":`+tt.conf+`},"upstream":`+rec.Upstream()+`}`)
			before := rec.Count()
			st, body := raw(t, g, tt.target)
			if st != tt.status || (tt.body != "" && body != tt.body) {
				t.Fatalf("GET %s: got %d %q, want %d %q", tt.target, st, body, tt.status, tt.body)
			}
			reached := rec.Count() - before
			if (tt.status == 200) != (reached == 1) || reached > 1 {
				t.Fatalf("upstream saw %d requests", reached)
			}
		})
	}
}

func TestBlocked(t *testing.T) {
	inst, err := uriblocker.New(json.RawMessage(`{"block_rules":["^/admin(/|$)","\\.php$","hello\\?debug"]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := inst.(*uriblocker.Plugin)
	tests := []struct {
		path, query string
		want        bool
	}{
		{"/admin", "", true},
		{"/admin/x", "a=1", true},
		{"/administrator", "", false},
		{"/x.php", "", true},
		{"/x.php", "a=1", false}, // $ is the end of path?query, as in APISIX
		{"/hello", "debug=1", true},
		{"/%61dmin", "", true},
		{"/a;b=c/../admin", "", true},
		{"/a%5c..%5cadmin", "", true},
		{"/a", "%2fadmin", false},
		{"/%", "", false},
		{"/%zz", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.path+"?"+tt.query, func(t *testing.T) {
			if got := p.Blocked(tt.path, tt.query); got != tt.want {
				t.Fatalf("Blocked(%q, %q) = %v, want %v", tt.path, tt.query, got, tt.want)
			}
		})
	}
}

func FuzzBlocked(f *testing.F) {
	inst, err := uriblocker.New(json.RawMessage(`{"block_rules":["^/admin"]}`), nil)
	if err != nil {
		f.Fatal(err)
	}
	p := inst.(*uriblocker.Plugin)
	for _, s := range []string{"/admin", "/%2561dmin", "/a;x/..", "/a\\..\\admin", "/%"} {
		f.Add(s, "q=%3C")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		// Anything the engine would route as /admin... must be blocked.
		if norm, ok := engine.NormalizePath(path); ok && strings.HasPrefix(norm, "/admin") {
			if !p.Blocked(norm, query) {
				t.Fatalf("normalised %q not blocked", norm)
			}
		}
		p.Blocked(path, query)
	})
}

func BenchmarkURIBlocker(b *testing.B) {
	inst, err := uriblocker.New(json.RawMessage(`{"block_rules":["^/admin","\\.php$","select.+(from|limit)","(?:(union(.*?)select))"],"case_insensitive":true}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*uriblocker.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.Path, c.Query = "/api/v1/users/42/orders", "page=2&sort=desc"
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Rewrite(r)
		if r.Exited() {
			b.Fatal("blocked")
		}
	}
}
