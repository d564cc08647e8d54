// Package plugintest starts a real gateway in-process (real bbolt store in
// a temp dir, real listeners on loopback) with a chosen set of plugins, so
// plugin tests can configure routes through the Admin API and send real
// requests, including to a recording upstream.
package plugintest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/plugin"
)

// AdminKey is the admin key of every test gateway.
const AdminKey = "plugintest-admin-key"

// Gateway is a running in-process gateway.
type Gateway struct {
	t        testing.TB
	AdminURL string // e.g. http://127.0.0.1:port
	ProxyURL string
}

// FreePort returns a loopback TCP port that was free a moment ago (another
// process may take it before use; Start retries for its own ports).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs a gateway with exactly the given plugins enabled. mutate, if
// not nil, may adjust the config (plugin_attr, trusted addresses, ...).
// Ports are picked free just before use; when another process takes one in
// the meantime, Start tries again with new ports.
func Start(t testing.TB, defs []*plugin.Def, mutate func(*config.Config)) *Gateway {
	t.Helper()
	for attempt := 0; ; attempt++ {
		g, err := startOnce(t, defs, mutate)
		if err == nil {
			return g
		}
		if attempt < 5 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}
}

func startOnce(t testing.TB, defs []*plugin.Def, mutate func(*config.Config)) (*Gateway, error) {
	cfg := config.Default()
	ap, hp := FreePort(t), FreePort(t)
	cfg.Apisix.NodeListen = []config.Listen{{IP: "127.0.0.1", Port: hp}}
	cfg.Apisix.SSL.Enable = false
	cfg.Deployment.Admin.AdminListen = config.Listen{IP: "127.0.0.1", Port: ap}
	cfg.Deployment.Admin.AdminKey = []config.AdminKey{{Name: "admin", Key: AdminKey, Role: "admin"}}
	cfg.Sluice.DataDir = t.TempDir()
	cfg.Sluice.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	done := make(chan struct{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() {
		runErr = gateway.Run(ctx, gateway.Options{Config: cfg, Logger: logger, Plugins: defs})
		close(done)
	}()
	g := &Gateway{t: t, AdminURL: fmt.Sprintf("http://127.0.0.1:%d", ap), ProxyURL: fmt.Sprintf("http://127.0.0.1:%d", hp)}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r := g.tryAdmin("GET", "/apisix/admin/routes", "")
		if r != nil && r.Status == 200 {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hp)); err == nil {
				c.Close()
				t.Cleanup(func() {
					cancel()
					select {
					case <-done:
						if runErr != nil {
							t.Errorf("gateway.Run: %v", runErr)
						}
					case <-time.After(10 * time.Second):
						t.Errorf("gateway did not stop")
					}
				})
				return g, nil
			}
		}
		select {
		case <-done:
			cancel()
			return nil, fmt.Errorf("gateway exited: %v", runErr)
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	return nil, fmt.Errorf("gateway not ready")
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Response is a completed HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

func (g *Gateway) tryAdmin(method, path, body string) *Response {
	req, _ := http.NewRequest(method, g.AdminURL+path, strings.NewReader(body))
	req.Header.Set("X-API-KEY", AdminKey)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return &Response{Status: r.StatusCode, Header: r.Header, Body: string(b)}
}

// Admin sends an Admin API request and returns the response.
func (g *Gateway) Admin(method, path, body string) *Response {
	g.t.Helper()
	r := g.tryAdmin(method, path, body)
	if r == nil {
		g.t.Fatalf("admin %s %s failed", method, path)
	}
	return r
}

// MustAdmin sends an Admin API write and fails the test unless it is 2xx.
// It then waits until the data plane's snapshot includes the change.
func (g *Gateway) MustAdmin(method, path, body string) *Response {
	g.t.Helper()
	r := g.Admin(method, path, body)
	if r.Status < 200 || r.Status > 299 {
		g.t.Fatalf("admin %s %s: %d %s", method, path, r.Status, r.Body)
	}
	g.Sync()
	return r
}

// Sync waits until the data plane has applied every acknowledged write.
func (g *Gateway) Sync() {
	g.t.Helper()
	// The store revision moves on every write; wait until the snapshot
	// has caught up with it.
	for i := 0; i < 500; i++ {
		r := g.tryAdmin("GET", "/sluice/status", "")
		if r != nil {
			var st struct {
				Revision      int64 `json:"revision"`
				StoreRevision int64 `json:"store_revision"`
			}
			if json.Unmarshal([]byte(r.Body), &st) == nil && st.Revision >= st.StoreRevision && st.StoreRevision > 0 {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.t.Fatal("data plane did not catch up with the store")
}

// Do sends a data-plane request. headers may include "Host".
func (g *Gateway) Do(method, path string, headers map[string]string, body string) *Response {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.ProxyURL+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return &Response{Status: r.StatusCode, Header: r.Header, Body: string(b)}
}

// Recorder is an upstream that records every request it receives and
// answers 200 with body "ok" (or what Handler returns).
type Recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	// Bodies holds each request's body, in order.
	bodies []string
}

// NewRecorder starts a recording upstream on loopback.
func NewRecorder(t testing.TB) *Recorder {
	rec := &Recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Clone(context.Background()))
		rec.bodies = append(rec.bodies, string(b))
		rec.mu.Unlock()
		w.Header().Set("X-Upstream", "recorder")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(rec.Close)
	return rec
}

// Addr is the recorder's host:port for upstream nodes.
func (r *Recorder) Addr() string { return strings.TrimPrefix(r.URL, "http://") }

// Requests returns the requests received so far.
func (r *Recorder) Requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

// Last returns the last request received, or nil.
func (r *Recorder) Last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		return nil
	}
	return r.reqs[len(r.reqs)-1]
}

// Count returns how many requests arrived.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// Upstream returns an inline upstream JSON pointing at the recorder.
func (r *Recorder) Upstream() string {
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, r.Addr())
}
