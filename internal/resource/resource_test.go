package resource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/schema"
	"github.com/sluice-gw/sluice/internal/testpki"
)

func testRegistry(t testing.TB) *plugin.Registry {
	t.Helper()
	defs := []*plugin.Def{
		{Name: "limit-count", Priority: 1002, Schema: json.RawMessage(`{"type":"object","properties":{
			"count":{"type":"integer","exclusiveMinimum":0},
			"time_window":{"type":"integer","exclusiveMinimum":0},
			"policy":{"type":"string","enum":["local","redis"],"default":"local"}},
			"required":["count","time_window"]}`)},
		{Name: "key-auth", Priority: 2500, Auth: true, KeyField: "key",
			Schema:         json.RawMessage(`{"type":"object","properties":{"header":{"type":"string","default":"apikey"}}}`),
			ConsumerSchema: json.RawMessage(`{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`)},
		{Name: "echo", Priority: 412, Schema: json.RawMessage(`{"type":"object","properties":{"body":{"type":"string"}},"additionalProperties":false}`),
			MetadataSchema: json.RawMessage(`{"type":"object","properties":{"log_format":{"type":"object"}},"additionalProperties":false}`),
			Check: func(conf map[string]any, st plugin.SchemaType) error {
				if conf["body"] == "bad" {
					return errors.New("body must not be bad")
				}
				return nil
			}},
		{Name: "traffic-split", Priority: 966, Schema: json.RawMessage(`{"type":"object"}`)},
	}
	reg, _ := plugin.NewRegistry(defs, nil)
	return reg
}

// testPair generates a self-signed ECDSA certificate and PKCS#8 key in PEM.
func testPair(t testing.TB, cn string) (certPEM, keyPEM string) {
	c := testpki.SelfSigned(t, cn)
	return c.CertPEM(), c.KeyPKCS8PEM()
}

func obj(t testing.TB, body string) map[string]any {
	t.Helper()
	v, err := schema.DecodeJSON([]byte(body), 100)
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v.(map[string]any)
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestCheck(t *testing.T) {
	c := NewChecker(testRegistry(t))
	cert, key := testPair(t, "test.com")
	cert2, key2 := testPair(t, "other.com")
	fakeCert := jsonStr("-----BEGIN CERTIFICATE-----\n" + strings.Repeat("A", 130) + "\n-----END CERTIFICATE-----\n")
	fakeKey := jsonStr("-----BEGIN PRIVATE KEY-----\n" + strings.Repeat("A", 70) + "\n-----END PRIVATE KEY-----\n")
	tests := []struct {
		kind, body, want string
	}{
		// routes
		{"routes", `{"id":"1","uri":"/a","upstream":{"nodes":{"127.0.0.1:80":1}}}`, ""},
		{"routes", `{"id":1,"uri":"/a","plugins":{}}`, ""},
		{"routes", `{"id":"1","uri":"/a"}`, `invalid configuration: object matches none of the required: ["plugins","uri"] or ["upstream","uri"] or ["upstream_id","uri"] or ["service_id","uri"] or ["plugins","uris"] or ["upstream","uris"] or ["upstream_id","uris"] or ["service_id","uris"] or ["script","uri"] or ["script","uris"]`},
		{"routes", `{"id":"1","plugins":{}}`, `invalid configuration: allOf 1 failed: value should match only one schema, but matches none`},
		{"routes", `{"id":"a b","uri":"/a","plugins":{}}`, `invalid configuration: property "id" validation failed: object matches none of the required`},
		{"routes", `{"id":0,"uri":"/a","plugins":{}}`, `invalid configuration: property "id" validation failed: object matches none of the required`},
		{"routes", `{"uri":"/a","plugins":{},"methods":["GET","invalid"]}`, `invalid configuration: property "methods" validation failed: failed to validate item 2: matches none of the enum values`},
		{"routes", `{"uri":"/a","plugins":{},"host":"a b"}`, `invalid configuration: property "host" validation failed: failed to match pattern "^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$" with "a b"`},
		{"routes", `{"uri":"/a","plugins":{},"host":"*.foo.com"}`, ""},
		{"routes", `{"uri":"/a","plugins":{},"host":"a.com","hosts":["b.com"]}`, `only one of host or hosts is allowed`},
		{"routes", `{"uri":"/a","plugins":{},"remote_addr":"1.1.1.1","remote_addrs":["1.1.1.1"]}`, `only one of remote_addr or remote_addrs is allowed`},
		{"routes", `{"uri":"/a","plugins":{},"remote_addr":"1.1.1.1/33"}`, `invalid configuration: property "remote_addr" validation failed: object matches none of the required`},
		{"routes", `{"uri":"/a","plugins":{},"remote_addr":"10.0.0.0/8"}`, ""},
		{"routes", `{"uri":"/a","plugins":{},"remote_addrs":["::1","fe80::/10"]}`, ""},
		{"routes", `{"uri":"/a","plugins":{},"name":"` + strings.Repeat("x", 257) + `"}`, `invalid configuration: property "name" validation failed: string too long, expected at most 256, got 257`},
		{"routes", `{"uri":"/a","plugins":{},"labels":{"env":["a"]}}`, `invalid configuration: property "labels" validation failed: failed to validate env (matching ".*"): wrong type: expected string, got table`},
		{"routes", `{"uri":"/a","plugins":{},"labels":"x"}`, `invalid configuration: property "labels" validation failed: wrong type: expected object, got string`},
		{"routes", `{"uri":"/a","plugins":{},"foo":1}`, `invalid configuration: additional properties forbidden, found foo`},
		{"routes", `{"uri":"/a","plugins":{},"timeout":{"connect":0,"send":1,"read":1}}`, `invalid configuration: property "timeout" validation failed: property "connect" validation failed: expected 0 to be greater than 0`},
		{"routes", `{"uri":"/a","plugins":{},"status":2}`, `invalid configuration: property "status" validation failed: matches none of the enum values`},
		{"routes", `{"uri":"/a","upstream_id":"a b"}`, `invalid configuration: property "upstream_id" validation failed: object matches none of the required`},
		{"routes", `{"uri":"/a","plugins":{},"vars":[["arg_a","=","1"]]}`, `failed to validate the 'vars' expression: invalid operator '='`},
		{"routes", `{"uri":"/a","plugins":{},"vars":[["arg_a","==","1"],["http_x","~~","^a"],["arg_b","1"]]}`, ""},
		{"routes", `{"uri":"/a","plugins":{},"vars":[["OR",["arg_a","==","1"],["arg_a","in",["2","3"]]]]}`, ""},
		{"routes", `{"uri":"/a","plugins":{},"filter_func":"function(vars) return true end"}`, `filter_func is not supported by Sluice (Lua)`},
		{"routes", `{"uri":"/a","script":"local _M = {} return _M"}`, `script is not supported by Sluice (Lua)`},
		{"routes", `{"uri":"/a","script":"local _M = {} return _M","plugins":{}}`, `invalid configuration: value wasn't supposed to match schema`},
		{"routes", `{"uri":"/a","plugins":{"foo":{}}}`, `unknown plugin [foo]`},
		{"routes", `{"uri":"/a","plugins":{"limit-count":"x"}}`, `invalid plugin conf "x" for plugin [limit-count]`},
		{"routes", `{"uri":"/a","plugins":{"limit-count":{}}}`, `failed to check the configuration of plugin limit-count err: property "count" is required`},
		{"routes", `{"uri":"/a","plugins":{"limit-count":{"count":0,"time_window":1}}}`, `failed to check the configuration of plugin limit-count err: property "count" validation failed: expected 0 to be greater than 0`},
		{"routes", `{"uri":"/a","plugins":{"limit-count":{"count":1,"time_window":1,"_meta":{"disable":false,"priority":5,"error_response":{"a":1}}}}}`, ""},
		{"routes", `{"uri":"/a","plugins":{"limit-count":{"_meta":{"disable":true}}}}`, ""},
		{"routes", `{"uri":"/a","plugins":{"limit-count":{"count":1,"time_window":1,"_meta":{"foo":1}}}}`, `failed to check the configuration of plugin limit-count err: property "_meta" validation failed: additional properties forbidden, found foo`},
		{"routes", `{"uri":"/a","plugins":{"echo":{"_meta":{"filter":[["arg_a","=","1"]]}}}}`, `failed to validate the 'vars' expression: invalid operator '='`},
		{"routes", `{"uri":"/a","plugins":{"echo":{"body":"bad"}}}`, `failed to check the configuration of plugin echo err: body must not be bad`},
		{"routes", `{"uri":"/a","plugins":{"echo":{"x":1}}}`, `failed to check the configuration of plugin echo err: additional properties forbidden, found x`},
		{"routes", `{"uri":"/a","plugins":{"echo":[]}}`, ""},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"127.0.0.1:70000":1}}}`, `invalid port 70000`},
		{"routes", `{"uri":"/a","upstream":{"nodes":[{"host":"::1","port":80,"weight":1}]}}`, `invalid configuration: IPv6 address must be enclosed with '[' and ']'`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"127.0.0.1:80":-1}}}`, `invalid configuration: property "upstream" validation failed: property "nodes" validation failed: object matches none of the required`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"a:1":1},"checks":{"passive":{}}}}`, `invalid configuration: property "upstream" validation failed: property "checks" validation failed: object matches none of the required: ["active"] or ["active","passive"]`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"a:1":1},"checks":{"active":{"healthy":{"successes":255}}}}}`, `invalid configuration: property "upstream" validation failed: property "checks" validation failed: property "active" validation failed: property "healthy" validation failed: property "successes" validation failed: expected 255 to be at most 254`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"a:1":1},"checks":{"active":{"unhealthy":{"http_failures":1.5}}}}}`, `invalid configuration: property "upstream" validation failed: property "checks" validation failed: property "active" validation failed: property "unhealthy" validation failed: property "http_failures" validation failed: wrong type: expected integer, got number`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"a:1":1},"checks":{"active":{"req_headers":["a",1]}}}}`, `invalid configuration: property "upstream" validation failed: property "checks" validation failed: property "active" validation failed: property "req_headers" validation failed: failed to validate item 2: wrong type: expected string, got number`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"a:1":1},"checks":{"active":{"healthy":{"http_statuses":[200,200]}}}}}`, `invalid configuration: property "upstream" validation failed: property "checks" validation failed: property "active" validation failed: property "healthy" validation failed: property "http_statuses" validation failed: expected unique items but items 1 and 2 are equal`},
		{"routes", `{"uri":"/a","upstream":{"nodes":{"a:1":1},"checks":{"passive":{"unhealthy":{"http_statuses":[500,600]}},"active":{}}}}`, `invalid configuration: property "upstream" validation failed: property "checks" validation failed: property "passive" validation failed: property "unhealthy" validation failed: property "http_statuses" validation failed: failed to validate item 2: expected 600 to be at most 599`},
		// services
		{"services", `{}`, ""},
		{"services", `{"id":"s1","upstream":{"nodes":{"a:1":1}},"hosts":["a.com"]}`, ""},
		{"services", `{"uri":"/a"}`, `invalid configuration: additional properties forbidden, found uri`},
		{"services", `{"script":"local _M = {} return _M"}`, `script is not supported by Sluice (Lua)`},
		{"services", `{"plugins":{"nope":{}}}`, `unknown plugin [nope]`},
		// upstreams
		{"upstreams", `{"id":"1","nodes":{"127.0.0.1:8080":1,"[::1]:80":2,"foo.com":1}}`, ""},
		{"upstreams", `{"nodes":[{"host":"[::1]","port":80,"weight":1,"priority":-1,"metadata":{"a":1}}]}`, ""},
		{"upstreams", `{"nodes":[{"host":"::1","port":80,"weight":1}]}`, `invalid configuration: IPv6 address must be enclosed with '[' and ']'`},
		{"upstreams", `{"nodes":[{"host":"a.com","port":70000,"weight":1}]}`, `invalid configuration: property "nodes" validation failed: object matches none of the required`},
		{"upstreams", `{"nodes":{"127.0.0.1:70000":1}}`, `invalid port 70000`},
		{"upstreams", `{"nodes":{"a:1":1},"retries":-1}`, `invalid configuration: property "retries" validation failed: expected -1 to be at least 0`},
		{"upstreams", `{"nodes":{"a:1":1},"retry_timeout":-1}`, `invalid configuration: property "retry_timeout" validation failed: expected -1 to be at least 0`},
		{"upstreams", `{"nodes":{"a:1":1},"hash_on":"foo"}`, `invalid configuration: property "hash_on" validation failed: matches none of the enum values`},
		{"upstreams", `{"nodes":{"a:1":1},"scheme":"ftp"}`, `invalid configuration: property "scheme" validation failed: matches none of the enum values`},
		{"upstreams", `{"nodes":{"a:1":1},"type":"chash"}`, `missing key`},
		{"upstreams", `{"nodes":{"a:1":1},"type":"chash","hash_on":"consumer"}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"type":"chash","key":"remote_addr"}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"type":"chash","key":"not_support"}`, `invalid configuration: failed to match pattern "^((uri|server_name|server_addr|request_uri|remote_port|remote_addr|query_string|host|hostname|mqtt_client_id)|arg_[0-9a-zA-z_-]+)$" with "not_support"`},
		{"upstreams", `{"nodes":{"a:1":1},"type":"chash","hash_on":"header","key":"$#^@"}`, `invalid configuration: failed to match pattern "^[a-zA-Z0-9-_]+$" with "$#^@"`},
		{"upstreams", `{"nodes":{"a:1":1},"type":"chash","hash_on":"vars_combinations","key":"$host$uri"}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"type":"anything"}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"pass_host":"rewrite"}`, "`upstream_host` can't be empty when `pass_host` is `rewrite`"},
		{"upstreams", `{"nodes":{"a:1":1},"pass_host":"rewrite","upstream_host":"b.com"}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"timeout":{"connect":1,"send":1}}`, `invalid configuration: property "timeout" validation failed: property "read" is required`},
		{"upstreams", `{}`, `invalid configuration: value should match only one schema, but matches none`},
		{"upstreams", `{"service_name":"a","discovery_type":"dns"}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"keepalive_pool":{"size":0}}`, `invalid configuration: property "keepalive_pool" validation failed: property "size" validation failed: expected 0 to be at least 1`},
		{"upstreams", `{"nodes":{"a:1":1},"tls":{"client_cert":` + jsonStr(cert) + `}}`, `invalid configuration: property "tls" validation failed: failed to validate dependent schema for "client_cert": property "client_key" is required`},
		{"upstreams", `{"nodes":{"a:1":1},"tls":{"client_cert":` + jsonStr(cert) + `,"client_key":` + jsonStr(key) + `}}`, ""},
		{"upstreams", `{"nodes":{"a:1":1},"tls":{"client_cert":` + jsonStr(cert) + `,"client_key":` + jsonStr(key2) + `}}`, "failed to parse key: private key does not match the certificate"},
		{"upstreams", `{"nodes":{"a:1":1},"tls":{"client_cert_id":"1","client_cert":` + jsonStr(cert) + `,"client_key":` + jsonStr(key) + `}}`, `invalid configuration: property "tls" validation failed: failed to validate dependent schema for "client_cert_id": value wasn't supposed to match schema`},
		// consumers
		{"consumers", `{"username":"jack","plugins":{"key-auth":{"key":"k"}}}`, ""},
		{"consumers", `{"desc":"x"}`, `invalid configuration: property "username" is required`},
		{"consumers", `{"username":"a b"}`, `invalid configuration: property "username" validation failed: failed to match pattern "^[a-zA-Z0-9_\\-]+$" with "a b"`},
		{"consumers", `{"username":"jack","plugins":{"key-auth":{}}}`, `invalid plugins configuration: failed to check the configuration of plugin key-auth err: property "key" is required`},
		{"consumers", `{"username":"jack","plugins":{"nope":{}}}`, `invalid plugins configuration: unknown plugin [nope]`},
		{"consumers", `{"username":"jack","plugins":{"limit-count":{"count":1,"time_window":60}}}`, ""},
		// credentials
		{"credentials", `{"id":"c1","plugins":{"key-auth":{"key":"k"}}}`, ""},
		{"credentials", `{"id":"jack/credentials/c1","plugins":{"key-auth":{"key":"k"}}}`, ""},
		{"credentials", `{"plugins":{"key-auth":{"key":"k"},"limit-count":{"count":1,"time_window":1}}}`, `invalid configuration: property "plugins" validation failed: expect object to have at most 1 properties`},
		{"credentials", `{"plugins":{"limit-count":{"count":1,"time_window":1}}}`, `only supports auth type plugins in consumer credential`},
		// consumer groups, global rules, plugin configs
		{"consumer_groups", `{"id":"g1","plugins":{}}`, ""},
		{"consumer_groups", `{"id":"g1"}`, `invalid configuration: property "plugins" is required`},
		{"global_rules", `{"id":"1","plugins":{"limit-count":{"count":1,"time_window":1}}}`, ""},
		{"global_rules", `{"id":"1","plugins":{},"name":"x"}`, `invalid configuration: additional properties forbidden, found name`},
		{"plugin_configs", `{"id":"1","plugins":{},"name":""}`, ""},
		{"plugin_configs", `{"id":"1","plugins":{"limit-count":{"count":-1,"time_window":1}}}`, `failed to check the configuration of plugin limit-count err: property "count" validation failed: expected -1 to be greater than 0`},
		// ssls
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"snis":["test.com"]}`, ""},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"test.com"}`, ""},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `}`, `invalid configuration: then clause did not match`},
		{"ssls", `{"id":"1","type":"client","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `}`, ""},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"snis":[]}`, `invalid configuration: property "snis" validation failed: expect array to have at least 1 items`},
		{"ssls", `{"id":"1","cert":` + fakeCert + `,"key":` + jsonStr(key) + `,"sni":"a.com"}`, `failed to parse cert: PEM_read_bio_X509_AUX() failed`},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + fakeKey + `,"sni":"a.com"}`, `failed to parse key: PEM_read_bio_PrivateKey() failed`},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","certs":[` + jsonStr(cert2) + `]}`, `mismatched number of certs and keys`},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","certs":[` + jsonStr(cert2) + `],"keys":[` + jsonStr(key2) + `]}`, ""},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","certs":[` + fakeCert + `],"keys":[` + jsonStr(key2) + `]}`, `failed to handle cert-key pair[1]: failed to parse cert: PEM_read_bio_X509_AUX() failed`},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","certs":["short"],"keys":[` + jsonStr(key2) + `]}`, `invalid configuration: property "certs" validation failed: failed to validate item 1: string too short, expected at least 128, got 5`},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","ssl_protocols":["TLSv1.0"]}`, `invalid configuration: property "ssl_protocols" validation failed: failed to validate item 1: matches none of the enum values`},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","client":{"ca":` + jsonStr(cert2) + `,"depth":2}}`, ""},
		{"ssls", `{"id":"1","cert":` + jsonStr(cert) + `,"key":` + jsonStr(key) + `,"sni":"a.com","client":{"ca":` + fakeCert + `}}`, `failed to validate client_cert: failed to parse cert: PEM_read_bio_X509_AUX() failed`},
		{"ssls", `{"id":"1","cert":"$secret://vault/1/cert","key":"$secret://vault/1/key","sni":"a.com"}`, ""},
		{"ssls", `{"id":"1","cert":"$secret://vault/1/cert","key":"$secret://vault/1/key","sni":"a.com","certs":["$env://CERT"],"keys":["$ENV://KEY"]}`, ""},
		// protos, secrets, stream routes
		{"protos", `{"id":"1","content":"syntax = \"proto3\";"}`, ""},
		{"protos", `{"id":"1"}`, `invalid configuration: property "content" is required`},
		{"secrets", `{"id":"vault/1","uri":"http://127.0.0.1:8200","prefix":"kv","token":"t"}`, ""},
		{"secrets", `{"id":"vault/1","uri":"127.0.0.1","prefix":"kv","token":"t"}`, `invalid configuration: property "uri" validation failed: failed to match pattern "^[^\\/]+:\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?" with "127.0.0.1"`},
		{"secrets", `{"id":"aws/1","access_key_id":"a"}`, `invalid configuration: property "secret_access_key" is required`},
		{"secrets", `{"id":"gcp/1","auth_file":"/x"}`, ""},
		{"secrets", `{"id":"foo/1"}`, `invalid secret manager: foo`},
		{"stream_routes", `{"id":"1","server_port":9100,"upstream":{"nodes":{"127.0.0.1:1995":1},"scheme":"tcp"}}`, ""},
		{"stream_routes", `{"id":"1","server_port":0}`, `invalid configuration: property "server_port" validation failed: expected 0 to be at least 1`},
	}
	for _, tt := range tests {
		k, ok := ByName(tt.kind)
		if !ok {
			t.Fatalf("no kind %s", tt.kind)
		}
		name := tt.kind + " " + tt.body
		if len(name) > 90 {
			name = name[:90]
		}
		t.Run(name, func(t *testing.T) {
			err := c.Check(k, obj(t, tt.body))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("\ngot  %s\nwant %s", got, tt.want)
			}
		})
	}
}
