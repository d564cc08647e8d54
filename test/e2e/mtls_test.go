package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testpki"
)

func tlsGateway(t *testing.T) (*gw, int) {
	tlsPort := freePort(t)
	a, h := freePort(t), freePort(t)
	cfg := fmt.Sprintf("apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: %d\n  ssl:\n    enable: true\n    listen:\n      - ip: 127.0.0.1\n        port: %d\ndeployment:\n  admin:\n    admin_key:\n      - name: admin\n        key: %s\n        role: admin\n    admin_listen:\n      ip: 127.0.0.1\n      port: %d\n", h, tlsPort, adminKey, a)
	return start(t, newDir(t), a, h, cfg), tlsPort
}

func TestClientMTLS(t *testing.T) {
	g, port := tlsGateway(t)
	ca := testpki.CA(t, "test-ca", nil)
	srvCert, srvKey := selfSigned(t, "mtls.test")
	body, _ := json.Marshal(map[string]any{"cert": srvCert, "key": srvKey, "snis": []string{"mtls.test"},
		"client": map[string]any{"ca": ca.CertPEM()}})
	if r := g.admin("PUT", "/apisix/admin/ssls/m", string(body)); r.Status != 201 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	up := echoUpstream(t, "m")
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/m","upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.waitRoute("/m", nil)
	client := testpki.Issue(t, ca, testpki.Leaf{CN: "client", Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	cc, ck := client.CertPEM(), client.KeyPEM()
	pair, _ := tls.X509KeyPair([]byte(cc), []byte(ck))
	get := func(withCert bool) (int, error) {
		cfg := &tls.Config{ServerName: "mtls.test", InsecureSkipVerify: true}
		if withCert {
			cfg.Certificates = []tls.Certificate{pair}
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/m", port), nil)
		req.Host = "mtls.test"
		r, err := tr.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		r.Body.Close()
		return r.StatusCode, nil
	}
	var st int
	var err error
	for i := 0; i < 50; i++ {
		if st, err = get(true); err == nil && st == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st != 200 {
		t.Fatalf("with client cert: %d %v", st, err)
	}
	if st, err := get(false); err == nil {
		t.Fatalf("without client cert the handshake must fail, got %d", st)
	}
}

func TestUpstreamHTTPS(t *testing.T) {
	g := startDefault(t, "")
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "tls-upstream")
	}))
	defer up.Close()
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/s","upstream":{"scheme":"https","nodes":{"%s":1}}}`, strings.TrimPrefix(up.URL, "https://")))
	r := g.waitRoute("/s", nil)
	if r.Status != 200 || r.Header.Get("X-Upstream") != "tls-upstream" {
		t.Fatalf("unverified https upstream (APISIX default): %d %s", r.Status, r.Body)
	}
	g.admin("PUT", "/apisix/admin/routes/2", fmt.Sprintf(`{"uri":"/v","upstream":{"scheme":"https","tls":{"verify":true},"nodes":{"%s":1}}}`, strings.TrimPrefix(up.URL, "https://")))
	r = g.waitRoute("/v", nil)
	if r.Status != 502 {
		t.Fatalf("verify=true against a self-signed upstream must fail: %d", r.Status)
	}
}

// TestMTLSHostBypass: handshaking under a name that needs no client
// certificate and then asking for the Host of one that does is refused.
func TestMTLSHostBypass(t *testing.T) {
	g, port := tlsGateway(t)
	ca := testpki.CA(t, "test-ca", nil)
	certA, keyA := selfSigned(t, "secure.test")
	certB, keyB := selfSigned(t, "open.test")
	a, _ := json.Marshal(map[string]any{"cert": certA, "key": keyA, "snis": []string{"secure.test"}, "client": map[string]any{"ca": ca.CertPEM()}})
	b, _ := json.Marshal(map[string]any{"cert": certB, "key": keyB, "snis": []string{"open.test"}})
	g.admin("PUT", "/apisix/admin/ssls/a", string(a))
	g.admin("PUT", "/apisix/admin/ssls/b", string(b))
	up := echoUpstream(t, "m")
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/m","upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.waitRoute("/m", nil)
	get := func(sni, host string) (int, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/m", port), nil)
		req.Host = host
		r, err := tr.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		r.Body.Close()
		return r.StatusCode, nil
	}
	var st int
	for i := 0; i < 50; i++ {
		if s, err := get("open.test", "open.test"); err == nil && s == 200 {
			st = s
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st != 200 {
		t.Fatal("open.test not served")
	}
	if s, err := get("open.test", "secure.test"); err != nil || s != 400 {
		t.Fatalf("SNI open.test with Host secure.test: %d %v, want 400", s, err)
	}
}
