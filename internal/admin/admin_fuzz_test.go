package admin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/admin"
	"github.com/sluice-gw/sluice/internal/crypt"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/all"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store/bolt"
)

// fuzzServer is an Admin API on a real bbolt file behind a real loopback
// listener. Handler panics are caught and reported as status 599 with the
// stack in the body, so the fuzzer sees them as failures instead of a
// closed connection.
type fuzzServer struct {
	srv    *httptest.Server
	client *http.Client
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "sluice.db"), bolt.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	reg, _ := plugin.NewRegistry(all.Defs(), nil)
	kr, err := crypt.NewKeyring([]string{"edd1c9f0985e76a2"})
	if err != nil {
		tb.Fatal(err)
	}
	adm := admin.New(admin.Options{Store: st, Plugins: reg, Checker: resource.NewChecker(reg),
		Keys: []admin.Key{{Name: "admin", Key: "fuzz-key", Role: admin.RoleAdmin}}, KeyRequired: true,
		Keyring: kr, Server: "sluice"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				w.WriteHeader(599)
				fmt.Fprintf(w, "panic: %v\n%s", p, debug.Stack())
			}
		}()
		adm.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return &fuzzServer{srv: srv, client: srv.Client()}
}

// do sends one Admin API request; ok is false when the request could not
// be formed (a path no client can send).
func (s *fuzzServer) do(t testing.TB, method, path string, body []byte) (status int, resp []byte, ok bool) {
	t.Helper()
	u, err := url.Parse(s.srv.URL + path)
	if err != nil {
		return 0, nil, false
	}
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, false
	}
	req.Header.Set("X-API-KEY", "fuzz-key")
	r, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	resp, err = io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, path, err)
	}
	return r.StatusCode, resp, true
}

// checkAnswer is the invariant: never a panic or a 5xx; a 4xx carries a
// JSON object with a non-empty error_msg (APISIX's "Key not found" 404,
// {"message": ...}, is the one other shape).
func checkAnswer(t *testing.T, method, path string, body []byte, status int, resp []byte) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("%s %s %q: status %d: %s", method, path, body, status, resp)
	}
	if status < 400 {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(resp, &m); err != nil {
		t.Fatalf("%s %s %q: status %d with a non-JSON body %q", method, path, body, status, resp)
	}
	if msg, _ := m["error_msg"].(string); msg != "" {
		return
	}
	if status == 404 && m["message"] == "Key not found" {
		return
	}
	t.Fatalf("%s %s %q: status %d without error_msg: %s", method, path, body, status, resp)
}

var fuzzMethods = []string{"PUT", "POST", "PATCH", "DELETE", "GET"}

var fuzzKinds = []string{"routes", "services", "upstreams", "consumers", "consumers/jack/credentials",
	"ssls", "global_rules", "plugin_configs", "consumer_groups", "plugin_metadata", "protos",
	"secrets/vault", "stream_routes", "schema/validate/route"}

const fuzzUpstream = `{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}`

// fuzzSeeds are request bodies from the Admin API tests (test/e2e,
// internal/plugins/*): valid objects of every kind and near misses.
var fuzzSeeds = []struct {
	kind int
	id   string
	body string
}{
	{0, "1", `{"uri":"/a","upstream":` + fuzzUpstream + `}`},
	{0, "1", `{"uris":["/a","/b/*"],"methods":["GET","POST"],"hosts":["a.test","*.b.test"],"priority":3,"vars":[["arg_x","==","1"],["http_y","~~","^z"]],"upstream":` + fuzzUpstream + `}`},
	{0, "1", `{"uri":"/a","plugins":{"limit-count":{"count":2,"time_window":60,"policy":"redis","redis_host":"127.0.0.1"}},"upstream":` + fuzzUpstream + `}`},
	{0, "1", `{"uri":"/a","plugins":{"key-auth":{},"proxy-rewrite":{"uri":"/b","headers":{"set":{"X-A":"$remote_addr"}}},"_meta":{}},"upstream_id":"u1"}`},
	{0, "1", `{"uri":"/a","upstream_id":"u1","foo":1}`},
	{0, "1", `{"uri":"/a","plugin_config_id":"pc1","service_id":"s1"}`},
	{0, "1", `{"uri":"/a","plugins":{"forward-auth":{"uri":"http://127.0.0.1:1/auth","_meta":{"filter":[["arg_v","==","2"]],"priority":1,"error_response":{"m":1}}}},"upstream":` + fuzzUpstream + `}`},
	{0, "", `{"uri":"/post","remote_addrs":["10.0.0.0/8","::1"],"timeout":{"connect":1,"send":1,"read":1},"enable_websocket":true,"upstream":` + fuzzUpstream + `}`},
	{1, "s1", `{"upstream_id":"u1","plugins":{},"hosts":["a.test"]}`},
	{2, "u1", fuzzUpstream},
	{2, "u1", `{"type":"chash","hash_on":"header","key":"X-Id","scheme":"https","nodes":[{"host":"a.test","port":443,"weight":1,"priority":1}],"retries":2,"timeout":{"connect":1,"send":1,"read":1},"keepalive_pool":{"size":10,"idle_timeout":5,"requests":100},"checks":{"active":{"http_path":"/h","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"http_failures":1}}},"pass_host":"rewrite","upstream_host":"b.test"}`},
	{2, "u9", `{"nodes":{"127.0.0.1:1980":1},"tls":{"client_cert_id":"c9"}}`},
	{3, "jack", `{"username":"jack","plugins":{"key-auth":{"key":"k1"}},"group_id":"g1"}`},
	{3, "", `{"username":"john","foo":1}`},
	{4, "c1", `{"plugins":{"key-auth":{"key":"k2"}}}`},
	{5, "x", `{"cert":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","key":"k","snis":["a.test"],"client":{"ca":"x","depth":2}}`},
	{6, "1", `{"plugins":{"prometheus":{}}}`},
	{6, "1", `{"plugins":{},"name":"x"}`},
	{7, "pc1", `{"plugins":{"limit-req":{"rate":1,"burst":1,"key":"remote_addr"}}}`},
	{8, "g1", `{"plugins":{"limit-count":{"count":1,"time_window":1}}}`},
	{9, "limit-count", `{"k":"v"}`},
	{10, "1", `{"content":"syntax = \"proto3\"; package p; message M { string a = 1; }"}`},
	{11, "v1", `{"uri":"http://127.0.0.1:8200","prefix":"p","token":"t"}`},
	{12, "1", `{"upstream":` + fuzzUpstream + `}`},
	{13, "", `{"uri":"/a"}`},
	{0, "1/uri", `"/patched"`},
	{0, "1/plugins", `{"proxy-rewrite":{"uri":"/c"}}`},
	{2, "u1/nodes", `{"127.0.0.1:1981":2}`},
	{0, "1", `[]`},
	{0, "1", `{"uri":"/a","uri":"/b"}`},
	{0, "1", `{"uri":"/a","labels":{"k":"v"},"desc":"d","name":"n","status":0,"create_time":1,"update_time":2}`},
	{0, "1", "{\"uri\":\"/a\\u0000\"}"},
	{0, "1", `{"uri":"/a","plugins":{"limit-count":{"count":1e309,"time_window":-0}}}`},
}

// FuzzAdminWrite sends mutated bodies to every resource kind with every
// method, ids and PATCH sub-paths included. Prior requests leave objects in
// the store, so references and PATCH merges meet real state.
func FuzzAdminWrite(f *testing.F) {
	for _, s := range fuzzSeeds {
		for m := range fuzzMethods {
			f.Add(uint8(m), uint8(s.kind), s.id, []byte(s.body))
		}
	}
	srv := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, method, kind uint8, id string, body []byte) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		path := "/apisix/admin/" + fuzzKinds[int(kind)%len(fuzzKinds)]
		if id != "" {
			path += "/" + id
		}
		status, resp, ok := srv.do(t, m, path, body)
		if !ok {
			return
		}
		checkAnswer(t, m, path, body, status, resp)
	})
}

// FuzzAdminRoute puts mutated route bodies, then patches the stored route
// with the same body as a merge patch: the path plugin confs, vars and
// references go through most often.
func FuzzAdminRoute(f *testing.F) {
	for _, s := range fuzzSeeds {
		if s.kind == 0 {
			f.Add([]byte(s.body))
		}
	}
	srv := newFuzzServer(f)
	// Objects the seeds refer to.
	for _, p := range []struct{ path, body string }{
		{"/apisix/admin/upstreams/u1", fuzzUpstream},
		{"/apisix/admin/services/s1", `{"upstream_id":"u1"}`},
		{"/apisix/admin/plugin_configs/pc1", `{"plugins":{}}`},
		{"/apisix/admin/routes/base", `{"uri":"/base","upstream_id":"u1"}`},
	} {
		if st, resp, _ := srv.do(f, "PUT", p.path, []byte(p.body)); st >= 300 {
			f.Fatalf("seed object %s: %d %s", p.path, st, resp)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, req := range []struct{ method, path string }{
			{"PUT", "/apisix/admin/routes/r1"},
			{"PATCH", "/apisix/admin/routes/base"},
			{"POST", "/apisix/admin/routes"},
		} {
			status, resp, ok := srv.do(t, req.method, req.path, body)
			if ok {
				checkAnswer(t, req.method, req.path, body, status, resp)
			}
		}
		if strings.Contains(string(body), "\"id\"") {
			// A body's own id may differ from the URL's; never a 5xx.
			status, resp, _ := srv.do(t, "PUT", "/apisix/admin/routes", body)
			checkAnswer(t, "PUT", "/apisix/admin/routes", body, status, resp)
		}
	})
}

// fieldRef is one value's place in a decoded JSON document, so a mutation
// can swap it.
type fieldRef struct {
	set func(any)
}

func fieldRefs(v any, set func(any), out []fieldRef) []fieldRef {
	out = append(out, fieldRef{set: set})
	switch x := v.(type) {
	case map[string]any:
		// Sorted, so an input picks the same field on every run.
		for _, k := range slices.Sorted(maps.Keys(x)) {
			out = fieldRefs(x[k], func(n any) { x[k] = n }, out)
		}
	case []any:
		for i, c := range x {
			out = fieldRefs(c, func(n any) { x[i] = n }, out)
		}
	}
	return out
}

// FuzzAdminField takes a valid seed object, replaces one of its values
// (any depth) with the fuzzer's JSON value (or the bytes as a string when
// they are not JSON) and writes it: unlike byte mutations of the whole body,
// every input gets past JSON decoding into schema, plugin and reference
// checks.
func FuzzAdminField(f *testing.F) {
	for i := range fuzzSeeds {
		f.Add(uint8(i), uint16(1), []byte(`-1`))
		f.Add(uint8(i), uint16(2), []byte(`"x"`))
		f.Add(uint8(i), uint16(3), []byte(`{"a":[1e308,null,true]}`))
		f.Add(uint8(i), uint16(5), []byte(`[]`))
	}
	srv := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, seed uint8, field uint16, value []byte) {
		s := fuzzSeeds[int(seed)%len(fuzzSeeds)]
		var doc any
		if err := json.Unmarshal([]byte(s.body), &doc); err != nil {
			return
		}
		var repl any
		if err := json.Unmarshal(value, &repl); err != nil {
			repl = string(value)
		}
		refs := fieldRefs(doc, func(n any) { doc = n }, nil)
		refs[int(field)%len(refs)].set(repl)
		body, err := json.Marshal(doc)
		if err != nil {
			return
		}
		path := "/apisix/admin/" + fuzzKinds[s.kind]
		if s.id != "" {
			path += "/" + s.id
		}
		for _, m := range []string{"PUT", "PATCH"} {
			status, resp, ok := srv.do(t, m, path, body)
			if ok {
				checkAnswer(t, m, path, body, status, resp)
			}
		}
	})
}
