package uarestriction_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	uarestriction "github.com/sluice-gw/sluice/internal/plugins/ua-restriction"
)

func TestNew(t *testing.T) {
	tests := []struct{ name, conf, err string }{
		{"denylist", `{"denylist":["my-bot1","(Baiduspider)/(\\d+)\\.(\\d+)"]}`, ""},
		{"allowlist", `{"allowlist":["^curl/"],"bypass_missing":true,"message":"no"}`, ""},
		{"missing paren", `{"denylist":["a("]}`, `pcre_compile() failed: missing ) in "a("`},
		{"unmatched paren", `{"allowlist":["a)"]}`, `pcre_compile() failed: unmatched parentheses in "a)"`},
		{"nothing to repeat", `{"denylist":["*a"]}`, `pcre_compile() failed: nothing to repeat in "*a"`},
		{"lookahead", `{"denylist":["a(?=b)"]}`, `pcre_compile() failed: unsupported by RE2 (look-around, backreference or PCRE-only group): (?= in "a(?=b)"`},
		// APISIX compiles the list it does not enforce too.
		{"bad rule in unused list", `{"allowlist":["a"],"denylist":["("]}`, `pcre_compile() failed: missing ) in "("`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := uarestriction.New(json.RawMessage(tt.conf), nil)
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
	g := plugintest.Start(t, []*plugin.Def{uarestriction.Def()}, nil)
	tests := []struct{ name, conf, want string }{
		{"both", `{"allowlist":["a"],"denylist":["b"]}`, "failed to check the configuration of plugin ua-restriction err: value should match only one schema, but matches both schemas 1 and 2"},
		{"bypass type", `{"denylist":["a"],"bypass_missing":"yes"}`, `failed to check the configuration of plugin ua-restriction err: property "bypass_missing" validation failed: wrong type: expected boolean, got string`},
		{"allowlist type", `{"allowlist":"a"}`, `failed to check the configuration of plugin ua-restriction err: property "allowlist" validation failed: wrong type: expected array, got string`},
		{"empty message", `{"denylist":["a"],"message":""}`, `failed to check the configuration of plugin ua-restriction err: property "message" validation failed: string too short, expected at least 1, got 0`},
		{"bad regex", `{"denylist":["a("]}`, `failed to check the configuration of plugin ua-restriction err: pcre_compile() failed: missing ) in "a("`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"ua-restriction":`+tt.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
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

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{uarestriction.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	const deny = `{"denylist":["my-bot1","(Baiduspider)/(\\d+)\\.(\\d+)"]}`
	const allow = `{"allowlist":["my-bot1","(Baiduspider)/(\\d+)\\.(\\d+)"]}`
	const notAllowed = `{"message":"Not allowed"}` + "\n"
	tests := []struct {
		name, conf string
		uas        []string // nil: no User-Agent header
		status     int
		body       string
	}{
		{"deny hit", deny, []string{"my-bot1"}, 403, notAllowed},
		{"deny regex hit", deny, []string{"Baiduspider/3.0"}, 403, notAllowed},
		{"deny search is unanchored", deny, []string{"Mozilla my-bot1 x"}, 403, notAllowed},
		{"deny miss", deny, []string{"foo/bar"}, 200, "ok"},
		{"deny trims", deny, []string{"  my-bot1  "}, 403, notAllowed},
		{"deny multiple, one hit", deny, []string{"my-bot2", "my-bot1"}, 403, notAllowed},
		{"deny multiple, none hit", deny, []string{"foo/bar", "foo/baz"}, 200, "ok"},
		{"deny missing", deny, nil, 403, notAllowed},
		{"deny missing bypass", `{"denylist":["x"],"bypass_missing":true}`, nil, 200, "ok"},
		{"allow hit", allow, []string{"my-bot1"}, 200, "ok"},
		{"allow regex hit", allow, []string{"Baiduspider/3.0"}, 200, "ok"},
		{"allow miss", allow, []string{"foo/bar"}, 403, notAllowed},
		{"allow multiple, one hit", allow, []string{"foo/bar", "my-bot1"}, 200, "ok"},
		{"allow missing", allow, nil, 403, notAllowed},
		{"custom message", `{"denylist":["(Baiduspider)/(\\d+)\\.(\\d+)"],"message":"Do you want to do something bad?"}`, []string{"Baiduspider/1.0"}, 403, `{"message":"Do you want to do something bad?"}` + "\n"},
		{"case sensitive", deny, []string{"MY-BOT1"}, 200, "ok"},
		{"inline flag", `{"denylist":["(?i)my-bot1"]}`, []string{"MY-BOT1"}, 403, notAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"ua-restriction":`+tt.conf+`},"upstream":`+rec.Upstream()+`}`)
			before := rec.Count()
			resp := doUA(t, g, "/a", tt.uas)
			if resp.Status != tt.status || resp.Body != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.body)
			}
			reached := rec.Count() - before
			if (tt.status == 200) != (reached == 1) || reached > 1 {
				t.Fatalf("upstream saw %d requests", reached)
			}
		})
	}
}

func BenchmarkUARestriction(b *testing.B) {
	inst, err := uarestriction.New(json.RawMessage(`{"denylist":["my-bot1","(Baiduspider)/(\\d+)\\.(\\d+)","(?i)curl/","python-requests"]}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*uarestriction.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.Header = engine.Header{"User-Agent": {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"}}
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Access(r)
		if r.Exited() {
			b.Fatal("blocked")
		}
	}
}

func TestRules(t *testing.T) {
	tests := []struct {
		rules []string
		fold  bool
		in    string
		want  bool
	}{
		{[]string{"bot"}, false, "a bot here", true},
		{[]string{"bot"}, false, "a BOT here", false},
		{[]string{"bot"}, true, "a BOT here", true},
		{[]string{"(?i)curl/"}, false, "CURL/8.0", true},
		{[]string{"(?i)curl/"}, false, "cur/8.0", false},
		{[]string{"^curl"}, false, "xcurl", false},
		{[]string{"^curl"}, true, "CURL", true},
		{[]string{`a\.b`}, false, "a.b", true},
		{[]string{`a\.b`}, false, "axb", false},
		{[]string{"(?i)straße"}, false, "STRASSE", false},
		{[]string{"(?i)stra\u00dfe"}, false, "STRA\u1e9eE", true}, // non-ASCII folding goes through regexp
		{[]string{"x", "(?i)y"}, false, "Y", true},
		{[]string{"x", "y"}, false, "z", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.rules, ",")+"/"+tt.in, func(t *testing.T) {
			rs, err := uarestriction.CompileRules(tt.rules, tt.fold)
			if err != nil {
				t.Fatal(err)
			}
			if got := rs.MatchString(tt.in); got != tt.want {
				t.Fatalf("MatchString = %v, want %v", got, tt.want)
			}
			if got := rs.Match([]byte(tt.in)); got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}
