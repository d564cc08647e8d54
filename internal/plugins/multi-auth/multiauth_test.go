package multiauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	consumerrestriction "github.com/sluice-gw/sluice/internal/plugins/consumer-restriction"
	hmacauth "github.com/sluice-gw/sluice/internal/plugins/hmac-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// keyAuth is a test-only auth plugin implementing Authenticate: the
// consumer is found by the X-Test-Key header.
type keyAuth struct{ name string }

func (a keyAuth) Authenticate(r *plugin.Request) (bool, int, any) {
	k := r.Header.Get("X-Test-Key")
	if k == "" {
		r.W.Header().Set("WWW-Authenticate", `test realm="`+a.name+`"`)
		return false, 401, map[string]string{"message": "Missing test key"}
	}
	cred, ok := r.Env.Consumers.Lookup(a.name, k)
	if !ok {
		r.W.Header().Set("WWW-Authenticate", `test realm="`+a.name+`"`)
		return false, 401, map[string]string{"message": "Invalid test key"}
	}
	r.AttachConsumer(cred.Consumer, cred.ID)
	return true, 0, nil
}

func (a keyAuth) Rewrite(r *plugin.Request) {
	if ok, st, body := a.Authenticate(r); !ok {
		r.Exit(st, body)
	}
}

// rewriteOnly is a test-only auth plugin without Authenticate, to exercise
// the fallback: the consumer is found by X-Rw-Key.
type rewriteOnly struct{}

func (rewriteOnly) Rewrite(r *plugin.Request) {
	cred, ok := r.Env.Consumers.Lookup("rw-auth", r.Header.Get("X-Rw-Key"))
	if !ok {
		r.W.Header().Set("WWW-Authenticate", `rw realm="rw"`)
		r.Exit(401, map[string]string{"message": "rw says no"})
		return
	}
	r.AttachConsumer(cred.Consumer, cred.ID)
}

func authDef(name string, inst any) *plugin.Def {
	return &plugin.Def{
		Name: name, Priority: 2500, Auth: true, KeyField: "key",
		Schema:         json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}}}`),
		ConsumerSchema: json.RawMessage(`{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`),
		New:            func(json.RawMessage, *plugin.BuildEnv) (any, error) { return inst, nil },
		NewConsumer: func(raw json.RawMessage) (string, any, error) {
			var c struct{ Key string }
			err := json.Unmarshal(raw, &c)
			return c.Key, nil, err
		},
	}
}

// defs returns the plugin set with multi-auth wired to look the others up,
// as internal/plugins/all does.
func defs() []*plugin.Def {
	var ds []*plugin.Def
	lookup := func(name string) (*plugin.Def, bool) {
		for _, d := range ds {
			if d.Name == name {
				return d, true
			}
		}
		return nil, false
	}
	ds = []*plugin.Def{
		hmacauth.Def(),
		consumerrestriction.Def(),
		authDef("test-auth", keyAuth{name: "test-auth"}),
		authDef("rw-auth", rewriteOnly{}),
		Def(lookup),
	}
	return ds
}

func signHMAC(secret, keyID, method, uri, date string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(keyID + "\n" + method + " " + uri + "\n" + "date: " + date + "\n"))
	return `Signature keyId="` + keyID + `",algorithm="hmac-sha256",headers="@request-target date",signature="` + base64.StdEncoding.EncodeToString(m.Sum(nil)) + `"`
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, defs(), nil)
	const pre = "failed to check the configuration of plugin multi-auth err: "
	tests := []struct {
		name, conf, msg string
	}{
		{"ok", `{"auth_plugins":[{"hmac-auth":{}},{"test-auth":{}}]}`, ""},
		{"required", `{}`, pre + `property "auth_plugins" is required`},
		{"min items", `{"auth_plugins":[{"hmac-auth":{}}]}`, pre + `property "auth_plugins" validation failed: expect array to have at least 2 items`},
		{"unknown", `{"auth_plugins":[{"hmac-auth":{}},{"ldap-auth":{}}]}`, pre + `ldap-auth plugin did not found`},
		{"not auth", `{"auth_plugins":[{"hmac-auth":{}},{"consumer-restriction":{"whitelist":["a"]}}]}`, pre + `consumer-restriction plugin is not supported`},
		{"sub schema", `{"auth_plugins":[{"test-auth":{}},{"hmac-auth":{"clock_skew":0}}]}`, pre + `plugin hmac-auth check schema failed: property "clock_skew" validation failed: expected 0 to be at least 1`},
		{"sub not object", `{"auth_plugins":[{"test-auth":{}},{"hmac-auth":"blah"}]}`, pre + `plugin hmac-auth check schema failed: wrong type: expected object, got string`},
		{"sub type", `{"auth_plugins":[{"test-auth":{"n":"x"}},{"hmac-auth":{}}]}`, pre + `plugin test-auth check schema failed: property "n" validation failed: wrong type: expected integer, got string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/v", `{"uri":"/v","plugins":{"multi-auth":`+tt.conf+`},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1":1}}}`)
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
	g := plugintest.Start(t, defs(), nil)
	rec := plugintest.NewRecorder(t)
	up := rec.Upstream()
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"hmac-auth":{"key_id":"jack-id","secret_key":"jack-secret"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"rose","plugins":{"test-auth":{"key":"rose-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"tom"}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers/tom/credentials/rw1", `{"plugins":{"rw-auth":{"key":"tom-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/m","plugins":{"multi-auth":{"auth_plugins":[{"hmac-auth":{"hide_credentials":true}},{"test-auth":{}},{"rw-auth":{}}]}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/cr","plugins":{"multi-auth":{"auth_plugins":[{"hmac-auth":{}},{"test-auth":{}}]},"consumer-restriction":{"whitelist":["jack"]}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/3", `{"uri":"/anon","plugins":{"multi-auth":{"auth_plugins":[{"test-auth":{}},{"hmac-auth":{"anonymous_consumer":"tom"}}]}},"upstream":`+up+`}`)

	date := time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")
	failed := `{"message":"Authorization Failed"}` + "\n"
	tests := []struct {
		name, path string
		hdr        map[string]string
		status     int
		body       string
		consumer   string
		credID     string
		wwwAuth    string
	}{
		{name: "nothing", path: "/m", status: 401, body: failed, wwwAuth: `rw realm="rw"`},
		{name: "hmac", path: "/m", hdr: map[string]string{"Authorization": signHMAC("jack-secret", "jack-id", "GET", "/m", date), "Date": date}, status: 200, body: "ok", consumer: "jack"},
		{name: "bad hmac, good key", path: "/m", hdr: map[string]string{"Authorization": signHMAC("wrong", "jack-id", "GET", "/m", date), "Date": date, "X-Test-Key": "rose-key"}, status: 200, body: "ok", consumer: "rose"},
		{name: "rewrite-only fallback", path: "/m", hdr: map[string]string{"X-Rw-Key": "tom-key"}, status: 200, body: "ok", consumer: "tom", credID: "rw1"},
		{name: "all wrong", path: "/m", hdr: map[string]string{"X-Test-Key": "nope", "X-Rw-Key": "nope"}, status: 401, body: failed, wwwAuth: `rw realm="rw"`},
		{name: "restriction after multi-auth passes", path: "/cr", hdr: map[string]string{"Authorization": signHMAC("jack-secret", "jack-id", "GET", "/cr", date), "Date": date}, status: 200, body: "ok", consumer: "jack"},
		{name: "restriction rejects", path: "/cr", hdr: map[string]string{"X-Test-Key": "rose-key"}, status: 403, body: `{"message":"The consumer_name is forbidden."}` + "\n"},
		{name: "auth failure before restriction", path: "/cr", status: 401, body: failed, wwwAuth: `test realm="test-auth"`},
		{name: "anonymous in a sub-plugin", path: "/anon", status: 200, body: "ok", consumer: "tom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.Count()
			resp := g.Do("GET", tt.path, tt.hdr, "")
			if resp.Status != tt.status || resp.Body != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.body)
			}
			if tt.wwwAuth != "" && resp.Header.Get("WWW-Authenticate") != tt.wwwAuth {
				t.Fatalf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
			if tt.status != 200 {
				if rec.Count() != before {
					t.Fatal("rejected request reached the upstream")
				}
				return
			}
			last := rec.Last()
			if got := last.Header.Get("X-Consumer-Username"); got != tt.consumer {
				t.Fatalf("consumer = %q, want %q", got, tt.consumer)
			}
			if got := last.Header.Get("X-Credential-Identifier"); got != tt.credID {
				t.Fatalf("credential = %q, want %q", got, tt.credID)
			}
			if tt.consumer == "jack" && tt.path == "/m" && last.Header.Get("Authorization") != "" {
				t.Fatal("hmac-auth's hide_credentials was not applied")
			}
		})
	}
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

// BenchmarkMultiAuth measures a request that fails the first sub-plugin
// (hmac-auth, no Authorization) and passes the second.
func BenchmarkMultiAuth(b *testing.B) {
	ds := defs()
	var ma *plugin.Def
	for _, d := range ds {
		if d.Name == Name {
			ma = d
		}
	}
	inst, err := ma.New(json.RawMessage(`{"auth_plugins":[{"hmac-auth":{}},{"test-auth":{}}]}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	cs := plugin.NewConsumers()
	cons := &plugin.Consumer{Username: "rose"}
	cs.AddConsumer(cons)
	cs.Add("test-auth", "rose-key", &plugin.Credential{Consumer: cons})
	env := &plugin.Env{Consumers: cs}
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	c.W = &nopWriter{h: engine.Header{}}
	c.Method, c.RequestURI = "GET", "/m"
	c.RemoteAddr = netip.MustParseAddrPort("127.0.0.1:1")
	c.Header = engine.Header{"X-Test-Key": {"rose-key"}}
	r := &plugin.Request{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Reset()
		r.Ctx, r.Env = c, env
		p.Rewrite(r)
		if r.Exited() || r.Consumer != cons {
			b.Fatal("authentication failed")
		}
	}
}
