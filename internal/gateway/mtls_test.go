package gateway_test

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// pkiCert is a certificate with its key, able to sign others when it is a
// CA.
type pkiCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var pkiSerial atomic.Int64

// newPKICert makes a certificate signed by parent (self-signed when parent
// is nil).
func newPKICert(t *testing.T, cn string, isCA bool, parent *pkiCert, usage ...x509.ExtKeyUsage) *pkiCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(pkiSerial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: usage}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.DNSNames = []string{cn}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pkiCert{cert: c, key: key}
}

func (p *pkiCert) certPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw}))
}

func (p *pkiCert) keyPEM() string {
	b, _ := x509.MarshalECPrivateKey(p.key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}))
}

// tlsCert is the certificate as a TLS peer presents it, followed by chain.
func (p *pkiCert) tlsCert(chain ...*pkiCert) tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{p.cert.Raw}, PrivateKey: p.key, Leaf: p.cert}
	for _, ch := range chain {
		c.Certificate = append(c.Certificate, ch.cert.Raw)
	}
	return c
}

// startTLSGateway runs a gateway with a TLS proxy listener on the returned
// port, on the given engine.
func startTLSGateway(t *testing.T, engine string) (*plugintest.Gateway, int) {
	t.Helper()
	port := plugintest.FreePort(t)
	g := plugintest.Start(t, nil, func(c *config.Config) {
		c.Sluice.Engine = engine
		c.Apisix.SSL.Enable = true
		c.Apisix.SSL.Listen = []config.Listen{{IP: "127.0.0.1", Port: port}}
	})
	return g, port
}

// TestUpstreamClientCertRotation: an upstream whose tls.client_cert_id
// names a client SSL object presents the SSL object's new certificate on
// the next request after the object is updated, even though the upstream
// itself did not change and a pooled connection with the old certificate
// is still open.
func TestUpstreamClientCertRotation(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			ca := newPKICert(t, "upstream-client-ca", true, nil)
			pool := x509.NewCertPool()
			pool.AddCert(ca.cert)
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Client-CN", r.TLS.PeerCertificates[0].Subject.CommonName)
			}))
			up.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
			up.StartTLS()
			defer up.Close()

			g, _ := startTLSGateway(t, engine)
			putSSL := func(cn string) {
				c := newPKICert(t, cn, false, ca, x509.ExtKeyUsageClientAuth)
				body, _ := json.Marshal(map[string]any{"type": "client", "cert": c.certPEM(), "key": c.keyPEM()})
				g.MustAdmin("PUT", "/apisix/admin/ssls/client", string(body))
			}
			putSSL("client-a")
			g.MustAdmin("PUT", "/apisix/admin/upstreams/u", fmt.Sprintf(
				`{"scheme":"https","nodes":{"%s":1},"tls":{"client_cert_id":"client"}}`, strings.TrimPrefix(up.URL, "https://")))
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/m","upstream_id":"u"}`)
			want := func(cn string) {
				t.Helper()
				r := g.Do("GET", "/m", nil, "")
				if r.Status != 200 || r.Header.Get("X-Client-CN") != cn {
					t.Fatalf("status %d, client certificate %q, want %q (%s)", r.Status, r.Header.Get("X-Client-CN"), cn, r.Body)
				}
			}
			want("client-a")
			want("client-a") // a pooled connection with client-a now exists
			putSSL("client-b")
			want("client-b")
			// An unrelated edit keeps the upstream (and its new pool).
			g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/other","upstream_id":"u"}`)
			want("client-b")
			putSSL("client-c")
			want("client-c")
		})
	}
}

// TestClientCertDepth: ssl.client.depth bounds the intermediate CA
// certificates between a client certificate and the CA of client.ca, as
// OpenSSL's verify depth does for APISIX (0: signed by the CA itself; the
// default 1: one intermediate).
func TestClientCertDepth(t *testing.T) {
	root := newPKICert(t, "root-ca", true, nil)
	inter1 := newPKICert(t, "inter-1", true, root)
	inter2 := newPKICert(t, "inter-2", true, inter1)
	// leafN needs N intermediates to reach root.
	leaf0 := newPKICert(t, "leaf-0", false, root, x509.ExtKeyUsageClientAuth).tlsCert()
	leaf1 := newPKICert(t, "leaf-1", false, inter1, x509.ExtKeyUsageClientAuth).tlsCert(inter1)
	leaf2 := newPKICert(t, "leaf-2", false, inter2, x509.ExtKeyUsageClientAuth).tlsCert(inter2, inter1)
	// A CA that is itself the trust anchor counts no intermediate.
	leafUnderAnchor := newPKICert(t, "leaf-anchor", false, inter1, x509.ExtKeyUsageClientAuth).tlsCert(inter1)

	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			g, port := startTLSGateway(t, engine)
			rec := plugintest.NewRecorder(t)
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/m","upstream":`+rec.Upstream()+`}`)
			g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/public","upstream":`+rec.Upstream()+`}`)
			ssl := func(id, sni, ca string, depth *int, skip ...string) {
				srv := newPKICert(t, sni, false, nil, x509.ExtKeyUsageServerAuth)
				client := map[string]any{"ca": ca}
				if depth != nil {
					client["depth"] = *depth
				}
				if len(skip) > 0 {
					client["skip_mtls_uri_regex"] = skip
				}
				body, _ := json.Marshal(map[string]any{"cert": srv.certPEM(), "key": srv.keyPEM(), "snis": []string{sni}, "client": client})
				g.MustAdmin("PUT", "/apisix/admin/ssls/"+id, string(body))
			}
			zero, two := 0, 2
			ssl("d0", "d0.test", root.certPEM(), &zero)
			ssl("d1", "d1.test", root.certPEM(), nil) // default depth 1
			ssl("d2", "d2.test", root.certPEM(), &two)
			ssl("anchor", "anchor.test", inter1.certPEM(), &zero)
			// With skip_mtls_uri_regex APISIX does not reject in the
			// handshake: a too deep chain is unverified, which only
			// the listed URIs accept.
			ssl("skip", "skip.test", root.certPEM(), &zero, "^/public")

			tests := []struct {
				name, sni, path string
				cert            tls.Certificate
				status          int // 0: the handshake fails
			}{
				{"depth 0, signed by the CA", "d0.test", "/m", leaf0, 200},
				{"depth 0, one intermediate", "d0.test", "/m", leaf1, 0},
				{"default depth 1, signed by the CA", "d1.test", "/m", leaf0, 200},
				{"default depth 1, one intermediate", "d1.test", "/m", leaf1, 200},
				{"default depth 1, two intermediates", "d1.test", "/m", leaf2, 0},
				{"depth 2, two intermediates", "d2.test", "/m", leaf2, 200},
				{"depth 0, intermediate is the anchor", "anchor.test", "/m", leafUnderAnchor, 200},
				{"skip_mtls, within depth", "skip.test", "/m", leaf0, 200},
				{"skip_mtls, too deep", "skip.test", "/m", leaf1, 400},
				{"skip_mtls, too deep, skipped uri", "skip.test", "/public", leaf1, 200},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					status, err := mtlsGet(port, tc.sni, tc.path, tc.cert)
					if tc.status != 0 && (err != nil || status != tc.status) {
						t.Fatalf("want %d, got %d %v", tc.status, status, err)
					}
					if tc.status == 0 && err == nil {
						t.Fatalf("want a failed handshake, got %d", status)
					}
				})
			}
		})
	}
}

// mtlsGet sends GET path over a new TLS connection with a client
// certificate.
func mtlsGet(port int, sni, path string, cert tls.Certificate) (int, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true, //nolint:gosec // test server certs are self-signed
		Certificates: []tls.Certificate{cert}}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", port, path), nil)
	req.Host = sni
	r, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	r.Body.Close()
	return r.StatusCode, nil
}
