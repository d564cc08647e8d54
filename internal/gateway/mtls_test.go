package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
	"github.com/sluice-gw/sluice/internal/testpki"
)

// leafCert is a certificate for cn (also its DNS name) signed by ca
// (self-signed when nil).
func leafCert(t *testing.T, cn string, ca *testpki.Cert, usage x509.ExtKeyUsage) *testpki.Cert {
	return testpki.Issue(t, ca, testpki.Leaf{CN: cn, DNS: []string{cn}, Usage: []x509.ExtKeyUsage{usage}})
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
			ca := testpki.CA(t, "upstream-client-ca", nil)
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Client-CN", r.TLS.PeerCertificates[0].Subject.CommonName)
			}))
			up.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
			up.StartTLS()
			defer up.Close()

			g, _ := startTLSGateway(t, engine)
			putSSL := func(cn string) {
				c := leafCert(t, cn, ca, x509.ExtKeyUsageClientAuth)
				body, _ := json.Marshal(map[string]any{"type": "client", "cert": c.CertPEM(), "key": c.KeyPEM()})
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
	root := testpki.CA(t, "root-ca", nil)
	inter1 := testpki.CA(t, "inter-1", root)
	inter2 := testpki.CA(t, "inter-2", inter1)
	// leafN needs N intermediates to reach root.
	leaf0 := leafCert(t, "leaf-0", root, x509.ExtKeyUsageClientAuth).TLS()
	leaf1 := leafCert(t, "leaf-1", inter1, x509.ExtKeyUsageClientAuth).TLS(inter1)
	leaf2 := leafCert(t, "leaf-2", inter2, x509.ExtKeyUsageClientAuth).TLS(inter2, inter1)
	// A CA that is itself the trust anchor counts no intermediate.
	leafUnderAnchor := leafCert(t, "leaf-anchor", inter1, x509.ExtKeyUsageClientAuth).TLS(inter1)

	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			g, port := startTLSGateway(t, engine)
			rec := plugintest.NewRecorder(t)
			g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/m","upstream":`+rec.Upstream()+`}`)
			g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/public","upstream":`+rec.Upstream()+`}`)
			ssl := func(id, sni, ca string, depth *int, skip ...string) {
				srv := leafCert(t, sni, nil, x509.ExtKeyUsageServerAuth)
				client := map[string]any{"ca": ca}
				if depth != nil {
					client["depth"] = *depth
				}
				if len(skip) > 0 {
					client["skip_mtls_uri_regex"] = skip
				}
				body, _ := json.Marshal(map[string]any{"cert": srv.CertPEM(), "key": srv.KeyPEM(), "snis": []string{sni}, "client": client})
				g.MustAdmin("PUT", "/apisix/admin/ssls/"+id, string(body))
			}
			zero, two := 0, 2
			ssl("d0", "d0.test", root.CertPEM(), &zero)
			ssl("d1", "d1.test", root.CertPEM(), nil) // default depth 1
			ssl("d2", "d2.test", root.CertPEM(), &two)
			ssl("anchor", "anchor.test", inter1.CertPEM(), &zero)
			// With skip_mtls_uri_regex APISIX does not reject in the
			// handshake: a too deep chain is unverified, which only
			// the listed URIs accept.
			ssl("skip", "skip.test", root.CertPEM(), &zero, "^/public")

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
