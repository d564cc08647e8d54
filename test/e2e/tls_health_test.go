package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testpki"
)

// selfSigned returns a PEM certificate and key for the given DNS names.
func selfSigned(t *testing.T, names ...string) (string, string) {
	c := testpki.SelfSigned(t, names...)
	return c.CertPEM(), c.KeyPEM()
}

func TestTLSBySNI(t *testing.T) {
	tlsPort := freePort(t)
	g := startDefault(t, "")
	_ = g
	// Restart with TLS on: the default test config disables it.
	a, h := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`apisix:
  node_listen:
    - ip: 127.0.0.1
      port: %d
  ssl:
    enable: true
    listen:
      - ip: 127.0.0.1
        port: %d
deployment:
  admin:
    admin_key:
      - name: admin
        key: %s
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: %d
`, h, tlsPort, adminKey, a)
	g = start(t, newDir(t), a, h, cfg)
	up := echoUpstream(t, "tls")
	cert, key := selfSigned(t, "test.com", "*.wild.com")
	body, _ := json.Marshal(map[string]any{"cert": cert, "key": key, "snis": []string{"test.com", "*.wild.com"}})
	if r := g.admin("PUT", "/apisix/admin/ssls/1", string(body)); r.Status != 201 {
		t.Fatalf("ssl: %d %s", r.Status, r.Body)
	}
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/tls","upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.waitRoute("/tls", nil)

	get := func(sni string, h2 bool) (*http.Response, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/tls", tlsPort), nil)
		req.Host = sni
		return tr.RoundTrip(req)
	}
	var ok bool
	for i := 0; i < 50 && !ok; i++ { // the SSL object reaches the snapshot asynchronously
		if r, err := get("test.com", false); err == nil {
			r.Body.Close()
			ok = r.StatusCode == 200
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Fatal("TLS request for test.com failed")
	}
	cases := []struct {
		sni   string
		works bool
	}{
		{"test.com", true},
		{"a.wild.com", true},
		{"a.b.wild.com", false},
		{"wild.com", false},
		{"unknown.org", false},
	}
	for _, c := range cases {
		t.Run(c.sni, func(t *testing.T) {
			r, err := get(c.sni, false)
			if c.works {
				if err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				if r.StatusCode != 200 {
					t.Fatalf("%d %s", r.StatusCode, b)
				}
				return
			}
			if err == nil {
				r.Body.Close()
				t.Fatal("handshake with an unknown SNI must fail")
			}
		})
	}
	t.Run("http2 by ALPN", func(t *testing.T) {
		r, err := get("test.com", true)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.ProtoMajor != 2 {
			t.Fatalf("proto %s", r.Proto)
		}
	})
}

func TestActiveHealthCheck(t *testing.T) {
	g := startDefault(t, "")
	good := echoUpstream(t, "good")
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status" {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("X-Upstream", "bad")
	}))
	defer bad.Close()
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/hc","upstream":{"nodes":{"%s":1,"%s":1},
	  "checks":{"active":{"http_path":"/status","healthy":{"interval":1,"successes":1},"unhealthy":{"interval":1,"http_failures":1}}}}}`,
		hostPort(good), hostPort(bad)))
	g.waitRoute("/hc", nil)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		seen := map[string]int{}
		for i := 0; i < 6; i++ {
			seen[g.proxy("GET", "/hc", nil).Header.Get("X-Upstream")]++
		}
		if seen["bad"] == 0 && seen["good"] == 6 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("unhealthy node still receives traffic")
}
