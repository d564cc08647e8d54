package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// standaloneConfig is a config.yaml for the standalone file mode: a data
// plane that reads conf/apisix.yaml. The admin port is set so the test can
// check that nothing listens there.
func standaloneConfig(adminPort, httpPort int) string {
	return fmt.Sprintf(`apisix:
  node_listen:
    - ip: 127.0.0.1
      port: %d
  ssl:
    enable: false
deployment:
  role: data_plane
  role_data_plane:
    config_provider: yaml
  admin:
    admin_listen:
      ip: 127.0.0.1
      port: %d
plugin_attr:
  prometheus:
    # Tests run in parallel processes; the exporter's fixed default port
    # would collide.
    enable_export_server: false
`, httpPort, adminPort)
}

// startStandalone is start() for the file mode: there is no Admin API to
// wait for, so readiness is the data-plane port accepting connections.
func startStandalone(t *testing.T, dir string, adminPort, httpPort int, apisixYAML string) *gw {
	t.Helper()
	conf := filepath.Join(dir, "conf")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "config.yaml"), []byte(standaloneConfig(adminPort, httpPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "apisix.yaml"), []byte(apisixYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, dir: dir, adminPort: adminPort, httpPort: httpPort, done: make(chan struct{})}
	g.cmd = exec.Command(binary, "run", "-c", filepath.Join(conf, "config.yaml"))
	g.cmd.Dir = dir
	g.cmd.Env = os.Environ()
	pr, pw := io.Pipe()
	g.cmd.Stdout, g.cmd.Stderr = pw, pw
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			g.mu.Lock()
			g.out.WriteString(sc.Text() + "\n")
			g.mu.Unlock()
		}
	}()
	go func() {
		g.exitErr = g.cmd.Wait()
		pw.Close()
		close(g.done)
	}()
	t.Cleanup(func() { g.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			t.Fatalf("sluice exited early: %v\n%s", g.exitErr, g.output())
		default:
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort)); err == nil {
			c.Close()
			return g
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sluice not ready in time\n%s", g.output())
	return nil
}

// writeApisixYAML replaces the file in place (truncate + write), the way an
// editor does: the poller may see a half-written file, which the "#END"
// marker makes it skip.
func writeApisixYAML(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "conf", "apisix.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls fn until it is true or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, fn func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if fn() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, timeout)
	return 0
}

func standaloneRoutes(up string, extra string) string {
	return fmt.Sprintf(`upstreams:
  - id: up1
    type: roundrobin
    nodes:
      "%s": 1
routes:
  - id: a
    uri: /a
    upstream_id: up1
  - uri: /noid
    upstream_id: up1
%s#END
`, up, extra)
}

func TestStandaloneFile(t *testing.T) {
	up := echoUpstream(t, "u1")
	a, h := freePort(t), freePort(t)
	dir := newDir(t)
	g := startStandalone(t, dir, a, h, standaloneRoutes(hostPort(up), `  - id: bad
    uri: /bad
    upstream_id: up1
    plugins:
      no-such-plugin: {}
`))

	t.Run("served", func(t *testing.T) {
		for _, p := range []string{"/a", "/noid"} {
			r := g.waitRoute(p, nil)
			if r.Status != 200 || r.Header.Get("X-Upstream") != "u1" {
				t.Fatalf("%s: %d %s", p, r.Status, r.Body)
			}
		}
	})
	t.Run("invalid item skipped and reported", func(t *testing.T) {
		if r := g.proxy("GET", "/bad", nil); r.Status != 404 {
			t.Errorf("/bad: %d %s", r.Status, r.Body)
		}
		out := g.output()
		if !strings.Contains(out, "apisix.yaml:") || !strings.Contains(out, "unknown plugin [no-such-plugin]") {
			t.Errorf("log lacks the skipped item with file:line:\n%s", out)
		}
	})
	t.Run("no admin api", func(t *testing.T) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", a), time.Second); err == nil {
			c.Close()
			t.Fatal("something listens on the admin port in standalone mode")
		}
	})

	// Load runs through every edit below; none of its requests may fail.
	var stop atomic.Bool
	var total, failed atomic.Int64
	var firstFail atomic.Value
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/a", h))
				total.Add(1)
				if err != nil {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, fmt.Sprintf("status %d", resp.StatusCode))
				}
			}
		}()
	}

	t.Run("new route served within 3s", func(t *testing.T) {
		writeApisixYAML(t, dir, standaloneRoutes(hostPort(up), "  - id: b\n    uri: /b\n    upstream_id: up1\n"))
		took := waitFor(t, 3*time.Second, "/b served", func() bool { return g.proxy("GET", "/b", nil).Status == 200 })
		t.Logf("new route served after %s", took)
	})
	t.Run("broken file keeps the old routes", func(t *testing.T) {
		for _, broken := range []string{
			"routes:\n  - id: c\n    uri: /c\n    upstream_id: up1\n",       // no #END
			"routes:\n  - id: c\n   uri: [/c\n    upstream_id: up1\n#END\n", // bad YAML
		} {
			writeApisixYAML(t, dir, broken)
			waitFor(t, 5*time.Second, "broken file reported", func() bool {
				return strings.Contains(g.output(), "keeping the last good config")
			})
			time.Sleep(1500 * time.Millisecond) // a poll or two past the edit
			for _, p := range []string{"/a", "/b"} {
				if r := g.proxy("GET", p, nil); r.Status != 200 {
					t.Errorf("%s after a broken edit: %d %s", p, r.Status, r.Body)
				}
			}
			if r := g.proxy("GET", "/c", nil); r.Status != 404 {
				t.Errorf("/c from a broken file is served: %d", r.Status)
			}
		}
		if out := g.output(); !strings.Contains(out, "apisix.yaml:") {
			t.Errorf("log lacks file:line for the broken file:\n%s", out)
		}
	})
	t.Run("removed route stops", func(t *testing.T) {
		writeApisixYAML(t, dir, standaloneRoutes(hostPort(up), ""))
		waitFor(t, 3*time.Second, "/b removed", func() bool { return g.proxy("GET", "/b", nil).Status == 404 })
	})

	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during edits; first: %v", n, total.Load(), firstFail.Load())
	}
	t.Logf("%d requests during edits, %d failed", total.Load(), failed.Load())
}

func TestStandaloneValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, content string
		ok                  bool
		want                []string
	}{
		{"good", "apisix.yaml", "routes:\n  - uri: /a\n    upstream:\n      nodes:\n        \"127.0.0.1:80\": 1\n#END\n", true, []string{"ok (1 items)"}},
		{"bad items", "apisix.yaml", "routes:\n  - uri: /a\n    upstream_id: 1\n  - uri: 5\n  - uri: /p\n    upstream_id: 1\n    plugins:\n      nope: {}\n#END\n", false,
			[]string{"apisix.yaml:4: routes[1]: invalid configuration", "apisix.yaml:5: routes[2]: unknown plugin [nope]"}},
		{"missing marker by content", "standalone.yaml", "routes:\n  - uri: /a\n    upstream_id: 1\n", false, []string{"standalone.yaml:4: missing the \"#END\" marker"}},
		{"syntax", "apisix.yaml", "routes:\n  - uri: [\n#END\n", false, []string{"apisix.yaml:", "invalid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name, tt.file)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "validate", "-c", p)
			cmd.Dir = filepath.Dir(p)
			out, err := cmd.CombinedOutput()
			if tt.ok != (err == nil) {
				t.Fatalf("exit err = %v, want ok=%v\n%s", err, tt.ok, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
