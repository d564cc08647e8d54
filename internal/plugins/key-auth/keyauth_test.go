package keyauth_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	limitcount "github.com/sluice-gw/sluice/internal/plugins/limit-count"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{keyauth.Def()}, nil)
	const prefix = `{"error_msg":"failed to check the configuration of plugin key-auth err: `
	const cprefix = `{"error_msg":"invalid plugins configuration: failed to check the configuration of plugin key-auth err: `
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"defaults", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"key-auth":{}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 201, ""},
		{"all fields", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"key-auth":{"header":"X-Key","query":"k","realm":"my realm!","hide_credentials":true,"anonymous_consumer":"anon"}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 201, ""},
		{"header type", "/apisix/admin/routes/3", `{"uri":"/c","plugins":{"key-auth":{"header":1}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 400,
			prefix + `property \"header\" validation failed: wrong type: expected string, got number"}`},
		{"hide_credentials type", "/apisix/admin/routes/3", `{"uri":"/c","plugins":{"key-auth":{"hide_credentials":"yes"}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 400,
			prefix + `property \"hide_credentials\" validation failed: wrong type: expected boolean, got string"}`},
		{"empty anonymous_consumer", "/apisix/admin/routes/3", `{"uri":"/c","plugins":{"key-auth":{"anonymous_consumer":""}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 400,
			prefix + `property \"anonymous_consumer\" validation failed: string too short, expected at least 1, got 0"}`},
		{"realm with quote", "/apisix/admin/routes/3", `{"uri":"/c","plugins":{"key-auth":{"realm":"a\"b"}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 400, ""},
		{"realm too long", "/apisix/admin/routes/3", `{"uri":"/c","plugins":{"key-auth":{"realm":"` + strings.Repeat("r", 129) + `"}},"upstream":{"nodes":{"127.0.0.1:1":1}}}`, 400,
			prefix + `property \"realm\" validation failed: string too long, expected at most 128, got 129"}`},
		{"consumer without key", "/apisix/admin/consumers", `{"username":"error","plugins":{"key-auth":{}}}`, 400,
			cprefix + `property \"key\" is required"}`},
		{"consumer key type", "/apisix/admin/consumers", `{"username":"error","plugins":{"key-auth":{"key":1}}}`, 400,
			cprefix + `property \"key\" validation failed: wrong type: expected string, got number"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.Admin("PUT", tc.path, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.want != "" && strings.TrimSpace(r.Body) != tc.want {
				t.Fatalf("body %s\nwant %s", r.Body, tc.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		conf string
		ok   bool
	}{
		{`{}`, true},
		{`{"header":"x","query":"y","realm":"r","hide_credentials":true,"anonymous_consumer":"a"}`, true},
		{`{"header":1}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.conf, func(t *testing.T) {
			_, err := keyauth.New(json.RawMessage(tc.conf), nil)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%s) err = %v", tc.conf, err)
			}
		})
	}
	if _, _, err := keyauth.NewConsumer(json.RawMessage(`{}`)); err == nil || err.Error() != `property "key" is required` {
		t.Fatalf("NewConsumer({}) err = %v", err)
	}
	key, _, err := keyauth.NewConsumer(json.RawMessage(`{"key":"k1"}`))
	if err != nil || key != "k1" {
		t.Fatalf("NewConsumer = %q, %v", key, err)
	}
}

// setup starts a gateway with consumer jack (key auth-one, custom_id 42),
// credential jack/cred-1 (key cred-key) and consumer anon.
func setup(t *testing.T) (*plugintest.Gateway, *plugintest.Recorder) {
	g := plugintest.Start(t, []*plugin.Def{keyauth.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","labels":{"custom_id":"42"},"plugins":{"key-auth":{"key":"auth-one"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers/jack/credentials/cred-1", `{"plugins":{"key-auth":{"key":"cred-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"anon"}`)
	return g, rec
}

func TestRequests(t *testing.T) {
	g, rec := setup(t)
	route := func(id, uri, conf string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/"+id, `{"uri":"`+uri+`","plugins":{"key-auth":`+conf+`},"upstream":`+rec.Upstream()+`}`)
	}
	route("1", "/a", `{}`)
	route("2", "/hide", `{"hide_credentials":true}`)
	route("3", "/custom", `{"header":"X-Token","query":"auth","realm":"custom"}`)
	route("4", "/hideq", `{"query":"auth","hide_credentials":true}`)
	route("5", "/anon", `{"anonymous_consumer":"anon","hide_credentials":true}`)
	route("6", "/ghost", `{"anonymous_consumer":"ghost"}`)

	type want struct {
		status  int
		body    string
		realm   string            // WWW-Authenticate on failure
		up      map[string]string // headers the upstream must see ("" = absent)
		upURI   string            // request URI the upstream must see
		reached bool
	}
	missing := `{"message":"Missing API key in request"}`
	invalid := `{"message":"Invalid API key in request"}`
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		want    want
	}{
		{"missing key", "/a", nil, want{status: 401, body: missing, realm: `apikey realm="key"`}},
		{"invalid key", "/a", map[string]string{"apikey": "nope"}, want{status: 401, body: invalid, realm: `apikey realm="key"`}},
		{"empty header", "/a", map[string]string{"apikey": ""}, want{status: 401, body: invalid, realm: `apikey realm="key"`}},
		{"valid header", "/a", map[string]string{"apikey": "auth-one"}, want{status: 200, reached: true,
			up: map[string]string{"X-Consumer-Username": "jack", "X-Consumer-Custom-Id": "42", "X-Credential-Identifier": "", "Apikey": "auth-one"}}},
		{"forged consumer headers", "/a", map[string]string{"apikey": "auth-one", "X-Consumer-Username": "admin", "X-Credential-Identifier": "forged"}, want{status: 200, reached: true,
			up: map[string]string{"X-Consumer-Username": "jack", "X-Credential-Identifier": ""}}},
		{"credential object", "/a", map[string]string{"apikey": "cred-key"}, want{status: 200, reached: true,
			up: map[string]string{"X-Consumer-Username": "jack", "X-Credential-Identifier": "cred-1"}}},
		{"valid query", "/a?apikey=auth-one&x=1", nil, want{status: 200, reached: true, upURI: "/a?apikey=auth-one&x=1",
			up: map[string]string{"X-Consumer-Username": "jack"}}},
		{"escaped query", "/a?apikey=auth%2Done", nil, want{status: 200, reached: true}},
		{"header wins over query", "/a?apikey=auth-one", map[string]string{"apikey": "bad"}, want{status: 401, body: invalid, realm: `apikey realm="key"`}},
		{"repeated query arg", "/a?apikey=auth-one&apikey=auth-one", nil, want{status: 401, body: invalid, realm: `apikey realm="key"`}},
		{"query arg without value", "/a?apikey", nil, want{status: 401, body: invalid, realm: `apikey realm="key"`}},
		{"query name is case sensitive", "/a?APIKEY=auth-one", nil, want{status: 401, body: missing, realm: `apikey realm="key"`}},
		{"oversized key", "/a", map[string]string{"apikey": strings.Repeat("k", 10<<10)}, want{status: 401, body: invalid, realm: `apikey realm="key"`}},
		{"hide header", "/hide", map[string]string{"apikey": "auth-one", "X-Other": "1"}, want{status: 200, reached: true,
			up: map[string]string{"Apikey": "", "X-Other": "1", "X-Consumer-Username": "jack"}}},
		{"hide query", "/hide?a=1&apikey=auth-one&b=%20x", nil, want{status: 200, reached: true, upURI: "/hide?a=1&b=%20x"}},
		{"hide only the used source", "/hide?apikey=auth-one", map[string]string{"apikey": "auth-one"}, want{status: 200, reached: true,
			upURI: "/hide?apikey=auth-one", up: map[string]string{"Apikey": ""}}},
		{"hide custom query", "/hideq?auth=auth-one&test=auth-two", nil, want{status: 200, reached: true, upURI: "/hideq?test=auth-two"}},
		{"hide query keeps header", "/hideq?auth=auth-one", map[string]string{"auth": "auth-one"}, want{status: 200, reached: true,
			upURI: "/hideq", up: map[string]string{"Auth": "auth-one"}}},
		{"custom header", "/custom", map[string]string{"X-Token": "auth-one"}, want{status: 200, reached: true}},
		{"custom query", "/custom?auth=auth-one", nil, want{status: 200, reached: true}},
		{"default header ignored on custom", "/custom", map[string]string{"apikey": "auth-one"}, want{status: 401, body: missing, realm: `apikey realm="custom"`}},
		{"anonymous on missing", "/anon", nil, want{status: 200, reached: true, up: map[string]string{"X-Consumer-Username": "anon"}}},
		{"anonymous on invalid strips both", "/anon?apikey=bad&x=1", map[string]string{"apikey": "bad"}, want{status: 200, reached: true,
			upURI: "/anon?x=1", up: map[string]string{"X-Consumer-Username": "anon", "Apikey": ""}}},
		{"valid key beats anonymous", "/anon", map[string]string{"apikey": "auth-one"}, want{status: 200, reached: true, up: map[string]string{"X-Consumer-Username": "jack"}}},
		{"unknown anonymous consumer", "/ghost", nil, want{status: 401, body: `{"message":"Invalid user authorization"}`, realm: `apikey realm="key"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.Count()
			resp := g.Do("GET", tc.path, tc.headers, "")
			if resp.Status != tc.want.status {
				t.Fatalf("status %d, want %d: %s", resp.Status, tc.want.status, resp.Body)
			}
			if tc.want.body != "" {
				if strings.TrimSuffix(resp.Body, "\n") != tc.want.body {
					t.Errorf("body %q, want %q", resp.Body, tc.want.body)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("content-type %q", ct)
				}
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.want.realm {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.want.realm)
			}
			reached := rec.Count() > before
			if reached != tc.want.reached {
				t.Fatalf("upstream reached = %v, want %v", reached, tc.want.reached)
			}
			if !reached {
				return
			}
			last := rec.Last()
			for k, v := range tc.want.up {
				if got := last.Header.Get(k); got != v {
					t.Errorf("upstream header %s = %q, want %q", k, got, v)
				}
			}
			if tc.want.upURI != "" && last.RequestURI != tc.want.upURI {
				t.Errorf("upstream URI %q, want %q", last.RequestURI, tc.want.upURI)
			}
		})
	}
}

// TestConsumerPluginsMerged checks that a consumer's own plugins run after
// key-auth identified it (limit-count in access, as APISIX's tests do).
func TestConsumerPluginsMerged(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{keyauth.Def(), limitcount.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"key-auth":{"key":"auth-one"},"limit-count":{"count":1,"time_window":60,"rejected_code":503}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"rose","plugins":{"key-auth":{"key":"auth-two"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"key-auth":{}},"upstream":`+rec.Upstream()+`}`)
	for i, tc := range []struct {
		key    string
		status int
	}{{"auth-one", 200}, {"auth-one", 503}, {"auth-two", 200}, {"auth-two", 200}} {
		if r := g.Do("GET", "/a", map[string]string{"apikey": tc.key}, ""); r.Status != tc.status {
			t.Fatalf("request %d (%s): status %d, want %d", i, tc.key, r.Status, tc.status)
		}
	}
	if rec.Count() != 3 {
		t.Fatalf("upstream saw %d requests, want 3", rec.Count())
	}
}

// TestForgedHeadersPassWithoutAuth documents that the consumer headers are
// only trusted (overwritten) on routes with an auth plugin.
func TestForgedHeadersPassWithoutAuth(t *testing.T) {
	g, rec := setup(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/open","upstream":`+rec.Upstream()+`}`)
	resp := g.Do("GET", "/open", map[string]string{"X-Consumer-Username": "admin"}, "")
	if resp.Status != 200 || rec.Last().Header.Get("X-Consumer-Username") != "admin" {
		t.Fatalf("status %d, upstream saw %q", resp.Status, rec.Last().Header.Get("X-Consumer-Username"))
	}
}

func TestAdminAPI(t *testing.T) {
	g, _ := setup(t)
	t.Run("duplicate key on consumer", func(t *testing.T) {
		r := g.Admin("PUT", "/apisix/admin/consumers", `{"username":"rose","plugins":{"key-auth":{"key":"auth-one"}}}`)
		want := `{"error_msg":"duplicate key of plugin key-auth found with consumer: jack"}`
		if r.Status != 400 || strings.TrimSpace(r.Body) != want {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("duplicate key on credential", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"rose"}`)
		r := g.Admin("PUT", "/apisix/admin/consumers/rose/credentials/c", `{"plugins":{"key-auth":{"key":"cred-key"}}}`)
		want := `{"error_msg":"duplicate key of plugin key-auth found with credential: cred-1 of consumer: jack"}`
		if r.Status != 400 || strings.TrimSpace(r.Body) != want {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("same consumer may be rewritten", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","labels":{"custom_id":"42"},"plugins":{"key-auth":{"key":"auth-one"}}}`)
	})
	t.Run("key never returned in plain text", func(t *testing.T) {
		for _, p := range []string{"/apisix/admin/consumers/jack", "/apisix/admin/consumers/jack/credentials/cred-1", "/apisix/admin/consumers"} {
			r := g.Admin("GET", p, "")
			if r.Status != 200 {
				t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
			}
			if strings.Contains(r.Body, "auth-one") || strings.Contains(r.Body, "cred-key") {
				t.Fatalf("GET %s leaks the key: %s", p, r.Body)
			}
		}
	})
}

// nopWriter is a response writer that discards everything, for benchmarks.
type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

func benchEnv() *plugin.Env {
	cs := plugin.NewConsumers()
	c := &plugin.Consumer{Username: "jack"}
	cs.AddConsumer(c)
	for _, k := range []string{"auth-one", "auth-two", "auth-three"} {
		_, data, _ := keyauth.NewConsumer(json.RawMessage(`{"key":"` + k + `"}`))
		cs.Add(keyauth.Name, k, &plugin.Credential{Consumer: c, Data: data})
	}
	return &plugin.Env{Consumers: cs}
}

func BenchmarkKeyAuth(b *testing.B) {
	env := benchEnv()
	inst, err := keyauth.New(json.RawMessage(`{}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(plugin.Rewriter)
	for _, tc := range []struct {
		name, key string
		status    int
	}{{"valid", "auth-one", 0}, {"invalid", "bad", 401}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := engine.AcquireCtx()
			defer engine.ReleaseCtx(ctx)
			w := &nopWriter{h: engine.Header{}}
			ctx.W = w
			ctx.Header = engine.Header{}
			r := &plugin.Request{}
			b.ReportAllocs()
			for b.Loop() {
				r.Reset()
				r.Ctx, r.Env = ctx, env
				ctx.Header["Apikey"] = []string{tc.key}
				ctx.Header["X-Consumer-Username"] = nil
				p.Rewrite(r)
				if tc.status == 0 && r.Consumer == nil || tc.status != 0 && !r.Exited() {
					b.Fatal("unexpected outcome")
				}
			}
		})
	}
}
