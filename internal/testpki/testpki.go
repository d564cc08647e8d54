// Package testpki makes certificates for tests: certificate authorities,
// certificates they sign and self-signed ones (ECDSA P-256, valid from an
// hour ago for a day), as PEM text or as a tls.Certificate. Only tests
// import it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Cert is a certificate with its private key; a CA's signs others.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// Leaf describes a certificate that is not a CA.
type Leaf struct {
	CN    string
	DNS   []string // subject alternative names
	IPs   []net.IP
	Usage []x509.ExtKeyUsage
}

// CA makes a certificate authority named cn, signed by parent (a root,
// self-signed, when parent is nil).
func CA(t testing.TB, cn string, parent *Cert) *Cert {
	t.Helper()
	return make1(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, parent)
}

// Issue makes the certificate l, signed by ca (self-signed when ca is nil).
func Issue(t testing.TB, ca *Cert, l Leaf) *Cert {
	t.Helper()
	return make1(t, &x509.Certificate{Subject: pkix.Name{CommonName: l.CN}, DNSNames: l.DNS, IPAddresses: l.IPs,
		ExtKeyUsage: l.Usage}, ca)
}

// SelfSigned makes a self-signed certificate for the DNS names (the first
// is also the common name).
func SelfSigned(t testing.TB, names ...string) *Cert {
	t.Helper()
	return Issue(t, nil, Leaf{CN: names[0], DNS: names})
}

func make1(t testing.TB, tmpl *x509.Certificate, parent *Cert) *Cert {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{Cert: c, Key: key}
}

// CertPEM is the certificate as PEM.
func (c *Cert) CertPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw}))
}

// KeyPEM is the private key as PEM (SEC 1).
func (c *Cert) KeyPEM() string {
	b, _ := x509.MarshalECPrivateKey(c.Key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}))
}

// KeyPKCS8PEM is the private key as PEM (PKCS #8, "PRIVATE KEY").
func (c *Cert) KeyPKCS8PEM() string {
	b, _ := x509.MarshalPKCS8PrivateKey(c.Key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b}))
}

// TLS is the certificate as a TLS peer presents it, followed by chain.
func (c *Cert) TLS(chain ...*Cert) tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
	for _, ch := range chain {
		tc.Certificate = append(tc.Certificate, ch.Cert.Raw)
	}
	return tc
}
