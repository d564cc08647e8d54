package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const upstreamBody = `{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}`

func TestAdminAuth(t *testing.T) {
	g := startDefault(t, "")
	cases := []struct {
		name, method, key, desc string
	}{
		{"missing", "GET", "", "missing apikey"},
		{"wrong", "GET", "nope", "wrong apikey"},
		{"prefix of key", "GET", adminKey[:10], "wrong apikey"},
		{"viewer write", "PUT", "viewer-key-0123456789", "invalid method for role viewer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := g.adminWithKey(c.method, "/apisix/admin/routes/1", `{"uri":"/a","upstream":`+upstreamBody+`}`, c.key)
			if r.Status != 401 {
				t.Fatalf("status %d body %s", r.Status, r.Body)
			}
			m := r.JSON(t)
			if m["error_msg"] != "failed to check token" || m["description"] != c.desc {
				t.Fatalf("body %s", r.Body)
			}
		})
	}
	t.Run("viewer read", func(t *testing.T) {
		if r := g.adminWithKey("GET", "/apisix/admin/routes", "", "viewer-key-0123456789"); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
	})
	t.Run("query key", func(t *testing.T) {
		if r := g.adminWithKey("GET", "/apisix/admin/routes?api_key="+adminKey, "", ""); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
	})
	t.Run("head without key", func(t *testing.T) {
		if r := g.adminWithKey("HEAD", "/apisix/admin", "", ""); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
	})
	t.Run("options cors", func(t *testing.T) {
		r := g.adminWithKey("OPTIONS", "/apisix/admin/routes", "", "")
		if r.Status != 200 || r.Header.Get("Access-Control-Allow-Methods") == "" {
			t.Fatalf("status %d headers %v", r.Status, r.Header)
		}
	})
	t.Run("unknown resource after auth", func(t *testing.T) {
		wantError(t, g.admin("GET", "/apisix/admin/foo", ""), 404, "Unsupported resource type: foo")
		if r := g.adminWithKey("GET", "/apisix/admin/foo", "", ""); r.Status != 401 {
			t.Fatalf("auth must come first, got %d", r.Status)
		}
	})
	t.Run("key never logged", func(t *testing.T) {
		if strings.Contains(g.output(), adminKey) {
			t.Fatal("admin key appears in the log")
		}
	})
}

func TestAdminAllowList(t *testing.T) {
	g := startDefault(t, "    allow_admin:\n      - 10.0.0.0/8\n")
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/apisix/admin/routes", g.adminPort), nil)
	req.Header.Set("X-API-KEY", adminKey)
	req.Header.Set("X-Forwarded-For", "10.1.1.1")
	r := do(t, req)
	if r.Status != 403 || !strings.Contains(string(r.Body), "403 Forbidden") {
		t.Fatalf("status %d body %s", r.Status, r.Body)
	}
}

func TestAdminRouteLifecycle(t *testing.T) {
	g := startDefault(t, "")
	r := g.admin("PUT", "/apisix/admin/upstreams/u1", upstreamBody)
	if r.Status != 201 {
		t.Fatalf("create upstream: %d %s", r.Status, r.Body)
	}
	r = g.admin("PUT", "/apisix/admin/upstreams/u1", upstreamBody)
	if r.Status != 200 {
		t.Fatalf("replace upstream: %d %s", r.Status, r.Body)
	}
	r = g.admin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","upstream_id":"u1","name":"r1"}`)
	if r.Status != 201 {
		t.Fatalf("create route: %d %s", r.Status, r.Body)
	}
	m := r.JSON(t)
	if m["key"] != "/apisix/routes/1" {
		t.Fatalf("key %v", m["key"])
	}
	v := m["value"].(map[string]any)
	if v["id"] != "1" || v["create_time"] == nil || v["update_time"] == nil {
		t.Fatalf("value %v", v)
	}
	if _, ok := v["priority"]; ok {
		t.Fatal("defaults must not be persisted (APISIX 3.14+)")
	}
	if r.Header.Get("X-API-VERSION") != "v3" || !strings.HasPrefix(r.Header.Get("Server"), "APISIX") {
		t.Fatalf("headers %v", r.Header)
	}

	r = g.admin("GET", "/apisix/admin/routes/1", "")
	m = r.JSON(t)
	if r.Status != 200 || m["createdIndex"] == nil || m["modifiedIndex"] == nil {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}

	r = g.admin("POST", "/apisix/admin/routes", `{"uri":"/posted","upstream":`+upstreamBody+`}`)
	if r.Status != 201 {
		t.Fatalf("post: %d %s", r.Status, r.Body)
	}
	pid := r.JSON(t)["value"].(map[string]any)["id"].(string)
	if len(pid) != 20 {
		t.Fatalf("generated id %q is not 20 digits", pid)
	}

	r = g.admin("GET", "/apisix/admin/routes", "")
	m = r.JSON(t)
	if m["total"].(float64) != 2 || len(m["list"].([]any)) != 2 {
		t.Fatalf("list %s", r.Body)
	}

	r = g.admin("PATCH", "/apisix/admin/routes/1", `{"name":"patched","desc":"d"}`)
	if r.Status != 200 || r.JSON(t)["value"].(map[string]any)["name"] != "patched" {
		t.Fatalf("patch %d %s", r.Status, r.Body)
	}
	r = g.admin("PATCH", "/apisix/admin/routes/1/methods", `["GET","POST"]`)
	if r.Status != 200 || len(r.JSON(t)["value"].(map[string]any)["methods"].([]any)) != 2 {
		t.Fatalf("sub-path patch %d %s", r.Status, r.Body)
	}
	r = g.admin("PATCH", "/apisix/admin/routes/1", `{"desc":null}`)
	if _, ok := r.JSON(t)["value"].(map[string]any)["desc"]; ok || r.Status != 200 {
		t.Fatalf("null must delete: %s", r.Body)
	}

	wantError(t, g.admin("DELETE", "/apisix/admin/upstreams/u1", ""), 400,
		"can not delete this upstream, route [1] is still using it now")

	r = g.admin("DELETE", "/apisix/admin/routes/1", "")
	if r.Status != 200 || r.JSON(t)["deleted"] != "1" {
		t.Fatalf("delete %d %s", r.Status, r.Body)
	}
	r = g.admin("GET", "/apisix/admin/routes/1", "")
	if r.Status != 404 || r.JSON(t)["message"] != "Key not found" {
		t.Fatalf("get deleted %d %s", r.Status, r.Body)
	}
	r = g.admin("DELETE", "/apisix/admin/upstreams/u1?force=true", "")
	if r.Status != 200 {
		t.Fatalf("force delete %d %s", r.Status, r.Body)
	}
}

func TestAdminBadInput(t *testing.T) {
	g := startDefault(t, "")
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"missing body", "PUT", "/apisix/admin/routes/1", "", 400, "missing configurations"},
		{"missing id", "PUT", "/apisix/admin/routes", `{"uri":"/a","upstream":` + upstreamBody + `}`, 400, "missing route id"},
		{"wrong id", "PUT", "/apisix/admin/routes/1", `{"id":"2","uri":"/a","upstream":` + upstreamBody + `}`, 400, "wrong route id"},
		{"post with id", "POST", "/apisix/admin/routes/1", `{"uri":"/a","upstream":` + upstreamBody + `}`, 400, "wrong route id, do not need it"},
		{"create_time", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","create_time":1,"upstream":` + upstreamBody + `}`, 400, "the property is forbidden:  create_time"},
		{"upstream update_time", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","upstream":{"update_time":1,"nodes":{"127.0.0.1:80":1}}}`, 400, "the property is forbidden:  upstream.update_time"},
		{"bad ttl", "PUT", "/apisix/admin/routes/1?ttl=abc", `{}`, 400, "invalid argument ttl: should be a number"},
		{"consumer post", "POST", "/apisix/admin/consumers", `{"username":"jack"}`, 405, "not supported `POST` method for consumer"},
		{"consumer patch", "PATCH", "/apisix/admin/consumers/jack", `{"desc":"x"}`, 405, "not supported `PATCH` method for consumer"},
		{"missing upstream ref", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","upstream_id":"nope"}`, 400, "failed to fetch upstream info by upstream id [nope], response code: 404"},
		{"missing service ref", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","service_id":"nope"}`, 400, "failed to fetch service info by service id [nope], response code: 404"},
		{"credential of missing consumer", "PUT", "/apisix/admin/consumers/ghost/credentials/c1", `{"plugins":{}}`, 404, "consumer not found"},
		{"stream routes", "GET", "/apisix/admin/stream_routes", "", 400, "stream mode is disabled, can not add stream routes"},
		{"delete without id", "DELETE", "/apisix/admin/routes", "", 400, "missing route id"},
		{"wrong username", "PUT", "/apisix/admin/consumers/jack", `{"username":"john"}`, 400, "wrong username"},
		{"unknown plugin", "PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"no-such-plugin":{}}}`, 400, "unknown plugin [no-such-plugin]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, g.admin(c.method, c.path, c.body), c.status, c.msg)
		})
	}
	t.Run("malformed json writes nothing", func(t *testing.T) {
		for _, body := range []string{`{"uri":`, `{"uri":"/a","uri":"/b","upstream":` + upstreamBody + `}`, "{\"uri\":\"\xff\"}", strings.Repeat("[", 5000)} {
			r := g.admin("PUT", "/apisix/admin/routes/bad", body)
			if r.Status != 400 || !strings.HasPrefix(r.JSON(t)["error_msg"].(string), "invalid request body") {
				t.Fatalf("body %q: %d %s", body, r.Status, r.Body)
			}
		}
		if r := g.admin("GET", "/apisix/admin/routes/bad", ""); r.Status != 404 {
			t.Fatalf("a rejected body was stored: %s", r.Body)
		}
	})
	t.Run("huge body", func(t *testing.T) {
		r := g.admin("PUT", "/apisix/admin/routes/big", `{"uri":"/a","desc":"`+strings.Repeat("x", 1600000)+`"}`)
		if r.Status != 400 || !strings.Contains(r.JSON(t)["error_msg"].(string), "is greater than the maximum size 1572864 allowed") {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("bad ids", func(t *testing.T) {
		for _, p := range []string{"/apisix/admin/routes/..%2f..%2fssls%2f1", "/apisix/admin/routes/a%00b", "/apisix/admin/routes/" + strings.Repeat("a", 65)} {
			r := g.admin("PUT", p, `{"uri":"/a","upstream":`+upstreamBody+`}`)
			if r.Status != 400 {
				t.Fatalf("%s: %d %s", p, r.Status, r.Body)
			}
		}
	})
	t.Run("page size", func(t *testing.T) {
		r := g.admin("GET", "/apisix/admin/routes?page=1&page_size=5", "")
		if r.Status != 400 || string(r.Body) != "page_size must be between 10 and 500" {
			t.Fatalf("%d %q", r.Status, r.Body)
		}
	})
}

func TestAdminConsumersAndCredentials(t *testing.T) {
	g := startDefault(t, "")
	r := g.admin("PUT", "/apisix/admin/consumers", `{"username":"jack","desc":"d"}`)
	if r.Status != 201 || r.JSON(t)["key"] != "/apisix/consumers/jack" {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	r = g.admin("PUT", "/apisix/admin/consumers/jack/credentials/c1", `{"plugins":{}}`)
	if r.Status != 201 || r.JSON(t)["key"] != "/apisix/consumers/jack/credentials/c1" {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	r = g.admin("GET", "/apisix/admin/consumers", "")
	if r.JSON(t)["total"].(float64) != 1 {
		t.Fatalf("credentials must not be listed as consumers: %s", r.Body)
	}
	r = g.admin("GET", "/apisix/admin/consumers/jack/credentials", "")
	if r.JSON(t)["total"].(float64) != 1 {
		t.Fatalf("%s", r.Body)
	}
	if r = g.admin("GET", "/apisix/admin/consumers/ghost/credentials", ""); r.Status != 404 {
		t.Fatalf("%d", r.Status)
	}
	g.admin("DELETE", "/apisix/admin/consumers/jack", "")
	if r = g.admin("GET", "/apisix/admin/consumers/jack/credentials/c1", ""); r.Status != 404 {
		t.Fatalf("credential must go with its consumer: %d", r.Status)
	}
}

func TestRestartKeepsConfig(t *testing.T) {
	dir := newDir(t)
	a, h := freePort(t), freePort(t)
	g := start(t, dir, a, h, defaultConfig(a, h, ""))
	g.admin("PUT", "/apisix/admin/upstreams/1", upstreamBody)
	g.stop()
	if g.exitErr != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", g.exitErr, g.output())
	}
	g2 := start(t, dir, a, h, defaultConfig(a, h, ""))
	if r := g2.admin("GET", "/apisix/admin/upstreams/1", ""); r.Status != 200 {
		t.Fatalf("after restart: %d %s", r.Status, r.Body)
	}
}

func TestGeneratedAdminKey(t *testing.T) {
	dir := newDir(t)
	a, h := freePort(t), freePort(t)
	cfg := fmt.Sprintf("apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: %d\n  ssl:\n    enable: false\ndeployment:\n  admin:\n    admin_listen:\n      ip: 127.0.0.1\n      port: %d\n", h, a)
	key := "from-env-key-0123456789"
	// With SLUICE_ADMIN_KEY nothing is generated.
	g := start(t, dir, a, h, cfg, "SLUICE_ADMIN_KEY="+key)
	if r := g.adminWithKey("GET", "/apisix/admin/routes", "", key); r.Status != 200 {
		t.Fatalf("env key: %d", r.Status)
	}
	g.stop()
	if _, err := os.Stat(filepath.Join(dir, "data", "admin_key")); err == nil {
		t.Fatal("a key was generated although SLUICE_ADMIN_KEY was set")
	}
	// Without any key one is generated, stored 0600 and printed once.
	st, out := runUntilReady(t, dir, a, h)
	fi, err := os.Stat(filepath.Join(dir, "data", "admin_key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin_key file: %v %v", err, fi)
	}
	if !strings.Contains(out, "X-API-KEY: "+st) {
		t.Fatalf("generated key not printed: %s", out)
	}
	_, out2 := runUntilReady(t, dir, a, h)
	if strings.Contains(out2, "X-API-KEY") {
		t.Fatalf("key printed a second time: %s", out2)
	}
}

// runUntilReady starts sluice with the dir's config and no env key, reads
// the generated key from data/admin_key, checks it works, stops sluice and
// returns the key and the output.
func runUntilReady(t *testing.T, dir string, a, h int) (string, string) {
	t.Helper()
	g := &gw{t: t, dir: dir, adminPort: a, httpPort: h, done: make(chan struct{})}
	g.cmd = exec.Command(binary, "run", "-c", filepath.Join(dir, "conf", "config.yaml"))
	g.cmd.Dir = dir
	var out strings.Builder
	g.cmd.Stdout = &out
	g.cmd.Stderr = &out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exitErr = g.cmd.Wait(); close(g.done) }()
	var key string
	for i := 0; i < 300; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "data", "admin_key"))
		if err == nil {
			var s struct{ Key string }
			if jsonUnmarshal(b, &s) == nil && s.Key != "" {
				key = s.Key
				if r, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/apisix/admin/routes", a), nil); err == nil {
					r.Header.Set("X-API-KEY", key)
					if resp, err := http.DefaultClient.Do(r); err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
					}
				}
			}
		}
		sleepMs(50)
	}
	g.stop()
	if key == "" {
		t.Fatalf("no key generated: %s", out.String())
	}
	return key, out.String()
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apisix:\n  node_listen: abc\n"), 0o644)
	out, err := exec.Command(binary, "validate", "-c", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.yaml:2") {
		t.Fatalf("want failure with file:line, got %v: %s", err, out)
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("apisix:\n  node_listen: 9080\n"), 0o644)
	if out, err := exec.Command(binary, "validate", "-c", good).CombinedOutput(); err != nil {
		t.Fatalf("good config: %v %s", err, out)
	}
	out, _ = exec.Command(binary, "version").CombinedOutput()
	if !strings.Contains(string(out), "sluice") {
		t.Fatalf("version: %s", out)
	}
}
