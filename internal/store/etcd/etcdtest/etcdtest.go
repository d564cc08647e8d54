// Package etcdtest runs a real, single-member etcd server for tests: the
// `etcd` binary from PATH (or /usr/bin/etcd, where Debian's etcd-server
// puts it) on free loopback ports with a temporary data directory.
//
// When no etcd binary is found the test is skipped, unless
// SLUICE_REQUIRE_ETCD=1 is set (CI sets it), in which case it fails: CI must
// never pass by skipping the cluster tests.
package etcdtest

import (
	"context"
	"errors"
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

// RequireEnv is the variable that turns a missing etcd binary from a skip
// into a failure.
const RequireEnv = "SLUICE_REQUIRE_ETCD"

// startTimeout bounds how long Start waits for etcd to report healthy.
const startTimeout = 20 * time.Second

// Server is one etcd process. Its ports and data directory stay the same
// across Kill and Restart, as for a real member that crashes and comes back.
type Server struct {
	t         testing.TB
	bin       string
	dataDir   string
	clientURL string
	peerURL   string
	args      []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logf *os.File
}

// Binary returns the path of the etcd binary, or "" when there is none.
func Binary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/etcd", "/usr/local/bin/etcd", "/usr/sbin/etcd"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// Start starts etcd and stops it when the test ends. It skips (or fails,
// under SLUICE_REQUIRE_ETCD=1) when etcd is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("etcd binary not found on PATH and %s=1", RequireEnv)
		}
		t.Skip("etcd binary not found on PATH; install etcd-server to run this test")
	}
	s := &Server{t: t, bin: bin, dataDir: t.TempDir()}
	t.Cleanup(s.Stop)
	var lastErr error
	// Free ports are picked by listening on :0 and closing; another process
	// can take one before etcd binds it, so a failed start is retried on
	// fresh ports.
	for range 5 {
		cp, err1 := freePort()
		pp, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("etcdtest: pick ports: %v", err)
		}
		s.clientURL = fmt.Sprintf("http://127.0.0.1:%d", cp)
		s.peerURL = fmt.Sprintf("http://127.0.0.1:%d", pp)
		s.args = []string{
			"--name", "default",
			"--data-dir", s.dataDir,
			"--listen-client-urls", s.clientURL,
			"--advertise-client-urls", s.clientURL,
			"--listen-peer-urls", s.peerURL,
			"--initial-advertise-peer-urls", s.peerURL,
			"--initial-cluster", "default=" + s.peerURL,
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "sluice-test",
			"--logger", "zap",
			"--log-level", "warn",
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		s.Kill()
		_ = os.RemoveAll(s.dataDir)
		_ = os.MkdirAll(s.dataDir, 0o700)
	}
	t.Fatalf("etcdtest: could not start etcd: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Endpoint is the client URL, e.g. "http://127.0.0.1:40123".
func (s *Server) Endpoint() string { return s.clientURL }

// DataDir is the member's data directory.
func (s *Server) DataDir() string { return s.dataDir }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("etcd already running")
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(s.dataDir), filepath.Base(s.dataDir)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Debian's etcd reads ETCD_* settings from the environment; make sure a
	// stray one cannot change what the flags say.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done, s.logf = cmd, done, logf

	deadline := time.Now().Add(startTimeout)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("etcd exited during start; log: %s", s.tail())
		default:
		}
		resp, err := hc.Get(s.clientURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after %s; log: %s", startTimeout, s.tail())
}

// tail returns the end of the etcd log for failure messages.
func (s *Server) tail() string {
	if s.logf == nil {
		return ""
	}
	b, _ := os.ReadFile(s.logf.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Kill ends etcd with SIGKILL (as a crash would) and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.logf.Close()
	s.cmd = nil
}

// Restart starts etcd again on the same ports and data directory after
// Kill, and waits until it is healthy.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Wipe kills etcd and empties its data directory, so that the next Restart
// brings up a new, empty cluster on the same address (as when a member is
// rebuilt without its data): revisions start again from 1.
func (s *Server) Wipe() {
	s.t.Helper()
	s.Kill()
	if err := os.RemoveAll(s.dataDir); err != nil {
		s.t.Fatalf("etcdtest: wipe: %v", err)
	}
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		s.t.Fatalf("etcdtest: wipe: %v", err)
	}
}

// Stop ends etcd; it is registered with t.Cleanup by Start.
func (s *Server) Stop() { s.Kill() }

// Compact compacts etcd's history up to rev through the v3 HTTP gateway
// (the same JSON API APISIX uses), so tests need no client of their own.
func (s *Server) Compact(ctx context.Context, rev int64) error {
	return s.post(ctx, "/v3/kv/compaction", fmt.Sprintf(`{"revision":%d,"physical":true}`, rev))
}

func (s *Server) post(ctx context.Context, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.clientURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, b)
	}
	return nil
}
