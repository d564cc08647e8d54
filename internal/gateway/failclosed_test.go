package gateway_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/plugin"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	"github.com/sluice-gw/sluice/internal/store"
	"github.com/sluice-gw/sluice/internal/store/bolt"
)

// TestBrokenPluginConfFailsClosed writes a route whose key-auth conf cannot
// be built straight into the store (as a foreign etcd writer could) and
// checks that the route answers 503 instead of running without auth.
func TestBrokenPluginConfFailsClosed(t *testing.T) {
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
	put("/routes/bad", `{"id":"bad","uri":"/bad","plugins":{"key-auth":{"header":123}},"upstream":`+rec.Upstream()+`}`)
	put("/routes/good", `{"id":"good","uri":"/good","upstream":`+rec.Upstream()+`}`)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	g := plugintest.Start(t, []*plugin.Def{keyauth.Def()}, func(c *config.Config) { c.Sluice.DataDir = dir })
	if r := g.Do("GET", "/bad", nil, ""); r.Status != 503 {
		t.Fatalf("route with a broken auth conf: %d %s\n%s", r.Status, r.Body, g.Admin("GET", "/sluice/status", "").Body)
	}
	if rec.Count() != 0 {
		t.Fatal("a request reached the upstream through a route whose auth plugin failed to build")
	}
	if r := g.Do("GET", "/good", nil, ""); r.Status != 200 {
		t.Fatalf("other routes keep serving: %d", r.Status)
	}
	if r := g.Admin("GET", "/sluice/status", ""); r.Status != 200 || !contains(r.Body, "key-auth") {
		t.Fatalf("the build error must be reported: %s", r.Body)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestConsumerWithMissingGroupFailsClosed: a consumer whose group was
// force-deleted is not served without the group's plugins (APISIX: 503).
func TestConsumerWithMissingGroupFailsClosed(t *testing.T) {
	rec := plugintest.NewRecorder(t)
	g := plugintest.Start(t, []*plugin.Def{keyauth.Def()}, nil)
	g.MustAdmin("PUT", "/apisix/admin/consumer_groups/g1", `{"plugins":{}}`)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","group_id":"g1","plugins":{"key-auth":{"key":"k1"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"key-auth":{}},"upstream":`+rec.Upstream()+`}`)
	if r := g.Do("GET", "/a", map[string]string{"apikey": "k1"}, ""); r.Status != 200 {
		t.Fatalf("with its group: %d %s", r.Status, r.Body)
	}
	g.MustAdmin("DELETE", "/apisix/admin/consumer_groups/g1?force=true", "")
	before := rec.Count()
	if r := g.Do("GET", "/a", map[string]string{"apikey": "k1"}, ""); r.Status != 503 {
		t.Fatalf("group gone: %d %s", r.Status, r.Body)
	}
	if rec.Count() != before {
		t.Fatal("request reached the upstream without the consumer group's plugins")
	}
}
