package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// TestChainAndPEM: a leaf under an intermediate verifies against the root
// with the intermediate as chain, for its DNS name and usage; the PEM
// forms load back as a TLS key pair.
func TestChainAndPEM(t *testing.T) {
	root := CA(t, "root", nil)
	inter := CA(t, "inter", root)
	leaf := Issue(t, inter, Leaf{CN: "leaf", DNS: []string{"a.test"}, Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inters.AddCert(inter.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "a.test", Roots: roots, Intermediates: inters}); err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "a.test", Roots: roots}); err == nil {
		t.Fatal("verified without the intermediate")
	}
	if got := leaf.TLS(inter).Certificate; len(got) != 2 {
		t.Fatalf("chain of %d certificates", len(got))
	}
	for _, key := range []string{leaf.KeyPEM(), leaf.KeyPKCS8PEM()} {
		if _, err := tls.X509KeyPair([]byte(leaf.CertPEM()), []byte(key)); err != nil {
			t.Fatal(err)
		}
	}
	ss := SelfSigned(t, "x.test", "*.y.test")
	if ss.Cert.Subject.CommonName != "x.test" || len(ss.Cert.DNSNames) != 2 || ss.Cert.IsCA {
		t.Fatalf("self-signed: %v %v", ss.Cert.Subject, ss.Cert.DNSNames)
	}
}
