package resource

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/sluice-gw/sluice/internal/schema"
)

func TestKinds(t *testing.T) {
	if len(Kinds()) != 13 {
		t.Fatalf("got %d kinds", len(Kinds()))
	}
	for _, k := range Kinds() {
		var v any
		if err := json.Unmarshal(k.Schema(), &v); err != nil {
			t.Errorf("%s: schema is not JSON: %v", k.Name, err)
		}
		if got, ok := ByName(k.Name); !ok || got != k {
			t.Errorf("ByName(%s)", k.Name)
		}
		if k.SchemaName != "" {
			if got, ok := BySchemaName(k.SchemaName); !ok || got != k {
				t.Errorf("BySchemaName(%s)", k.SchemaName)
			}
		}
	}
	for name, want := range map[string]string{"routes": "route", "consumer_groups": "consumer group", "plugin_metadata": "plugin_metadata", "global_rules": "global rule"} {
		k, _ := ByName(name)
		if k.Singular != want {
			t.Errorf("%s singular %q", name, k.Singular)
		}
	}
	c, _ := ByName("consumers")
	if !c.NoPost || !c.NoPatch {
		t.Error("consumers must refuse POST and PATCH")
	}
	if _, ok := ByName("nope"); ok {
		t.Error("unknown kind found")
	}
	if _, ok := BySchemaName("plugins"); ok {
		t.Error("plugins is not a resource schema")
	}
}

func TestSchemaCheck(t *testing.T) {
	c := NewChecker(testRegistry(t))
	k, _ := ByName("routes")
	err := c.SchemaCheck(k, obj(t, `{"uri":1,"plugins":{}}`))
	if err == nil || err.Error() != `property "uri" validation failed: wrong type: expected string, got number` {
		t.Errorf("got %v", err)
	}
	// No plugin checks in the schema-only check.
	if err := c.SchemaCheck(k, obj(t, `{"uri":"/a","plugins":{"nope":{}}}`)); err != nil {
		t.Errorf("got %v", err)
	}
}

func TestCheckPluginMetadata(t *testing.T) {
	c := NewChecker(testRegistry(t))
	tests := []struct{ name, body, want string }{
		{"echo", `{"id":"echo","log_format":{"a":"b"}}`, ""},
		{"echo", `{"log_format":"x"}`, `invalid configuration: property "log_format" validation failed: wrong type: expected object, got string`},
		{"echo", `{"x":1}`, `invalid configuration: additional properties forbidden, found x`},
		{"limit-count", `{"anything":1}`, ""},
		{"nope", `{}`, `invalid plugin name`},
		{"", `{}`, `missing plugin name`},
	}
	for _, tt := range tests {
		t.Run(tt.name+tt.body, func(t *testing.T) {
			err := c.CheckPluginMetadata(tt.name, obj(t, tt.body))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestRefCheckOrder(t *testing.T) {
	c := NewChecker(testRegistry(t))
	var seen []Ref
	c.RefCheck = func(r Ref) error {
		seen = append(seen, r)
		if r.ID == "missing" {
			return errors.New("failed to fetch upstream info by upstream id [missing], response code: 404")
		}
		return nil
	}
	k, _ := ByName("routes")
	// The reference check comes before the plugin check, as in APISIX.
	err := c.Check(k, obj(t, `{"uri":"/a","upstream_id":"missing","plugins":{"nope":{}}}`))
	if err == nil || err.Error() != "failed to fetch upstream info by upstream id [missing], response code: 404" {
		t.Fatalf("got %v", err)
	}
	seen = nil
	if err := c.Check(k, obj(t, `{"uri":"/a","upstream_id":1,"service_id":"s","plugin_config_id":"p"}`)); err != nil {
		t.Fatal(err)
	}
	want := []Ref{{"upstreams", "1", ""}, {"services", "s", ""}, {"plugin_configs", "p", ""}}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("refs %v", seen)
	}
}

func TestRefs(t *testing.T) {
	tests := []struct {
		kind, body string
		want       []Ref
	}{
		{"routes", `{"uri":"/a","upstream_id":1,"service_id":"s1","plugin_config_id":"p","upstream":{"tls":{"client_cert_id":"c"}},
			"plugins":{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":"u2","weight":1},{"weight":1}]}]},"grpc-transcode":{"proto_id":"1"}}}`,
			[]Ref{{"ssls", "c", ""}, {"upstreams", "1", ""}, {"services", "s1", ""}, {"plugin_configs", "p", ""}, {"upstreams", "u2", "plugin"}, {"protos", "1", "plugin"}}},
		{"consumers", `{"username":"a","group_id":"g"}`, []Ref{{"consumer_groups", "g", ""}}},
		{"upstreams", `{"nodes":{},"tls":{"client_cert_id":2}}`, []Ref{{"ssls", "2", ""}}},
		{"global_rules", `{"id":"1","plugins":{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":3}]}]}}}`, []Ref{{"upstreams", "3", "plugin"}}},
		{"ssls", `{}`, nil},
	}
	for _, tt := range tests {
		k, _ := ByName(tt.kind)
		if got := Refs(k, obj(t, tt.body)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v want %v", tt.kind, got, tt.want)
		}
	}
}

func TestAuthKeys(t *testing.T) {
	reg := testRegistry(t)
	got := AuthKeys(reg, obj(t, `{"key-auth":{"key":"k1"},"limit-count":{"count":1},"nope":{"key":"x"}}`))
	if !reflect.DeepEqual(got, []AuthKey{{"key-auth", "k1"}}) {
		t.Errorf("got %v", got)
	}
	if AuthKeys(nil, nil) != nil {
		t.Error("nil registry")
	}
}

func TestDecode(t *testing.T) {
	rk, _ := ByName("routes")
	v, err := Decode(rk, []byte(`{"id":12,"uri":"/a","hosts":["a.com"],"methods":["GET"],"vars":[["arg_a","==","1"]],
		"plugins":{"limit-count":{"count":1}},"upstream":{"nodes":{"b.com:8080":2,"a.com":1,"[::1]:81":3},"retries":0,
		"checks":{"active":{"http_path":"/status"}}},"timeout":{"connect":1,"send":2,"read":3.5},"labels":{"env":"prod"}}`))
	if err != nil {
		t.Fatal(err)
	}
	r := v.(*Route)
	if r.ID != "12" || r.Status != 1 || r.Priority != 0 || r.URI != "/a" || r.Hosts[0] != "a.com" || string(r.Vars) != `[["arg_a","==","1"]]` {
		t.Errorf("route %+v", r)
	}
	if string(r.Plugins["limit-count"]) != `{"count":1}` || r.Labels["env"] != "prod" || *r.Timeout != (Timeout{1, 2, 3.5}) {
		t.Errorf("route %+v", r)
	}
	u := r.Upstream
	wantNodes := []Node{{Host: "[::1]", Port: 81, Weight: 3}, {Host: "a.com", Weight: 1}, {Host: "b.com", Port: 8080, Weight: 2}}
	if !reflect.DeepEqual(u.Nodes, wantNodes) {
		t.Errorf("nodes %+v", u.Nodes)
	}
	if u.Type != "roundrobin" || u.Scheme != "http" || u.PassHost != "pass" || u.HashOn != "vars" || u.Retries == nil || *u.Retries != 0 {
		t.Errorf("upstream %+v", u)
	}
	a := u.Checks.Active
	if a.HTTPPath != "/status" || a.Type != "http" || a.Timeout != 1 || a.Concurrency != 10 || !a.HTTPSVerifyCertificate ||
		!reflect.DeepEqual(a.Healthy, ActiveHealthy{1, []int{200, 302}, 2}) || a.Unhealthy.HTTPFailures != 5 || u.Checks.Passive != nil {
		t.Errorf("checks %+v", a)
	}

	// Invalid objects are rejected with the Admin API's message.
	if _, err := Decode(rk, []byte(`{"uri":"/a"}`)); err == nil {
		t.Error("route without upstream accepted")
	}
	if _, err := Decode(rk, []byte(`{"uri":"/a","plugins":{},"filter_func":"function(v) return true end"}`)); err == nil || err.Error() != "filter_func is not supported by Sluice (Lua)" {
		t.Errorf("filter_func: %v", err)
	}
	if _, err := Decode(rk, []byte(`[1]`)); err == nil || err.Error() != "invalid configuration: wrong type: expected object, got table" {
		t.Errorf("array: %v", err)
	}
	if _, err := Decode(rk, []byte(`{"uri":"/a","uri":"/b"}`)); err == nil {
		t.Error("duplicate key accepted")
	}

	uk, _ := ByName("upstreams")
	v, err = Decode(uk, []byte(`{"id":"u","nodes":[{"host":"10.0.0.1","weight":1,"priority":-1,"metadata":{"z":1}}],"type":"chash","key":"uri",
		"keepalive_pool":{"size":10},"tls":{"verify":true},"checks":{"active":{},"passive":{"healthy":{"successes":0}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	up := v.(*Upstream)
	if up.Nodes[0].Priority != -1 || up.Nodes[0].Port != 0 || up.Type != "chash" || up.Key != "uri" || up.Retries != nil ||
		*up.KeepalivePool != (KeepalivePool{10, 60, 1000}) || !up.TLS.Verify || up.Checks.Passive.Healthy.Successes != 0 ||
		len(up.Checks.Passive.Healthy.HTTPStatuses) != 19 || up.Checks.Passive.Unhealthy.Timeouts != 7 {
		t.Errorf("upstream %+v", up)
	}

	cert, key := testPair(t, "a.com")
	sk, _ := ByName("ssls")
	b, _ := json.Marshal(map[string]any{"id": 3, "cert": cert, "key": key, "sni": "a.com", "client": map[string]any{"ca": cert}})
	v, err = Decode(sk, b)
	if err != nil {
		t.Fatal(err)
	}
	s := v.(*SSL)
	if s.ID != "3" || s.Type != "server" || s.Status != 1 || !reflect.DeepEqual(s.SNIs, []string{"a.com"}) || s.Client.Depth != 1 {
		t.Errorf("ssl %+v", s)
	}
	certs, err := s.Certificates()
	if err != nil || len(certs) != 1 || certs[0].Leaf == nil || certs[0].Leaf.Subject.CommonName != "a.com" {
		t.Errorf("certificates %v %v", certs, err)
	}

	for kind, body := range map[string]string{
		"services":        `{"id":"s","upstream_id":"u","enable_websocket":true}`,
		"consumers":       `{"username":"jack","group_id":1,"plugins":{"key-auth":{"key":"k"}}}`,
		"credentials":     `{"id":"c","plugins":{"key-auth":{"key":"k"}}}`,
		"consumer_groups": `{"id":"g","plugins":{}}`,
		"global_rules":    `{"id":"1","plugins":{}}`,
		"plugin_configs":  `{"id":"1","plugins":{}}`,
		"plugin_metadata": `{"id":"echo","x":1}`,
		"protos":          `{"id":"1","content":"x"}`,
		"secrets":         `{"id":"vault/1","uri":"http://a:1","prefix":"p","token":"t"}`,
		"stream_routes":   `{"id":"1","server_port":9000,"upstream_id":"u","protocol":{"name":"redis"}}`,
	} {
		k, _ := ByName(kind)
		v, err := Decode(k, []byte(body))
		if err != nil || v == nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
	ck, _ := ByName("consumers")
	v, _ = Decode(ck, []byte(`{"username":"jack","group_id":1}`))
	if c := v.(*Consumer); c.Username != "jack" || c.GroupID != "1" {
		t.Errorf("consumer %+v", c)
	}
	sek, _ := ByName("secrets")
	v, _ = Decode(sek, []byte(`{"id":"vault/1","uri":"http://a:1","prefix":"p","token":"t"}`))
	if s := v.(*Secret); s.Manager != "vault" {
		t.Errorf("secret %+v", s)
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{"uri":"/a","upstream":{"nodes":{"127.0.0.1:80":1}}}`,
		`{"uri":"/a","plugins":{"limit-count":{"count":1,"time_window":1,"_meta":{"filter":[["a","==","b"]]}}},"vars":[["OR",["a","~~","b"]]]}`,
		`{"nodes":[{"host":"::1","weight":1}],"type":"chash","hash_on":"header","key":"x"}`,
		`{"username":"a","plugins":{"key-auth":{"key":"k"}}}`,
		`{"cert":"x","key":"y","snis":["a"],"certs":["a"],"keys":[]}`,
	} {
		f.Add(s)
	}
	reg := testRegistry(f)
	c := NewChecker(reg)
	f.Fuzz(func(t *testing.T, body string) {
		v, err := schema.DecodeJSON([]byte(body), 50)
		if err != nil {
			return
		}
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, k := range Kinds() {
			_ = c.Check(k, m)
			_ = c.SchemaCheck(k, m)
			_ = Refs(k, m)
			_, _ = Decode(k, []byte(body))
		}
		_ = AuthKeys(reg, m)
	})
}
