package gateway_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	"github.com/sluice-gw/sluice/internal/store"
	"github.com/sluice-gw/sluice/internal/store/bolt"
)

// TestDanglingReferences writes routes whose service or upstream is missing
// straight into the store (the Admin API refuses them; a foreign etcd
// writer or apisix.yaml can produce them) and checks APISIX's answers:
// a missing service is nginx's 404 page once the route matched (it still
// matches on its own conditions: t/node/not-exist-service.t), a missing
// upstream_id is a 502 (reference §3.9).
func TestDanglingReferences(t *testing.T) {
	rec := plugintest.NewRecorder(t)
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "sluice.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(key, val string) {
		if _, _, err := st.Put(ctx, key, []byte(val), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("/routes/nosvc", `{"id":"nosvc","uri":"/nosvc","service_id":"999","upstream":`+rec.Upstream()+`}`)
	put("/routes/noup", `{"id":"noup","uri":"/noup","upstream_id":"999"}`)
	put("/routes/good", `{"id":"good","uri":"/good","upstream":`+rec.Upstream()+`}`)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	g := plugintest.Start(t, nil, func(c *config.Config) { c.Sluice.DataDir = dir })
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/nosvc", 404, "<title>404 Not Found</title>"},
		{"/noup", 502, "<title>502 Bad Gateway</title>"},
		{"/good", 200, ""},
		{"/other", 404, `{"error_msg":"404 Route Not Found"}`},
	} {
		t.Run(c.path, func(t *testing.T) {
			r := g.Do("GET", c.path, nil, "")
			if r.Status != c.status || !strings.Contains(string(r.Body), c.body) {
				t.Fatalf("%d %s, want %d with %q", r.Status, r.Body, c.status, c.body)
			}
		})
	}
	if rec.Count() != 1 {
		t.Fatalf("upstream saw %d requests, want only /good's", rec.Count())
	}
}
