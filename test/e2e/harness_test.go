// Package e2e holds tests that build the real sluice binary, start it in a
// fresh working directory and drive it over real HTTP.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the sluice binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sluice")
	// -pgo=off: the profile-guided build (cmd/sluice/default.pgo) is for
	// speed; these tests check behaviour, and without it the build reuses
	// the race-built packages of the other tests instead of recompiling all.
	build := exec.Command("go", "build", "-race", "-pgo=off", "-o", binary, "github.com/sluice-gw/sluice/cmd/sluice")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// adminKey is the key the default test config sets.
const adminKey = "e2e-admin-key-0123456789"

// gw is one running sluice process.
type gw struct {
	t         testing.TB
	dir       string
	adminPort int
	httpPort  int
	cmd       *exec.Cmd
	mu        sync.Mutex
	out       bytes.Buffer
	done      chan struct{}
	exitErr   error
}

// defaultConfig returns a config.yaml for the given ports with a fixed
// admin key. extra is appended verbatim.
func defaultConfig(adminPort, httpPort int, extra string) string {
	cfg := fmt.Sprintf(`apisix:
  node_listen:
    - ip: 127.0.0.1
      port: %d
  ssl:
    enable: false
deployment:
  admin:
    admin_key:
      - name: admin
        key: %s
        role: admin
      - name: viewer
        key: viewer-key-0123456789
        role: viewer
    admin_listen:
      ip: 127.0.0.1
      port: %d
%s`, httpPort, adminKey, adminPort, extra)
	return cfg
}

// withEngine adds sluice.engine from SLUICE_E2E_ENGINE (std|fast) to a
// config.yaml text, so CI runs the whole suite against both engines;
// start applies it to every config, including hand-written ones.
func withEngine(cfg string) string {
	e := os.Getenv("SLUICE_E2E_ENGINE")
	if e == "" || strings.Contains(cfg, "\n  engine: ") {
		return cfg
	}
	if i := strings.Index("\n"+cfg, "\nsluice:\n"); i >= 0 {
		return cfg[:i] + "sluice:\n  engine: " + e + "\n" + cfg[i+len("sluice:\n"):]
	}
	return strings.TrimRight(cfg, "\n") + "\nsluice:\n  engine: " + e + "\n"
}

// newDir makes a fresh working directory for a gateway.
func newDir(t testing.TB) string {
	t.Helper()
	return t.TempDir()
}

// start launches sluice in dir with the given config text (written to
// conf/config.yaml) and waits until it is ready.
func start(t testing.TB, dir string, adminPort, httpPort int, cfg string, env ...string) *gw {
	t.Helper()
	for attempt := 0; ; attempt++ {
		g := launch(t, dir, adminPort, httpPort, cfg, env...)
		if g.waitReady(attempt < 5) {
			return g
		}
		// Another process took one of the ports between freePort and the
		// bind: move this gateway's admin and HTTP ports and try again.
		na, nh := freePort(t), freePort(t)
		cfg = strings.ReplaceAll(cfg, fmt.Sprintf("port: %d\n", adminPort), fmt.Sprintf("port: %d\n", na))
		cfg = strings.ReplaceAll(cfg, fmt.Sprintf("port: %d\n", httpPort), fmt.Sprintf("port: %d\n", nh))
		adminPort, httpPort = na, nh
	}
}

// launch starts sluice in dir with cfg written to conf/config.yaml.
func launch(t testing.TB, dir string, adminPort, httpPort int, cfg string, env ...string) *gw {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg = withEngine(cfg)
	if err := os.WriteFile(filepath.Join(dir, "conf", "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, dir: dir, adminPort: adminPort, httpPort: httpPort, done: make(chan struct{})}
	g.cmd = exec.Command(binary, "run", "-c", filepath.Join(dir, "conf", "config.yaml"))
	g.cmd.Dir = dir
	g.cmd.Env = append(os.Environ(), env...)
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
	return g
}

// output returns what the process printed so far.
func (g *gw) output() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.String()
}

// waitReady polls the readiness contract: the Admin API answers GET
// /apisix/admin/routes with a valid key and the data-plane port accepts.
// It reports false, instead of failing, when the process could not bind a
// port and retryBind is set.
func (g *gw) waitReady(retryBind bool) bool {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			if retryBind && strings.Contains(g.output(), "address already in use") {
				return false
			}
			g.t.Fatalf("sluice exited early: %v\n%s", g.exitErr, g.output())
		default:
		}
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/apisix/admin/routes", g.adminPort), nil)
		req.Header.Set("X-API-KEY", adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.httpPort)); err == nil {
				c.Close()
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("sluice not ready in time\n%s", g.output())
	return false
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gw) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
		g.t.Errorf("sluice did not stop on SIGTERM\n%s", g.output())
	}
}

// kill sends SIGKILL and waits.
func (g *gw) kill() {
	_ = g.cmd.Process.Kill()
	<-g.done
}

// resp is a decoded HTTP response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r resp) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %q", err, r.Body)
	}
	return m
}

// admin sends an Admin API request with the admin key.
func (g *gw) admin(method, path, body string) resp {
	return g.adminWithKey(method, path, body, adminKey)
}

func (g *gw) adminWithKey(method, path, body, key string) resp {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", g.adminPort, path), rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-KEY", key)
	}
	return do(g.t, req)
}

func do(t testing.TB, req *http.Request) resp {
	t.Helper()
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{Status: r.StatusCode, Header: r.Header, Body: b}
}

// proxy sends a data-plane request.
func (g *gw) proxy(method, path string, hdr map[string]string) resp {
	g.t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", g.httpPort, path), nil)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	return do(g.t, req)
}

// startDefault starts a gateway with the default test config in a fresh dir.
func startDefault(t testing.TB, extra string) *gw {
	t.Helper()
	a, h := freePort(t), freePort(t)
	return start(t, newDir(t), a, h, defaultConfig(a, h, extra))
}

// wantError asserts a status and an exact error_msg.
func wantError(t *testing.T, r resp, status int, msg string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if got, _ := r.JSON(t)["error_msg"].(string); got != msg {
		t.Fatalf("error_msg %q, want %q", got, msg)
	}
}

// tcpServer accepts connections on a loopback port until the test ends and
// runs handle for each in its own goroutine (which closes the connection
// afterwards); it returns the address.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}
