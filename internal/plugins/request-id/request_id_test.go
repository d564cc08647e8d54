package requestid_test

import (
	"encoding/json"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	requestid "github.com/sluice-gw/sluice/internal/plugins/request-id"
)

var (
	uuidV4Re = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	uuidV7Re = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	nanoRe   = regexp.MustCompile(`^[-_0-9a-zA-Z]{21}$`)
	ksuidRe  = regexp.MustCompile(`^[0-9A-Za-z]{27}$`)
)

func TestGenerators(t *testing.T) {
	tests := []struct {
		name       string
		gen        func() string
		re         *regexp.Regexp
		formatOnly bool // too few possible ids for 200 to be surely distinct
	}{
		{"uuid", requestid.UUIDv4, uuidV4Re, false},
		{"uuidv7", requestid.UUIDv7, uuidV7Re, false},
		{"nanoid", requestid.NanoID, nanoRe, false},
		{"ksuid", requestid.KSUID, ksuidRe, false},
		// 6^10 ids: 200 of them collide with probability 3e-4.
		{"range_id", func() string { return requestid.RangeIDString(10, "abcdef") }, regexp.MustCompile(`^[a-f]{10}$`), true},
		{"range_id unique", func() string { return requestid.RangeIDString(24, "abcdef") }, regexp.MustCompile(`^[a-f]{24}$`), false},
		{"range_id long", func() string { return requestid.RangeIDString(100, "xyz123") }, regexp.MustCompile(`^[xyz123]{100}$`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]bool{}
			for i := 0; i < 200; i++ {
				id := tt.gen()
				if !tt.re.MatchString(id) {
					t.Fatalf("bad id %q", id)
				}
				if seen[id] && !tt.formatOnly {
					t.Fatalf("duplicate id %q", id)
				}
				seen[id] = true
			}
		})
	}
	// A KSUID's top 32 bits are seconds since the KSUID epoch: decoded, they
	// fall between the clock read before and after generating it. (Its
	// base62 prefix is not the timestamp alone: two KSUIDs of the same second
	// can differ there by their random part.)
	before := time.Now().Unix()
	id := requestid.KSUID()
	after := time.Now().Unix()
	n := new(big.Int)
	for _, c := range id {
		n.Mul(n, big.NewInt(62))
		n.Add(n, big.NewInt(int64(strings.IndexRune(base62, c))))
	}
	ts := n.Rsh(n, 128).Int64() + 1400000000
	if ts < before || ts > after {
		t.Fatalf("ksuid %s holds time %d, want %d..%d", id, ts, before, after)
	}
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{requestid.Def()}, nil)
	tests := []struct{ name, conf, want string }{
		{"defaults", `{}`, ""},
		{"all fields", `{"header_name":"X-Trace","include_in_response":false,"algorithm":"range_id","range_id":{"length":8,"char_set":"abcdef"}}`, ""},
		{"bad algorithm", `{"algorithm":"snowflake"}`, `failed to check the configuration of plugin request-id err: property "algorithm" validation failed: matches none of the enum values`},
		{"short range", `{"algorithm":"range_id","range_id":{"length":5}}`, `failed to check the configuration of plugin request-id err: property "range_id" validation failed: property "length" validation failed: expected 5 to be at least 6`},
		{"short char_set", `{"algorithm":"range_id","range_id":{"char_set":"abc"}}`, `failed to check the configuration of plugin request-id err: property "range_id" validation failed: property "char_set" validation failed: string too short, expected at least 6, got 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"request-id":`+tt.conf+`},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
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
	g := plugintest.Start(t, []*plugin.Def{requestid.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	tests := []struct {
		name, conf string
		header     string // header name to look at
		sent       map[string]string
		re         *regexp.Regexp // the id must match
		want       string         // or equal this
		inResponse bool
	}{
		{"default uuid", `{}`, "X-Request-Id", nil, uuidV4Re, "", true},
		{"keeps incoming", `{}`, "X-Request-Id", map[string]string{"X-Request-Id": "client-id-1"}, nil, "client-id-1", true},
		{"incoming any case", `{}`, "X-Request-Id", map[string]string{"x-request-id": "client-id-2"}, nil, "client-id-2", true},
		{"empty incoming replaced", `{}`, "X-Request-Id", map[string]string{"X-Request-Id": ""}, uuidV4Re, "", true},
		{"custom header", `{"header_name":"X-Trace-ID"}`, "X-Trace-Id", nil, uuidV4Re, "", true},
		{"not in response", `{"include_in_response":false}`, "X-Request-Id", nil, uuidV4Re, "", false},
		{"nanoid", `{"algorithm":"nanoid"}`, "X-Request-Id", nil, nanoRe, "", true},
		{"uuidv7", `{"algorithm":"uuidv7"}`, "X-Request-Id", nil, uuidV7Re, "", true},
		{"ksuid", `{"algorithm":"ksuid"}`, "X-Request-Id", nil, ksuidRe, "", true},
		{"range_id", `{"algorithm":"range_id","range_id":{"length":12,"char_set":"abcdef"}}`, "X-Request-Id", nil, regexp.MustCompile(`^[a-f]{12}$`), "", true},
		{"range_id defaults", `{"algorithm":"range_id"}`, "X-Request-Id", nil, regexp.MustCompile(`^[a-zA-Z0-9]{16}$`), "", true},
		{"range_id partial", `{"algorithm":"range_id","range_id":{"length":7}}`, "X-Request-Id", nil, regexp.MustCompile(`^[a-zA-Z0-9]{7}$`), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"request-id":`+tt.conf+`},"upstream":`+rec.Upstream()+`}`)
			resp := g.Do("GET", "/a", tt.sent, "")
			if resp.Status != 200 {
				t.Fatalf("status %d", resp.Status)
			}
			up := rec.Last().Header.Get(tt.header)
			if tt.re != nil && !tt.re.MatchString(up) || tt.re == nil && up != tt.want {
				t.Fatalf("upstream %s = %q", tt.header, up)
			}
			got := resp.Header.Get(tt.header)
			if tt.inResponse && got != up || !tt.inResponse && got != "" {
				t.Fatalf("response %s = %q, upstream got %q", tt.header, got, up)
			}
		})
	}
}

// TestUpstreamValueWins: a response that already carries the header keeps
// the upstream's value.
func TestUpstreamValueWins(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{requestid.Def()}, nil)
	// The recorder sets X-Upstream only, so use the header name for it.
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"request-id":{"header_name":"X-Upstream"}},"upstream":`+rec.Upstream()+`}`)
	resp := g.Do("GET", "/a", nil, "")
	if got := resp.Header.Values("X-Upstream"); len(got) != 1 || got[0] != "recorder" {
		t.Fatalf("response X-Upstream = %q, want [recorder]", got)
	}
	if up := rec.Last().Header.Get("X-Upstream"); !uuidV4Re.MatchString(up) {
		t.Fatalf("upstream X-Upstream = %q", up)
	}
}

// TestOnGatewayErrors: the id is in responses the gateway generates too
// (here a 502 from an unreachable upstream).
func TestOnGatewayErrors(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{requestid.Def()}, nil)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"request-id":{}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`)
	resp := g.Do("GET", "/a", nil, "")
	if resp.Status != 502 || !uuidV4Re.MatchString(resp.Header.Get("X-Request-Id")) {
		t.Fatalf("got %d, X-Request-Id %q", resp.Status, resp.Header.Get("X-Request-Id"))
	}
}

func TestUniqueUnderLoad(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{requestid.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"request-id":{"algorithm":"nanoid"}},"upstream":`+rec.Upstream()+`}`)
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		id := g.Do("GET", "/a", nil, "").Header.Get("X-Request-Id")
		if seen[id] || strings.TrimSpace(id) == "" {
			t.Fatalf("duplicate or empty id %q", id)
		}
		seen[id] = true
	}
}

func benchmark(b *testing.B, conf string) {
	inst, err := requestid.New(json.RawMessage(conf), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*requestid.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.Header = engine.Header{}
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		delete(c.Header, "X-Request-Id")
		p.Rewrite(r)
	}
}

func BenchmarkRequestIDUUID(b *testing.B)    { benchmark(b, `{}`) }
func BenchmarkRequestIDNanoID(b *testing.B)  { benchmark(b, `{"algorithm":"nanoid"}`) }
func BenchmarkRequestIDRangeID(b *testing.B) { benchmark(b, `{"algorithm":"range_id"}`) }
func BenchmarkRequestIDKeep(b *testing.B) {
	inst, _ := requestid.New(json.RawMessage(`{}`), nil)
	p := inst.(*requestid.Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.Header = engine.Header{"X-Request-Id": {"incoming"}}
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p.Rewrite(r)
	}
}
