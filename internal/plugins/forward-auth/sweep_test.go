package forwardauth

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// TestTransportsClosedOnConfigChange changes a route's keepalive_pool five
// times, which gives each config its own pooled transport: once the grace
// period is over, the idle keep-alive connections of the transports no
// route uses are closed, and the one in use keeps its connection.
func TestTransportsClosedOnConfigChange(t *testing.T) {
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	total := 0
	svc := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	svc.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open[c] = true
			total++
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	svc.Start()
	defer svc.Close()
	openConns := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(open)
	}

	grace := &plugin.Def{Name: "test-shared-grace", Init: func(_ context.Context, _ map[string]any, s *plugin.Shared, _ *slog.Logger) error {
		s.SetGrace(200 * time.Millisecond)
		return nil
	}}
	g := plugintest.Start(t, []*plugin.Def{Def(), grace}, nil)
	rec := plugintest.NewRecorder(t)
	const configs = 6
	for pool := 1; pool <= configs; pool++ {
		g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/r","plugins":{"forward-auth":{"uri":"`+svc.URL+
			`/auth","keepalive_pool":`+strconv.Itoa(pool)+`}},"upstream":`+rec.Upstream()+`}`)
		if r := g.Do("GET", "/r", nil, ""); r.Status != 200 {
			t.Fatalf("config %d: %d %s", pool, r.Status, r.Body)
		}
	}
	mu.Lock()
	made := total
	mu.Unlock()
	if made < configs {
		t.Fatalf("%d connections to the auth service, want one per config's transport (%d)", made, configs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for openConns() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open, want only the current config's", openConns())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := g.Do("GET", "/r", nil, ""); r.Status != 200 || openConns() != 1 {
		t.Fatalf("current config: %d, %d connections (its idle connection must be reused)", r.Status, openConns())
	}
}
