package limitcount_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
	limitcount "github.com/sluice-gw/sluice/internal/plugins/limit-count"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// sharedGraceDef is a plugin with only an Init hook that shortens the
// gateway's plugin.Shared grace period, so a test sees retired clients
// closed without waiting DefaultSharedGrace.
func sharedGraceDef(d time.Duration) *plugin.Def {
	return &plugin.Def{Name: "test-shared-grace", Init: func(_ context.Context, _ map[string]any, s *plugin.Shared, _ *slog.Logger) error {
		s.SetGrace(d)
		return nil
	}}
}

// connsByDB counts a Redis server's client connections per selected
// database, leaving out db 0 (where the inspecting client sits).
func connsByDB(t *testing.T, srv *redisServer) map[int]int {
	t.Helper()
	list, err := srv.Client("").ClientList(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	out := map[int]int{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "db="); ok {
				if db, _ := strconv.Atoi(v); db > 0 {
					out[db]++
				}
			}
		}
	}
	return out
}

// TestRedisClientsClosedOnConfigChange changes a route's Redis connection
// config (port and database) five times: the client of every config the
// route left is closed (its connections disappear from CLIENT LIST) once
// the grace period is over, while the client in use stays connected and
// keeps counting.
func TestRedisClientsClosedOnConfigChange(t *testing.T) {
	srvs := []*redisServer{startRedis(t), startRedis(t)}
	g := plugintest.Start(t, []*plugin.Def{limitcount.Def(), sharedGraceDef(200 * time.Millisecond)}, nil)
	rec := plugintest.NewRecorder(t)
	const configs = 6 // the first plus five changes
	for db := 1; db <= configs; db++ {
		srv := srvs[db%2]
		conf := `{"count":100,"time_window":60,` + redisConf(srv.Addr(), `,"redis_database":`+strconv.Itoa(db)) + `}`
		g.MustAdmin("PUT", "/apisix/admin/routes/1", route("/r", conf, rec.Upstream()))
		if r := g.Do("GET", "/r", nil, ""); r.Status != 200 {
			t.Fatalf("config %d: status %d %s", db, r.Status, r.Body)
		}
		if n := connsByDB(t, srv)[db]; n == 0 {
			t.Fatalf("config %d: no connection to db %d", db, db)
		}
		// An unrelated write rebuilds the snapshot; the route's entry
		// is reused and must keep its client.
		g.MustAdmin("PUT", "/apisix/admin/routes/other", fmt.Sprintf(`{"uri":"/other/%d","upstream":%s}`, db, rec.Upstream()))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for _, srv := range srvs {
			for db, n := range connsByDB(t, srv) {
				if db < configs {
					left += n
				}
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections of replaced Redis configs still open: %v %v", left, connsByDB(t, srvs[0]), connsByDB(t, srvs[1]))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := connsByDB(t, srvs[configs%2])[configs]; n == 0 {
		t.Fatal("the client in use was closed")
	}
	r := g.Do("GET", "/r", nil, "")
	if r.Status != 200 || r.Header.Get("X-RateLimit-Remaining") != "98" {
		t.Fatalf("current config: %d remaining %q", r.Status, r.Header.Get("X-RateLimit-Remaining"))
	}
}
