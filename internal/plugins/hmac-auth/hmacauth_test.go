package hmacauth

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// sign builds an Authorization header value the way APISIX's docs and
// tests do.
func sign(secret, alg, keyID, method, uri string, names []string, values map[string]string) string {
	var b strings.Builder
	b.WriteString(keyID + "\n")
	for _, n := range names {
		if n == "@request-target" {
			b.WriteString(method + " " + uri + "\n")
			continue
		}
		b.WriteString(n + ": " + values[n] + "\n")
	}
	var h func() hash.Hash
	switch alg {
	case "hmac-sha1":
		h = sha1.New
	case "hmac-sha512":
		h = sha512.New
	default:
		h = sha256.New
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(b.String()))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	return `Signature keyId="` + keyID + `",algorithm="` + alg + `",headers="` + strings.Join(names, " ") + `",signature="` + sig + `"`
}

func now() string { return time.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT") }

func TestNew(t *testing.T) {
	tests := []struct {
		name, conf, err string
		check           func(t *testing.T, p *Plugin)
	}{
		{name: "defaults", conf: `{}`, check: func(t *testing.T, p *Plugin) {
			c := p.conf
			if c.ClockSkew != 300 || c.Realm != "hmac" || c.MaxReqBodySize != 67108864 || len(c.SignedHeaders) != 1 || c.SignedHeaders[0] != "date" || len(c.AllowedAlgorithms) != 3 {
				t.Fatalf("defaults: %+v", c)
			}
			if !p.allowed[algSHA1] || !p.allowed[algSHA256] || !p.allowed[algSHA512] {
				t.Fatal("all algorithms allowed by default")
			}
		}},
		{name: "restricted", conf: `{"allowed_algorithms":["hmac-sha512"],"clock_skew":1000000000000}`, check: func(t *testing.T, p *Plugin) {
			if p.allowed[algSHA256] || !p.allowed[algSHA512] || p.conf.ClockSkew != 1000000000000 {
				t.Fatalf("%+v", p.conf)
			}
		}},
		{name: "bad algorithm", conf: `{"allowed_algorithms":["md5"]}`, err: `unknown algorithm "md5"`},
		{name: "zero skew", conf: `{"clock_skew":0}`, err: `property "clock_skew" validation failed: expected 0 to be at least 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst, err := New(json.RawMessage(tt.conf), nil)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, inst.(*Plugin))
		})
	}
}

func TestAdminValidation(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	tests := []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"route zero skew", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"hmac-auth":{"clock_skew":0}},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1":1}}}`, 400,
			`failed to check the configuration of plugin hmac-auth err: property "clock_skew" validation failed: expected 0 to be at least 1`},
		{"route bad algorithm", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"hmac-auth":{"allowed_algorithms":["hmac-md5"]}},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1":1}}}`, 400,
			`failed to check the configuration of plugin hmac-auth err: property "allowed_algorithms" validation failed: failed to validate item 1: matches none of the enum values`},
		{"consumer missing secret", "/apisix/admin/consumers", `{"username":"jack","plugins":{"hmac-auth":{"key_id":"k"}}}`, 400,
			`invalid plugins configuration: failed to check the configuration of plugin hmac-auth err: property "secret_key" is required`},
		{"consumer ok", "/apisix/admin/consumers", `{"username":"jack","plugins":{"hmac-auth":{"key_id":"k","secret_key":"s"}}}`, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.Admin("PUT", tt.path, tt.body)
			if r.Status/100 != tt.status/100 {
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
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","labels":{"custom_id":"c-1"},"plugins":{"hmac-auth":{"key_id":"my-access-key","secret_key":"my-secret-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"anon"}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers/jack/credentials/c2", `{"plugins":{"hmac-auth":{"key_id":"cred-key","secret_key":"cred-secret"}}}`)
	up := rec.Upstream()
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"hmac-auth":{}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/strict","plugins":{"hmac-auth":{"allowed_algorithms":["hmac-sha512"],"signed_headers":["date","x-custom"],"clock_skew":10,"hide_credentials":true,"realm":"test"}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/3", `{"uri":"/body","plugins":{"hmac-auth":{"validate_request_body":true,"max_req_body_size":16}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/4", `{"uri":"/anon","plugins":{"hmac-auth":{"anonymous_consumer":"anon"}},"upstream":`+up+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/5", `{"uri":"/anon-missing","plugins":{"hmac-auth":{"anonymous_consumer":"ghost"}},"upstream":`+up+`}`)

	d := now()
	std := []string{"@request-target", "date"}
	dv := map[string]string{"date": d}
	old := time.Now().Add(-time.Hour).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")
	sumHello := sha256.Sum256([]byte("hello"))
	digest := "SHA-256=" + base64.StdEncoding.EncodeToString(sumHello[:])

	const invalid = `{"message":"client request can't be validated"}` + "\n"
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		resp                     string
		consumer, credID         string
		wwwAuth                  string
		keepAuth                 bool
	}{
		{name: "missing header", method: "GET", path: "/hello", status: 401,
			resp: `{"message":"client request can't be validated: missing Authorization header"}` + "\n", wwwAuth: `hmac realm="hmac"`},
		{name: "not Signature", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": "Bearer x"}, status: 401,
			resp: `{"message":"client request can't be validated: Authorization header does not start with 'Signature'"}` + "\n"},
		{name: "invalid signature", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": `Signature keyId="my-access-key",algorithm="hmac-sha256",headers="@request-target date",signature="asdf"`, "Date": d}, status: 401, resp: invalid},
		{name: "missing keyId", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": `Signature algorithm="hmac-sha256",signature="asdf"`, "Date": d}, status: 401, resp: invalid},
		{name: "unknown key", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "nobody", "GET", "/hello", std, dv), "Date": d}, status: 401, resp: invalid},
		{name: "wrong secret", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("other", "hmac-sha256", "my-access-key", "GET", "/hello", std, dv), "Date": d}, status: 401, resp: invalid},
		{name: "no date", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/hello", []string{"@request-target"}, nil)}, status: 401, resp: invalid},
		{name: "bad date", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/hello", std, map[string]string{"date": "yesterday"}), "Date": "yesterday"}, status: 401, resp: invalid},
		{name: "clock skew", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/hello", std, map[string]string{"date": old}), "Date": old}, status: 401, resp: invalid},
		{name: "date not signed", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/hello", []string{"@request-target"}, nil), "Date": d}, status: 401, resp: invalid},
		{name: "sha256 ok", method: "GET", path: "/hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/hello", std, dv), "Date": d}, status: 200, resp: "ok", consumer: "jack", keepAuth: true},
		{name: "sha1 with query", method: "GET", path: "/hello?a=1&b=2", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha1", "my-access-key", "GET", "/hello?a=1&b=2", std, dv), "Date": d}, status: 200, resp: "ok", consumer: "jack", keepAuth: true},
		{name: "query not signed", method: "GET", path: "/hello?a=1", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha1", "my-access-key", "GET", "/hello", std, dv), "Date": d}, status: 401, resp: invalid},
		{name: "credential", method: "POST", path: "/hello", hdr: map[string]string{"Authorization": sign("cred-secret", "hmac-sha512", "cred-key", "POST", "/hello", std, dv), "Date": d}, status: 200, resp: "ok", consumer: "jack", credID: "c2", keepAuth: true},
		{name: "algorithm not allowed", method: "GET", path: "/strict", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/strict", []string{"@request-target", "date", "x-custom"}, map[string]string{"date": d, "x-custom": "v"}), "Date": d, "X-Custom": "v"}, status: 401, resp: invalid, wwwAuth: `hmac realm="test"`},
		{name: "signed header missing", method: "GET", path: "/strict", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha512", "my-access-key", "GET", "/strict", std, dv), "Date": d, "X-Custom": "v"}, status: 401, resp: invalid},
		{name: "strict ok hides credentials", method: "GET", path: "/strict", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha512", "my-access-key", "GET", "/strict", []string{"@request-target", "date", "x-custom"}, map[string]string{"date": d, "x-custom": "v"}), "Date": d, "X-Custom": "v"}, status: 200, resp: "ok", consumer: "jack"},
		{name: "tampered signed header", method: "GET", path: "/strict", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha512", "my-access-key", "GET", "/strict", []string{"@request-target", "date", "x-custom"}, map[string]string{"date": d, "x-custom": "v"}), "Date": d, "X-Custom": "other"}, status: 401, resp: invalid},
		{name: "digest ok", method: "POST", path: "/body", body: "hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "POST", "/body", std, dv), "Date": d, "Digest": digest}, status: 200, resp: "ok", consumer: "jack", keepAuth: true},
		{name: "digest missing", method: "POST", path: "/body", body: "hello", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "POST", "/body", std, dv), "Date": d}, status: 401, resp: invalid},
		{name: "digest wrong", method: "POST", path: "/body", body: "hellO", hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "POST", "/body", std, dv), "Date": d, "Digest": digest}, status: 401, resp: invalid},
		{name: "body too large", method: "POST", path: "/body", body: strings.Repeat("x", 17), hdr: map[string]string{"Authorization": sign("my-secret-key", "hmac-sha256", "my-access-key", "POST", "/body", std, dv), "Date": d, "Digest": digest}, status: 413,
			resp: `{"message":"request size 17 is greater than the maximum size 16 allowed"}` + "\n"},
		{name: "anonymous", method: "GET", path: "/anon", status: 200, resp: "ok", consumer: "anon"},
		{name: "anonymous missing", method: "GET", path: "/anon-missing", status: 401, resp: `{"message":"Invalid user authorization"}` + "\n", wwwAuth: `hmac realm="hmac"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.Count()
			hdr := map[string]string{"X-Consumer-Username": "forged"}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			resp := g.Do(tt.method, tt.path, hdr, tt.body)
			if resp.Status != tt.status || resp.Body != tt.resp {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.resp)
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
				t.Fatalf("X-Consumer-Username = %q", got)
			}
			if got := last.Header.Get("X-Credential-Identifier"); got != tt.credID {
				t.Fatalf("X-Credential-Identifier = %q", got)
			}
			if tt.consumer == "jack" && last.Header.Get("X-Consumer-Custom-Id") != "c-1" {
				t.Fatalf("custom id = %q", last.Header.Get("X-Consumer-Custom-Id"))
			}
			if has := last.Header.Get("Authorization") != ""; has != tt.keepAuth && tt.consumer != "anon" {
				t.Fatalf("Authorization forwarded = %v", has)
			}
		})
	}
}

func FuzzParseSignature(f *testing.F) {
	f.Add(` keyId="a",algorithm="hmac-sha256",headers="@request-target date",signature="c2ln"`)
	f.Add(`keyId=""`)
	f.Add(`x keyId="a" , y_z="b",="c",a="`)
	f.Fuzz(func(t *testing.T, s string) {
		ps := parseSignature(s)
		for _, v := range []string{ps.keyID, ps.algorithm, ps.signature, ps.headers} {
			if strings.Contains(v, `"`) || strings.Contains(v, ",") {
				t.Fatalf("value %q contains a quote or comma", v)
			}
		}
	})
}

func TestParseSignature(t *testing.T) {
	tests := []struct{ in, key, alg, sig, hdrs string }{
		{` keyId="k",algorithm="hmac-sha256",headers="@request-target date",signature="c2ln"`, "k", "hmac-sha256", "c2ln", "@request-target date"},
		{`keyId="k", algorithm="a",signature="s" `, "k", "a", "s", ""},
		{` junk keyId="k",foo="bar",signature="s=="`, "k", "", "s==", ""},
		{`key_id="k"`, "", "", "", ""},
	}
	for _, tt := range tests {
		ps := parseSignature(tt.in)
		if ps.keyID != tt.key || ps.algorithm != tt.alg || ps.signature != tt.sig || ps.headers != tt.hdrs {
			t.Errorf("%q: %+v", tt.in, ps)
		}
	}
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

func BenchmarkHmacAuth(b *testing.B) {
	inst, err := New(json.RawMessage(`{}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	p := inst.(*Plugin)
	key, data, err := NewConsumer(json.RawMessage(`{"key_id":"my-access-key","secret_key":"my-secret-key"}`))
	if err != nil {
		b.Fatal(err)
	}
	cs := plugin.NewConsumers()
	cons := &plugin.Consumer{Username: "jack"}
	cs.AddConsumer(cons)
	cs.Add(Name, key, &plugin.Credential{Consumer: cons, Data: data})
	env := &plugin.Env{Consumers: cs}
	d := now()
	auth := sign("my-secret-key", "hmac-sha256", "my-access-key", "GET", "/hello?x=1", []string{"@request-target", "date"}, map[string]string{"date": d})
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	w := &nopWriter{h: engine.Header{}}
	c.W = w
	c.Method, c.RequestURI, c.Path = "GET", "/hello?x=1", "/hello"
	c.RemoteAddr = netip.MustParseAddrPort("127.0.0.1:1000")
	hdr := engine.Header{"Authorization": {auth}, "Date": {d}, "X-Consumer-Username": {"jack"}, "X-Consumer-Custom-Id": nil}
	c.Header = hdr
	c.Body = io.NopCloser(strings.NewReader(""))
	r := &plugin.Request{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Reset()
		r.Ctx, r.Env = c, env
		p.Rewrite(r)
		if r.Exited() || r.Consumer != cons {
			b.Fatal("authentication failed")
		}
	}
}

// TestDigestBodyReachesUpstream checks the body read for the digest is
// still sent upstream in full.
func TestDigestBodyReachesUpstream(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	defer echo.Close()
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"hmac-auth":{"key_id":"k","secret_key":"s"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/b","plugins":{"hmac-auth":{"validate_request_body":true}},"upstream":{"type":"roundrobin","nodes":{"`+strings.TrimPrefix(echo.URL, "http://")+`":1}}}`)
	body := strings.Repeat("xyz", 10000)
	sum := sha256.Sum256([]byte(body))
	d := now()
	resp := g.Do("POST", "/b", map[string]string{
		"Authorization": sign("s", "hmac-sha256", "k", "POST", "/b", []string{"@request-target", "date"}, map[string]string{"date": d}),
		"Date":          d,
		"Digest":        "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:]),
	}, body)
	if resp.Status != 200 || resp.Body != body {
		t.Fatalf("got %d, %d bytes: %.100s", resp.Status, len(resp.Body), resp.Body)
	}
}
