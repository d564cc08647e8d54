package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// TestH2CListener: a node_listen entry with enable_http2 serves cleartext
// HTTP/2 (prior knowledge) as well as HTTP/1.1, as APISIX does.
func TestH2CListener(t *testing.T) {
	a, h := freePort(t), freePort(t)
	cfg := fmt.Sprintf("apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: %d\n      enable_http2: true\n  ssl:\n    enable: false\ndeployment:\n  admin:\n    admin_key:\n      - name: admin\n        key: %s\n        role: admin\n    admin_listen:\n      ip: 127.0.0.1\n      port: %d\n", h, adminKey, a)
	g := start(t, newDir(t), a, h, cfg)
	up := echoUpstream(t, "h2c")
	g.admin("PUT", "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/h2c","upstream":{"nodes":{"%s":1}}}`, hostPort(up)))
	g.waitRoute("/h2c", nil)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	r, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://127.0.0.1:%d/h2c", g.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	io.Copy(io.Discard, r.Body)
	if r.StatusCode != 200 || r.ProtoMajor != 2 || r.Header.Get("X-Upstream") != "h2c" {
		t.Fatalf("%s %d %v", r.Proto, r.StatusCode, r.Header)
	}
	if r := g.proxy("GET", "/h2c", nil); r.Status != 200 {
		t.Fatalf("HTTP/1.1 on the same listener: %d", r.Status)
	}
}
