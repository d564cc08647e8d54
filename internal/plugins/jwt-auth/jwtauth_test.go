package jwtauth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	jwtauth "github.com/sluice-gw/sluice/internal/plugins/jwt-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// keys are generated once per test binary run.
type keys struct {
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	rsaPEM string
	ecPEM  string
	edPEM  string
}

func genKeys(t testing.TB) *keys {
	t.Helper()
	k := &keys{}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	pub := func(p any) string {
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	k.rsaPEM, k.ecPEM, k.edPEM = pub(&k.rsa.PublicKey), pub(&k.ec.PublicKey), pub(k.ed.Public())
	return k
}

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jsonStr(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestConfigValidation(t *testing.T) {
	k := genKeys(t)
	g := plugintest.Start(t, []*plugin.Def{jwtauth.Def()}, nil)
	const prefix = `{"error_msg":"failed to check the configuration of plugin jwt-auth err: `
	const cprefix = `{"error_msg":"invalid plugins configuration: failed to check the configuration of plugin jwt-auth err: `
	up := `,"upstream":{"nodes":{"127.0.0.1:1":1}}}`
	cons := func(conf string) string { return `{"username":"jack","plugins":{"jwt-auth":` + conf + `}}` }
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"route defaults", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"jwt-auth":{}}` + up, 201, ""},
		{"route all fields", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"jwt-auth":{"header":"x","query":"q","cookie":"c","hide_credentials":true,"key_claim_name":"iss","store_in_ctx":true,"realm":"r","anonymous_consumer":"a","claims_to_verify":["exp","nbf"]}}` + up, 200, ""},
		{"unknown claim", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"jwt-auth":{"claims_to_verify":["iat"]}}` + up, 400, ""},
		{"duplicate claim", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"jwt-auth":{"claims_to_verify":["exp","exp"]}}` + up, 400, ""},
		{"empty key_claim_name", "/apisix/admin/routes/2", `{"uri":"/b","plugins":{"jwt-auth":{"key_claim_name":""}}` + up, 400,
			prefix + `property \"key_claim_name\" validation failed: string too short, expected at least 1, got 0"}`},
		{"consumer HS256 default", "/apisix/admin/consumers", cons(`{"key":"k1","secret":"s"}`), 201, ""},
		{"consumer without key", "/apisix/admin/consumers", cons(`{"secret":"s"}`), 400, cprefix + `property \"key\" is required"}`},
		{"consumer empty key", "/apisix/admin/consumers", cons(`{"key":"","secret":"s"}`), 400,
			cprefix + `property \"key\" validation failed: string too short, expected at least 1, got 0"}`},
		{"consumer key type", "/apisix/admin/consumers", cons(`{"key":1,"secret":"s"}`), 400,
			cprefix + `property \"key\" validation failed: wrong type: expected string, got number"}`},
		{"HS without secret", "/apisix/admin/consumers", cons(`{"key":"k1"}`), 400,
			cprefix + `property \"secret\" is required when using HS based algorithms"}`},
		{"HS512 without secret", "/apisix/admin/consumers", cons(`{"key":"k1","algorithm":"HS512"}`), 400,
			cprefix + `property \"secret\" is required when using HS based algorithms"}`},
		{"bad base64 secret", "/apisix/admin/consumers", cons(`{"key":"k1","secret":"%%%","base64_secret":true}`), 400,
			cprefix + `base64_secret required but the secret is not in base64 format"}`},
		{"RS256 without public key", "/apisix/admin/consumers", cons(`{"key":"k1","algorithm":"RS256"}`), 400,
			cprefix + `failed to validate dependent schema for \"algorithm\": value should match only one schema, but matches none"}`},
		{"unknown algorithm", "/apisix/admin/consumers", cons(`{"key":"k1","secret":"s","algorithm":"none"}`), 400, ""},
		{"RS256 with public key", "/apisix/admin/consumers", cons(`{"key":"k1","algorithm":"RS256","public_key":` + jsonStr(k.rsaPEM) + `}`), 200, ""},
		{"negative grace period", "/apisix/admin/consumers", cons(`{"key":"k1","secret":"s","lifetime_grace_period":-1}`), 400, ""},
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
		{`{"key":"a","secret":"s"}`, "a", ""},
		{`{"key":"a","secret":"c2VjcmV0","base64_secret":true}`, "a", ""},
		{`{"key":"a","secret":"c2VjcmV0","base64_secret":true,"private_key":"ignored","exp":10}`, "a", ""},
		{`{"key":"a","secret":"$env://X","base64_secret":true}`, "a", ""},
		{`{"key":"a","algorithm":"ES256","public_key":"not pem"}`, "a", ""}, // accepted; fails closed per request
		{`{"secret":"s"}`, "", `property "key" is required`},
		{`{"key":"a"}`, "", `property "secret" is required when using HS based algorithms`},
		{`{"key":"a","algorithm":"RS256"}`, "", `missing valid public key`},
		{`{"key":"a","secret":"!","base64_secret":true}`, "", `base64_secret required but the secret is not in base64 format`},
	}
	for _, tc := range tests {
		t.Run(tc.conf, func(t *testing.T) {
			key, _, err := jwtauth.NewConsumer(json.RawMessage(tc.conf))
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

func TestRequests(t *testing.T) {
	k := genKeys(t)
	g := plugintest.Start(t, []*plugin.Def{jwtauth.Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","labels":{"custom_id":"j-1"},"plugins":{"jwt-auth":{"key":"user-key","secret":"my-secret-key"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"rsa","plugins":{"jwt-auth":{"key":"rsa-key","algorithm":"RS256","public_key":`+jsonStr(k.rsaPEM)+`}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"pss","plugins":{"jwt-auth":{"key":"pss-key","algorithm":"PS256","public_key":`+jsonStr(k.rsaPEM)+`}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"ec","plugins":{"jwt-auth":{"key":"ec-key","algorithm":"ES256","public_key":`+jsonStr(k.ecPEM)+`}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"ed","plugins":{"jwt-auth":{"key":"ed-key","algorithm":"EdDSA","public_key":`+jsonStr(k.edPEM)+`}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"b64","plugins":{"jwt-auth":{"key":"b64-key","secret":"`+base64.StdEncoding.EncodeToString([]byte("raw\x00secret"))+`","base64_secret":true,"algorithm":"HS512"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"grace","plugins":{"jwt-auth":{"key":"grace-key","secret":"g","lifetime_grace_period":100}}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"anon"}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers/jack/credentials/cred-1", `{"plugins":{"jwt-auth":{"key":"cred-key","secret":"cred-secret"}}}`)
	route := func(id, uri, conf string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/"+id, `{"uri":"`+uri+`","plugins":{"jwt-auth":`+conf+`},"upstream":`+rec.Upstream()+`}`)
	}
	route("1", "/a", `{}`)
	route("2", "/hide", `{"hide_credentials":true}`)
	route("3", "/claims", `{"claims_to_verify":["exp","nbf"]}`)
	route("4", "/custom", `{"header":"X-JWT","query":"token","cookie":"tok","key_claim_name":"iss","realm":"api"}`)
	route("5", "/anon", `{"anonymous_consumer":"anon","hide_credentials":true}`)
	route("6", "/ghost", `{"anonymous_consumer":"ghost"}`)

	now := time.Now().Unix()
	hs := func(key, secret string, extra jwt.MapClaims) string {
		c := jwt.MapClaims{"key": key, "exp": now + 3600}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return sign(t, jwt.SigningMethodHS256, []byte(secret), c)
	}
	valid := hs("user-key", "my-secret-key", nil)
	// An unsigned token (alg "none").
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"key": "user-key"})
	// Algorithm confusion: HS256 with the RSA consumer's public key as
	// the HMAC secret.
	confused := sign(t, jwt.SigningMethodHS256, []byte(k.rsaPEM), jwt.MapClaims{"key": "rsa-key"})
	// A token whose exp is JSON null, signed correctly.
	nullExp := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"key":"user-key","exp":null}`))
	sig, err := jwt.SigningMethodHS256.Sign(nullExp, []byte("my-secret-key"))
	if err != nil {
		t.Fatal(err)
	}
	nullExp += "." + base64.RawURLEncoding.EncodeToString(sig)

	const challenge = `Bearer realm="jwt"`
	missing := `{"message":"Missing JWT token in request"}`
	invalid := `{"message":"JWT token invalid"}`
	noKey := `{"message":"missing user key in JWT token"}`
	badKey := `{"message":"Invalid user key in JWT token"}`
	failed := `{"message":"failed to verify jwt"}`
	type tc struct {
		name      string
		path      string
		headers   map[string]string
		status    int
		body      string
		challenge string
		up        map[string]string
		upURI     string
	}
	deny := func(name, path string, h map[string]string, body string) tc {
		return tc{name: name, path: path, headers: h, status: 401, body: body, challenge: challenge}
	}
	allow := func(name, path string, h map[string]string, user string) tc {
		return tc{name: name, path: path, headers: h, status: 200, up: map[string]string{"X-Consumer-Username": user}}
	}
	auth := func(v string) map[string]string { return map[string]string{"Authorization": v} }
	tests := []tc{
		deny("missing", "/a", nil, missing),
		allow("bearer header", "/a", auth("Bearer "+valid), "jack"),
		allow("lowercase bearer", "/a", auth("bearer "+valid), "jack"),
		allow("bare header", "/a", auth(valid), "jack"),
		allow("query", "/a?jwt="+valid, nil, "jack"),
		allow("cookie", "/a", map[string]string{"Cookie": "a=1; jwt=" + valid}, "jack"),
		deny("header wins over query", "/a?jwt="+valid, auth("Bearer nope"), invalid),
		deny("invalid token", "/a?jwt=invalid-"+valid, nil, invalid),
		deny("two parts", "/a", auth("Bearer a.b"), invalid),
		deny("four parts", "/a", auth("Bearer "+valid+".x"), invalid),
		deny("empty header", "/a", auth(""), invalid),
		deny("repeated query arg", "/a?jwt="+valid+"&jwt="+valid, nil, invalid),
		deny("oversized token", "/a", auth("Bearer "+strings.Repeat("a", 10<<10)), invalid),
		deny("oversized signed token", "/a", auth("Bearer "+hs("user-key", "my-secret-key", jwt.MapClaims{"pad": strings.Repeat("p", 10<<10)})+"x"), failed),
		deny("no key claim", "/a", auth(hs("", "my-secret-key", jwt.MapClaims{"key": nil})), noKey),
		deny("key claim false", "/a", auth(hs("", "my-secret-key", jwt.MapClaims{"key": false})), noKey),
		deny("key claim number", "/a", auth(hs("", "my-secret-key", jwt.MapClaims{"key": 123})), badKey),
		deny("unknown key", "/a", auth(hs("who", "my-secret-key", nil)), badKey),
		deny("bad signature", "/a", auth(hs("user-key", "other-secret", nil)), failed),
		deny("alg none", "/a", auth(none), failed),
		deny("HS256 signed with RSA public key", "/a", auth(confused), failed),
		deny("HS512 for HS256 consumer", "/a", auth(sign(t, jwt.SigningMethodHS512, []byte("my-secret-key"), jwt.MapClaims{"key": "user-key"})), failed),
		deny("expired", "/a", auth(hs("user-key", "my-secret-key", jwt.MapClaims{"exp": now - 10})), failed),
		deny("exp not a number", "/a", auth(hs("user-key", "my-secret-key", jwt.MapClaims{"exp": "soon"})), failed),
		deny("exp null", "/a", auth(nullExp), failed),
		deny("nbf in the future", "/a", auth(hs("user-key", "my-secret-key", jwt.MapClaims{"nbf": now + 60})), failed),
		allow("no exp and no nbf", "/a", auth(hs("user-key", "my-secret-key", jwt.MapClaims{"exp": nil})), "jack"),
		allow("exp within grace period", "/a", auth(hs("grace-key", "g", jwt.MapClaims{"exp": now - 50})), "grace"),
		allow("nbf within grace period", "/a", auth(hs("grace-key", "g", jwt.MapClaims{"nbf": now + 50})), "grace"),
		deny("exp beyond grace period", "/a", auth(hs("grace-key", "g", jwt.MapClaims{"exp": now - 150})), failed),
		deny("claims_to_verify requires nbf", "/claims", auth(valid), failed),
		allow("claims_to_verify satisfied", "/claims", auth(hs("user-key", "my-secret-key", jwt.MapClaims{"nbf": now - 5})), "jack"),
		allow("RS256", "/a", auth(sign(t, jwt.SigningMethodRS256, k.rsa, jwt.MapClaims{"key": "rsa-key"})), "rsa"),
		deny("RS384 for RS256 consumer", "/a", auth(sign(t, jwt.SigningMethodRS384, k.rsa, jwt.MapClaims{"key": "rsa-key"})), failed),
		deny("RS256 by another key", "/a", auth(sign(t, jwt.SigningMethodRS256, mustRSA(t), jwt.MapClaims{"key": "rsa-key"})), failed),
		allow("PS256", "/a", auth(sign(t, jwt.SigningMethodPS256, k.rsa, jwt.MapClaims{"key": "pss-key"})), "pss"),
		allow("ES256", "/a", auth(sign(t, jwt.SigningMethodES256, k.ec, jwt.MapClaims{"key": "ec-key"})), "ec"),
		allow("EdDSA", "/a", auth(sign(t, jwt.SigningMethodEdDSA, k.ed, jwt.MapClaims{"key": "ed-key"})), "ed"),
		allow("base64 secret", "/a", auth(sign(t, jwt.SigningMethodHS512, []byte("raw\x00secret"), jwt.MapClaims{"key": "b64-key"})), "b64"),
		{name: "credential object", path: "/a", headers: auth(hs("cred-key", "cred-secret", nil)), status: 200,
			up: map[string]string{"X-Consumer-Username": "jack", "X-Credential-Identifier": "cred-1", "X-Consumer-Custom-Id": "j-1"}},
		{name: "forged consumer headers", path: "/a", headers: map[string]string{"Authorization": valid, "X-Consumer-Username": "admin", "X-Credential-Identifier": "x"}, status: 200,
			up: map[string]string{"X-Consumer-Username": "jack", "X-Credential-Identifier": "", "Authorization": valid}},
		{name: "hide header", path: "/hide", headers: auth("Bearer " + valid), status: 200, up: map[string]string{"Authorization": ""}},
		{name: "hide query", path: "/hide?a=1&jwt=" + valid + "&b=2", status: 200, upURI: "/hide?a=1&b=2"},
		{name: "hide cookie", path: "/hide", headers: map[string]string{"Cookie": "a=1; jwt=" + valid + "; b=x.y"}, status: 200, up: map[string]string{"Cookie": "a=1; b=x.y"}},
		{name: "hide only cookie", path: "/hide", headers: map[string]string{"Cookie": "jwt=" + valid}, status: 200, up: map[string]string{"Cookie": ""}},
		allow("custom header", "/custom", map[string]string{"X-JWT": hs("", "my-secret-key", jwt.MapClaims{"key": nil, "iss": "user-key"})}, "jack"),
		allow("custom query", "/custom?token="+hs("", "my-secret-key", jwt.MapClaims{"key": nil, "iss": "user-key"}), nil, "jack"),
		allow("custom cookie", "/custom", map[string]string{"Cookie": "tok=" + hs("", "my-secret-key", jwt.MapClaims{"key": nil, "iss": "user-key"})}, "jack"),
		{name: "custom claim name missing", path: "/custom", headers: map[string]string{"X-JWT": valid}, status: 401, body: noKey, challenge: `Bearer realm="api"`},
		{name: "default sources ignored on custom", path: "/custom?jwt=" + valid, headers: auth(valid), status: 401, body: missing, challenge: `Bearer realm="api"`},
		allow("anonymous on missing", "/anon", nil, "anon"),
		{name: "anonymous on bad token hides it", path: "/anon", headers: auth("Bearer " + hs("user-key", "wrong", nil)), status: 200,
			up: map[string]string{"X-Consumer-Username": "anon", "Authorization": ""}},
		allow("valid beats anonymous", "/anon", auth(valid), "jack"),
		deny("unknown anonymous consumer", "/ghost", nil, `{"message":"Invalid user authorization"}`),
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
			last := rec.Last()
			for k, v := range tc.up {
				if got := strings.Join(last.Header.Values(k), "; "); got != v {
					t.Errorf("upstream header %s = %q, want %q", k, got, v)
				}
			}
			if tc.upURI != "" && last.RequestURI != tc.upURI {
				t.Errorf("upstream URI %q, want %q", last.RequestURI, tc.upURI)
			}
		})
	}

	t.Run("duplicate key refused", func(t *testing.T) {
		r := g.Admin("PUT", "/apisix/admin/consumers", `{"username":"rose","plugins":{"jwt-auth":{"key":"user-key","secret":"x"}}}`)
		want := `{"error_msg":"duplicate key of plugin jwt-auth found with consumer: jack"}`
		if r.Status != 400 || strings.TrimSpace(r.Body) != want {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("secret never returned in plain text", func(t *testing.T) {
		for _, p := range []string{"/apisix/admin/consumers/jack", "/apisix/admin/consumers/jack/credentials/cred-1"} {
			r := g.Admin("GET", p, "")
			if r.Status != 200 || strings.Contains(r.Body, "my-secret-key") || strings.Contains(r.Body, "cred-secret") {
				t.Fatalf("GET %s: %d %s", p, r.Status, r.Body)
			}
		}
	})
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }

func testEnv(t testing.TB, confs map[string]string) *plugin.Env {
	cs := plugin.NewConsumers()
	for user, conf := range confs {
		c := &plugin.Consumer{Username: user}
		cs.AddConsumer(c)
		key, data, err := jwtauth.NewConsumer(json.RawMessage(conf))
		if err != nil {
			t.Fatal(err)
		}
		cs.Add(jwtauth.Name, key, &plugin.Credential{Consumer: c, Data: data})
	}
	return &plugin.Env{Consumers: cs}
}

func newReq(env *plugin.Env, h engine.Header) *plugin.Request {
	ctx := &engine.Ctx{W: &nopWriter{h: engine.Header{}}, Header: h}
	return &plugin.Request{Ctx: ctx, Env: env}
}

func TestStoreInCtx(t *testing.T) {
	env := testEnv(t, map[string]string{"jack": `{"key":"user-key","secret":"s"}`})
	tok := sign(t, jwt.SigningMethodHS256, []byte("s"), jwt.MapClaims{"key": "user-key", "extra": "v"})
	for _, store := range []bool{false, true} {
		t.Run(strconv.FormatBool(store), func(t *testing.T) {
			inst, err := jwtauth.New(json.RawMessage(`{"store_in_ctx":`+strconv.FormatBool(store)+`}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := newReq(env, engine.Header{"Authorization": {"Bearer " + tok}})
			inst.(plugin.Rewriter).Rewrite(r)
			if r.Consumer == nil {
				t.Fatal("not authenticated")
			}
			p, ok := r.Values[jwtauth.PayloadKey].(map[string]any)
			if ok != store || store && p["extra"] != "v" {
				t.Fatalf("payload %v (%v)", p, ok)
			}
		})
	}
}

func TestBadPublicKeyFailsClosed(t *testing.T) {
	k := genKeys(t)
	env := testEnv(t, map[string]string{
		"bad":   `{"key":"bad","algorithm":"RS256","public_key":"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}`,
		"wrong": `{"key":"wrong","algorithm":"RS256","public_key":` + jsonStr(k.ecPEM) + `}`,
	})
	inst, _ := jwtauth.New(json.RawMessage(`{}`), nil)
	for _, key := range []string{"bad", "wrong"} {
		tok := sign(t, jwt.SigningMethodRS256, k.rsa, jwt.MapClaims{"key": key})
		r := newReq(env, engine.Header{"Authorization": {tok}})
		inst.(plugin.Rewriter).Rewrite(r)
		if r.Consumer != nil || !r.Exited() {
			t.Fatalf("%s: accepted", key)
		}
	}
}

func FuzzRewrite(f *testing.F) {
	env := testEnv(f, map[string]string{"jack": `{"key":"user-key","secret":"s"}`})
	inst, _ := jwtauth.New(json.RawMessage(`{}`), nil)
	p := inst.(plugin.Rewriter)
	f.Add(sign(f, jwt.SigningMethodHS256, []byte("s"), jwt.MapClaims{"key": "user-key"}))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.W10.")
	f.Fuzz(func(t *testing.T, tok string) {
		r := newReq(env, engine.Header{"Authorization": {tok}})
		p.Rewrite(r)
		if r.Consumer != nil {
			// Only a correctly signed token may pass.
			_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte("s"), nil }, jwt.WithValidMethods([]string{"HS256"}))
			if err != nil {
				t.Fatalf("accepted %q: %v", tok, err)
			}
		}
	})
}

func BenchmarkJWTAuth(b *testing.B) {
	k := genKeys(b)
	env := testEnv(b, map[string]string{
		"jack": `{"key":"user-key","secret":"my-secret-key"}`,
		"rsa":  `{"key":"rsa-key","algorithm":"RS256","public_key":` + jsonStr(k.rsaPEM) + `}`,
	})
	inst, _ := jwtauth.New(json.RawMessage(`{}`), nil)
	p := inst.(plugin.Rewriter)
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name, tok string
		ok        bool
	}{
		{"HS256", sign(b, jwt.SigningMethodHS256, []byte("my-secret-key"), jwt.MapClaims{"key": "user-key", "exp": exp}), true},
		{"RS256", sign(b, jwt.SigningMethodRS256, k.rsa, jwt.MapClaims{"key": "rsa-key", "exp": exp}), true},
		{"bad signature", sign(b, jwt.SigningMethodHS256, []byte("x"), jwt.MapClaims{"key": "user-key", "exp": exp}), false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := engine.AcquireCtx()
			defer engine.ReleaseCtx(ctx)
			ctx.W = &nopWriter{h: engine.Header{}}
			ctx.Header = engine.Header{"Authorization": {"Bearer " + tc.tok}}
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
