package multiauth_test

import (
	"encoding/base64"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
	basicauth "github.com/sluice-gw/sluice/internal/plugins/basic-auth"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	multiauth "github.com/sluice-gw/sluice/internal/plugins/multi-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// TestWithBuiltinAuthPlugins runs multi-auth over the real key-auth and
// basic-auth, whichever way they expose authentication (Authenticate or
// only Rewrite).
func TestWithBuiltinAuthPlugins(t *testing.T) {
	var defs []*plugin.Def
	lookup := func(name string) (*plugin.Def, bool) {
		for _, d := range defs {
			if d.Name == name {
				return d, true
			}
		}
		return nil, false
	}
	defs = []*plugin.Def{keyauth.Def(), basicauth.Def(), multiauth.Def(lookup)}
	g := plugintest.Start(t, defs, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"},"basic-auth":{"username":"jack","password":"pw"}}}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/m","plugins":{"multi-auth":{"auth_plugins":[{"basic-auth":{}},{"key-auth":{}}]}},"upstream":`+rec.Upstream()+`}`)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("jack:pw"))
	tests := []struct {
		name    string
		hdr     map[string]string
		status  int
		wwwAuth string
	}{
		{"key", map[string]string{"apikey": "jack-key"}, 200, ""},
		{"basic", map[string]string{"Authorization": basic}, 200, ""},
		{"none", nil, 401, `apikey realm="key"`},
		{"wrong both", map[string]string{"apikey": "x", "Authorization": "Basic eDp5"}, 401, `apikey realm="key"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.Count()
			resp := g.Do("GET", "/m", tt.hdr, "")
			if resp.Status != tt.status {
				t.Fatalf("status %d %s", resp.Status, resp.Body)
			}
			if tt.status == 401 {
				if resp.Body != `{"message":"Authorization Failed"}`+"\n" || rec.Count() != before {
					t.Fatalf("body %q, upstream hits %d", resp.Body, rec.Count()-before)
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != tt.wwwAuth {
					t.Fatalf("WWW-Authenticate = %q", got)
				}
				return
			}
			if got := rec.Last().Header.Get("X-Consumer-Username"); got != "jack" {
				t.Fatalf("consumer %q", got)
			}
		})
	}
}
