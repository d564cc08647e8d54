package e2e

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// plCookie returns the value of cookie name in a response's Set-Cookie.
func plCookie(r resp, name string) string {
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// TestPluginsSecurity drives ip-restriction, ua-restriction,
// referer-restriction, cors, csrf, uri-blocker, request-validation, real-ip
// and request-id through the binary.
func TestPluginsSecurity(t *testing.T) {
	t.Parallel()
	g := startDefault(t, "")
	up := newPlUpstream(t, nil)
	a := up.addr()

	runPlRefused(t, g, []plRefused{
		{"ip-restriction both lists", "", plRoute("/r", `"ip-restriction":{"whitelist":["1.2.3.4"],"blacklist":["1.1.1.1"]}`, a),
			`failed to check the configuration of plugin ip-restriction err: value should match only one schema, but matches both schemas 1 and 2`},
		{"ip-restriction bad address past the schema", "", plRoute("/r", `"ip-restriction":{"whitelist":["::1/129"]}`, a),
			`failed to check the configuration of plugin ip-restriction err: invalid ip address: ::1/129`},
		{"ip-restriction response_code out of range", "", plRoute("/r", `"ip-restriction":{"whitelist":["1.2.3.4"],"response_code":500}`, a),
			`failed to check the configuration of plugin ip-restriction err: property "response_code" validation failed: expected 500 to be at most 404`},
		{"ua-restriction bad regex", "", plRoute("/r", `"ua-restriction":{"denylist":["a("]}`, a),
			`failed to check the configuration of plugin ua-restriction err: pcre_compile() failed: missing ) in "a("`},
		{"ua-restriction both lists", "", plRoute("/r", `"ua-restriction":{"allowlist":["a"],"denylist":["b"]}`, a),
			`failed to check the configuration of plugin ua-restriction err: value should match only one schema, but matches both schemas 1 and 2`},
		{"referer-restriction both lists", "", plRoute("/r", `"referer-restriction":{"whitelist":["a.com"],"blacklist":["b.com"]}`, a),
			`failed to check the configuration of plugin referer-restriction err: value should match only one schema, but matches both schemas 1 and 2`},
		{"cors credential with star", "", plRoute("/r", `"cors":{"allow_credential":true}`, a),
			`failed to check the configuration of plugin cors err: you can not set '*' for other option when 'allow_credential' is true`},
		{"cors bad origin", "", plRoute("/r", `"cors":{"allow_origins":"foo"}`, a),
			`failed to check the configuration of plugin cors err: property "allow_origins" validation failed: failed to match pattern "^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$" with "foo"`},
		{"csrf without key", "", plRoute("/r", `"csrf":{}`, a),
			`failed to check the configuration of plugin csrf err: property "key" is required`},
		{"csrf expires not integer", "", plRoute("/r", `"csrf":{"key":"k","expires":"x"}`, a),
			`failed to check the configuration of plugin csrf err: property "expires" validation failed: wrong type: expected integer, got string`},
		{"uri-blocker bad regex", "", plRoute("/r", `"uri-blocker":{"block_rules":[".+("]}`, a),
			`failed to check the configuration of plugin uri-blocker err: pcre_compile() failed: missing ) in ".+("`},
		{"uri-blocker without rules", "", plRoute("/r", `"uri-blocker":{}`, a),
			`failed to check the configuration of plugin uri-blocker err: property "block_rules" is required`},
		{"request-validation without schema", "", plRoute("/r", `"request-validation":{}`, a),
			`failed to check the configuration of plugin request-validation err: object matches none of the required: ["header_schema"] or ["body_schema"]`},
		{"request-validation bad schema type", "", plRoute("/r", `"request-validation":{"body_schema":{"type":"test"}}`, a),
			`failed to check the configuration of plugin request-validation err: invalid JSON type: test`},
		{"real-ip without source", "", plRoute("/r", `"real-ip":{}`, a),
			`failed to check the configuration of plugin real-ip err: property "source" is required`},
		{"real-ip bad trusted address", "", plRoute("/r", `"real-ip":{"source":"http_x_forwarded_for","trusted_addresses":["::1/129"]}`, a),
			`failed to check the configuration of plugin real-ip err: invalid ip address: ::1/129`},
		{"request-id unknown algorithm", "", plRoute("/r", `"request-id":{"algorithm":"x"}`, a),
			`failed to check the configuration of plugin request-id err: property "algorithm" validation failed: matches none of the enum values`},
		{"request-id range_id too short", "", plRoute("/r", `"request-id":{"algorithm":"range_id","range_id":{"length":5}}`, a),
			`failed to check the configuration of plugin request-id err: property "range_id" validation failed: property "length" validation failed: expected 5 to be at least 6`},
	})

	plPut(t, g, "/apisix/admin/consumers", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}}`)
	for id, r := range map[string]string{
		"ip-deny":  plRoute("/sec/ip-deny", `"ip-restriction":{"blacklist":["127.0.0.0/8"]}`, a),
		"ip-allow": plRoute("/sec/ip-allow", `"ip-restriction":{"whitelist":["127.0.0.1","2001:db8::/32"]}`, a),
		"ip-10":    plRoute("/sec/ip-10", `"ip-restriction":{"whitelist":["10.0.0.0/8"],"message":"go away","response_code":404}`, a),
		"ua-deny":  plRoute("/sec/ua-deny", `"ua-restriction":{"denylist":["my-bot1","(Baiduspider)/(\\d+)\\.(\\d+)"]}`, a),
		"ua-allow": plRoute("/sec/ua-allow", `"ua-restriction":{"allowlist":["^curl/"],"bypass_missing":true,"message":"curl only"}`, a),
		"ref":      plRoute("/sec/ref", `"referer-restriction":{"whitelist":["*.example.com","example.com"]}`, a),
		"ref-deny": plRoute("/sec/ref-deny", `"referer-restriction":{"blacklist":["evil.com"],"bypass_missing":true,"message":"no"}`, a),
		"cors": plRoute("/sec/cors", `"key-auth":{},"cors":{"allow_origins":"http://a.com,http://b.com","allow_methods":"GET,POST",
			"allow_headers":"X-Foo","expose_headers":"X-Bar","max_age":50,"allow_credential":true}`, a),
		"cors-star": plRoute("/sec/cors-star", `"cors":{}`, a),
		"csrf":      plRoute("/sec/csrf", `"csrf":{"key":"csrf-key"}`, a),
		"ub":        plRoute("/sec/ub/*", `"uri-blocker":{"block_rules":["^/sec/ub/admin","select.+from"],"rejected_msg":"blocked","case_insensitive":true}`, a),
		"ub-code":   plRoute("/sec/ub2/*", `"uri-blocker":{"block_rules":["\\.php$"],"rejected_code":410}`, a),
		"rv": plRoute("/sec/rv", `"request-validation":{"header_schema":{"type":"object","required":["x-tenant"]},
			"body_schema":{"type":"object","required":["item"],"properties":{"item":{"type":"string"},"qty":{"type":"integer","minimum":1}}},
			"rejected_code":422}`, a),
		"rv-msg":    plRoute("/sec/rv-msg", `"request-validation":{"body_schema":{"type":"object","required":["item"]},"rejected_msg":"bad order"}`, a),
		"realip":    plRoute("/sec/realip", `"real-ip":{"source":"http_x_forwarded_for","trusted_addresses":["127.0.0.1"]},"ip-restriction":{"blacklist":["203.0.113.0/24"]}`, a),
		"realip-nt": plRoute("/sec/realip-nt", `"real-ip":{"source":"http_x_forwarded_for"},"ip-restriction":{"blacklist":["203.0.113.0/24"]}`, a),
		"rid":       plRoute("/sec/rid", `"request-id":{}`, a),
		"rid-nano":  plRoute("/sec/rid-nano", `"request-id":{"header_name":"X-Trace-Id","algorithm":"nanoid","include_in_response":false}`, a),
		"rid-401":   plRoute("/sec/rid-401", `"request-id":{},"key-auth":{}`, a),
	} {
		plPut(t, g, "/apisix/admin/routes/"+id, r)
	}
	plSync(t, g)

	denied := plJSON("message", "Your IP address is not allowed")
	t.Run("ip-restriction", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "blacklisted", path: "/sec/ip-deny", status: 403, wantBody: denied, wantHdr: map[string]string{"Content-Type": "application/json"}, up: up},
			{name: "whitelisted", path: "/sec/ip-allow", status: 200, up: up, reach: true},
			{name: "not whitelisted, custom message and code", path: "/sec/ip-10", status: 404, wantBody: plJSON("message", "go away"), up: up},
			{name: "X-Forwarded-For does not bypass", path: "/sec/ip-10", hdr: map[string]string{"X-Forwarded-For": "10.1.1.1"}, status: 404, up: up},
			// 127.0.0.1 is a trusted real_ip_from peer by default (APISIX's
			// config), so its X-Real-IP is the client address.
			{name: "X-Real-IP from the trusted peer counts", path: "/sec/ip-10", hdr: map[string]string{"X-Real-IP": "10.1.1.1"}, status: 200, up: up, reach: true},
		})
	})

	notAllowed := plJSON("message", "Not allowed")
	t.Run("ua-restriction", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "literal rule", path: "/sec/ua-deny", hdr: map[string]string{"User-Agent": "x my-bot1 y"}, status: 403, wantBody: notAllowed, up: up},
			{name: "regex rule", path: "/sec/ua-deny", hdr: map[string]string{"User-Agent": "Baiduspider/3.0"}, status: 403, wantBody: notAllowed, up: up},
			{name: "no match", path: "/sec/ua-deny", hdr: map[string]string{"User-Agent": "Baiduspider/x"}, status: 200, up: up, reach: true},
			{name: "missing User-Agent", path: "/sec/ua-deny", hdr: map[string]string{"User-Agent": ""}, status: 403, wantBody: notAllowed, up: up},
			{name: "allowlisted", path: "/sec/ua-allow", hdr: map[string]string{"User-Agent": "curl/8.0"}, status: 200, up: up, reach: true},
			{name: "not allowlisted", path: "/sec/ua-allow", hdr: map[string]string{"User-Agent": "Mozilla curl/8.0"}, status: 403, wantBody: plJSON("message", "curl only"), up: up},
			{name: "missing, bypassed", path: "/sec/ua-allow", hdr: map[string]string{"User-Agent": ""}, status: 200, up: up, reach: true},
		})
	})

	refDenied := plJSON("message", "Your referer host is not allowed")
	t.Run("referer-restriction", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "subdomain", path: "/sec/ref", hdr: map[string]string{"Referer": "https://a.example.com/page"}, status: 200, up: up, reach: true},
			{name: "bare domain with port", path: "/sec/ref", hdr: map[string]string{"Referer": "http://example.com:8080/"}, status: 200, up: up, reach: true},
			{name: "other host", path: "/sec/ref", hdr: map[string]string{"Referer": "http://evil.com/"}, status: 403, wantBody: refDenied, up: up},
			{name: "suffix without dot", path: "/sec/ref", hdr: map[string]string{"Referer": "http://badexample.com/"}, status: 403, wantBody: refDenied, up: up},
			{name: "userinfo trick", path: "/sec/ref", hdr: map[string]string{"Referer": "http://a.example.com@evil.com/"}, status: 403, up: up},
			{name: "missing", path: "/sec/ref", status: 403, wantBody: refDenied, up: up},
			{name: "blacklisted", path: "/sec/ref-deny", hdr: map[string]string{"Referer": "http://evil.com/x"}, status: 403, wantBody: plJSON("message", "no"), up: up},
			{name: "missing, bypassed", path: "/sec/ref-deny", status: 200, up: up, reach: true},
		})
	})

	corsHdr := map[string]string{
		"Access-Control-Allow-Origin":      "http://b.com",
		"Access-Control-Allow-Methods":     "GET,POST",
		"Access-Control-Allow-Headers":     "X-Foo",
		"Access-Control-Expose-Headers":    "X-Bar",
		"Access-Control-Max-Age":           "50",
		"Access-Control-Allow-Credentials": "true",
		"Vary":                             "Origin",
	}
	t.Run("cors", func(t *testing.T) {
		noCORS := map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Vary": "Origin"}
		runPlCases(t, g, []plCase{
			{name: "preflight answered before auth", method: "OPTIONS", path: "/sec/cors",
				hdr: map[string]string{"Origin": "http://b.com", "Access-Control-Request-Method": "POST"}, status: 200, wantBody: plStr(""), wantHdr: corsHdr, up: up},
			{name: "auth rejection carries the headers", path: "/sec/cors", hdr: map[string]string{"Origin": "http://b.com"}, status: 401, wantHdr: corsHdr, up: up},
			{name: "proxied response carries the headers", path: "/sec/cors", hdr: map[string]string{"Origin": "http://b.com", "apikey": "jack-key"},
				status: 200, wantHdr: corsHdr, up: up, reach: true, upHdr: map[string]string{"Origin": "http://b.com"}},
			{name: "origin not listed", path: "/sec/cors", hdr: map[string]string{"Origin": "http://evil.com", "apikey": "jack-key"}, status: 200, wantHdr: noCORS, up: up, reach: true},
			{name: "star", path: "/sec/cors-star", hdr: map[string]string{"Origin": "http://any.com"}, status: 200, up: up, reach: true,
				wantHdr: map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*", "Access-Control-Max-Age": "5", "Vary": "", "Access-Control-Allow-Credentials": ""}},
		})
	})

	t.Run("csrf", func(t *testing.T) {
		first := g.plDo("GET", "/sec/csrf", "", nil)
		if first.Status != 200 {
			t.Fatalf("GET: %d %s", first.Status, first.Body)
		}
		sc := first.Header.Get("Set-Cookie")
		if !regexp.MustCompile(`^apisix-csrf-token=[A-Za-z0-9+/=]+;path=/;SameSite=Lax;Expires=\w{3}, \d\d-\w{3}-\d{2,4} \d\d:\d\d:\d\d GMT$`).MatchString(sc) {
			t.Fatalf("Set-Cookie %q", sc)
		}
		tok := plCookie(first, "apisix-csrf-token")
		other := plCookie(g.plDo("GET", "/sec/csrf", "", nil), "apisix-csrf-token")
		if other == "" || other == tok {
			t.Fatalf("tokens %q and %q", tok, other)
		}
		cookie := "apisix-csrf-token=" + tok
		runPlCases(t, g, []plCase{
			{name: "HEAD passes", method: "HEAD", path: "/sec/csrf", status: 200, up: up, reach: true},
			{name: "no header", method: "POST", path: "/sec/csrf", hdr: map[string]string{"Cookie": cookie}, status: 401,
				wantBody: plJSON("error_msg", "no csrf token in headers"), up: up,
				check: func(t *testing.T, r resp, _ plReq) {
					if plCookie(r, "apisix-csrf-token") == "" {
						t.Error("a rejection must carry a fresh token")
					}
				}},
			{name: "no cookie", method: "POST", path: "/sec/csrf", hdr: map[string]string{"apisix-csrf-token": tok}, status: 401,
				wantBody: plJSON("error_msg", "no csrf cookie"), up: up},
			{name: "mismatch", method: "POST", path: "/sec/csrf", hdr: map[string]string{"apisix-csrf-token": other, "Cookie": cookie}, status: 401,
				wantBody: plJSON("error_msg", "csrf token mismatch"), up: up},
			{name: "forged token", method: "PUT", path: "/sec/csrf", hdr: map[string]string{"apisix-csrf-token": "Zm9v", "Cookie": "apisix-csrf-token=Zm9v"}, status: 401,
				wantBody: plJSON("error_msg", "Failed to verify the csrf token signature"), up: up},
			{name: "valid", method: "POST", path: "/sec/csrf", body: "x=1", hdr: map[string]string{"apisix-csrf-token": tok, "Cookie": cookie},
				status: 200, up: up, reach: true, upBody: plStr("x=1")},
		})
	})

	blocked := plJSON("error_msg", "blocked")
	t.Run("uri-blocker", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "plain", path: "/sec/ub/admin/x", status: 403, wantBody: blocked, up: up},
			{name: "case insensitive", path: "/sec/ub/ADMIN", status: 403, wantBody: blocked, up: up},
			{name: "dot segments", path: "/sec/ub/x/../admin", status: 403, wantBody: blocked, up: up},
			{name: "percent-encoded", path: "/sec/ub/%61dmin", status: 403, wantBody: blocked, up: up},
			{name: "double-encoded", path: "/sec/ub/%2561dmin", status: 403, wantBody: blocked, up: up},
			{name: "query string", path: "/sec/ub/list?q=SELECT+name+FROM+users", status: 403, wantBody: blocked, up: up},
			{name: "allowed", path: "/sec/ub/list?q=1", status: 200, up: up, reach: true, upURI: "/sec/ub/list?q=1"},
			{name: "code without message", path: "/sec/ub2/index.php", status: 410, bodyHas: "<title>410", up: up},
			{name: "code rule not matching", path: "/sec/ub2/index.php5", status: 200, up: up, reach: true},
		})
	})

	t.Run("request-validation", func(t *testing.T) {
		jsonHdr := map[string]string{"x-tenant": "t1", "Content-Type": "application/json"}
		runPlCases(t, g, []plCase{
			{name: "header missing", method: "POST", path: "/sec/rv", body: `{"item":"a"}`, hdr: map[string]string{"Content-Type": "application/json"},
				status: 422, wantBody: plStr(`property "x-tenant" is required`), up: up},
			{name: "body field missing", method: "POST", path: "/sec/rv", body: `{"qty":2}`, hdr: jsonHdr,
				status: 422, wantBody: plStr(`property "item" is required`), up: up},
			{name: "body field type", method: "POST", path: "/sec/rv", body: `{"item":1}`, hdr: jsonHdr,
				status: 422, wantBody: plStr(`property "item" validation failed: wrong type: expected string, got number`), up: up},
			{name: "body field minimum", method: "POST", path: "/sec/rv", body: `{"item":"a","qty":0}`, hdr: jsonHdr,
				status: 422, wantBody: plStr(`property "qty" validation failed: expected 0 to be at least 1`), up: up},
			{name: "body not JSON", method: "POST", path: "/sec/rv", body: `notjson`, hdr: jsonHdr, status: 422, up: up},
			{name: "no body", method: "POST", path: "/sec/rv", hdr: jsonHdr, status: 422, bodyHas: "<title>422", up: up},
			{name: "form body, validated as strings", method: "POST", path: "/sec/rv", body: "item=a&qty=3",
				hdr:    map[string]string{"x-tenant": "t1", "Content-Type": "application/x-www-form-urlencoded"},
				status: 422, wantBody: plStr(`property "qty" validation failed: wrong type: expected integer, got string`), up: up},
			{name: "valid, body forwarded as sent", method: "POST", path: "/sec/rv", body: `{"item":"a", "qty":2}`, hdr: jsonHdr,
				status: 200, up: up, reach: true, upBody: plStr(`{"item":"a", "qty":2}`)},
			{name: "rejected_msg", method: "POST", path: "/sec/rv-msg", body: `{}`, hdr: map[string]string{"Content-Type": "application/json"},
				status: 400, wantBody: plStr("bad order"), up: up},
		})
	})

	t.Run("real-ip", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "trusted peer, client blacklisted", path: "/sec/realip", hdr: map[string]string{"X-Forwarded-For": "203.0.113.7"},
				status: 403, wantBody: denied, up: up},
			{name: "trusted peer, right-most address", path: "/sec/realip", hdr: map[string]string{"X-Forwarded-For": "203.0.113.7, 9.9.9.9"},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-Real-IP": "9.9.9.9"}},
			{name: "garbage ignored", path: "/sec/realip", hdr: map[string]string{"X-Forwarded-For": "not-an-ip"},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-Real-IP": "127.0.0.1"}},
			{name: "no trusted_addresses trusts nobody", path: "/sec/realip-nt", hdr: map[string]string{"X-Forwarded-For": "203.0.113.7"},
				status: 200, up: up, reach: true, upHdr: map[string]string{"X-Real-IP": "127.0.0.1"}},
		})
	})

	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	nano := regexp.MustCompile(`^[-_0-9a-zA-Z]{21}$`)
	t.Run("request-id", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "generated uuid, same up and down", path: "/sec/rid", status: 200, up: up, reach: true,
				check: func(t *testing.T, r resp, got plReq) {
					id := r.Header.Get("X-Request-Id")
					if !uuid4.MatchString(id) || got.Header.Get("X-Request-Id") != id {
						t.Errorf("response id %q, upstream id %q", id, got.Header.Get("X-Request-Id"))
					}
				}},
			{name: "incoming id kept", path: "/sec/rid", hdr: map[string]string{"X-Request-Id": "abc-1"}, status: 200,
				wantHdr: map[string]string{"X-Request-Id": "abc-1"}, up: up, reach: true, upHdr: map[string]string{"X-Request-Id": "abc-1"}},
			{name: "nanoid, custom header, not in response", path: "/sec/rid-nano", status: 200,
				wantHdr: map[string]string{"X-Trace-Id": "", "X-Request-Id": ""}, up: up, reach: true,
				check: func(t *testing.T, _ resp, got plReq) {
					if id := got.Header.Get("X-Trace-Id"); !nano.MatchString(id) {
						t.Errorf("upstream X-Trace-Id %q", id)
					}
				}},
			{name: "on a gateway rejection too", path: "/sec/rid-401", status: 401, up: up,
				check: func(t *testing.T, r resp, _ plReq) {
					if id := r.Header.Get("X-Request-Id"); !uuid4.MatchString(id) {
						t.Errorf("X-Request-Id %q", id)
					}
				}},
		})
		seen := map[string]bool{}
		for i := 0; i < 20; i++ {
			seen[g.plDo("GET", "/sec/rid", "", nil).Header.Get("X-Request-Id")] = true
		}
		if len(seen) != 20 {
			t.Errorf("20 requests got %d distinct ids", len(seen))
		}
	})
	if t.Failed() {
		t.Log(strings.TrimSpace(g.output()))
	}
}
