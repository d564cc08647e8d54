package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// plJWT signs claims with HS256 and secret, as a client of jwt-auth would.
func plJWT(t *testing.T, claims map[string]any, secret string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signing := h + "." + enc.EncodeToString(p)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

// plHMAC builds an hmac-auth Authorization header (hmac-sha256) over
// "@request-target date", the way APISIX's docs sign.
func plHMAC(keyID, secret, method, uri, date string) string {
	s := keyID + "\n" + method + " " + uri + "\n" + "date: " + date + "\n"
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	return `Signature keyId="` + keyID + `",algorithm="hmac-sha256",headers="@request-target date",signature="` + sig + `"`
}

func plBasic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// plAuthService is a forward-auth service: "Bearer good" passes with
// X-User-ID, "Bearer anon" passes without it, anything else gets 401
// "denied" with X-Reason. It records the X-Forwarded-* it was sent.
type plAuthService struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newPlAuthService(t *testing.T) *plAuthService {
	a := &plAuthService{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Clone())
		a.mu.Unlock()
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			w.Header().Set("X-User-ID", "u1")
		case "Bearer anon":
		default:
			w.Header().Set("X-Reason", "bad")
			w.WriteHeader(401)
			w.Write([]byte("denied"))
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *plAuthService) last() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return http.Header{}
	}
	return a.seen[len(a.seen)-1]
}

// TestPluginsAuth drives key-auth, basic-auth, jwt-auth, hmac-auth,
// multi-auth, consumer-restriction and forward-auth through the binary.
func TestPluginsAuth(t *testing.T) {
	t.Parallel()
	g := startDefault(t, "")
	up := newPlUpstream(t, nil)
	authSvc := newPlAuthService(t)
	dead := newPlUpstream(t, nil)
	deadURL := dead.URL
	dead.Close()

	runPlRefused(t, g, []plRefused{
		{"key-auth consumer without key", "/apisix/admin/consumers", `{"username":"bad","plugins":{"key-auth":{}}}`,
			`invalid plugins configuration: failed to check the configuration of plugin key-auth err: property "key" is required`},
		{"key-auth header not a string", "", plRoute("/r", `"key-auth":{"header":1}`, up.addr()),
			`failed to check the configuration of plugin key-auth err: property "header" validation failed: wrong type: expected string, got number`},
		{"basic-auth consumer without password", "/apisix/admin/consumers", `{"username":"bad","plugins":{"basic-auth":{"username":"u"}}}`,
			`invalid plugins configuration: failed to check the configuration of plugin basic-auth err: property "password" is required`},
		{"basic-auth hide_credentials not boolean", "", plRoute("/r", `"basic-auth":{"hide_credentials":"x"}`, up.addr()),
			`failed to check the configuration of plugin basic-auth err: property "hide_credentials" validation failed: wrong type: expected boolean, got string`},
		{"jwt-auth HS256 without secret", "/apisix/admin/consumers", `{"username":"bad","plugins":{"jwt-auth":{"key":"k"}}}`,
			`invalid plugins configuration: failed to check the configuration of plugin jwt-auth err: property "secret" is required when using HS based algorithms`},
		{"jwt-auth secret not base64", "/apisix/admin/consumers", `{"username":"bad","plugins":{"jwt-auth":{"key":"k","secret":"!!","base64_secret":true}}}`,
			`invalid plugins configuration: failed to check the configuration of plugin jwt-auth err: base64_secret required but the secret is not in base64 format`},
		{"jwt-auth unknown claim", "", plRoute("/r", `"jwt-auth":{"claims_to_verify":["iat"]}`, up.addr()),
			`failed to check the configuration of plugin jwt-auth err: property "claims_to_verify" validation failed: failed to validate item 1: matches none of the enum values`},
		{"hmac-auth consumer without secret_key", "/apisix/admin/consumers", `{"username":"bad","plugins":{"hmac-auth":{"key_id":"k"}}}`,
			`invalid plugins configuration: failed to check the configuration of plugin hmac-auth err: property "secret_key" is required`},
		{"hmac-auth unknown algorithm", "", plRoute("/r", `"hmac-auth":{"allowed_algorithms":["md5"]}`, up.addr()),
			`failed to check the configuration of plugin hmac-auth err: property "allowed_algorithms" validation failed: failed to validate item 1: matches none of the enum values`},
		{"multi-auth one plugin", "", plRoute("/r", `"multi-auth":{"auth_plugins":[{"key-auth":{}}]}`, up.addr()),
			`failed to check the configuration of plugin multi-auth err: property "auth_plugins" validation failed: expect array to have at least 2 items`},
		{"multi-auth not an auth plugin", "", plRoute("/r", `"multi-auth":{"auth_plugins":[{"key-auth":{}},{"cors":{}}]}`, up.addr()),
			`failed to check the configuration of plugin multi-auth err: cors plugin is not supported`},
		{"multi-auth unknown plugin", "", plRoute("/r", `"multi-auth":{"auth_plugins":[{"key-auth":{}},{"nope":{}}]}`, up.addr()),
			`failed to check the configuration of plugin multi-auth err: nope plugin did not found`},
		{"multi-auth sub-plugin schema", "", plRoute("/r", `"multi-auth":{"auth_plugins":[{"key-auth":{"header":1}},{"basic-auth":{}}]}`, up.addr()),
			`failed to check the configuration of plugin multi-auth err: plugin key-auth check schema failed: property "header" validation failed: wrong type: expected string, got number`},
		{"consumer-restriction without lists", "", plRoute("/r", `"consumer-restriction":{}`, up.addr()),
			`failed to check the configuration of plugin consumer-restriction err: object matches none of the required: ["blacklist"] or ["whitelist"] or ["allowed_by_methods"]`},
		{"consumer-restriction bad type", "", plRoute("/r", `"consumer-restriction":{"type":"x","whitelist":["a"]}`, up.addr()),
			`failed to check the configuration of plugin consumer-restriction err: property "type" validation failed: matches none of the enum values`},
		{"forward-auth without uri", "", plRoute("/r", `"forward-auth":{}`, up.addr()),
			`failed to check the configuration of plugin forward-auth err: property "uri" is required`},
		{"forward-auth timeout 0", "", plRoute("/r", `"forward-auth":{"uri":"http://127.0.0.1:1","timeout":0}`, up.addr()),
			`failed to check the configuration of plugin forward-auth err: property "timeout" validation failed: expected 0 to be at least 1`},
	})

	// Consumers: jack has every credential and a custom_id; rose has a
	// key on the consumer and another on a credential object.
	plPut(t, g, "/apisix/admin/consumers", `{"username":"jack","labels":{"custom_id":"c-1"},"plugins":{
		"key-auth":{"key":"jack-key"},
		"basic-auth":{"username":"jack","password":"jack-pw"},
		"jwt-auth":{"key":"jack-jwt","secret":"jack-secret"},
		"hmac-auth":{"key_id":"jack-hmac","secret_key":"jack-hmac-secret"}}}`)
	plPut(t, g, "/apisix/admin/consumers", `{"username":"rose","plugins":{"key-auth":{"key":"rose-key"}}}`)
	plPut(t, g, "/apisix/admin/consumers/rose/credentials/r1", `{"plugins":{"key-auth":{"key":"rose-cred-key"}}}`)
	t.Run("refused/key-auth duplicate key", func(t *testing.T) {
		wantError(t, g.admin("PUT", "/apisix/admin/consumers", `{"username":"dup","plugins":{"key-auth":{"key":"jack-key"}}}`), 400,
			"duplicate key of plugin key-auth found with consumer: jack")
		wantError(t, g.admin("PUT", "/apisix/admin/consumers", `{"username":"dup","plugins":{"basic-auth":{"username":"jack","password":"x"}}}`), 400,
			"duplicate key of plugin basic-auth found with consumer: jack")
	})

	a := up.addr()
	plPut(t, g, "/apisix/admin/routes/key", plRoute("/auth/key", `"key-auth":{"hide_credentials":true}`, a))
	plPut(t, g, "/apisix/admin/routes/basic", plRoute("/auth/basic", `"basic-auth":{"realm":"shop"}`, a))
	plPut(t, g, "/apisix/admin/routes/jwt", plRoute("/auth/jwt", `"jwt-auth":{"claims_to_verify":["exp"]}`, a))
	plPut(t, g, "/apisix/admin/routes/hmac", plRoute("/auth/hmac", `"hmac-auth":{}`, a))
	plPut(t, g, "/apisix/admin/routes/multi", plRoute("/auth/multi", `"multi-auth":{"auth_plugins":[{"basic-auth":{}},{"key-auth":{}}]}`, a))
	plPut(t, g, "/apisix/admin/routes/cr", plRoute("/auth/cr", `"key-auth":{},"consumer-restriction":{"whitelist":["jack"]}`, a))
	plPut(t, g, "/apisix/admin/routes/cr-m", plRoute("/auth/cr-m",
		`"key-auth":{},"consumer-restriction":{"allowed_by_methods":[{"user":"rose","methods":["GET"]}],"rejected_code":418,"rejected_msg":"read only"}`, a))
	plPut(t, g, "/apisix/admin/routes/cr-none", plRoute("/auth/cr-none", `"consumer-restriction":{"whitelist":["jack"]}`, a))
	plPut(t, g, "/apisix/admin/routes/fwd", plRoute("/auth/fwd", fmt.Sprintf(
		`"forward-auth":{"uri":%q,"request_headers":["Authorization"],"upstream_headers":["X-User-ID"],"client_headers":["X-Reason"]}`, authSvc.URL), a))
	plPut(t, g, "/apisix/admin/routes/fwd-down", plRoute("/auth/fwd-down", fmt.Sprintf(`"forward-auth":{"uri":%q,"timeout":2000}`, deadURL), a))
	plPut(t, g, "/apisix/admin/routes/fwd-degrade", plRoute("/auth/fwd-degrade", fmt.Sprintf(`"forward-auth":{"uri":%q,"timeout":2000,"allow_degradation":true}`, deadURL), a))
	plSync(t, g)

	keyWWW := map[string]string{"WWW-Authenticate": `apikey realm="key"`}
	t.Run("key-auth", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "no key", path: "/auth/key", status: 401, wantBody: plJSON("message", "Missing API key in request"), wantHdr: keyWWW, up: up},
			{name: "unknown key", path: "/auth/key", hdr: map[string]string{"apikey": "nope"}, status: 401,
				wantBody: plJSON("message", "Invalid API key in request"), wantHdr: keyWWW, up: up},
			{name: "consumer key in header, hidden, forged identity overwritten", path: "/auth/key?x=1",
				hdr:    map[string]string{"apikey": "jack-key", "X-Consumer-Username": "forged", "X-Credential-Identifier": "forged"},
				status: 200, wantBody: plStr("upstream-body"), up: up, reach: true, upURI: "/auth/key?x=1",
				upHdr: map[string]string{"apikey": "", "X-Consumer-Username": "jack", "X-Consumer-Custom-ID": "c-1", "X-Credential-Identifier": ""}},
			{name: "credential key in query, hidden", path: "/auth/key?a=1&apikey=rose-cred-key&b=2",
				status: 200, up: up, reach: true, upURI: "/auth/key?a=1&b=2",
				upHdr: map[string]string{"X-Consumer-Username": "rose", "X-Credential-Identifier": "r1"}},
		})
	})

	basicWWW := map[string]string{"WWW-Authenticate": `Basic realm="shop"`}
	t.Run("basic-auth", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "no header", path: "/auth/basic", status: 401, wantBody: plJSON("message", "Missing authorization in request"), wantHdr: basicWWW, up: up},
			{name: "other scheme", path: "/auth/basic", hdr: map[string]string{"Authorization": "Bearer x"}, status: 401,
				wantBody: plJSON("message", "Invalid authorization in request"), wantHdr: basicWWW, up: up},
			{name: "wrong password", path: "/auth/basic", hdr: map[string]string{"Authorization": plBasic("jack", "nope")}, status: 401,
				wantBody: plJSON("message", "Invalid user authorization"), wantHdr: basicWWW, up: up},
			{name: "unknown user", path: "/auth/basic", hdr: map[string]string{"Authorization": plBasic("nobody", "jack-pw")}, status: 401,
				wantBody: plJSON("message", "Invalid user authorization"), up: up},
			{name: "valid, credentials kept", path: "/auth/basic", hdr: map[string]string{"Authorization": plBasic("jack", "jack-pw")},
				status: 200, up: up, reach: true,
				upHdr: map[string]string{"Authorization": plBasic("jack", "jack-pw"), "X-Consumer-Username": "jack"}},
		})
	})

	now := time.Now().Unix()
	good := plJWT(t, map[string]any{"key": "jack-jwt", "exp": now + 3600}, "jack-secret")
	jwtWWW := map[string]string{"WWW-Authenticate": `Bearer realm="jwt"`}
	t.Run("jwt-auth", func(t *testing.T) {
		bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
		runPlCases(t, g, []plCase{
			{name: "no token", path: "/auth/jwt", status: 401, wantBody: plJSON("message", "Missing JWT token in request"), wantHdr: jwtWWW, up: up},
			{name: "not a JWT", path: "/auth/jwt", hdr: bearer("abc"), status: 401, wantBody: plJSON("message", "JWT token invalid"), wantHdr: jwtWWW, up: up},
			{name: "no key claim", path: "/auth/jwt", hdr: bearer(plJWT(t, map[string]any{"exp": now + 60}, "jack-secret")), status: 401,
				wantBody: plJSON("message", "missing user key in JWT token"), up: up},
			{name: "unknown key", path: "/auth/jwt", hdr: bearer(plJWT(t, map[string]any{"key": "who", "exp": now + 60}, "jack-secret")), status: 401,
				wantBody: plJSON("message", "Invalid user key in JWT token"), up: up},
			{name: "wrong secret", path: "/auth/jwt", hdr: bearer(plJWT(t, map[string]any{"key": "jack-jwt", "exp": now + 60}, "other")), status: 401,
				wantBody: plJSON("message", "failed to verify jwt"), wantHdr: jwtWWW, up: up},
			{name: "expired", path: "/auth/jwt", hdr: bearer(plJWT(t, map[string]any{"key": "jack-jwt", "exp": now - 60}, "jack-secret")), status: 401,
				wantBody: plJSON("message", "failed to verify jwt"), up: up},
			{name: "exp required by claims_to_verify", path: "/auth/jwt", hdr: bearer(plJWT(t, map[string]any{"key": "jack-jwt"}, "jack-secret")), status: 401,
				wantBody: plJSON("message", "failed to verify jwt"), up: up},
			{name: "valid in header", path: "/auth/jwt", hdr: bearer(good), status: 200, up: up, reach: true,
				upHdr: map[string]string{"X-Consumer-Username": "jack", "Authorization": "Bearer " + good}},
			{name: "valid in query", path: "/auth/jwt?jwt=" + good, status: 200, up: up, reach: true,
				upHdr: map[string]string{"X-Consumer-Username": "jack"}},
			{name: "valid in cookie", path: "/auth/jwt", hdr: map[string]string{"Cookie": "a=b; jwt=" + good}, status: 200, up: up, reach: true},
		})
	})

	hmacWWW := map[string]string{"WWW-Authenticate": `hmac realm="hmac"`}
	t.Run("hmac-auth", func(t *testing.T) {
		date := time.Now().UTC().Format(http.TimeFormat)
		old := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
		cant := plJSON("message", "client request can't be validated")
		runPlCases(t, g, []plCase{
			{name: "no header", path: "/auth/hmac", status: 401,
				wantBody: plJSON("message", "client request can't be validated: missing Authorization header"), wantHdr: hmacWWW, up: up},
			{name: "not a signature", path: "/auth/hmac", hdr: map[string]string{"Authorization": "Basic abc"}, status: 401,
				wantBody: plJSON("message", "client request can't be validated: Authorization header does not start with 'Signature'"), wantHdr: hmacWWW, up: up},
			{name: "wrong secret", path: "/auth/hmac?a=1", hdr: map[string]string{"Date": date,
				"Authorization": plHMAC("jack-hmac", "other", "GET", "/auth/hmac?a=1", date)}, status: 401, wantBody: cant, wantHdr: hmacWWW, up: up},
			{name: "signed another target", path: "/auth/hmac?a=2", hdr: map[string]string{"Date": date,
				"Authorization": plHMAC("jack-hmac", "jack-hmac-secret", "GET", "/auth/hmac?a=1", date)}, status: 401, wantBody: cant, up: up},
			{name: "date outside clock skew", path: "/auth/hmac", hdr: map[string]string{"Date": old,
				"Authorization": plHMAC("jack-hmac", "jack-hmac-secret", "GET", "/auth/hmac", old)}, status: 401, wantBody: cant, up: up},
			{name: "unknown key id", path: "/auth/hmac", hdr: map[string]string{"Date": date,
				"Authorization": plHMAC("who", "jack-hmac-secret", "GET", "/auth/hmac", date)}, status: 401, wantBody: cant, up: up},
			{name: "valid", path: "/auth/hmac?a=1", hdr: map[string]string{"Date": date,
				"Authorization": plHMAC("jack-hmac", "jack-hmac-secret", "GET", "/auth/hmac?a=1", date)},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-Consumer-Username": "jack"}},
		})
	})

	t.Run("multi-auth", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "nothing", path: "/auth/multi", status: 401, wantBody: plJSON("message", "Authorization Failed"), up: up},
			{name: "bad basic and bad key", path: "/auth/multi", hdr: map[string]string{"Authorization": plBasic("jack", "x"), "apikey": "x"},
				status: 401, wantBody: plJSON("message", "Authorization Failed"), up: up},
			{name: "basic", path: "/auth/multi", hdr: map[string]string{"Authorization": plBasic("jack", "jack-pw")},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-Consumer-Username": "jack"}},
			{name: "key", path: "/auth/multi", hdr: map[string]string{"apikey": "rose-key"},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-Consumer-Username": "rose"}},
		})
	})

	t.Run("consumer-restriction", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "whitelisted", path: "/auth/cr", hdr: map[string]string{"apikey": "jack-key"}, status: 200, up: up, reach: true},
			{name: "not whitelisted", path: "/auth/cr", hdr: map[string]string{"apikey": "rose-key"}, status: 403,
				wantBody: plJSON("message", "The consumer_name is forbidden."), up: up},
			{name: "auth runs first", path: "/auth/cr", status: 401, wantBody: plJSON("message", "Missing API key in request"), up: up},
			{name: "method allowed", path: "/auth/cr-m", hdr: map[string]string{"apikey": "rose-key"}, status: 200, up: up, reach: true},
			{name: "method not allowed", method: "POST", path: "/auth/cr-m", hdr: map[string]string{"apikey": "rose-key"}, status: 418,
				wantBody: plJSON("message", "read only"), up: up},
			{name: "user without entry", method: "POST", path: "/auth/cr-m", hdr: map[string]string{"apikey": "jack-key"}, status: 200, up: up, reach: true},
			{name: "no consumer", path: "/auth/cr-none", status: 401,
				wantBody: plJSON("message", "The request is rejected, please check the consumer_name for this request"), up: up},
		})
	})

	t.Run("forward-auth", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "allowed, header copied upstream", path: "/auth/fwd?q=1", hdr: map[string]string{"Authorization": "Bearer good", "X-User-ID": "forged"},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-User-ID": "u1"},
				check: func(t *testing.T, _ resp, _ plReq) {
					h := authSvc.last()
					for k, v := range map[string]string{"X-Forwarded-Uri": "/auth/fwd?q=1", "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "Authorization": "Bearer good"} {
						if h.Get(k) != v {
							t.Errorf("auth service saw %s = %q, want %q", k, h.Get(k), v)
						}
					}
				}},
			{name: "allowed without the header, forged copy removed", path: "/auth/fwd", hdr: map[string]string{"Authorization": "Bearer anon", "X-User-ID": "forged"},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-User-ID": ""}},
			{name: "denied, status body and client header relayed", method: "POST", path: "/auth/fwd", hdr: map[string]string{"Authorization": "Bearer bad"},
				status: 401, wantBody: plStr("denied"), wantHdr: map[string]string{"X-Reason": "bad"}, up: up,
				check: func(t *testing.T, _ resp, _ plReq) {
					if m := authSvc.last().Get("X-Forwarded-Method"); m != "POST" {
						t.Errorf("X-Forwarded-Method %q", m)
					}
				}},
			{name: "service down", path: "/auth/fwd-down", status: 403, up: up},
			{name: "service down, degradation allowed", path: "/auth/fwd-degrade", status: 200, up: up, reach: true},
		})
	})
	if t.Failed() {
		t.Log(strings.TrimSpace(g.output()))
	}
}
