package basicauth_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	basicauth "github.com/sluice-gw/sluice/internal/plugins/basic-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		header, user, pass string
		ok                 bool
	}{
		{"Basic Zm9vOmJhcg==", "foo", "bar", true},
		{"basic Zm9vOmJhcg==", "foo", "bar", true},
		{"BASIC Zm9vOmJhcg==", "foo", "bar", true},
		{"bASiC Zm9vOmJhcg==", "foo", "bar", true},
		{"Basic\tZm9vOmJhcg==", "foo", "bar", true},
		{"Basic Zm9vOmJhcg", "foo", "bar", true},          // padding optional
		{"Basic Zm9vOmJhcg==garbage", "foo", "bar", true}, // ignored after '='
		{"xBasic Zm9vOmJhcg==", "foo", "bar", true},       // the regex is not anchored
		{"Basic YmFyOmJhcgo=", "bar", "bar", true},        // "bar:bar\n": whitespace removed
		{"Basic ZiBvIG86YglhIHI=", "foo", "bar", true},    // "f o o:b\ta r"
		{"Basic OmJhcg==", "", "bar", true},               // ":bar"
		{"Basic Zm9vOjpiYXI=", "foo", "", true},           // "foo::bar"
		{"Basic Zm9vOmI6Yw==", "foo", "b", true},          // "foo:b:c"
		{"Basic Zm9vOmE6", "foo", "a", true},              // "foo:a:"
		{"Bad_header YmFyOmJhcgo=", "", "", false},
		{"Bearer Zm9vOmJhcg==", "", "", false},
		{"Basic aca_a", "", "", false},         // '_' is not standard base64
		{"Basic  Zm9vOmJhcg==", "", "", false}, // capture starts with a space
		{"Basic Zm9vO", "", "", false},         // length 1 mod 4
		{"Basic YmFy", "", "", false},          // "bar": no colon
		{"Basic Zm9vOg==", "", "", false},      // "foo:": trailing empty field dropped
		{"Basic Zm9vOjo6", "", "", false},      // "foo:::"
		{"Basic", "", "", false},
		{"Basic ", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			u, p, ok := basicauth.ParseAuthorization(tc.header)
			if ok != tc.ok || u != tc.user || string(p) != tc.pass {
				t.Fatalf("got %q %q %v, want %q %q %v", u, p, ok, tc.user, tc.pass, tc.ok)
			}
		})
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Basic Zm9vOmJhcg==", "basic Zm9vOg==", "xbasic\t::", "Basic ====", "BASIC OmJhcg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		u, p, ok := basicauth.ParseAuthorization(h)
		if !ok {
			return
		}
		if strings.ContainsAny(u, " \t\r\n\v\f:") || strings.ContainsAny(string(p), " \t\r\n\v\f:") {
			t.Fatalf("%q -> %q %q", h, u, p)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{basicauth.Def()}, nil)
	const prefix = `{"error_msg":"failed to check the configuration of plugin basic-auth err: `
	const cprefix = `{"error_msg":"invalid plugins configuration: failed to check the configuration of plugin basic-auth err: `
	up := `,"upstream":{"nodes":{"127.0.0.1:1":1}}}`
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"defaults", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"basic-auth":{}}` + up, 201, ""},
		{"all fields", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"basic-auth":{"hide_credentials":true,"realm":"r","anonymous_consumer":"x"}}` + up, 200, ""},
		{"hide_credentials type", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"basic-auth":{"hide_credentials":1}}` + up, 400,
			prefix + `property \"hide_credentials\" validation failed: wrong type: expected boolean, got number"}`},
		{"realm with backslash", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"basic-auth":{"realm":"a\\b"}}` + up, 400, ""},
		{"empty realm", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"basic-auth":{"realm":""}}` + up, 400, ""},
		{"consumer without password", "/apisix/admin/consumers", `{"username":"foo","plugins":{"basic-auth":{"username":"foo"}}}`, 400,
			cprefix + `property \"password\" is required"}`},
		{"consumer username type", "/apisix/admin/consumers", `{"username":"foo","plugins":{"basic-auth":{"username":123,"password":"bar"}}}`, 400,
			cprefix + `property \"username\" validation failed: wrong type: expected string, got number"}`},
		{"consumer conf not an object", "/apisix/admin/consumers", `{"username":"foo","plugins":{"basic-auth":"blah"}}`, 400,
			`{"error_msg":"invalid plugins configuration: invalid plugin conf \"blah\" for plugin [basic-auth]"}`},
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

func TestNewConsumer(t *testing.T) {
	tests := []struct {
		conf, key, err string
	}{
		{`{"username":"foo","password":"bar"}`, "foo", ""},
		{`{"username":"foo","password":""}`, "foo", ""},
		{`{"password":"bar"}`, "", `property "username" is required`},
		{`{"username":"foo"}`, "", `property "password" is required`},
	}
	for _, tc := range tests {
		t.Run(tc.conf, func(t *testing.T) {
			key, _, err := basicauth.NewConsumer(json.RawMessage(tc.conf))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil || key != tc.key {
				t.Fatalf("key %q err %v", key, err)
			}
		})
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestRequests(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{basicauth.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"foo","labels":{"custom_id":"c-1"},"plugins":{"basic-auth":{"username":"foo","password":"bar"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers/foo/credentials/cred-1", `{"plugins":{"basic-auth":{"username":"foo2","password":"pw2"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"anon"}`)
	route := func(id, uri, conf string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/"+id, `{"uri":"`+uri+`","plugins":{"basic-auth":`+conf+`},"upstream":`+rec.Upstream()+`}`)
	}
	route("1", "/a", `{}`)
	route("2", "/hide", `{"hide_credentials":true}`)
	route("3", "/realm", `{"realm":"my realm"}`)
	route("4", "/anon", `{"anonymous_consumer":"anon","hide_credentials":true}`)
	route("5", "/ghost", `{"anonymous_consumer":"ghost"}`)

	const realm = `Basic realm="basic"`
	missing := `{"message":"Missing authorization in request"}`
	invalid := `{"message":"Invalid authorization in request"}`
	badUser := `{"message":"Invalid user authorization"}`
	tests := []struct {
		name      string
		path      string
		headers   map[string]string
		status    int
		body      string
		challenge string
		up        map[string]string
	}{
		{"missing", "/a", nil, 401, missing, realm, nil},
		{"bad scheme", "/a", map[string]string{"Authorization": "Bad_header YmFyOmJhcgo="}, 401, invalid, realm, nil},
		{"bad base64", "/a", map[string]string{"Authorization": "Basic aca_a"}, 401, invalid, realm, nil},
		{"no colon", "/a", map[string]string{"Authorization": "Basic YmFy"}, 401, invalid, realm, nil},
		{"unknown user", "/a", map[string]string{"Authorization": "Basic YmFyOmJhcgo="}, 401, badUser, realm, nil},
		{"wrong password", "/a", map[string]string{"Authorization": basic("foo", "foo")}, 401, badUser, realm, nil},
		{"password prefix", "/a", map[string]string{"Authorization": basic("foo", "ba")}, 401, badUser, realm, nil},
		{"oversized password", "/a", map[string]string{"Authorization": basic("foo", strings.Repeat("x", 10<<10))}, 401, badUser, realm, nil},
		{"oversized garbage", "/a", map[string]string{"Authorization": "Basic " + strings.Repeat("%", 10<<10)}, 401, invalid, realm, nil},
		{"valid", "/a", map[string]string{"Authorization": basic("foo", "bar")}, 200, "", "",
			map[string]string{"X-Consumer-Username": "foo", "X-Consumer-Custom-Id": "c-1", "X-Credential-Identifier": "", "Authorization": basic("foo", "bar")}},
		{"valid lowercase scheme", "/a", map[string]string{"Authorization": "basic Zm9vOmJhcg=="}, 200, "", "", nil},
		{"forged consumer headers", "/a", map[string]string{"Authorization": basic("foo", "bar"), "X-Consumer-Username": "admin", "X-Consumer-Custom-Id": "evil"}, 200, "", "",
			map[string]string{"X-Consumer-Username": "foo", "X-Consumer-Custom-Id": "c-1"}},
		{"credential object", "/a", map[string]string{"Authorization": basic("foo2", "pw2")}, 200, "", "",
			map[string]string{"X-Consumer-Username": "foo", "X-Credential-Identifier": "cred-1"}},
		{"hide credentials", "/hide", map[string]string{"Authorization": basic("foo", "bar")}, 200, "", "",
			map[string]string{"Authorization": "", "X-Consumer-Username": "foo"}},
		{"custom realm", "/realm", nil, 401, missing, `Basic realm="my realm"`, nil},
		{"anonymous on missing", "/anon", nil, 200, "", "", map[string]string{"X-Consumer-Username": "anon"}},
		{"anonymous on wrong password hides it", "/anon", map[string]string{"Authorization": basic("foo", "nope")}, 200, "", "",
			map[string]string{"X-Consumer-Username": "anon", "Authorization": ""}},
		{"valid beats anonymous", "/anon", map[string]string{"Authorization": basic("foo", "bar")}, 200, "", "", map[string]string{"X-Consumer-Username": "foo"}},
		{"unknown anonymous consumer", "/ghost", nil, 401, badUser, realm, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.Count()
			resp := g.Do("GET", tc.path, tc.headers, "")
			if resp.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.Status, tc.status, resp.Body)
			}
			if tc.body != "" && strings.TrimSuffix(resp.Body, "\n") != tc.body {
				t.Errorf("body %q, want %q", resp.Body, tc.body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			reached := rec.Count() > before
			if reached != (tc.status == 200) {
				t.Fatalf("upstream reached = %v", reached)
			}
			if !reached {
				return
			}
			for k, v := range tc.up {
				if got := rec.Last().Header.Get(k); got != v {
					t.Errorf("upstream header %s = %q, want %q", k, got, v)
				}
			}
		})
	}

	t.Run("duplicate username refused", func(t *testing.T) {
		r := g.Admin("PUT", "/apisix/admin/consumers", `{"username":"rose","plugins":{"basic-auth":{"username":"foo","password":"x"}}}`)
		want := `{"error_msg":"duplicate key of plugin basic-auth found with consumer: foo"}`
		if r.Status != 400 || strings.TrimSpace(r.Body) != want {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("password never returned in plain text", func(t *testing.T) {
		for _, p := range []string{"/apisix/admin/consumers/foo", "/apisix/admin/consumers/foo/credentials/cred-1"} {
			r := g.Admin("GET", p, "")
			if r.Status != 200 || strings.Contains(r.Body, `"bar"`) || strings.Contains(r.Body, "pw2") {
				t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
			}
		}
	})
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

func BenchmarkBasicAuth(b *testing.B) {
	cs := plugin.NewConsumers()
	c := &plugin.Consumer{Username: "foo"}
	cs.AddConsumer(c)
	_, data, _ := basicauth.NewConsumer(json.RawMessage(`{"username":"foo","password":"bar"}`))
	cs.Add(basicauth.Name, "foo", &plugin.Credential{Consumer: c, Data: data})
	env := &plugin.Env{Consumers: cs}
	inst, err := basicauth.New(json.RawMessage(`{}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(plugin.Rewriter)
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{{"valid", basic("foo", "bar"), true}, {"wrong password", basic("foo", "baz"), false}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := engine.AcquireCtx()
			defer engine.ReleaseCtx(ctx)
			ctx.W = &nopWriter{h: engine.Header{}}
			ctx.Header = engine.Header{"Authorization": {tc.header}}
			r := &plugin.Request{}
			b.ReportAllocs()
			for b.Loop() {
				r.Reset()
				r.Ctx, r.Env = ctx, env
				p.Rewrite(r)
				if (r.Consumer != nil) != tc.ok {
					b.Fatal("unexpected outcome")
				}
			}
		})
	}
}
