package resource

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/schema"
)

// checkUpstream is apisix/upstream.lua check_upstream_conf (admin side).
// standalone reports whether conf is an upstream object itself (its schema
// has not been checked yet) rather than one inlined in a route or service.
func (c *Checker) checkUpstream(conf map[string]any, standalone bool) error {
	if nodes, ok := conf["nodes"].([]any); ok {
		for _, n := range nodes {
			node, ok := n.(map[string]any)
			if !ok {
				continue
			}
			host, _ := node["host"].(string)
			if isBareIPv6(host) {
				return failMsg("invalid configuration: IPv6 address must be enclosed with '[' and ']'")
			}
		}
	}
	// Inline upstreams were validated as part of their route or service,
	// where the message carries the property "upstream" prefix; APISIX
	// runs the upstream schema again here, which cannot fail differently.
	if standalone {
		if err := upstreamSchema.Validate(conf); err != nil {
			return fail("invalid configuration: %s", err.Error())
		}
	}
	if nodes, ok := conf["nodes"].(map[string]any); ok {
		for _, addr := range sortedKeys(nodes) {
			if _, port, ok := parseAddr(addr); ok && (port < 1 || port > 65535) {
				return fail("invalid port %s", luaPort(port))
			}
		}
	}
	if tlsConf, ok := conf["tls"].(map[string]any); ok {
		if id, ok := tlsConf["client_cert_id"]; ok && c != nil && c.RefCheck != nil {
			if err := c.RefCheck(Ref{Kind: "ssls", ID: IDString(id)}); err != nil {
				return err
			}
		}
	}
	if conf["pass_host"] == "rewrite" {
		if h, _ := conf["upstream_host"].(string); h == "" {
			return failMsg("`upstream_host` can't be empty when `pass_host` is `rewrite`")
		}
	}
	if tlsConf, ok := conf["tls"].(map[string]any); ok {
		if cert, ok := tlsConf["client_cert"].(string); ok {
			key, _ := tlsConf["client_key"].(string)
			if !isSecretRef(cert) && !isSecretRef(key) {
				if err := c.validatePair(cert, &key); err != nil {
					return err
				}
			}
		}
	}
	if conf["type"] != "chash" {
		return nil
	}
	hashOn, ok := conf["hash_on"].(string)
	if !ok {
		hashOn = "vars"
	}
	key, hasKey := conf["key"]
	if hashOn != "consumer" && !hasKey {
		return failMsg("missing key")
	}
	switch hashOn {
	case "vars":
		if err := hashVarsSchema.Validate(key); err != nil {
			return fail("invalid configuration: %s", err.Error())
		}
	case "header", "cookie":
		if err := hashHeaderSchema.Validate(key); err != nil {
			return fail("invalid configuration: %s", err.Error())
		}
	case "consumer", "vars_combinations":
	default:
		return fail("type is chash, err: invalid hash_on type %s", hashOn)
	}
	return nil
}

func luaPort(p float64) string {
	if p == float64(int64(p)) {
		return strconv.FormatInt(int64(p), 10)
	}
	return strconv.FormatFloat(p, 'g', 14, 64)
}

// isBareIPv6 reports whether host is an IPv6 literal without brackets.
func isBareIPv6(host string) bool {
	if host == "" || host[0] == '[' {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is6() && a.Zone() == ""
}

// parseAddr is core.utils.parse_addr: "host:port", "[v6]:port", "[v6]",
// a bare IPv6 literal or a bare host. ok reports whether a port was given
// (as a number).
func parseAddr(addr string) (host string, port float64, ok bool) {
	if strings.HasPrefix(addr, "[") {
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return addr, 0, false
		}
		host = addr[:end+1]
		rest := addr[end+1:]
		if strings.HasPrefix(rest, ":") {
			p, err := strconv.ParseFloat(rest[1:], 64)
			return host, p, err == nil
		}
		return host, 0, false
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 || strings.Count(addr, ":") > 1 {
		return addr, 0, false
	}
	p, err := strconv.ParseFloat(addr[i+1:], 64)
	if err != nil {
		return addr[:i], 0, false
	}
	return addr[:i], p, true
}

func isSecretRef(s string) bool { return schema.IsSecretRef(s) }

// The texts of OpenSSL's failures, which APISIX reports verbatim.
const (
	errCertPEM = "PEM_read_bio_X509_AUX() failed"
	errKeyPEM  = "PEM_read_bio_PrivateKey() failed"
)

// ParseCertChain parses a PEM certificate chain (leaf first).
func ParseCertChain(pemData string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(pemData)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" && b.Type != "TRUSTED CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, errors.New(errCertPEM)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New(errCertPEM)
	}
	return out, nil
}

// ParsePrivateKey parses a PEM private key (PKCS#8, PKCS#1 or SEC 1).
func ParsePrivateKey(pemData string) (crypto.Signer, error) {
	rest := []byte(pemData)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New(errKeyPEM)
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		return nil, errors.New(errKeyPEM)
	}
}

// validatePair is apisix/ssl.lua validate(cert, key): the cert must parse,
// and the key too when given; we also require that they belong together.
func (c *Checker) validatePair(cert string, key *string) error {
	chain, err := ParseCertChain(cert)
	if err != nil {
		return fail("failed to parse cert: %s", err.Error())
	}
	if key == nil {
		return nil
	}
	k := *key
	if !strings.Contains(k, "-----BEGIN") && c != nil && c.DecryptKey != nil {
		dk, err := c.DecryptKey(k)
		if err != nil {
			return failMsg("failed to decrypt previous encrypted key")
		}
		k = dk
	}
	signer, err := ParsePrivateKey(k)
	if err != nil {
		return fail("failed to parse key: %s", err.Error())
	}
	if !publicKeysEqual(chain[0].PublicKey, signer.Public()) {
		return failMsg("failed to parse key: private key does not match the certificate")
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	switch x := a.(type) {
	case *rsa.PublicKey:
		return x.Equal(b)
	case *ecdsa.PublicKey:
		return x.Equal(b)
	case ed25519.PublicKey:
		return x.Equal(b)
	}
	ab, err1 := x509.MarshalPKIXPublicKey(a)
	bb, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// checkSSL is apisix/ssl.lua check_ssl_conf (admin side).
func (c *Checker) checkSSL(conf map[string]any) error {
	k, _ := ByName("ssls")
	if err := k.schema.Validate(conf); err != nil {
		return fail("invalid configuration: %s", err.Error())
	}
	cert, _ := conf["cert"].(string)
	key, hasKey := conf["key"].(string)
	if !isSecretRef(cert) && !isSecretRef(key) {
		var kp *string
		if hasKey {
			kp = &key
		}
		if err := c.validatePair(cert, kp); err != nil {
			return err
		}
	}
	if conf["type"] == "client" {
		return nil
	}
	certs, _ := conf["certs"].([]any)
	keys, _ := conf["keys"].([]any)
	if len(certs) != len(keys) {
		return failMsg("mismatched number of certs and keys")
	}
	for i := range certs {
		ce, _ := certs[i].(string)
		ke, _ := keys[i].(string)
		if isSecretRef(ce) || isSecretRef(ke) {
			continue
		}
		if err := c.validatePair(ce, &ke); err != nil {
			return fail("failed to handle cert-key pair[%d]: %s", i+1, err.Error())
		}
	}
	if cl, ok := conf["client"].(map[string]any); ok {
		if ca, _ := cl["ca"].(string); !isSecretRef(ca) {
			if _, err := ParseCertChain(ca); err != nil {
				return fail("failed to validate client_cert: failed to parse cert: %s", err.Error())
			}
		}
	}
	return nil
}
