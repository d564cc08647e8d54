package refererrestriction_test

import (
	"encoding/json"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	refererrestriction "github.com/sluice-gw/sluice/internal/plugins/referer-restriction"
)

func TestRefererHost(t *testing.T) {
	tests := []struct {
		in, host string
		ok       bool
	}{
		{"http://www.example.com/a?b", "www.example.com", true},
		{"https://Example.COM:8443", "example.com", true},
		{"//cdn.example.com/x", "cdn.example.com", true},
		{"HTTPS://a.b", "a.b", true},
		{"http://user:pw@a.example.com/", "a.example.com", true},
		{"http://a.example.com@evil.com/", "evil.com", true},
		{"http://evil.com#.example.com", "evil.com", true},
		{"http://evil.com?.example.com", "evil.com", true},
		{"http://evil.com\\.example.com", "evil.com", true},
		{"http://example.com./", "example.com", true},
		{"http://[::1]:8080/", "[::1]", true},
		{"ftp://example.com/", "", false},
		{"example.com", "", false},
		{"http:///path", "", false},
		{"http://", "", false},
		{"", "", false},
		{"http://[::1/", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, ok := refererrestriction.RefererHost(tt.in)
			if h != tt.host || ok != tt.ok {
				t.Fatalf("RefererHost(%q) = %q, %v; want %q, %v", tt.in, h, ok, tt.host, tt.ok)
			}
		})
	}
}

func FuzzRefererHost(f *testing.F) {
	for _, s := range []string{"http://a.b/c", "//x", "https://u@h:1/?#", "http://[::1]/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := refererrestriction.RefererHost(s)
		if ok && h == "" {
			t.Fatalf("RefererHost(%q): ok with empty host", s)
		}
	})
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{refererrestriction.Def()}, nil)
	tests := []struct{ name, conf, want string }{
		{"good", `{"whitelist":["*.xx.com","yy.com","*"]}`, ""},
		{"both", `{"whitelist":["a.com"],"blacklist":["b.com"]}`, "failed to check the configuration of plugin referer-restriction err: value should match only one schema, but matches both schemas 1 and 2"},
		{"bad host", `{"whitelist":["a b"]}`, `failed to check the configuration of plugin referer-restriction err: property "whitelist" validation failed: failed to validate item 1: failed to match pattern "^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$" with "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"referer-restriction":`+tt.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			var e struct {
				ErrorMsg string `json:"error_msg"`
			}
			_ = json.Unmarshal([]byte(r.Body), &e)
			if tt.want == "" {
				if r.Status >= 300 {
					t.Fatalf("got %d %s", r.Status, r.Body)
				}
				return
			}
			if r.Status != 400 || e.ErrorMsg != tt.want {
				t.Fatalf("got %d %s\nwant %q", r.Status, r.Body, tt.want)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{refererrestriction.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	const white = `{"whitelist":["*.xx.com","yy.com"]}`
	const black = `{"blacklist":["*.xx.com","yy.com"]}`
	const denied = `{"message":"Your referer host is not allowed"}` + "\n"
	tests := []struct {
		name, conf, referer string // referer "" = none
		status              int
		body                string
	}{
		{"white exact", white, "http://yy.com/x", 200, "ok"},
		{"white suffix", white, "https://www.xx.com/", 200, "ok"},
		{"white suffix needs a dot", white, "http://xx.com/", 403, denied},
		{"white case-insensitive", white, "http://YY.com", 200, "ok"},
		{"white miss", white, "http://zz.com/", 403, denied},
		{"white missing", white, "", 403, denied},
		{"white malformed", white, "yy.com", 403, denied},
		{"white fragment trick", white, "http://evil.com#.xx.com", 403, denied},
		{"white userinfo trick", white, "http://yy.com@evil.com/", 403, denied},
		{"white missing bypass", `{"whitelist":["yy.com"],"bypass_missing":true}`, "", 200, "ok"},
		{"white malformed bypass", `{"whitelist":["yy.com"],"bypass_missing":true}`, "not a url", 200, "ok"},
		{"black hit", black, "http://a.xx.com/", 403, denied},
		{"black trailing dot", black, "http://yy.com./", 403, denied},
		{"black miss", black, "http://zz.com/", 200, "ok"},
		{"black missing", black, "", 403, denied},
		{"black missing bypass", `{"blacklist":["yy.com"],"bypass_missing":true}`, "", 200, "ok"},
		{"custom message", `{"blacklist":["yy.com"],"message":"hotlinking"}`, "http://yy.com", 403, `{"message":"hotlinking"}` + "\n"},
		{"star", `{"whitelist":["*"]}`, "http://anything.example/", 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"referer-restriction":`+tt.conf+`},"upstream":`+rec.Upstream()+`}`)
			var h map[string]string
			if tt.referer != "" {
				h = map[string]string{"Referer": tt.referer}
			}
			before := rec.Count()
			resp := g.Do("GET", "/a", h, "")
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

func BenchmarkRefererRestriction(b *testing.B) {
	inst, err := refererrestriction.New(json.RawMessage(`{"whitelist":["*.example.com","example.org","cdn.example.net"]}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*refererrestriction.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.Header = engine.Header{"Referer": {"https://www.example.com/some/page?x=1"}}
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
