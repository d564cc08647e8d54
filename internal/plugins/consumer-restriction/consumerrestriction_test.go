package consumerrestriction

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// testAuth is a minimal auth plugin for these tests: it finds the consumer
// by the X-Test-Key header.
type testAuth struct{}

func (testAuth) Rewrite(r *plugin.Request) {
	cred, ok := r.Env.Consumers.Lookup("test-auth", r.Header.Get("X-Test-Key"))
	if !ok {
		r.Exit(401, map[string]string{"message": "test-auth: no consumer"})
		return
	}
	r.AttachConsumer(cred.Consumer, cred.ID)
}

func testAuthDef() *plugin.Def {
	return &plugin.Def{
		Name: "test-auth", Priority: 2500, Auth: true, KeyField: "key",
		Schema:         json.RawMessage(`{"type":"object"}`),
		ConsumerSchema: json.RawMessage(`{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`),
		New:            func(json.RawMessage, *plugin.BuildEnv) (any, error) { return testAuth{}, nil },
		NewConsumer: func(raw json.RawMessage) (string, any, error) {
			var c struct{ Key string }
			err := json.Unmarshal(raw, &c)
			return c.Key, nil, err
		},
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	tests := []struct {
		name, conf string
		ok         bool
		msg        string
	}{
		{"whitelist", `{"whitelist":["jack"]}`, true, ""},
		{"methods only", `{"allowed_by_methods":[{"user":"jack","methods":["GET"]}]}`, true, ""},
		{"empty whitelist", `{"whitelist":[]}`, false, `failed to check the configuration of plugin consumer-restriction err: property "whitelist" validation failed: expect array to have at least 1 items`},
		{"bad type", `{"type":"ip","whitelist":["a"]}`, false, `failed to check the configuration of plugin consumer-restriction err: property "type" validation failed: matches none of the enum values`},
		{"bad code", `{"whitelist":["a"],"rejected_code":199}`, false, `failed to check the configuration of plugin consumer-restriction err: property "rejected_code" validation failed: expected 199 to be at least 200`},
		{"bad method", `{"allowed_by_methods":[{"user":"jack","methods":["FETCH"]}]}`, false, ""},
		{"no list", `{"type":"route_id"}`, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/v", `{"uri":"/v","plugins":{"consumer-restriction":`+tt.conf+`},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1":1}}}`)
			if (r.Status < 300) != tt.ok {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			if tt.msg != "" {
				var e struct {
					ErrorMsg string `json:"error_msg"`
				}
				_ = json.Unmarshal([]byte(r.Body), &e)
				if e.ErrorMsg != tt.msg {
					t.Fatalf("error_msg = %q\nwant       %q", e.ErrorMsg, tt.msg)
				}
			}
		})
	}
}

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def(), testAuthDef()}, nil)
	rec := plugintest.NewRecorder(t)
	up := rec.Upstream()
	g.MustAdmin("PUT", "/apisix/admin/consumer_groups/gold", `{"plugins":{}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","group_id":"gold","plugins":{"test-auth":{"key":"jack-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"rose","plugins":{"test-auth":{"key":"rose-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/services/s1", `{"upstream":`+up+`}`)
	route := func(id, uri, cr string, auth bool) {
		plugins := `"consumer-restriction":` + cr
		if auth {
			plugins += `,"test-auth":{}`
		}
		g.MustAdmin("PUT", "/apisix/admin/routes/"+id, `{"uri":"`+uri+`","plugins":{`+plugins+`},"upstream":`+up+`}`)
	}
	route("white", "/white", `{"whitelist":["jack"]}`, true)
	route("black", "/black", `{"blacklist":["jack"],"rejected_code":401,"rejected_msg":"go away"}`, true)
	route("noauth", "/noauth", `{"whitelist":["jack"]}`, false)
	route("methods", "/methods", `{"allowed_by_methods":[{"user":"jack","methods":["GET"]}]}`, true)
	route("wm", "/wm", `{"whitelist":["rose"],"allowed_by_methods":[{"user":"jack","methods":["GET","POST"]}]}`, true)
	route("group", "/group", `{"type":"consumer_group_id","whitelist":["gold"]}`, true)
	route("rid", "/rid", `{"type":"route_id","blacklist":["rid"]}`, false)
	route("sid", "/sid", `{"type":"service_id","whitelist":["s1"]}`, false)
	g.MustAdmin("PUT", "/apisix/admin/routes/svc", `{"uri":"/svc","service_id":"s1","plugins":{"consumer-restriction":{"type":"service_id","whitelist":["s1"]}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/svc2", `{"uri":"/svc2","service_id":"s1","plugins":{"consumer-restriction":{"type":"service_id","blacklist":["s1"]}}}`)

	tests := []struct {
		name, method, path, key string
		status                  int
		body                    string
	}{
		{"auth runs first", "GET", "/white", "", 401, `{"message":"test-auth: no consumer"}` + "\n"},
		{"whitelisted", "GET", "/white", "jack-key", 200, "ok"},
		{"not whitelisted", "GET", "/white", "rose-key", 403, `{"message":"The consumer_name is forbidden."}` + "\n"},
		{"blacklisted custom", "GET", "/black", "jack-key", 401, `{"message":"go away"}` + "\n"},
		{"not blacklisted", "GET", "/black", "rose-key", 200, "ok"},
		{"no consumer", "GET", "/noauth", "", 401, `{"message":"The request is rejected, please check the consumer_name for this request"}` + "\n"},
		{"method allowed", "GET", "/methods", "jack-key", 200, "ok"},
		{"method denied", "POST", "/methods", "jack-key", 403, `{"message":"The consumer_name is forbidden."}` + "\n"},
		{"no rule passes", "DELETE", "/methods", "rose-key", 200, "ok"},
		{"whitelist beats methods", "DELETE", "/wm", "rose-key", 200, "ok"},
		{"methods cannot unblock", "GET", "/wm", "jack-key", 403, `{"message":"The consumer_name is forbidden."}` + "\n"},
		{"group ok", "GET", "/group", "jack-key", 200, "ok"},
		{"no group", "GET", "/group", "rose-key", 401, `{"message":"The request is rejected, please check the consumer_group_id for this request"}` + "\n"},
		{"route blacklisted", "GET", "/rid", "", 403, `{"message":"The route_id is forbidden."}` + "\n"},
		{"no service", "GET", "/sid", "", 401, `{"message":"The request is rejected, please check the service_id for this request"}` + "\n"},
		{"service whitelisted", "GET", "/svc", "", 200, "ok"},
		{"service blacklisted", "GET", "/svc2", "", 403, `{"message":"The service_id is forbidden."}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.Count()
			h := map[string]string{}
			if tt.key != "" {
				h["X-Test-Key"] = tt.key
			}
			resp := g.Do(tt.method, tt.path, h, "")
			if resp.Status != tt.status || resp.Body != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.body)
			}
			arrived := rec.Count() - before
			if (tt.status == 200) != (arrived == 1) {
				t.Fatalf("upstream saw %d requests", arrived)
			}
		})
	}
}

// TestOnConsumer checks the plugin merged in from a consumer: it runs in
// access with that consumer's conf.
func TestOnConsumer(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def(), testAuthDef()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"test-auth":{"key":"jack-key"},"consumer-restriction":{"type":"route_id","whitelist":["r1"]}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/r1", `{"uri":"/r1","plugins":{"test-auth":{}},"upstream":`+rec.Upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/r2", `{"uri":"/r2","plugins":{"test-auth":{}},"upstream":`+rec.Upstream()+`}`)
	if r := g.Do("GET", "/r1", map[string]string{"X-Test-Key": "jack-key"}, ""); r.Status != 200 {
		t.Fatalf("r1: %d %s", r.Status, r.Body)
	}
	if r := g.Do("GET", "/r2", map[string]string{"X-Test-Key": "jack-key"}, ""); r.Status != 403 || r.Body != `{"message":"The route_id is forbidden."}`+"\n" {
		t.Fatalf("r2: %d %s", r.Status, r.Body)
	}
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

func BenchmarkConsumerRestriction(b *testing.B) {
	inst, err := New(json.RawMessage(`{"whitelist":["a","b","jack"],"allowed_by_methods":[{"user":"rose","methods":["GET"]}]}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.W = &nopWriter{h: engine.Header{}}
	c.Method = "GET"
	c.RemoteAddr = netip.MustParseAddrPort("127.0.0.1:1")
	cons := &plugin.Consumer{Username: "jack"}
	r := &plugin.Request{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Reset()
		r.Ctx, r.Consumer = c, cons
		p.Access(r)
		if r.Exited() {
			b.Fatal("rejected")
		}
	}
}
