package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testCA can sign client and server certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue returns a PEM cert+key signed by the CA.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, dns ...string) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

func tlsGateway(t *testing.T) (*gw, int) {
	tlsPort := freePort(t)
	a, h := freePort(t), freePort(t)
	cfg := fmt.Sprintf("apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: %d\n  ssl:\n    enable: true\n    listen:\n      - ip: 127.0.0.1\n        port: %d\ndeployment:\n  admin:\n    admin_key:\n      - name: admin\n        key: %s\n        role: admin\n    admin_listen:\n      ip: 127.0.0.1\n      port: %d\n", h, tlsPort, adminKey, a)
	return start(t, newDir(t), a, h, cfg), tlsPort
}

func TestClientMTLS(t *testing.T) {
	g, port := tlsGateway(t)
	ca := newCA(t)
	srvCert, srvKey := selfSigned(t, "mtls.test")
	body, _ := json.Marshal(map[string]any{"cert": srvCert, "key": srvKey, "snis": []string{"mtls.test"},
		"client": map[string]any{"ca": ca.pem}})
	if r := g.admin("PUT", "/apisix/admin/ssls/m", string(body)); r.Status != 201 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	up := echoUpstream(t, "m")
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/m","upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.waitRoute("/m", nil)
	cc, ck := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
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
	ca := newCA(t)
	certA, keyA := selfSigned(t, "secure.test")
	certB, keyB := selfSigned(t, "open.test")
	a, _ := json.Marshal(map[string]any{"cert": certA, "key": keyA, "snis": []string{"secure.test"}, "client": map[string]any{"ca": ca.pem}})
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
