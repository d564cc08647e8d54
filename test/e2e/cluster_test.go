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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/store/etcd/etcdtest"
)

// etcdPrefix is a per-test key prefix, so that tests sharing an etcd (or a
// leftover data dir) never see each other's objects.
func etcdPrefix(t *testing.T) string {
	r := strings.NewReplacer("/", "-", " ", "-")
	return "/sluice-" + strings.ToLower(r.Replace(t.Name()))
}

// clusterConfig is defaultConfig for a node of the given role on etcd.
func clusterConfig(adminPort, httpPort int, role, endpoint, prefix string) string {
	return defaultConfig(adminPort, httpPort, fmt.Sprintf(`  role: %s
  role_%s:
    config_provider: etcd
  etcd:
    host:
      - %s
    prefix: %s
    # timeout stays at APISIX's default of 30s: Admin API calls must fail
    # fast when etcd is down all the same.
plugin_attr:
  prometheus:
    # Several nodes run on one machine; the exporter's fixed default port
    # would collide.
    enable_export_server: false
`, role, role, endpoint, prefix))
}

// startNode starts a traditional node (Admin API and traffic) on etcd.
func startNode(t *testing.T, srv *etcdtest.Server, prefix string) *gw {
	t.Helper()
	return startRole(t, "traditional", srv, prefix)
}

// startRole starts a node of the given role on etcd and waits for the
// listeners that role serves (start waits for both, which the decoupled
// roles do not have). A free port can be taken by another process before
// sluice binds it, so a start that fails on a busy port is retried on new
// ports.
func startRole(t *testing.T, role string, srv *etcdtest.Server, prefix string) *gw {
	t.Helper()
	for attempt := 1; ; attempt++ {
		g, busy := launchRole(t, role, srv, prefix)
		if g != nil {
			return g
		}
		if !busy || attempt == 3 {
			t.Fatalf("%s node did not start", role)
		}
	}
}

// launchRole is one attempt of startRole; busy reports a port clash.
func launchRole(t *testing.T, role string, srv *etcdtest.Server, prefix string) (g *gw, busy bool) {
	t.Helper()
	dir := newDir(t)
	a, h := freePort(t), freePort(t)
	if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "conf", "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(clusterConfig(a, h, role, srv.Endpoint(), prefix)), 0o644); err != nil {
		t.Fatal(err)
	}
	g = &gw{t: t, dir: dir, adminPort: a, httpPort: h, done: make(chan struct{})}
	g.cmd = exec.Command(binary, "run", "-c", cfgPath)
	g.cmd.Dir = dir
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
	t.Cleanup(g.stop)
	var ports []int
	if role != "data_plane" {
		ports = append(ports, a)
	}
	if role != "control_plane" {
		ports = append(ports, h)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-g.done:
			// Let the output reader catch up before looking at it.
			time.Sleep(50 * time.Millisecond)
			if strings.Contains(g.output(), "address already in use") {
				t.Logf("port clash, retrying: %s", strings.TrimSpace(g.output()))
				return nil, true
			}
			t.Fatalf("sluice exited early: %v\n%s", g.exitErr, g.output())
		default:
		}
		up := 0
		for _, p := range ports {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
				c.Close()
				up++
			}
		}
		if up == len(ports) {
			return g, false
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s node not ready in time\n%s", role, g.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upstreamOf returns which echo upstream answered a GET, "" on failure.
func upstreamOf(client *http.Client, port int, path string) string {
	r, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return ""
	}
	defer r.Body.Close()
	_, _ = io.Copy(io.Discard, r.Body)
	if r.StatusCode != http.StatusOK {
		return ""
	}
	return r.Header.Get("X-Upstream")
}

// waitServed polls every node until path is answered by upstream want and
// returns how long that took for the slowest node.
func waitServed(t *testing.T, nodes []*gw, path, want string, limit time.Duration) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	start := time.Now()
	for i, g := range nodes {
		for upstreamOf(client, g.httpPort, path) != want {
			if time.Since(start) > limit {
				t.Fatalf("node %d does not serve %s from %q after %v\n%s", i, path, want, limit, g.output())
			}
			time.Sleep(time.Millisecond)
		}
	}
	return time.Since(start)
}

func routeJSON(path, upstream string) string {
	return fmt.Sprintf(`{"uri":%q,"upstream":{"nodes":{"%s":1}}}`, path, upstream)
}

// TestClusterPropagation: three nodes on one etcd; a write through one
// node's Admin API is served by all three. The delay from the write's
// response to the last node serving it is measured over 100 writes.
func TestClusterPropagation(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := etcdPrefix(t)
	nodes := []*gw{startNode(t, srv, prefix), startNode(t, srv, prefix), startNode(t, srv, prefix)}
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	ups := []string{hostPort(a), hostPort(b)}
	names := []string{"a", "b"}

	if r := nodes[0].admin("PUT", "/apisix/admin/routes/c", routeJSON("/cluster", ups[0])); r.Status != 201 {
		t.Fatalf("create route: %d %s", r.Status, r.Body)
	}
	waitServed(t, nodes, "/cluster", "a", 10*time.Second)
	// Every node sees the same object through its own Admin API, with the
	// etcd key as APISIX shows it.
	for i, g := range nodes {
		r := g.admin("GET", "/apisix/admin/routes/c", "")
		if r.Status != 200 || !strings.Contains(string(r.Body), `"key":"`+prefix+`/routes/c"`) {
			t.Errorf("node %d GET: %d %s", i, r.Status, r.Body)
		}
	}
	// A POST through another node gets an id from etcd's revision.
	r := nodes[1].admin("POST", "/apisix/admin/routes", routeJSON("/posted", ups[1]))
	if r.Status != 201 {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	waitServed(t, nodes, "/posted", "b", 10*time.Second)

	const writes = 100
	delays := make([]time.Duration, 0, writes)
	for i := 1; i <= writes; i++ {
		writer := nodes[i%len(nodes)]
		r := writer.admin("PUT", "/apisix/admin/routes/c", routeJSON("/cluster", ups[i%2]))
		if r.Status != 200 {
			t.Fatalf("write %d: %d %s", i, r.Status, r.Body)
		}
		delays = append(delays, waitServed(t, nodes, "/cluster", names[i%2], 10*time.Second))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("etcd propagation, write response to all 3 nodes serving it, over %d writes: p50 %v, p99 %v, max %v",
		writes, delays[writes/2], delays[writes*99/100], delays[writes-1])
}

// TestClusterEtcdOutage: etcd is killed with SIGKILL while a load loop
// runs against a node. No data-plane request fails; Admin API writes fail
// fast with 503; after etcd restarts (same data dir) a new write reaches
// every node.
func TestClusterEtcdOutage(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := etcdPrefix(t)
	nodes := []*gw{startNode(t, srv, prefix), startNode(t, srv, prefix), startNode(t, srv, prefix)}
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	if r := nodes[0].admin("PUT", "/apisix/admin/routes/o", routeJSON("/outage", hostPort(a))); r.Status != 201 {
		t.Fatalf("create route: %d %s", r.Status, r.Body)
	}
	waitServed(t, nodes, "/outage", "a", 10*time.Second)

	// Load on every node; each request must be answered by upstream a.
	var total, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, g := range nodes {
		for range 2 {
			wg.Go(func() {
				client := &http.Client{Timeout: 5 * time.Second}
				deadline := time.Now().Add(2 * time.Minute) // bounded even if stop is never closed
				for time.Now().Before(deadline) {
					select {
					case <-stop:
						return
					default:
					}
					total.Add(1)
					if got := upstreamOf(client, g.httpPort, "/outage"); got != "a" {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("port %d answered by %q", g.httpPort, got))
					}
				}
			})
		}
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()

	time.Sleep(300 * time.Millisecond)
	srv.Kill()
	killedAt := time.Now()
	before := total.Load()

	// Admin API writes and reads fail fast, with a 503 naming the cause.
	for i, op := range []struct{ method, path, body string }{
		{"PUT", "/apisix/admin/routes/o", routeJSON("/outage", hostPort(b))},
		{"POST", "/apisix/admin/routes", routeJSON("/x", hostPort(b))},
		{"DELETE", "/apisix/admin/routes/o", ""},
		{"PUT", "/apisix/admin/upstreams/u1", fmt.Sprintf(`{"nodes":{"%s":1}}`, hostPort(b))},
		{"GET", "/apisix/admin/routes", ""},
	} {
		g := nodes[i%len(nodes)]
		begin := time.Now()
		r, err := tryAdmin(g, op.method, op.path, op.body)
		took := time.Since(begin)
		if err != nil {
			t.Fatalf("%s %s during outage: %v", op.method, op.path, err)
		}
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "unavailable") {
			t.Errorf("%s %s during outage: %d %s, want 503 naming the store as unavailable", op.method, op.path, r.Status, r.Body)
		}
		if took > 5*time.Second {
			t.Errorf("%s %s during outage took %v", op.method, op.path, took)
		}
		t.Logf("etcd down: %s %s -> %d in %v: %s", op.method, op.path, r.Status, took.Round(time.Millisecond), strings.TrimSpace(string(r.Body)))
	}
	// Keep the outage going a little so traffic is measured across it.
	if d := 3*time.Second - time.Since(killedAt); d > 0 {
		time.Sleep(d)
	}
	during := total.Load() - before

	srv.Restart()
	restartedAt := time.Now()
	var r resp
	for {
		var err error
		r, err = tryAdmin(nodes[1], "PUT", "/apisix/admin/routes/o", routeJSON("/outage", hostPort(a)))
		if err == nil && r.Status == 200 {
			break
		}
		if time.Since(restartedAt) > 15*time.Second {
			t.Fatalf("writes still failing 15s after etcd restarted: %d %s %v", r.Status, r.Body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	writable := time.Since(restartedAt)
	// A new route written after the restart reaches every node.
	if r := nodes[2].admin("PUT", "/apisix/admin/routes/n", routeJSON("/after", hostPort(b))); r.Status != 201 {
		t.Fatalf("write after restart: %d %s", r.Status, r.Body)
	}
	waitServed(t, nodes, "/after", "b", 15*time.Second)
	converged := time.Since(restartedAt)

	stopLoad()
	t.Logf("etcd outage: %d data-plane requests in total, %d during the %v outage, %d failed",
		total.Load(), during, restartedAt.Sub(killedAt).Round(time.Millisecond), failed.Load())
	t.Logf("etcd restart: writes accepted after %v, all nodes serve a new route after %v",
		writable.Round(time.Millisecond), converged.Round(time.Millisecond))
	if failed.Load() != 0 {
		t.Fatalf("%d data-plane requests failed during the etcd outage; first: %v", failed.Load(), firstErr.Load())
	}
	if during == 0 {
		t.Fatal("no data-plane requests ran during the outage")
	}
}

// TestClusterRoles: a control_plane node serves only the Admin API, a
// data_plane node only traffic, and a write through the first is served by
// the second.
func TestClusterRoles(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := etcdPrefix(t)
	cp := startRole(t, "control_plane", srv, prefix)
	dp := startRole(t, "data_plane", srv, prefix)
	up := echoUpstream(t, "a")

	if r := cp.admin("PUT", "/apisix/admin/routes/r", routeJSON("/roles", hostPort(up))); r.Status != 201 {
		t.Fatalf("write through control plane: %d %s", r.Status, r.Body)
	}
	waitServed(t, []*gw{dp}, "/roles", "a", 10*time.Second)

	for _, c := range []struct {
		name string
		port int
	}{{"control plane traffic port", cp.httpPort}, {"data plane admin port", dp.adminPort}} {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.port), time.Second); err == nil {
			conn.Close()
			t.Errorf("%s accepts connections", c.name)
		}
	}
}
