package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// TestRoutePostArgVars follows t/node/vars.t TEST 17-21: a route's vars
// may test post_arg_<name> of an application/x-www-form-urlencoded body,
// and the upstream still receives the body unchanged.
func TestRoutePostArgVars(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	g := plugintest.Start(t, nil, nil)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/hello","vars":[["post_arg_k","==","post_form"]],"upstream":{"nodes":{"%s":1}}}`,
		strings.TrimPrefix(up.URL, "http://")))
	g.Sync()
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	big := "k=post_form&pad=" + strings.Repeat("x", 70<<10)
	for _, c := range []struct {
		name, method, body string
		hdr                map[string]string
		status             int
	}{
		{"GET", "GET", "", nil, 404},
		{"wrong body", "POST", "123", form, 404},
		{"multipart", "POST", "k=post_form", map[string]string{"Content-Type": "multipart/form-data"}, 404},
		{"form", "POST", "k=post_form", form, 200},
		{"form with charset, encoded value", "POST", "a=1&k=post%5Fform&k=other", map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, 200},
		{"other value", "POST", "k=post", form, 404},
		{"body past the cap", "POST", big, form, 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			before := len(bodies)
			mu.Unlock()
			r := g.Do(c.method, "/hello", c.hdr, c.body)
			if r.Status != c.status {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, c.status)
			}
			if c.status != 200 {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != before+1 || bodies[len(bodies)-1] != c.body {
				t.Fatalf("upstream got %q, want the body unchanged", bodies[before:])
			}
		})
	}
}
