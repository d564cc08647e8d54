package iprestriction_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	iprestriction "github.com/sluice-gw/sluice/internal/plugins/ip-restriction"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, conf, err string
	}{
		{"whitelist", `{"whitelist":["127.0.0.1","10.0.0.0/8","::1","fe80::/10"]}`, ""},
		{"blacklist", `{"blacklist":["1.2.3.4"],"message":"go away","response_code":404}`, ""},
		{"host bits set", `{"whitelist":["10.1.2.3/8"]}`, ""},
		{"bad ip", `{"whitelist":["1.2.3.256"]}`, "invalid ip address: 1.2.3.256"},
		{"bad mask v4", `{"blacklist":["1.2.3.4/33"]}`, "invalid ip address: 1.2.3.4/33"},
		{"bad mask v6", `{"blacklist":["::1/129"]}`, "invalid ip address: ::1/129"},
		{"zone", `{"blacklist":["fe80::1%eth0"]}`, "invalid ip address: fe80::1%eth0"},
		{"name", `{"blacklist":["localhost"]}`, "invalid ip address: localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := iprestriction.New(json.RawMessage(tt.conf), nil)
			if got := errString(err); got != tt.err {
				t.Fatalf("New(%s) error = %q, want %q", tt.conf, got, tt.err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestMatcher(t *testing.T) {
	m, err := iprestriction.NewMatcher([]string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.255.0.1", true},
		{"11.0.0.1", false},
		{"192.168.1.7", true},
		{"192.168.1.8", false},
		{"::ffff:10.0.0.1", true}, // mapped clients match as IPv4
		{"2001:db8:1::1", true},
		{"2001:db9::1", false},
		{"172.16.3.4", true}, // a mapped CIDR in the list matches IPv4
		{"172.32.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			got, ok := m.MatchString(tt.ip)
			if !ok || got != tt.want {
				t.Fatalf("MatchString(%s) = %v, %v; want %v", tt.ip, got, ok, tt.want)
			}
		})
	}
	if _, ok := m.MatchString("2130706433"); ok {
		t.Fatal("decimal IPv4 form must not parse")
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{iprestriction.Def()}, nil)
	tests := []struct {
		name, conf, want string
	}{
		{"both lists", `{"whitelist":["1.1.1.1"],"blacklist":["2.2.2.2"]}`, "value should match only one schema, but matches both schemas 1 and 2"},
		{"neither", `{}`, "value should match only one schema, but matches none"},
		{"bad address", `{"whitelist":["1.2.3.4/33"]}`, "failed to check the configuration of plugin ip-restriction err: "},
		{"bad code", `{"whitelist":["1.1.1.1"],"response_code":500}`, `property "response_code" validation failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"ip-restriction":`+tt.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
			var e struct {
				ErrorMsg string `json:"error_msg"`
			}
			_ = json.Unmarshal([]byte(r.Body), &e)
			if r.Status != 400 || !strings.Contains(e.ErrorMsg, tt.want) {
				t.Fatalf("got %d %s, want 400 containing %q", r.Status, r.Body, tt.want)
			}
		})
	}
}

// TestTrustedRealIPHeader: with APISIX's default nginx realip settings
// (X-Real-IP believed from 127.0.0.1) the address the gateway determined
// is what ip-restriction checks.
func TestTrustedRealIPHeader(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{iprestriction.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"ip-restriction":{"whitelist":["10.0.0.1"]}},"upstream":`+rec.Upstream()+`}`)
	if resp := g.Do("GET", "/a", map[string]string{"X-Real-IP": "10.0.0.1"}, ""); resp.Status != 200 {
		t.Fatalf("trusted X-Real-IP: got %d %s", resp.Status, resp.Body)
	}
	if resp := g.Do("GET", "/a", map[string]string{"X-Forwarded-For": "10.0.0.1"}, ""); resp.Status != 403 {
		t.Fatalf("X-Forwarded-For is not the realip header: got %d", resp.Status)
	}
	if rec.Count() != 1 {
		t.Fatalf("upstream saw %d requests, want 1", rec.Count())
	}
}

// untrusted makes the loopback test client an ordinary, untrusted peer:
// APISIX's default config trusts X-Real-IP from 127.0.0.1 (nginx
// real_ip_from), which would make every spoofing test pass trivially.
func untrusted(c *config.Config) { c.NginxConfig.HTTP.RealIPFrom = nil }

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{iprestriction.Def()}, untrusted)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name, conf string
		headers    map[string]string
		status     int
		body       string
	}{
		{"whitelisted", `{"whitelist":["127.0.0.0/24"]}`, nil, 200, "ok"},
		{"not whitelisted", `{"whitelist":["10.0.0.0/8","::1"]}`, nil, 403, `{"message":"Your IP address is not allowed"}` + "\n"},
		{"blacklisted", `{"blacklist":["127.0.0.1"],"message":"no","response_code":404}`, nil, 404, `{"message":"no"}` + "\n"},
		{"not blacklisted", `{"blacklist":["10.0.0.1"]}`, nil, 200, "ok"},
		// The client address is the socket peer: forwarding headers from
		// the client neither bypass a whitelist nor dodge a blacklist.
		{"spoofed xff vs whitelist", `{"whitelist":["10.0.0.1"]}`, map[string]string{"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.1", "Forwarded": "for=10.0.0.1"}, 403, `{"message":"Your IP address is not allowed"}` + "\n"},
		{"spoofed xff vs blacklist", `{"blacklist":["127.0.0.1"]}`, map[string]string{"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.1"}, 403, `{"message":"Your IP address is not allowed"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"ip-restriction":`+tt.conf+`},"upstream":`+rec.Upstream()+`}`)
			before := rec.Count()
			resp := g.Do("GET", "/a", tt.headers, "")
			if resp.Status != tt.status || resp.Body != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.body)
			}
			reached := rec.Count() - before
			if tt.status == 200 && reached != 1 || tt.status != 200 && reached != 0 {
				t.Fatalf("upstream saw %d requests", reached)
			}
			if tt.status != 200 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func BenchmarkIPRestriction(b *testing.B) {
	var list []string
	for i := 0; i < 100; i++ {
		list = append(list, netip.AddrFrom4([4]byte{10, byte(i), 0, 0}).String()+"/16")
	}
	list = append(list, "192.168.0.0/24", "2001:db8::/32", "203.0.113.9")
	conf, _ := json.Marshal(map[string]any{"blacklist": list})
	inst, err := iprestriction.New(conf, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*iprestriction.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.RemoteAddr = netip.MustParseAddrPort("198.51.100.7:40000")
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
