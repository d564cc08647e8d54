package resource

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
)

// Route is a decoded route with defaults applied.
type Route struct {
	ID              string
	Name            string
	Desc            string
	URI             string
	URIs            []string
	Host            string
	Hosts           []string
	RemoteAddr      string
	RemoteAddrs     []string
	Methods         []string
	Priority        int
	Vars            json.RawMessage // nil when absent; validated by expr.Compile
	Plugins         map[string]json.RawMessage
	PluginConfigID  string
	Upstream        *Upstream
	UpstreamID      string
	ServiceID       string
	Timeout         *Timeout
	EnableWebsocket *bool
	Status          int // default 1
	Labels          map[string]string
}

// Paths returns the route's URIs: uris, or uri as a one-element list.
func (r *Route) Paths() []string {
	if len(r.URIs) > 0 {
		return r.URIs
	}
	if r.URI != "" {
		return []string{r.URI}
	}
	return nil
}

// Service is a decoded service.
type Service struct {
	ID              string
	Name            string
	Desc            string
	Plugins         map[string]json.RawMessage
	Upstream        *Upstream
	UpstreamID      string
	EnableWebsocket *bool
	Hosts           []string
	Labels          map[string]string
}

// Upstream is a decoded upstream with defaults applied.
type Upstream struct {
	ID   string
	Name string
	Desc string
	// Nodes are sorted by host:port so that builds are deterministic; the
	// map form is converted.
	Nodes         []Node
	Type          string // default "roundrobin"
	HashOn        string // default "vars"
	Key           string
	Retries       *int // nil: number of nodes - 1
	RetryTimeout  float64
	Timeout       *Timeout
	Scheme        string // default "http"
	PassHost      string // default "pass"
	UpstreamHost  string
	TLS           *UpstreamTLS
	KeepalivePool *KeepalivePool
	Checks        *HealthChecks // nil when absent; all defaults filled
	ServiceName   string
	DiscoveryType string
	DiscoveryArgs map[string]string
	Labels        map[string]string
}

// Node is one upstream node.
type Node struct {
	Host     string // IPv6 literals keep their brackets
	Port     int    // 0 = scheme default
	Weight   int
	Priority int
	Metadata map[string]any
}

// Addr returns host:port, or host when the port is left to the scheme.
func (n Node) Addr() string {
	if n.Port == 0 {
		return n.Host
	}
	return fmt.Sprintf("%s:%d", n.Host, n.Port)
}

// Timeout holds connect/send/read timeouts in seconds.
type Timeout struct{ Connect, Send, Read float64 }

// UpstreamTLS is an upstream's client certificate configuration.
type UpstreamTLS struct {
	ClientCert   string
	ClientKey    string
	ClientCertID string
	Verify       bool
}

// KeepalivePool is an upstream's connection pool (defaults 320, 60 s, 1000).
type KeepalivePool struct {
	Size        int
	IdleTimeout float64
	Requests    int
}

// HealthChecks is an upstream's health check configuration.
type HealthChecks struct {
	Active  *ActiveCheck
	Passive *PassiveCheck // nil when not configured
}

// ActiveCheck configures active probing.
type ActiveCheck struct {
	Type                   string // http, https, tcp
	Timeout                float64
	Concurrency            int
	Host                   string
	Port                   int
	HTTPMethod             string
	HTTPPath               string
	HTTPReqBody            string
	HTTPSVerifyCertificate bool
	ReqHeaders             []string
	Healthy                ActiveHealthy
	Unhealthy              ActiveUnhealthy
}

// ActiveHealthy are the thresholds that mark a node healthy.
type ActiveHealthy struct {
	Interval     int
	HTTPStatuses []int
	Successes    int
}

// ActiveUnhealthy are the thresholds that mark a node unhealthy.
type ActiveUnhealthy struct {
	Interval     int
	HTTPStatuses []int
	HTTPFailures int
	TCPFailures  int
	Timeouts     int
}

// PassiveCheck configures passive (traffic-based) checks.
type PassiveCheck struct {
	Type      string
	Healthy   PassiveHealthy
	Unhealthy PassiveUnhealthy
}

// PassiveHealthy are the passive healthy thresholds.
type PassiveHealthy struct {
	HTTPStatuses []int
	Successes    int
}

// PassiveUnhealthy are the passive unhealthy thresholds.
type PassiveUnhealthy struct {
	HTTPStatuses []int
	TCPFailures  int
	Timeouts     int
	HTTPFailures int
}

// Consumer is a decoded consumer; its id is its username.
type Consumer struct {
	Username string
	Desc     string
	GroupID  string
	Plugins  map[string]json.RawMessage
	Labels   map[string]string
}

// Credential is a decoded credential of a consumer.
type Credential struct {
	ID      string
	Name    string
	Desc    string
	Plugins map[string]json.RawMessage
	Labels  map[string]string
}

// ConsumerGroup is a decoded consumer group.
type ConsumerGroup struct {
	ID      string
	Name    string
	Desc    string
	Plugins map[string]json.RawMessage
	Labels  map[string]string
}

// GlobalRule is a decoded global rule.
type GlobalRule struct {
	ID      string
	Plugins map[string]json.RawMessage
}

// PluginConfig is a decoded plugin config.
type PluginConfig struct {
	ID      string
	Name    string
	Desc    string
	Plugins map[string]json.RawMessage
	Labels  map[string]string
}

// PluginMetadata is a plugin's metadata object; ID is the plugin name.
type PluginMetadata struct {
	ID   string
	Conf json.RawMessage // the whole stored object
}

// Proto is a decoded protobuf definition.
type Proto struct {
	ID      string
	Name    string
	Desc    string
	Content string
	Labels  map[string]string
}

// Secret is a secret manager configuration; ID is "manager/id".
type Secret struct {
	ID      string
	Manager string
	Conf    map[string]any
}

// StreamRoute is a decoded L4 route.
type StreamRoute struct {
	ID         string
	Name       string
	RemoteAddr string
	ServerAddr string
	ServerPort int
	SNI        string
	Upstream   *Upstream
	UpstreamID string
	ServiceID  string
	Plugins    map[string]json.RawMessage
	Protocol   json.RawMessage
	Labels     map[string]string
}

// SSL is a decoded certificate object.
type SSL struct {
	ID           string
	Type         string // server (default) or client
	Cert         string
	Key          string
	SNIs         []string // snis, or sni as a one-element list
	Certs        []string
	Keys         []string
	Client       *SSLClient
	Status       int // default 1
	SSLProtocols []string
	Labels       map[string]string
}

// SSLClient is the mTLS client verification configuration.
type SSLClient struct {
	CA               string
	Depth            int // default 1
	SkipMTLSURIRegex []string
}

// Certificates parses cert/key and each certs[i]/keys[i] pair into TLS
// certificates (leaf parsed). Secret references cannot be parsed here and
// yield an error; resolve them first.
func (s *SSL) Certificates() ([]tls.Certificate, error) {
	var out []tls.Certificate
	pairs := [][2]string{{s.Cert, s.Key}}
	for i := range s.Certs {
		if i < len(s.Keys) {
			pairs = append(pairs, [2]string{s.Certs[i], s.Keys[i]})
		}
	}
	for i, p := range pairs {
		c, err := tls.X509KeyPair([]byte(p[0]), []byte(p[1]))
		if err != nil {
			return nil, fmt.Errorf("ssl %s: cert-key pair %d: %w", s.ID, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}
