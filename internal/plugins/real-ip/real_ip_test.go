package realip_test

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
	realip "github.com/sluice-gw/sluice/internal/plugins/real-ip"
)

func TestNew(t *testing.T) {
	tests := []struct{ name, conf, err string }{
		{"minimal", `{"source":"http_x_real_ip"}`, ""},
		{"trusted", `{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1","10.0.0.0/8","::1"],"recursive":true}`, ""},
		{"bad trusted", `{"source":"arg_ip","trusted_addresses":["10.0.0.0/40"]}`, "invalid ip address: 10.0.0.0/40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := realip.New(json.RawMessage(tt.conf), nil)
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

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = rejected
	}{
		{"1.2.3.4", "1.2.3.4:0"},
		{"1.2.3.4:8080", "1.2.3.4:8080"},
		{"::1", "[::1]:0"},
		{"[::1]", "[::1]:0"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"::ffff:127.0.0.1", "127.0.0.1:0"},
		{"2001:db8::1:80", "[2001:db8::1:80]:0"}, // two colons or more: IPv6, no port
		{"1.2.3.4:0", ""},
		{"1.2.3.4:65536", ""},
		{"1.2.3.4:", ""},
		{"1.2.3.4:x", ""},
		{"2130706433", ""},
		{"0x7f.0.0.1", ""},
		{"0177.0.0.1", ""},
		{"127.1", ""},
		{"localhost", ""},
		{"fe80::1%eth0", ""},
		{"[1.2.3.4]:80", ""},
		{"[::1", ""},
		{"[::1]x", ""},
		{"", ""},
		{" 1.2.3.4", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ap, ok := realip.ParseAddr(tt.in)
			got := ""
			if ok {
				got = ap.String()
			}
			if got != tt.want {
				t.Fatalf("ParseAddr(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4:80", "[::1]:1", "::ffff:1.2.3.4", "[", "1:2", "a,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, ok := realip.ParseAddr(s)
		if !ok {
			return
		}
		if !ap.Addr().IsValid() || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
			t.Fatalf("ParseAddr(%q) = %v", s, ap)
		}
	})
}

// untrusted drops APISIX's default nginx realip trust of 127.0.0.1, so only
// the plugin decides the client address in these tests.
func untrusted(c *config.Config) { c.NginxConfig.HTTP.RealIPFrom = nil }

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{realip.Def(), iprestriction.Def()}, untrusted)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name, conf string
		url        string
		headers    map[string]string
		// what the upstream sees
		realIP, xff string
	}{
		{"xff rightmost", `{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1"]}`, "/a",
			map[string]string{"X-Forwarded-For": "9.9.9.9, 1.2.3.4"}, "1.2.3.4", "9.9.9.9, 1.2.3.4, 1.2.3.4"},
		{"xff single", `{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.0/8"]}`, "/a",
			map[string]string{"X-Forwarded-For": "1.2.3.4"}, "1.2.3.4", "1.2.3.4, 1.2.3.4"},
		{"xff recursive", `{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1","10.0.0.0/8"],"recursive":true}`, "/a",
			map[string]string{"X-Forwarded-For": "9.9.9.9, 1.2.3.4, 10.0.0.2,10.0.0.3"}, "1.2.3.4", "9.9.9.9, 1.2.3.4, 10.0.0.2,10.0.0.3, 1.2.3.4"},
		{"xff recursive all trusted", `{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1","10.0.0.0/8"],"recursive":true}`, "/a",
			map[string]string{"X-Forwarded-For": "10.0.0.9, 10.0.0.2"}, "10.0.0.9", "10.0.0.9, 10.0.0.2, 10.0.0.9"},
		{"xff recursive garbage stops", `{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1","10.0.0.0/8"],"recursive":true}`, "/a",
			map[string]string{"X-Forwarded-For": "1.2.3.4, junk, 10.0.0.2"}, "127.0.0.1", "1.2.3.4, junk, 10.0.0.2, 127.0.0.1"},
		{"x-real-ip with port", `{"source":"http_x_real_ip","trusted_addresses":["127.0.0.1"]}`, "/a",
			map[string]string{"X-Real-IP": "5.6.7.8:9000"}, "5.6.7.8", "5.6.7.8"},
		{"arg", `{"source":"arg_realip","trusted_addresses":["127.0.0.1"]}`, "/a?realip=2001:db8::5",
			nil, "2001:db8::5", "2001:db8::5"},
		{"invalid value ignored", `{"source":"http_x_real_ip","trusted_addresses":["127.0.0.1"]}`, "/a",
			map[string]string{"X-Real-IP": "2130706433"}, "127.0.0.1", "127.0.0.1"},
		{"missing source ignored", `{"source":"http_x_real_ip","trusted_addresses":["127.0.0.1"]}`, "/a",
			nil, "127.0.0.1", "127.0.0.1"},
		// Sluice trusts nobody by default (APISIX: everybody).
		{"no trusted_addresses", `{"source":"http_x_real_ip"}`, "/a",
			map[string]string{"X-Real-IP": "5.6.7.8"}, "127.0.0.1", "127.0.0.1"},
		{"untrusted peer", `{"source":"http_x_forwarded_for","trusted_addresses":["10.0.0.0/8"]}`, "/a",
			map[string]string{"X-Forwarded-For": "1.2.3.4"}, "127.0.0.1", "1.2.3.4, 127.0.0.1"},
		{"trust everyone explicitly", `{"source":"http_x_real_ip","trusted_addresses":["0.0.0.0/0","::/0"]}`, "/a",
			map[string]string{"X-Real-IP": "5.6.7.8"}, "5.6.7.8", "5.6.7.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"real-ip":`+tt.conf+`},"upstream":`+rec.Upstream()+`}`)
			resp := g.Do("GET", tt.url, tt.headers, "")
			if resp.Status != 200 {
				t.Fatalf("status %d %s", resp.Status, resp.Body)
			}
			up := rec.Last()
			if got := up.Header.Get("X-Real-Ip"); got != tt.realIP {
				t.Errorf("upstream X-Real-IP = %q, want %q", got, tt.realIP)
			}
			if got := strings.Join(up.Header.Values("X-Forwarded-For"), ", "); got != tt.xff {
				t.Errorf("upstream X-Forwarded-For = %q, want %q", got, tt.xff)
			}
		})
	}
}

// TestWithIPRestriction: real-ip (rewrite) runs before ip-restriction
// (access), which then sees the address from the trusted proxy, and
// spoofing from an untrusted peer changes nothing.
func TestWithIPRestriction(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{realip.Def(), iprestriction.Def()}, untrusted)
	rec := plugintest.NewRecorder(t)
	route := func(trusted string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{
			"real-ip":{"source":"http_x_forwarded_for","trusted_addresses":[`+trusted+`]},
			"ip-restriction":{"blacklist":["1.2.3.4"]}},"upstream":`+rec.Upstream()+`}`)
	}
	route(`"127.0.0.1"`)
	if resp := g.Do("GET", "/a", map[string]string{"X-Forwarded-For": "1.2.3.4"}, ""); resp.Status != 403 {
		t.Fatalf("blacklisted real client: got %d", resp.Status)
	}
	if resp := g.Do("GET", "/a", map[string]string{"X-Forwarded-For": "5.5.5.5"}, ""); resp.Status != 200 {
		t.Fatalf("allowed real client: got %d", resp.Status)
	}
	route(`"10.0.0.0/8"`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{
		"real-ip":{"source":"http_x_forwarded_for","trusted_addresses":["10.0.0.0/8"]},
		"ip-restriction":{"whitelist":["1.2.3.4"]}},"upstream":`+rec.Upstream()+`}`)
	if resp := g.Do("GET", "/a", map[string]string{"X-Forwarded-For": "1.2.3.4"}, ""); resp.Status != 403 {
		t.Fatalf("spoofed XFF from an untrusted peer passed a whitelist: %d", resp.Status)
	}
	if rec.Count() != 1 {
		t.Fatalf("upstream saw %d requests, want 1", rec.Count())
	}
}

func BenchmarkRealIP(b *testing.B) {
	inst, err := realip.New(json.RawMessage(`{"source":"http_x_forwarded_for","trusted_addresses":["10.0.0.0/8","127.0.0.1"],"recursive":true}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*realip.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	peer := netip.MustParseAddrPort("127.0.0.1:5000")
	c.Header = engine.Header{"X-Forwarded-For": {"203.0.113.7, 10.0.0.2, 10.0.0.3"}}
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.RemoteAddr = peer
		p.Rewrite(r)
		if c.RemoteAddr.Addr() != netip.MustParseAddr("203.0.113.7") {
			b.Fatal(c.RemoteAddr)
		}
	}
}
