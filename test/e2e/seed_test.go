package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// pathRecorder is an upstream that records the request-target it saw.
type pathRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
	hdrs  []http.Header
}

func newPathRecorder(t *testing.T) *pathRecorder {
	p := &pathRecorder{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.paths = append(p.paths, r.RequestURI)
		p.hdrs = append(p.hdrs, r.Header.Clone())
		p.mu.Unlock()
		w.Write([]byte("order"))
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pathRecorder) last() (string, http.Header, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.paths) == 0 {
		return "", nil, 0
	}
	return p.paths[len(p.paths)-1], p.hdrs[len(p.hdrs)-1], len(p.paths)
}

// TestSeedOrdersAPI is the project's seed use case, written exactly as an
// APISIX user would: key-auth + limit-count keyed by consumer +
// proxy-rewrite regex_uri + upstream timeouts on /api/v1/orders/*.
func TestSeedOrdersAPI(t *testing.T) {
	g := startDefault(t, "")
	up := newPathRecorder(t)
	for _, c := range []struct{ name, key string }{{"jack", "jack-key"}, {"rose", "rose-key"}} {
		r := g.admin("PUT", "/apisix/admin/consumers", fmt.Sprintf(`{"username":%q,"plugins":{"key-auth":{"key":%q}}}`, c.name, c.key))
		if r.Status != 201 {
			t.Fatalf("consumer %s: %d %s", c.name, r.Status, r.Body)
		}
	}
	route := fmt.Sprintf(`{
	  "uri": "/api/v1/orders/*",
	  "plugins": {
	    "key-auth": {},
	    "limit-count": {"count": 3, "time_window": 60, "key_type": "var", "key": "consumer_name", "rejected_code": 429},
	    "proxy-rewrite": {"regex_uri": ["^/api/v1/orders/(.*)", "/orders/$1"]}
	  },
	  "upstream": {"type": "roundrobin", "nodes": {"%s": 1}, "timeout": {"connect": 3, "send": 5, "read": 5}}
	}`, hostPort(up.Server))
	if r := g.admin("PUT", "/apisix/admin/routes/orders", route); r.Status != 201 {
		t.Fatalf("route: %d %s", r.Status, r.Body)
	}
	var r resp
	for i := 0; i < 100; i++ {
		if r = g.proxy("GET", "/api/v1/orders/42?x=1", nil); r.Status == 401 {
			break
		}
		sleepMs(20)
	}
	if r.Status != 401 || !strings.Contains(string(r.Body), "Missing API key") {
		t.Fatalf("no key: %d %s", r.Status, r.Body)
	}
	if _, _, n := up.last(); n != 0 {
		t.Fatal("an unauthenticated request reached the upstream")
	}
	if r := g.proxy("GET", "/api/v1/orders/42", map[string]string{"apikey": "wrong"}); r.Status != 401 {
		t.Fatalf("wrong key: %d", r.Status)
	}
	for i := 1; i <= 3; i++ {
		r := g.proxy("GET", "/api/v1/orders/42?x=1", map[string]string{"apikey": "jack-key", "X-Consumer-Username": "forged"})
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		if got := r.Header.Get("X-RateLimit-Remaining"); got != fmt.Sprint(3-i) {
			t.Errorf("request %d: X-RateLimit-Remaining %q", i, got)
		}
	}
	path, hdr, _ := up.last()
	if path != "/orders/42?x=1" {
		t.Errorf("upstream saw %q, want /orders/42?x=1", path)
	}
	if hdr.Get("X-Consumer-Username") != "jack" {
		t.Errorf("X-Consumer-Username %q", hdr.Get("X-Consumer-Username"))
	}
	if r := g.proxy("GET", "/api/v1/orders/42", map[string]string{"apikey": "jack-key"}); r.Status != 429 {
		t.Fatalf("4th request within the window: %d %s", r.Status, r.Body)
	}
	// The counter is per consumer.
	if r := g.proxy("GET", "/api/v1/orders/42", map[string]string{"apikey": "rose-key"}); r.Status != 200 {
		t.Fatalf("another consumer: %d", r.Status)
	}
}

// TestPhaseAndMergeRules checks APISIX's ordering and precedence: auth
// (rewrite) runs before ip-restriction (access), and consumer plugin config
// beats the route's.
func TestPhaseAndMergeRules(t *testing.T) {
	g := startDefault(t, "")
	up := newPathRecorder(t)
	g.admin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"},"limit-count":{"count":1,"time_window":60,"rejected_code":503}}}`)
	g.admin("PUT", "/apisix/admin/routes/blocked", fmt.Sprintf(`{"uri":"/blocked","plugins":{"key-auth":{},"ip-restriction":{"blacklist":["127.0.0.0/8"]}},"upstream":{"nodes":{"%s":1}}}`, hostPort(up.Server)))
	g.admin("PUT", "/apisix/admin/routes/limited", fmt.Sprintf(`{"uri":"/limited","plugins":{"key-auth":{},"limit-count":{"count":100,"time_window":60}},"upstream":{"nodes":{"%s":1}}}`, hostPort(up.Server)))
	var r resp
	for i := 0; i < 100; i++ {
		if r = g.proxy("GET", "/blocked", nil); r.Status != 404 {
			break
		}
		sleepMs(20)
	}
	if r.Status != 401 {
		t.Fatalf("blocked IP without key: want key-auth's 401 first, got %d %s", r.Status, r.Body)
	}
	if r := g.proxy("GET", "/blocked", map[string]string{"apikey": "jack-key"}); r.Status != 403 {
		t.Fatalf("blocked IP with key: %d %s", r.Status, r.Body)
	}
	for i := 0; i < 100; i++ {
		if r = g.proxy("GET", "/limited", map[string]string{"apikey": "jack-key"}); r.Status != 404 {
			break
		}
		sleepMs(20)
	}
	if r.Status != 200 {
		t.Fatalf("first request: %d %s", r.Status, r.Body)
	}
	if r := g.proxy("GET", "/limited", map[string]string{"apikey": "jack-key"}); r.Status != 503 {
		t.Fatalf("consumer limit (count 1) must beat the route's (count 100): %d", r.Status)
	}
}

// TestPluginSetsForwardedHeaders: a proxy-rewrite header overrides the
// X-Forwarded-* value the gateway would compute (APISIX proxy-rewrite3.t),
// while a client-sent one is still replaced.
func TestPluginSetsForwardedHeaders(t *testing.T) {
	g := startDefault(t, "")
	up := newPathRecorder(t)
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/xf","plugins":{"proxy-rewrite":{"headers":{"set":{"X-Forwarded-Host":"plugin.example","X-Forwarded-Proto":"https"}}}},"upstream":{"nodes":{"%s":1}}}`, hostPort(up.Server)))
	var r resp
	for i := 0; i < 100; i++ {
		if r = g.proxy("GET", "/xf", map[string]string{"X-Forwarded-Port": "1234"}); r.Status != 404 {
			break
		}
		sleepMs(20)
	}
	_, hdr, _ := up.last()
	if r.Status != 200 || hdr == nil {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if hdr.Get("X-Forwarded-Host") != "plugin.example" || hdr.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("plugin values lost: %v", hdr)
	}
	if hdr.Get("X-Forwarded-Port") == "1234" {
		t.Fatal("a client-sent X-Forwarded-Port reached the upstream")
	}
}
