package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testpki"
)

// akCert returns a PEM certificate and PKCS#8 key for the given DNS
// names, generated at test time so no key material lives in the repo.
func akCert(t testing.TB, names ...string) (certPEM, keyPEM string) {
	c := testpki.SelfSigned(t, names...)
	return c.CertPEM(), c.KeyPKCS8PEM()
}

// jstr encodes s as a JSON string literal.
func akStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// wantStatus fails unless r has the given status.
func akStatus(t *testing.T, r resp, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
}

// value returns the "value" object of an envelope.
func akValue(t *testing.T, r resp) map[string]any {
	t.Helper()
	v, ok := r.JSON(t)["value"].(map[string]any)
	if !ok {
		t.Fatalf("no value object in %s", r.Body)
	}
	return v
}

// num returns m[k] as a number, failing if it is not one.
func akNum(t *testing.T, m map[string]any, k string) float64 {
	t.Helper()
	f, ok := m[k].(float64)
	if !ok {
		t.Fatalf("%s is %T (%v), want a number", k, m[k], m[k])
	}
	return f
}

// listOf returns the list and total of a list envelope.
func akList(t *testing.T, r resp) ([]map[string]any, int) {
	t.Helper()
	akStatus(t, r, 200)
	m := r.JSON(t)
	raw, ok := m["list"].([]any)
	if !ok {
		t.Fatalf("list is %T in %s", m["list"], r.Body)
	}
	var out []map[string]any
	for _, x := range raw {
		out = append(out, x.(map[string]any))
	}
	return out, int(akNum(t, m, "total"))
}

const akProto = `syntax = "proto3";
package helloworld;
service Greeter { rpc SayHello (HelloRequest) returns (HelloReply) {} }
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }`

// akKind describes one resource kind for the generic lifecycle test.
type akKind struct {
	name     string
	coll     string // collection path under /apisix/admin
	id       string // id segment used for PUT
	key      string // expected envelope key
	wantID   any    // expected value.id (nil: must be absent)
	create   string // body of the first PUT
	replace  string // body of the second PUT
	postMsg  string // "" when POST is allowed, else the 405 message
	patch    string // whole-object PATCH body ("" when PATCH is 405)
	patchMsg string // the 405 message when PATCH is not allowed
	patchChk func(t *testing.T, v map[string]any)
	subPath  string // sub-path PATCH (relative to the item)
	subBody  string
	subChk   func(t *testing.T, v map[string]any)
}

func TestAdminKindsLifecycle(t *testing.T) {
	g := startDefault(t, "")
	cert, key := akCert(t, "a.test")
	akStatus(t, g.admin("PUT", "/apisix/admin/consumers/owner", `{"username":"owner"}`), 201)

	cases := []akKind{
		{
			name: "routes", coll: "/routes", id: "r1", key: "/apisix/routes/r1", wantID: "r1",
			create:  `{"uri":"/a","upstream":` + upstreamBody + `}`,
			replace: `{"uri":"/b","name":"rb","upstream":` + upstreamBody + `}`,
			patch:   `{"desc":"patched","upstream":{"nodes":{"127.0.0.1:1981":2}}}`,
			patchChk: func(t *testing.T, v map[string]any) {
				nodes := v["upstream"].(map[string]any)["nodes"].(map[string]any)
				if v["desc"] != "patched" || v["uri"] != "/b" || len(nodes) != 2 {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "upstream/nodes", subBody: `{"127.0.0.1:1982":1}`,
			subChk: func(t *testing.T, v map[string]any) {
				nodes := v["upstream"].(map[string]any)["nodes"].(map[string]any)
				if len(nodes) != 1 || nodes["127.0.0.1:1982"] == nil {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
		{
			name: "services", coll: "/services", id: "s1", key: "/apisix/services/s1", wantID: "s1",
			create: `{"name":"s1"}`, replace: `{"name":"s1b","upstream":` + upstreamBody + `}`,
			patch: `{"desc":"d"}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if v["desc"] != "d" || v["name"] != "s1b" {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "name", subBody: `"s2"`,
			subChk: func(t *testing.T, v map[string]any) {
				if v["name"] != "s2" {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
		{
			name: "upstreams", coll: "/upstreams", id: "u1", key: "/apisix/upstreams/u1", wantID: "u1",
			create:  upstreamBody,
			replace: `{"type":"chash","key":"remote_addr","nodes":{"127.0.0.1:1980":1}}`,
			patch:   `{"nodes":{"127.0.0.1:1981":2}}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if len(v["nodes"].(map[string]any)) != 2 || v["type"] != "chash" {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "nodes", subBody: `[{"host":"127.0.0.1","port":1980,"weight":1}]`,
			subChk: func(t *testing.T, v map[string]any) {
				if _, ok := v["nodes"].([]any); !ok {
					t.Fatalf("map->array must replace: %v", v)
				}
			},
		},
		{
			name: "consumers", coll: "/consumers", id: "jack", key: "/apisix/consumers/jack", wantID: nil,
			create: `{"username":"jack"}`, replace: `{"username":"jack","desc":"d"}`,
			postMsg: "not supported `POST` method for consumer", patchMsg: "not supported `PATCH` method for consumer",
		},
		{
			name: "credentials", coll: "/consumers/owner/credentials", id: "c1", key: "/apisix/consumers/owner/credentials/c1", wantID: "c1",
			create: `{"plugins":{}}`, replace: `{"plugins":{},"desc":"d"}`,
			postMsg: "not supported `POST` method for credential", patchMsg: "not supported `PATCH` method for credential",
		},
		{
			name: "consumer_groups", coll: "/consumer_groups", id: "g1", key: "/apisix/consumer_groups/g1", wantID: "g1",
			create: `{"plugins":{}}`, replace: `{"plugins":{},"desc":"x"}`,
			postMsg: "not supported `POST` method for consumer group",
			patch:   `{"labels":{"a":"b"}}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if v["desc"] != "x" || v["labels"] == nil {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "desc", subBody: `"z"`,
			subChk: func(t *testing.T, v map[string]any) {
				if v["desc"] != "z" {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
		{
			name: "ssls", coll: "/ssls", id: "1", key: "/apisix/ssls/1", wantID: "1",
			create:  `{"cert":` + akStr(cert) + `,"key":` + akStr(key) + `,"snis":["a.test"]}`,
			replace: `{"cert":` + akStr(cert) + `,"key":` + akStr(key) + `,"snis":["a.test","b.test"]}`,
			patch:   `{"labels":{"env":"prod"}}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if len(v["snis"].([]any)) != 2 || v["labels"] == nil {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "snis", subBody: `["c.test"]`,
			subChk: func(t *testing.T, v map[string]any) {
				if s := v["snis"].([]any); len(s) != 1 || s[0] != "c.test" {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
		{
			name: "global_rules", coll: "/global_rules", id: "1", key: "/apisix/global_rules/1", wantID: "1",
			create: `{"plugins":{}}`, replace: `{"plugins":{}}`,
			postMsg: "not supported `POST` method for global rule",
			patch:   `{"plugins":{}}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if v["plugins"] == nil {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "plugins", subBody: `{}`,
			subChk: func(t *testing.T, v map[string]any) {},
		},
		{
			name: "plugin_configs", coll: "/plugin_configs", id: "pc1", key: "/apisix/plugin_configs/pc1", wantID: "pc1",
			create: `{"plugins":{}}`, replace: `{"plugins":{},"name":"n"}`,
			postMsg: "not supported `POST` method for plugin config",
			patch:   `{"desc":"d"}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if v["desc"] != "d" || v["name"] != "n" {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "name", subBody: `"m"`,
			subChk: func(t *testing.T, v map[string]any) {
				if v["name"] != "m" {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
		{
			name: "protos", coll: "/protos", id: "p1", key: "/apisix/protos/p1", wantID: "p1",
			create: `{"content":` + akStr(akProto) + `}`, replace: `{"content":` + akStr(akProto) + `,"name":"hello"}`,
			patchMsg: "not supported `PATCH` method for proto",
		},
		{
			name: "secrets vault", coll: "/secrets/vault", id: "v1", key: "/apisix/secrets/vault/v1", wantID: "vault/v1",
			create:  `{"uri":"http://127.0.0.1:8200","prefix":"kv/apisix","token":"root"}`,
			replace: `{"uri":"http://127.0.0.1:8200","prefix":"kv/apisix","token":"root2"}`,
			postMsg: "not supported `POST` method for secret",
			patch:   `{"namespace":"ns"}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if v["namespace"] != "ns" || v["token"] != "root2" {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "token", subBody: `"unknown"`,
			subChk: func(t *testing.T, v map[string]any) {
				if v["token"] != "unknown" {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
		{
			name: "secrets aws", coll: "/secrets/aws", id: "a1", key: "/apisix/secrets/aws/a1", wantID: "aws/a1",
			create:  `{"access_key_id":"ak","secret_access_key":"sk"}`,
			replace: `{"access_key_id":"ak2","secret_access_key":"sk"}`,
			postMsg: "not supported `POST` method for secret",
			patch:   `{"region":"eu-west-1"}`,
			patchChk: func(t *testing.T, v map[string]any) {
				if v["region"] != "eu-west-1" || v["access_key_id"] != "ak2" {
					t.Fatalf("merge: %v", v)
				}
			},
			subPath: "session_token", subBody: `"st"`,
			subChk: func(t *testing.T, v map[string]any) {
				if v["session_token"] != "st" {
					t.Fatalf("sub-path: %v", v)
				}
			},
		},
	}
	const base = "/apisix/admin"
	created := map[string]map[string]any{}

	t.Run("create", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := g.admin("PUT", base+c.coll+"/"+c.id, c.create)
				akStatus(t, r, 201)
				m := r.JSON(t)
				if m["key"] != c.key {
					t.Fatalf("key %v, want %s", m["key"], c.key)
				}
				if _, ok := m["createdIndex"]; ok {
					t.Fatalf("PUT envelope must not carry indexes: %s", r.Body)
				}
				v := akValue(t, r)
				if v["id"] != c.wantID {
					t.Fatalf("value.id %#v, want %#v", v["id"], c.wantID)
				}
				akNum(t, v, "create_time")
				akNum(t, v, "update_time")
				created[c.name] = v
				if r.Header.Get("X-API-VERSION") != "v3" || r.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("headers %v", r.Header)
				}

				r = g.admin("GET", base+c.coll+"/"+c.id, "")
				akStatus(t, r, 200)
				m = r.JSON(t)
				if m["key"] != c.key || akNum(t, m, "createdIndex") != akNum(t, m, "modifiedIndex") {
					t.Fatalf("get: %s", r.Body)
				}
			})
		}
	})

	// One sleep for all kinds, so that update_time visibly moves on replace.
	time.Sleep(1100 * time.Millisecond)

	t.Run("replace", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := g.admin("PUT", base+c.coll+"/"+c.id, c.replace)
				akStatus(t, r, 200)
				v := akValue(t, r)
				old := created[c.name]
				if old == nil {
					t.Skip("create failed")
				}
				if akNum(t, v, "create_time") != akNum(t, old, "create_time") {
					t.Fatalf("create_time changed on replace: %v -> %v", old["create_time"], v["create_time"])
				}
				if akNum(t, v, "update_time") <= akNum(t, old, "update_time") {
					t.Fatalf("update_time not refreshed: %v -> %v", old["update_time"], v["update_time"])
				}
				r = g.admin("GET", base+c.coll+"/"+c.id, "")
				m := r.JSON(t)
				if akNum(t, m, "modifiedIndex") <= akNum(t, m, "createdIndex") {
					t.Fatalf("modifiedIndex must move past createdIndex: %s", r.Body)
				}
			})
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				list, total := akList(t, g.admin("GET", base+c.coll, ""))
				if total != len(list) || total < 1 {
					t.Fatalf("total %d, list %d", total, len(list))
				}
				found := false
				for _, it := range list {
					if it["key"] == c.key {
						found = true
						akNum(t, it, "createdIndex")
						akNum(t, it, "modifiedIndex")
					}
				}
				if !found {
					t.Fatalf("%s not listed", c.key)
				}
				// A trailing slash is the same list.
				if _, total2 := akList(t, g.admin("GET", base+c.coll+"/", "")); total2 != total {
					t.Fatalf("trailing slash: total %d vs %d", total2, total)
				}
			})
		}
	})

	t.Run("post", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := g.admin("POST", base+c.coll, c.create)
				if c.postMsg != "" {
					wantError(t, r, 405, c.postMsg)
					return
				}
				akStatus(t, r, 201)
				v := akValue(t, r)
				id, _ := v["id"].(string)
				if len(id) != 20 || strings.Trim(id, "0123456789") != "" {
					t.Fatalf("generated id %q", id)
				}
				if r.JSON(t)["key"] != "/apisix"+c.coll+"/"+id {
					t.Fatalf("key %v", r.JSON(t)["key"])
				}
				akNum(t, v, "create_time")
				akStatus(t, g.admin("DELETE", base+c.coll+"/"+id, ""), 200)
				wantError(t, g.admin("POST", base+c.coll+"/x", c.create), 400, "wrong "+strings.TrimSuffix(c.name, "s")+" id, do not need it")
			})
		}
	})

	t.Run("patch", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				path := base + c.coll + "/" + c.id
				if c.patch == "" {
					wantError(t, g.admin("PATCH", path, `{"desc":"x"}`), 405, c.patchMsg)
					return
				}
				before := akValue(t, g.admin("PUT", path, c.replace))
				r := g.admin("PATCH", path, c.patch)
				akStatus(t, r, 200)
				m := r.JSON(t)
				if m["key"] != c.key {
					t.Fatalf("key %v", m["key"])
				}
				v := akValue(t, r)
				c.patchChk(t, v)
				if v["create_time"] != before["create_time"] {
					t.Fatalf("PATCH changed create_time")
				}
				// A whole-object PATCH that sets update_time keeps it.
				v = akValue(t, g.admin("PATCH", path, `{"update_time":5}`))
				if akNum(t, v, "update_time") != 5 {
					t.Fatalf("update_time given in PATCH must be kept: %v", v["update_time"])
				}
				// Without update_time it is refreshed.
				v = akValue(t, g.admin("PATCH", path, c.patch))
				if akNum(t, v, "update_time") == 5 {
					t.Fatal("update_time not refreshed by PATCH")
				}
				g.admin("PATCH", path, `{"update_time":5}`)
				r = g.admin("PATCH", path+"/"+c.subPath, c.subBody)
				akStatus(t, r, 200)
				v = akValue(t, r)
				c.subChk(t, v)
				if akNum(t, v, "update_time") == 5 {
					t.Fatal("sub-path PATCH must refresh update_time")
				}
				if v["id"] != c.wantID {
					t.Fatalf("id after patch %v", v["id"])
				}
				// Stored state equals the answer.
				if got := g.admin("GET", path, ""); got.Status != 200 {
					t.Fatalf("get after patch %d", got.Status)
				}
			})
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				path := base + c.coll + "/" + c.id
				r := g.admin("DELETE", path, "")
				akStatus(t, r, 200)
				m := r.JSON(t)
				if m["deleted"] != "1" || m["key"] != c.key {
					t.Fatalf("delete body %s", r.Body)
				}
				for _, method := range []string{"GET", "DELETE"} {
					r = g.admin(method, path, "")
					if r.Status != 404 || r.JSON(t)["message"] != "Key not found" {
						t.Fatalf("%s after delete: %d %s", method, r.Status, r.Body)
					}
				}
				if c.patch != "" {
					r = g.admin("PATCH", path, c.patch)
					if r.Status != 404 || r.JSON(t)["message"] != "Key not found" {
						t.Fatalf("PATCH after delete: %d %s", r.Status, r.Body)
					}
				}
			})
		}
	})
}

func TestAdminKindsMessages(t *testing.T) {
	g := startDefault(t, "")
	cert, key := akCert(t, "a.test")
	_, otherKey := akCert(t, "b.test")
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"stream get", "GET", "/apisix/admin/stream_routes/1", "", 400, "stream mode is disabled, can not add stream routes"},
		{"stream put", "PUT", "/apisix/admin/stream_routes/1", `{"upstream":` + upstreamBody + `}`, 400, "stream mode is disabled, can not add stream routes"},
		{"stream post", "POST", "/apisix/admin/stream_routes", `{}`, 400, "stream mode is disabled, can not add stream routes"},
		{"stream delete", "DELETE", "/apisix/admin/stream_routes/1", "", 400, "stream mode is disabled, can not add stream routes"},
		{"metadata unknown plugin", "PUT", "/apisix/admin/plugin_metadata/foo", `{"k":"v"}`, 400, "invalid plugin name"},
		{"metadata missing name", "PUT", "/apisix/admin/plugin_metadata", `{"k":"v"}`, 400, "missing plugin name"},
		{"metadata forbidden time first", "PUT", "/apisix/admin/plugin_metadata/foo", `{"create_time":1}`, 400, "the property is forbidden:  create_time"},
		{"metadata missing body", "PUT", "/apisix/admin/plugin_metadata/foo", ``, 400, "missing configurations"},
		{"metadata post", "POST", "/apisix/admin/plugin_metadata/foo", `{"k":"v"}`, 405, "not supported `POST` method for plugin_metadata"},
		{"metadata patch", "PATCH", "/apisix/admin/plugin_metadata/foo", `{"k":"v"}`, 405, "not supported `PATCH` method for plugin_metadata"},
		{"metadata delete without name", "DELETE", "/apisix/admin/plugin_metadata", "", 400, "missing plugin_metadata id"},
		{"secret bad manager", "PUT", "/apisix/admin/secrets/foo/1", `{"uri":"http://127.0.0.1:8200","prefix":"p","token":"t"}`, 400, "invalid secret manager: foo"},
		{"secret patch without id", "PATCH", "/apisix/admin/secrets/vault", `{}`, 400, "no secret id"},
		{"secret delete without id", "DELETE", "/apisix/admin/secrets/vault", "", 400, "missing secret id"},
		{"ssl mismatched key", "PUT", "/apisix/admin/ssls/x", `{"cert":` + akStr(cert) + `,"key":` + akStr(otherKey) + `,"snis":["a.test"]}`, 400, "failed to parse key: private key does not match the certificate"},
		{"ssl without sni", "PUT", "/apisix/admin/ssls/x", `{"cert":` + akStr(cert) + `,"key":` + akStr(key) + `}`, 400, "invalid configuration: then clause did not match"},
		{"consumer schema before username", "PUT", "/apisix/admin/consumers/jack", `{"username":"john","foo":1}`, 400, "invalid configuration: additional properties forbidden, found foo"},
		{"consumer missing username", "PUT", "/apisix/admin/consumers", `{"desc":"x"}`, 400, `invalid configuration: property "username" is required`},
		{"credential body checked before consumer", "PUT", "/apisix/admin/consumers/ghost/credentials/c1", ``, 400, "missing configurations"},
		{"global rule name", "PUT", "/apisix/admin/global_rules/1", `{"plugins":{},"name":"x"}`, 400, "invalid configuration: additional properties forbidden, found name"},
		{"patch not object", "PATCH", "/apisix/admin/routes/1", `[1]`, 400, "invalid configuration"},
		{"patch empty", "PATCH", "/apisix/admin/routes/1", ``, 400, "missing new configuration"},
		{"patch missing id", "PATCH", "/apisix/admin/routes", `{}`, 400, "missing route id"},
		{"bad ttl before method check", "POST", "/apisix/admin/consumers?ttl=x", `{"username":"a"}`, 400, "invalid argument ttl: should be a number"},
		{"unknown schema", "GET", "/apisix/admin/schema/x", "", 400, "not found schema: x"},
		{"unknown plugin schema", "GET", "/apisix/admin/schema/plugins/x", "", 404, "plugin not found in subsystem http"},
		{"schema sub-path", "GET", "/apisix/admin/schema/x/y", "", 400, "not found schema: x"},
		{"schema validate is a GET schema name", "GET", "/apisix/admin/schema/validate/routes", "", 400, "not found schema: validate"},
		{"schema wrong method", "PUT", "/apisix/admin/schema/route", `{}`, 404, "not found"},
		{"reload get", "GET", "/apisix/admin/plugins/reload", "", 405, "please use PUT method to reload the plugins, GET method is not allowed."},
		{"reload post", "POST", "/apisix/admin/plugins/reload", "", 405, "please use PUT method to reload the plugins, POST method is not allowed."},
		{"unknown plugin", "GET", "/apisix/admin/plugins/foo", "", 404, "plugin not found in subsystem http"},
		{"bad subsystem", "GET", "/apisix/admin/plugins/foo?subsystem=x", "", 400, "unsupported subsystem: x"},
		{"schema validate no prefix", "POST", "/apisix/admin/schema/validate/routes", `{"uri":666,"upstream":` + upstreamBody + `}`, 400, `property "uri" validation failed: wrong type: expected string, got number`},
		{"schema validate unknown", "POST", "/apisix/admin/schema/validate/foo", `{}`, 404, "Unsupported resource type: foo"},
		{"configs validate empty", "POST", "/apisix/admin/configs/validate", ``, 400, "invalid request body: empty request body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, g.admin(c.method, c.path, c.body), c.status, c.msg)
		})
	}
	t.Run("metadata get missing", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/plugin_metadata/foo", "")
		if r.Status != 404 || r.JSON(t)["message"] != "Key not found" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if _, total := akList(t, g.admin("GET", "/apisix/admin/plugin_metadata", "")); total != 0 {
			t.Fatalf("total %d", total)
		}
	})
	t.Run("secret of unknown manager is just missing on GET", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/secrets/foo/1", "")
		if r.Status != 404 || r.JSON(t)["message"] != "Key not found" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("secrets listed across managers", func(t *testing.T) {
		akStatus(t, g.admin("PUT", "/apisix/admin/secrets/vault/v1", `{"uri":"http://127.0.0.1:8200","prefix":"p","token":"t"}`), 201)
		akStatus(t, g.admin("PUT", "/apisix/admin/secrets/aws/a1", `{"access_key_id":"a","secret_access_key":"s"}`), 201)
		list, total := akList(t, g.admin("GET", "/apisix/admin/secrets", ""))
		if total != 2 || list[0]["key"] != "/apisix/secrets/aws/a1" || list[1]["key"] != "/apisix/secrets/vault/v1" {
			t.Fatalf("list %v", list)
		}
	})
}

func TestAdminKindsSSL(t *testing.T) {
	g := startDefault(t, "")
	cert, key := akCert(t, "a.test")
	body := `{"cert":` + akStr(cert) + `,"key":` + akStr(key) + `,"snis":["a.test"]}`
	r := g.admin("PUT", "/apisix/admin/ssls/1", body)
	akStatus(t, r, 201)
	stored, _ := akValue(t, r)["key"].(string)
	if stored == "" || strings.Contains(stored, "BEGIN") {
		t.Fatalf("PUT must echo the encrypted key, got %q", stored)
	}
	for _, path := range []string{"/apisix/admin/ssls/1"} {
		v := akValue(t, g.admin("GET", path, ""))
		if _, ok := v["key"]; ok {
			t.Fatalf("GET one leaks key: %v", v)
		}
		if v["cert"] != cert {
			t.Fatal("cert must be returned")
		}
	}
	list, _ := akList(t, g.admin("GET", "/apisix/admin/ssls", ""))
	for _, it := range list {
		if _, ok := it["value"].(map[string]any)["key"]; ok {
			t.Fatal("GET list leaks key")
		}
	}
	// PATCH re-validates the stored (encrypted) key and keeps it working.
	r = g.admin("PATCH", "/apisix/admin/ssls/1", `{"snis":["a.test","b.test"]}`)
	akStatus(t, r, 200)
	if k, _ := akValue(t, r)["key"].(string); k == "" || strings.Contains(k, "BEGIN") {
		t.Fatalf("PATCH must echo the encrypted key, got %q", k)
	}
	// Sub-path PATCH of the key encrypts the new key too.
	r = g.admin("PATCH", "/apisix/admin/ssls/1/key", akStr(key))
	akStatus(t, r, 200)
	if k, _ := akValue(t, r)["key"].(string); strings.Contains(k, "BEGIN") {
		t.Fatalf("sub-path key stored in clear: %q", k)
	}
	// POST with certs/keys pairs.
	r = g.admin("POST", "/apisix/admin/ssls", `{"cert":`+akStr(cert)+`,"key":`+akStr(key)+`,"snis":["a.test"],"certs":[`+akStr(cert)+`],"keys":[`+akStr(key)+`]}`)
	akStatus(t, r, 201)
	v := akValue(t, r)
	if ks, _ := v["keys"].([]any); len(ks) != 1 || strings.Contains(ks[0].(string), "BEGIN") {
		t.Fatalf("keys not encrypted: %v", v["keys"])
	}
	id := v["id"].(string)
	if gv := akValue(t, g.admin("GET", "/apisix/admin/ssls/"+id, "")); gv["keys"] != nil || gv["certs"] == nil {
		t.Fatalf("GET must strip keys: %v", gv)
	}
}

func TestAdminKindsTTL(t *testing.T) {
	g := startDefault(t, "")
	akStatus(t, g.admin("PUT", "/apisix/admin/upstreams/t1?ttl=1", upstreamBody), 201)
	akStatus(t, g.admin("GET", "/apisix/admin/upstreams/t1", ""), 200)
	r := g.admin("POST", "/apisix/admin/routes?ttl=1", `{"uri":"/ttl","upstream":`+upstreamBody+`}`)
	akStatus(t, r, 201)
	rid := akValue(t, r)["id"].(string)
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := g.admin("GET", "/apisix/admin/upstreams/t1", "").Status
		b := g.admin("GET", "/apisix/admin/routes/"+rid, "").Status
		if a == 404 && b == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ttl items still there: %d %d", a, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, total := akList(t, g.admin("GET", "/apisix/admin/upstreams", "")); total != 0 {
		t.Fatalf("expired item still listed")
	}
}

func TestAdminKindsListing(t *testing.T) {
	g := startDefault(t, "")
	akStatus(t, g.admin("PUT", "/apisix/admin/services/svc", `{}`), 201)
	// Created in the order 1..12; etcd key order would be 1,10,11,12,2,...
	for i := 1; i <= 12; i++ {
		body := fmt.Sprintf(`{"uri":"/item%d","name":"name%d","upstream":%s}`, i, i, upstreamBody)
		if i%2 == 0 {
			body = fmt.Sprintf(`{"uris":["/even%d"],"name":"even%d","labels":{"even":"yes"},"service_id":"svc"}`, i, i)
		}
		akStatus(t, g.admin("PUT", fmt.Sprintf("/apisix/admin/routes/%d", i), body), 201)
	}
	ids := func(list []map[string]any) string {
		var s []string
		for _, it := range list {
			s = append(s, it["value"].(map[string]any)["id"].(string))
		}
		return strings.Join(s, ",")
	}
	cases := []struct {
		name, query string
		total       int
		ids         string
	}{
		{"unpaged key order", "", 12, "1,10,11,12,2,3,4,5,6,7,8,9"},
		{"page 1", "?page=1&page_size=10", 12, "1,2,3,4,5,6,7,8,9,10"},
		{"page 2", "?page=2&page_size=10", 12, "11,12"},
		{"page past end", "?page=3&page_size=10", 12, ""},
		{"page 0 is 1", "?page=0&page_size=10", 12, "1,2,3,4,5,6,7,8,9,10"},
		{"only page", "?page=2", 12, "1,10,11,12,2,3,4,5,6,7,8,9"},
		{"name", "?name=name1", 2, "1,11"},
		{"name regex", "?name=^even1[02]$", 2, "10,12"},
		{"uri in uris", "?uri=even", 6, "10,12,2,4,6,8"},
		{"uri", "?uri=/item1$", 1, "1"},
		{"label", "?label=even", 6, "10,12,2,4,6,8"},
		{"empty label", "?label=", 0, ""},
		{"missing label", "?label=odd", 0, ""},
		{"filter service_id", "?filter=service_id%3Dsvc", 6, "10,12,2,4,6,8"},
		{"filter unknown key ignored", "?filter=foo%3Dbar", 12, "1,10,11,12,2,3,4,5,6,7,8,9"},
		{"filters intersect", "?label=even&name=even1", 2, "10,12"},
		{"filter and paging", "?label=even&page=1&page_size=10", 6, "2,4,6,8,10,12"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			list, total := akList(t, g.admin("GET", "/apisix/admin/routes"+c.query, ""))
			if total != c.total || ids(list) != c.ids {
				t.Fatalf("total %d ids %q, want %d %q", total, ids(list), c.total, c.ids)
			}
		})
	}
	t.Run("empty page is an array", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/routes?page=5&page_size=10", "")
		if !strings.Contains(string(r.Body), `"list":[]`) {
			t.Fatalf("body %s", r.Body)
		}
		r = g.admin("GET", "/apisix/admin/protos", "")
		if strings.TrimSpace(string(r.Body)) != `{"list":[],"total":0}` {
			t.Fatalf("body %s", r.Body)
		}
	})
	t.Run("bad page_size", func(t *testing.T) {
		for _, q := range []string{"?page=1&page_size=9", "?page=1&page_size=501"} {
			r := g.admin("GET", "/apisix/admin/routes"+q, "")
			if r.Status != 400 || string(r.Body) != "page_size must be between 10 and 500" || r.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s: %d %q %v", q, r.Status, r.Body, r.Header)
			}
		}
	})
}

func TestAdminKindsReferences(t *testing.T) {
	g := startDefault(t, "")
	steps := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"route to missing upstream", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","upstream_id":"u1"}`, 400, "failed to fetch upstream info by upstream id [u1], response code: 404"},
		{"service to missing upstream", "PUT", "/apisix/admin/services/s1", `{"upstream_id":"u1"}`, 400, "failed to fetch upstream info by upstream id [u1], response code: 404"},
		{"route to missing plugin config", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugin_config_id":"pc1","upstream":` + upstreamBody + `}`, 400, "failed to fetch plugin config info by plugin config id [pc1], response code: 404"},
		{"consumer to missing group", "PUT", "/apisix/admin/consumers/jack", `{"username":"jack","group_id":"g1"}`, 400, "failed to fetch consumer group info by consumer group id [g1], response code: 404"},
		{"reference before plugins", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","upstream_id":"u1","plugins":{"no-such-plugin":{}}}`, 400, "failed to fetch upstream info by upstream id [u1], response code: 404"},
		{"schema before reference", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","upstream_id":"u1","foo":1}`, 400, "invalid configuration: additional properties forbidden, found foo"},
		{"upstream to missing client cert", "PUT", "/apisix/admin/upstreams/u9", `{"nodes":{"127.0.0.1:1980":1},"tls":{"client_cert_id":"c9"}}`, 400, "failed to fetch ssl info by ssl id [c9], response code: 404"},
		{"create upstream", "PUT", "/apisix/admin/upstreams/u1", upstreamBody, 201, ""},
		{"create service", "PUT", "/apisix/admin/services/s1", `{"upstream_id":"u1"}`, 201, ""},
		{"upstream used by service", "DELETE", "/apisix/admin/upstreams/u1", "", 400, "can not delete this upstream, service [s1] is still using it now"},
		{"create plugin config", "PUT", "/apisix/admin/plugin_configs/pc1", `{"plugins":{}}`, 201, ""},
		{"create route", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugin_config_id":"pc1","service_id":"s1"}`, 201, ""},
		{"service used by route", "DELETE", "/apisix/admin/services/s1", "", 400, "can not delete this service directly, route [1] is still using it now"},
		{"plugin config used by route", "DELETE", "/apisix/admin/plugin_configs/pc1", "", 400, "can not delete this plugin config, route [1] is still using it now"},
		{"force must be exactly true", "DELETE", "/apisix/admin/plugin_configs/pc1?force=1", "", 400, "can not delete this plugin config, route [1] is still using it now"},
		{"create group", "PUT", "/apisix/admin/consumer_groups/g1", `{"plugins":{}}`, 201, ""},
		{"create consumer", "PUT", "/apisix/admin/consumers/jack", `{"username":"jack","group_id":"g1"}`, 201, ""},
		{"group used by consumer", "DELETE", "/apisix/admin/consumer_groups/g1", "", 400, "can not delete this consumer group, consumer [jack] is still using it now"},
		{"patch to missing ref", "PATCH", "/apisix/admin/routes/1", `{"service_id":"nope"}`, 400, "failed to fetch service info by service id [nope], response code: 404"},
		{"force delete group", "DELETE", "/apisix/admin/consumer_groups/g1?force=true", "", 200, ""},
		{"force delete service", "DELETE", "/apisix/admin/services/s1?force=true", "", 200, ""},
		// The check runs before the existence check, as in APISIX.
		{"delete check before 404", "DELETE", "/apisix/admin/services/s1", "", 400, "can not delete this service directly, route [1] is still using it now"},
		{"delete route", "DELETE", "/apisix/admin/routes/1", "", 200, ""},
		{"plugin config free", "DELETE", "/apisix/admin/plugin_configs/pc1", "", 200, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := g.admin(s.method, s.path, s.body)
			if s.msg != "" {
				wantError(t, r, s.status, s.msg)
				return
			}
			akStatus(t, r, s.status)
		})
	}
}

func TestAdminKindsRoles(t *testing.T) {
	g := startDefault(t, "")
	const viewer = "viewer-key-0123456789"
	akStatus(t, g.admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","upstream":`+upstreamBody+`}`), 201)
	for _, p := range []string{"/apisix/admin/routes", "/apisix/admin/routes/1", "/apisix/admin/upstreams", "/apisix/admin/plugins/list", "/apisix/admin/schema/route"} {
		t.Run("viewer GET "+p, func(t *testing.T) {
			akStatus(t, g.adminWithKey("GET", p, "", viewer), 200)
		})
	}
	for _, m := range []string{"PUT", "POST", "PATCH", "DELETE"} {
		t.Run("viewer "+m, func(t *testing.T) {
			r := g.adminWithKey(m, "/apisix/admin/routes/1", `{"desc":"x"}`, viewer)
			if r.Status != 401 || r.JSON(t)["description"] != "invalid method for role viewer" {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	t.Run("viewer reload", func(t *testing.T) {
		if r := g.adminWithKey("PUT", "/apisix/admin/plugins/reload", "", viewer); r.Status != 401 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("cookie key", func(t *testing.T) {
		r := g.adminWithKey("GET", "/apisix/admin/routes", "", "")
		if r.Status != 401 {
			t.Fatalf("%d", r.Status)
		}
	})
}

func TestAdminKindsHeadersAndAux(t *testing.T) {
	g := startDefault(t, "")
	t.Run("cors and content type", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/routes", "")
		want := map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "*",
			"Access-Control-Max-Age":           "3600",
			"Content-Type":                     "application/json",
			"X-API-VERSION":                    "v3",
		}
		for k, v := range want {
			if r.Header.Get(k) != v {
				t.Fatalf("%s = %q, want %q", k, r.Header.Get(k), v)
			}
		}
		if !strings.HasPrefix(r.Header.Get("Server"), "APISIX") {
			t.Fatalf("Server %q", r.Header.Get("Server"))
		}
	})
	t.Run("options preflight", func(t *testing.T) {
		r := g.adminWithKey("OPTIONS", "/apisix/admin/routes/1", "", "")
		if r.Status != 200 || len(r.Body) != 0 ||
			r.Header.Get("Access-Control-Allow-Methods") != "POST, GET, PUT, OPTIONS, DELETE, PATCH" ||
			r.Header.Get("Access-Control-Allow-Headers") != "*" {
			t.Fatalf("%d %q %v", r.Status, r.Body, r.Header)
		}
	})
	t.Run("api version on run() endpoints only", func(t *testing.T) {
		for path, want := range map[string]string{
			"/apisix/admin/schema/route":  "v3",
			"/apisix/admin/plugins/x":     "v3",
			"/apisix/admin/routes/none":   "v3",
			"/apisix/admin/plugins/list":  "",
			"/apisix/admin/foo":           "",
			"/apisix/admin/routes?ttl=no": "",
		} {
			if got := g.admin("GET", path, "").Header.Get("X-API-VERSION"); got != want {
				t.Errorf("%s: X-API-VERSION %q, want %q", path, got, want)
			}
		}
	})
	t.Run("401 has no api version", func(t *testing.T) {
		r := g.adminWithKey("GET", "/apisix/admin/routes", "", "")
		if r.Header.Get("X-API-VERSION") != "" || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%v", r.Header)
		}
	})
	t.Run("plugins list", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/plugins/list", "")
		var names []string
		if r.Status != 200 || json.Unmarshal(r.Body, &names) != nil {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		// Sorted by priority, highest first: real-ip (23000) before key-auth (2500).
		pos := map[string]int{}
		for i, n := range names {
			pos[n] = i
		}
		if a, okA := pos["real-ip"]; okA {
			if b, okB := pos["key-auth"]; okB && a > b {
				t.Fatalf("not sorted by priority: %v", names)
			}
		}
		r = g.admin("GET", "/apisix/admin/plugins/list?subsystem=x", "")
		if r.Status != 400 || string(r.Body) != "invalid subsystem passed" {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
		if r := g.adminWithKey("GET", "/apisix/admin/plugins/list", "", ""); r.Status != 401 {
			t.Fatalf("plugins/list needs the key: %d", r.Status)
		}
	})
	t.Run("plugins reload", func(t *testing.T) {
		r := g.admin("PUT", "/apisix/admin/plugins/reload", "")
		if r.Status != 200 || string(r.Body) != "done" || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %q %v", r.Status, r.Body, r.Header)
		}
	})
	for _, name := range []string{"route", "service", "upstream", "consumer", "credential", "consumer_group", "ssl", "global_rule", "plugin_config", "proto", "stream_route"} {
		t.Run("schema "+name, func(t *testing.T) {
			r := g.admin("GET", "/apisix/admin/schema/"+name, "")
			m := r.JSON(t)
			if r.Status != 200 || m["type"] == nil && m["properties"] == nil && m["oneOf"] == nil && m["allOf"] == nil {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		})
	}
	t.Run("schema plugins", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/schema/plugins", "")
		if r.Status != 404 || r.JSON(t)["error_msg"] != "plugin not found in subsystem http" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("schema validate ok", func(t *testing.T) {
		r := g.admin("POST", "/apisix/admin/schema/validate/routes", `{"uri":"/a","upstream":`+upstreamBody+`}`)
		if r.Status != 200 || len(r.Body) != 0 {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
		// Schema only: references are not checked.
		r = g.admin("POST", "/apisix/admin/schema/validate/routes", `{"uri":"/a","upstream_id":"nope"}`)
		if r.Status != 200 {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
		r = g.admin("POST", "/apisix/admin/schema/validate/upstreams", upstreamBody)
		if r.Status != 200 {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
		if r := g.adminWithKey("POST", "/apisix/admin/schema/validate/routes", `{}`, ""); r.Status != 401 {
			t.Fatalf("validate needs the key: %d", r.Status)
		}
	})
	t.Run("configs validate", func(t *testing.T) {
		r := g.admin("POST", "/apisix/admin/configs/validate", `{"routes":[{"id":"r1","uri":"/a","upstream":`+upstreamBody+`}]}`)
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != "{}" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r = g.admin("POST", "/apisix/admin/configs/validate", `{"routes":[{"id":"r1","uri":"/a","upstream":`+upstreamBody+`},{"id":"r2","uri":1}]}`)
		m := r.JSON(t)
		errs, _ := m["errors"].([]any)
		if r.Status != 400 || m["error_msg"] != "Configuration validation failed" || len(errs) != 1 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		e := errs[0].(map[string]any)
		if e["resource_type"] != "routes" || e["resource_id"] != "r2" || e["index"] != 1.0 {
			t.Fatalf("%v", e)
		}
		if _, total := akList(t, g.admin("GET", "/apisix/admin/routes", "")); total != 0 {
			t.Fatal("configs/validate must not persist")
		}
	})
	t.Run("status", func(t *testing.T) {
		if r := g.adminWithKey("GET", "/sluice/status", "", ""); r.Status != 401 {
			t.Fatalf("status without key: %d", r.Status)
		}
		akStatus(t, g.admin("PUT", "/apisix/admin/upstreams/1", upstreamBody), 201)
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := g.admin("GET", "/sluice/status", "")
			akStatus(t, r, 200)
			m := r.JSON(t)
			objs, _ := m["objects"].(map[string]any)
			if m["revision"] != nil && objs["upstreams"] == 1.0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never showed the upstream: %s", r.Body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
