package gateway

import (
	"crypto/tls"
	"errors"
	"strings"

	"github.com/sluice-gw/sluice/internal/resource"
)

// certIndex finds the certificate for a TLS handshake by SNI
// (reference/apisix-core.md §5): exact names first, then "*.domain"
// wildcards matching exactly one extra label, then "*".
type certIndex struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // key: the part after "*."
	any   *tls.Certificate
}

func buildCerts(s *Snapshot, errs []BuildError) (*certIndex, []BuildError) {
	idx := &certIndex{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for id, v := range s.Objects["ssls"] {
		ssl, ok := v.(*resource.SSL)
		if !ok || ssl.Status == 0 || (ssl.Type != "" && ssl.Type != "server") {
			continue
		}
		certs, err := ssl.Certificates()
		if err != nil {
			errs = append(errs, BuildError{Key: "/ssls/" + id, Error: err.Error()})
			continue
		}
		// Several pairs (RSA + ECDSA) for one SNI: the first is used here;
		// crypto/tls picks per connection from what GetCertificate returns.
		cert := &certs[0]
		for _, sni := range ssl.SNIs {
			sni = strings.ToLower(strings.TrimSuffix(sni, "."))
			switch {
			case sni == "*":
				idx.any = cert
			case strings.HasPrefix(sni, "*."):
				idx.wild[sni[2:]] = cert
			default:
				idx.exact[sni] = cert
			}
		}
	}
	return idx, errs
}

var errNoCert = errors.New("no certificate for this server name")

// lookup returns the certificate for sni, or nil.
func (c *certIndex) lookup(sni string) *tls.Certificate {
	if c == nil {
		return nil
	}
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	if cert := c.exact[sni]; cert != nil {
		return cert
	}
	if i := strings.IndexByte(sni, '.'); i > 0 {
		if cert := c.wild[sni[i+1:]]; cert != nil {
			return cert
		}
	}
	return c.any
}

// tlsConfig returns the TLS listener configuration; certificates come from
// the current snapshot on every handshake.
func tlsConfig(b *Builder, fallbackSNI string, http2 bool) *tls.Config {
	protos := []string{"http/1.1"}
	if http2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			snap := b.Current()
			data, _ := snap.Data.(*compiled)
			if data == nil {
				return nil, errNoCert
			}
			name := hello.ServerName
			if name == "" {
				name = fallbackSNI
			}
			if cert := data.certs.lookup(name); cert != nil {
				return cert, nil
			}
			return nil, errNoCert
		},
	}
}
