package limitcount_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server process on a free loopback port,
// with no persistence, in a temp dir. It can be stopped (kill -9),
// paused (SIGSTOP, a hung Redis) and started again on the same port.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string
	cmd  *exec.Cmd
	exit chan struct{}
}

// startRedis starts redis-server from PATH with extra arguments. It skips
// the test when redis-server is missing, unless SLUICE_REQUIRE_REDIS=1
// (CI), where a missing server is a failure.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SLUICE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not found and SLUICE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-server not in PATH (set SLUICE_REQUIRE_REDIS=1 to fail instead)")
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), args: extra}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port of the server.
func (s *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start (re)starts the process on the same port and waits until it
// answers PING.
func (s *redisServer) Start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	out, err := os.Create(fmt.Sprintf("%s/redis-%d.log", s.dir, time.Now().UnixNano()))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.exit = cmd, make(chan struct{})
	go func(exit chan struct{}) {
		_ = cmd.Wait()
		out.Close()
		close(exit)
	}(s.exit)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		err := c.Ping(context.Background()).Err()
		if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") {
			return
		}
		select {
		case <-s.exit:
			b, _ := os.ReadFile(out.Name())
			s.t.Fatalf("redis-server exited: %s", b)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.t.Fatal("redis-server did not become ready")
}

// Stop kills the process (kill -9) and waits for it to exit.
func (s *redisServer) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// Pause stops the process with SIGSTOP: connections stay open, nothing
// answers — a hung Redis. Resume undoes it.
func (s *redisServer) Pause()  { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *redisServer) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Client returns a plain client of db 0 for inspecting keys.
func (s *redisServer) Client(password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: password, Protocol: 2, DisableIdentity: true})
	s.t.Cleanup(func() { c.Close() })
	return c
}
