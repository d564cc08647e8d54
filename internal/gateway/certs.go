package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"regexp"
	"strings"

	"github.com/sluice-gw/sluice/internal/engine"

	"github.com/sluice-gw/sluice/internal/resource"
)

// certIndex finds the certificate for a TLS handshake by SNI
// (reference/apisix-core.md §5): exact names first, then "*.domain"
// wildcards matching exactly one extra label, then "*".
type certIndex struct {
	exact map[string]*sslEntry
	wild  map[string]*sslEntry // key: the part after "*."
	any   *sslEntry
}

// sslEntry is one server SSL object ready for handshakes.
type sslEntry struct {
	certs []tls.Certificate
	// clientCAs is set when the SSL object asks for client certificates
	// (ssl.client.ca).
	clientCAs *x509.CertPool
	// depth is ssl.client.depth: how many intermediate CA certificates may
	// stand between the client certificate and a CA of clientCAs.
	depth int
	// skipMTLS lists URI regexes that may be served without a verified
	// client certificate (ssl.client.skip_mtls_uri_regex).
	skipMTLS []*regexp.Regexp
	versions [2]uint16 // min, max from ssl_protocols; zero = defaults
}

func buildCerts(s *Snapshot, errs []BuildError) (*certIndex, []BuildError) {
	idx := &certIndex{exact: map[string]*sslEntry{}, wild: map[string]*sslEntry{}}
	for _, id := range sortedIDs(s.Objects["ssls"]) {
		ssl, ok := s.Objects["ssls"][id].(*resource.SSL)
		if !ok || ssl.Status == 0 || (ssl.Type != "" && ssl.Type != "server") {
			continue
		}
		certs, err := ssl.Certificates()
		if err != nil {
			errs = append(errs, BuildError{Key: "/ssls/" + id, Error: err.Error()})
			continue
		}
		cert := &sslEntry{certs: certs}
		if cl := ssl.Client; cl != nil && cl.CA != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(cl.CA)) {
				errs = append(errs, BuildError{Key: "/ssls/" + id, Error: "client.ca: no certificate could be parsed"})
				continue
			}
			cert.clientCAs = pool
			cert.depth = cl.Depth
			bad := false
			for _, re := range cl.SkipMTLSURIRegex {
				rx, err := regexp.Compile(re)
				if err != nil {
					errs = append(errs, BuildError{Key: "/ssls/" + id, Error: "client.skip_mtls_uri_regex: " + err.Error()})
					bad = true
					break
				}
				cert.skipMTLS = append(cert.skipMTLS, rx)
			}
			if bad {
				continue
			}
		}
		cert.versions = protocolRange(ssl.SSLProtocols)
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

// errChainTooLong fails a handshake whose client certificate needs more
// intermediate CAs than ssl.client.depth allows.
var errChainTooLong = errors.New("client certificate chain longer than client.depth allows")

// withinDepth reports whether one of a client certificate's verified
// chains satisfies ssl.client.depth. APISIX hands depth to OpenSSL's
// SSL_set_verify_depth (ngx.ssl verify_client), which counts the
// intermediate CA certificates between the client certificate and the trust
// anchor: 0 accepts only certificates signed directly by a CA of client.ca,
// the default 1 one intermediate. Go may find several chains; one within the
// limit is enough.
func withinDepth(chains [][]*x509.Certificate, depth int) bool {
	for _, chain := range chains {
		if max(len(chain)-2, 0) <= depth {
			return true
		}
	}
	return false
}

// protocolRange maps ssl_protocols to a min/max TLS version.
func protocolRange(ps []string) [2]uint16 {
	var r [2]uint16
	for _, p := range ps {
		var v uint16
		switch p {
		case "TLSv1.1":
			v = tls.VersionTLS11
		case "TLSv1.2":
			v = tls.VersionTLS12
		case "TLSv1.3":
			v = tls.VersionTLS13
		default:
			continue
		}
		if r[0] == 0 || v < r[0] {
			r[0] = v
		}
		if v > r[1] {
			r[1] = v
		}
	}
	return r
}

// lookup returns the SSL entry for sni, or nil.
func (c *certIndex) lookup(sni string) *sslEntry {
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

// tlsConfig returns the TLS listener configuration. Each handshake picks
// the SSL object for its SNI from the current snapshot (certificates,
// client CA, protocol range); unknown names fail the handshake.
func tlsConfig(b *Builder, fallbackSNI string, http2 bool, protocols string) *tls.Config {
	// apisix.ssl.ssl_protocols is the listener default; an SSL object's
	// own ssl_protocols narrows it for its names.
	def := protocolRange(strings.Fields(protocols))
	if def[0] == 0 {
		def = [2]uint16{tls.VersionTLS12, tls.VersionTLS13}
	}
	protos := []string{"http/1.1"}
	if http2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			snap := b.Current()
			data, _ := snap.Data.(*compiled)
			if data == nil {
				return nil, errNoCert
			}
			name := hello.ServerName
			if name == "" {
				name = fallbackSNI
			}
			e := data.certs.lookup(name)
			if e == nil {
				return nil, errNoCert
			}
			cfg := &tls.Config{MinVersion: def[0], MaxVersion: def[1], NextProtos: protos, Certificates: e.certs}
			if e.versions[0] != 0 {
				cfg.MinVersion, cfg.MaxVersion = e.versions[0], e.versions[1]
			}
			if e.clientCAs != nil {
				cfg.ClientCAs = e.clientCAs
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
				if len(e.skipMTLS) > 0 {
					// A chain deeper than client.depth is then
					// unverified for mtlsCheck, as in APISIX, which
					// does not reject in the handshake here.
					cfg.ClientAuth = tls.VerifyClientCertIfGiven
				} else {
					// VerifyConnection also runs on resumed sessions.
					depth := e.depth
					cfg.VerifyConnection = func(cs tls.ConnectionState) error {
						if len(cs.PeerCertificates) > 0 && !withinDepth(cs.VerifiedChains, depth) {
							return errChainTooLong
						}
						return nil
					}
				}
			}
			return cfg, nil
		},
	}
}

// mtlsCheck applies the HTTP-level client-certificate rules of an SSL
// object with skip_mtls_uri_regex, and the rule that a verified client
// certificate binds the request Host to the SNI. It returns false after
// answering 400.
//
// The SSL object is looked up by the request's Host as well as by the
// handshake's SNI (APISIX looks it up by Host): a client must not handshake
// under a name that asks for no certificate and then send the Host of one
// that does.
func mtlsCheck(data *compiled, c *engine.Ctx) bool {
	if c.TLS == nil || data == nil {
		return true
	}
	e := data.certs.lookup(c.Host)
	if e == nil || e.clientCAs == nil {
		e = data.certs.lookup(c.TLS.ServerName)
	}
	if e == nil || e.clientCAs == nil {
		return true
	}
	if !withinDepth(c.TLS.VerifiedChains, e.depth) {
		for _, re := range e.skipMTLS {
			if re.MatchString(c.Path) {
				return true
			}
		}
		c.ReplyError(400)
		return false
	}
	if !strings.EqualFold(c.Host, c.TLS.ServerName) {
		c.ReplyError(400)
		return false
	}
	return true
}
