// Package config loads Sluice's config.yaml, which uses Apache APISIX's
// conf/config.yaml key names so that an APISIX deployment's file works
// unchanged. Keys APISIX knows but Sluice does not implement are accepted and
// reported in one warning; wrong types and invalid values are errors that name
// the file, line and key.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Listen is one listening address. Entries of apisix.node_listen and
// apisix.ssl.listen may be written as a bare port (9080) or as {ip, port}.
type Listen struct {
	// IP to bind; "" means all interfaces (APISIX's default "0.0.0.0" plus
	// "[::]" when IPv6 is enabled).
	IP string
	// Port in 1..65535 (checked by Validate).
	Port int
	// HTTP2 is the entry's enable_http2: on a node_listen entry it serves
	// cleartext HTTP/2 (h2c) next to HTTP/1.1, as APISIX does.
	HTTP2 bool
}

// Addr returns the address in the form net.Listen expects.
func (l Listen) Addr() string {
	if l.IP == "" {
		return fmt.Sprintf(":%d", l.Port)
	}
	if l.IP[0] != '[' && strings.Contains(l.IP, ":") {
		return fmt.Sprintf("[%s]:%d", l.IP, l.Port)
	}
	return fmt.Sprintf("%s:%d", l.IP, l.Port)
}

// StreamListen is one apisix.stream_proxy entry. TCP entries may be a
// port (9100), an "ip:port" string, a port range ("9100-9102", also after
// an ip) or a map {addr, tls, proxy_protocol, proxy_protocol_to_upstream};
// UDP entries a port or a string.
type StreamListen struct {
	// IP to bind; "" means all interfaces, as nginx's `listen 9100`.
	IP string
	// Port in 1..65535 (checked by Validate).
	Port int
	// TLS terminates TLS on the listener (TCP only).
	TLS bool
	// ProxyProtocol and ProxyProtocolToUpstream are APISIX's PROXY
	// protocol switches; Sluice does not speak the PROXY protocol yet, so
	// Validate refuses them when true rather than corrupting the stream.
	ProxyProtocol           bool
	ProxyProtocolToUpstream bool
}

// Addr returns the address in the form net.Listen expects.
func (l StreamListen) Addr() string {
	return Listen{IP: l.IP, Port: l.Port}.Addr()
}

// AdminKey is one entry of deployment.admin.admin_key.
type AdminKey struct {
	// Name is a label for logs; it is never used for authentication.
	Name string
	// Key is the X-API-KEY value. Empty means "generate one", as APISIX's CLI
	// does for its stock config.yaml.
	Key string
	// Role is "admin" (all methods) or "viewer" (GET only).
	Role string
}

// Config is the whole config.yaml. Field names follow APISIX's keys
// (apisix.node_listen → Apisix.NodeListen), so the APISIX documentation
// describes them; Sluice's own settings live under the top-level `sluice:` key.
type Config struct {
	// Path is the file the config came from ("" for Default()).
	Path string

	// Apisix is the `apisix:` section.
	Apisix struct {
		// NodeListen are the plain-HTTP proxy listeners (default [:9080]).
		NodeListen []Listen
		// EnableAdmin turns the Admin API on. APISIX forces it off for the
		// data_plane role and on for control_plane; so does Parse.
		EnableAdmin bool
		// EnableHTTP2 enables HTTP/2 on the proxy listeners.
		EnableHTTP2 bool
		// SSL is `apisix.ssl`.
		SSL struct {
			// Enable turns the TLS proxy listeners on.
			Enable bool
			// Listen are the TLS proxy listeners (default [:9443]).
			Listen []Listen
			// SSLProtocols is a space-separated list such as "TLSv1.2 TLSv1.3".
			SSLProtocols string
			// FallbackSNI is used to pick a certificate when the client sends no SNI.
			FallbackSNI string
		}
		// Router is `apisix.router`.
		Router struct {
			// HTTP is radixtree_host_uri (default), radixtree_uri or
			// radixtree_uri_with_parameter.
			HTTP string
			// SSL is radixtree_sni, the only SNI router APISIX has.
			SSL string
		}
		// ProxyMode is http (default), stream or http&stream.
		ProxyMode string
		// StreamProxy is `apisix.stream_proxy`: the L4 (TCP/UDP) proxy
		// listeners, started only when ProxyMode contains "stream"
		// (docs/stream.md). Port ranges ("9100-9102") are expanded into one
		// entry per port when parsed.
		StreamProxy struct {
			// TCP are the TCP listeners; an entry's TLS terminates TLS with
			// the SSL objects' certificates, as an `ssl` nginx listen does.
			TCP []StreamListen
			// UDP are the UDP listeners.
			UDP []StreamListen
		}
		// EnableServerTokens puts the version in the Server header.
		EnableServerTokens bool
		// ShowUpstreamStatusInResponseHeader adds X-APISIX-Upstream-Status on
		// every response instead of only on 5xx.
		ShowUpstreamStatusInResponseHeader bool
		// DeleteURITailSlash strips a trailing "/" before routing.
		DeleteURITailSlash bool
		// NormalizeURILikeServlet drops ";params" path segments before routing.
		NormalizeURILikeServlet bool
		// TrustedAddresses are the IPs/CIDRs whose X-Forwarded-* headers are
		// believed.
		TrustedAddresses []string
		// DisableUpstreamHealthcheck turns all upstream health checks off.
		DisableUpstreamHealthcheck bool
		// DataEncryption is `apisix.data_encryption`; the keyring is handed to
		// internal/crypt. A single string in the file becomes a one-entry list.
		DataEncryption struct {
			EnableEncryptFields bool
			Keyring             []string
		}
	}

	// Deployment is the `deployment:` section.
	Deployment struct {
		// Role is traditional (default), control_plane or data_plane.
		Role string
		// ConfigProvider comes from deployment.role_<role>.config_provider.
		// Sluice's default is "embedded" (a local bbolt file); "etcd", "yaml"
		// and "json" parse but Validate refuses them until those stores exist.
		ConfigProvider string
		// Admin is `deployment.admin`.
		Admin struct {
			// AdminKeyRequired false disables Admin API authentication.
			AdminKeyRequired bool
			// AdminKey lists the accepted keys. Empty (the default, and what
			// `admin_key: null` gives) lets the gateway generate one.
			AdminKey []AdminKey
			// AllowAdmin is the client IP/CIDR allow-list of the Admin API.
			// An empty list (including `allow_admin: null`) allows everyone,
			// as in APISIX.
			AllowAdmin []string
			// AdminListen is the Admin API listener (default 127.0.0.1:9180;
			// APISIX binds 0.0.0.0, Sluice is safer by default).
			AdminListen Listen
			// EnableAdminCORS adds the permissive CORS headers APISIX sends.
			EnableAdminCORS bool
			// AdminAPIVersion is "v3" (default) or the legacy "v2".
			AdminAPIVersion string
		}
		// Etcd is `deployment.etcd`; used once the etcd store exists.
		Etcd struct {
			Host         []string
			Prefix       string
			Timeout      int // seconds
			WatchTimeout int // seconds
			StartupRetry int
			ResyncDelay  int // seconds
			User         string
			Password     string
			TLS          struct {
				Cert   string
				Key    string
				Verify bool
				SNI    string
			}
		}
	}

	// Plugins is the enabled plugin list. It is nil when the key is absent,
	// which means every built-in plugin is enabled; an explicit empty list or
	// `plugins:` with no value (APISIX's null) enables none.
	Plugins []string

	// PluginAttr is `plugin_attr`: per-plugin global settings, kept as
	// decoded YAML for each plugin to interpret.
	PluginAttr map[string]map[string]any

	// NginxConfig holds the few nginx_config keys Sluice honours.
	NginxConfig struct {
		HTTP struct {
			// RealIPHeader is the header trusted peers may set the client
			// address with (nginx real_ip_header; default X-Real-IP).
			RealIPHeader string
			// RealIPFrom lists the peers trusted to set it (default
			// 127.0.0.1 and unix:, as APISIX ships).
			RealIPFrom []string
			// RealIPRecursive is "on" or "off" (default).
			RealIPRecursive string
		}
	}

	// Sluice holds settings that APISIX has no key for.
	Sluice struct {
		// DataDir holds the embedded store and other state (default "data",
		// relative to the working directory).
		DataDir string
		// ShutdownTimeout bounds graceful shutdown. In the file it is a Go
		// duration ("10s") or a number of seconds.
		ShutdownTimeout time.Duration
		// LogLevel is debug, info (default), warn or error.
		LogLevel string
		// Engine serves HTTP/1.1: "fast" (the raw-socket engine, default;
		// HTTP/2 still goes to net/http) or "std" (net/http for HTTP/1.1
		// too). docs/engine.md.
		Engine string
		// Limits are the data plane's request limits (docs/limits.md).
		Limits Limits
		// Memory tunes how the Go runtime holds memory (docs/config.md).
		Memory Memory
	}

	// lines maps dotted key paths to the line they were read from, so that
	// Validate can point at the file even though it runs after decoding.
	lines map[string]int
}

// Default returns the configuration used when there is no file. Each call
// returns a fresh value the caller may modify.
func Default() *Config {
	c := &Config{}
	a := &c.Apisix
	a.NodeListen = []Listen{{Port: 9080}}
	a.EnableAdmin = true
	a.EnableHTTP2 = true
	a.SSL.Enable = true
	a.SSL.Listen = []Listen{{Port: 9443}}
	a.SSL.SSLProtocols = "TLSv1.2 TLSv1.3"
	a.Router.HTTP = "radixtree_host_uri"
	a.Router.SSL = "radixtree_sni"
	a.ProxyMode = "http"
	a.EnableServerTokens = true
	a.DataEncryption.EnableEncryptFields = true
	a.DataEncryption.Keyring = []string{"qeddd145sfvddff3", "edd1c9f0985e76a2"}

	d := &c.Deployment
	d.Role = "traditional"
	d.ConfigProvider = "embedded"
	d.Admin.AdminKeyRequired = true
	d.Admin.AllowAdmin = []string{"127.0.0.0/24", "::1/128"}
	d.Admin.AdminListen = Listen{IP: "127.0.0.1", Port: 9180}
	d.Admin.EnableAdminCORS = true
	d.Admin.AdminAPIVersion = "v3"
	d.Etcd.Host = []string{"http://127.0.0.1:2379"}
	d.Etcd.Prefix = "/apisix"
	d.Etcd.Timeout = 30
	d.Etcd.WatchTimeout = 50
	d.Etcd.StartupRetry = 2
	d.Etcd.ResyncDelay = 5
	d.Etcd.TLS.Verify = true

	c.Sluice.DataDir = "data"
	c.Sluice.ShutdownTimeout = 10 * time.Second
	c.Sluice.LogLevel = "info"
	c.Sluice.Engine = "fast"
	c.NginxConfig.HTTP.RealIPHeader = "X-Real-IP"
	c.NginxConfig.HTTP.RealIPFrom = []string{"127.0.0.1", "unix:"}
	c.NginxConfig.HTTP.RealIPRecursive = "off"
	c.Sluice.Memory = Memory{ReleaseIdle: time.Second}
	c.Sluice.Limits = Limits{
		MaxHeaderBytes:       64 << 10,
		MaxRequestLine:       8 << 10,
		MaxHeaderCount:       100,
		ReadHeaderTimeout:    10 * time.Second,
		IdleTimeout:          60 * time.Second,
		MaxConcurrentStreams: 100,
	}
	return c
}

// Load reads, parses and validates the file at path. An empty path returns
// Default(). The error is an *Error for a single problem and Errors for
// several; warnings are returned even when there is an error.
func Load(path string) (*Config, []Warning, error) {
	if path == "" {
		return Default(), nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	c, warns, err := Parse(data, path)
	if err != nil {
		return nil, warns, err
	}
	if err := c.Validate(); err != nil {
		return nil, warns, err
	}
	return c, warns, nil
}

// Limits bound what a client may send (sluice.limits in config.yaml; see
// docs/limits.md for the defaults and why).
type Limits struct {
	// MaxHeaderBytes caps the request line plus headers.
	MaxHeaderBytes int
	// MaxRequestLine caps the request line (414 beyond).
	MaxRequestLine int
	// MaxHeaderCount caps the number of header lines (431 beyond).
	MaxHeaderCount int
	// ReadHeaderTimeout bounds reading the header block (slowloris).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration
	// MaxBodyBytes caps request bodies (413); 0 is unlimited, as APISIX's
	// client_max_body_size 0.
	MaxBodyBytes int
	// MaxConcurrentStreams caps HTTP/2 streams per connection.
	MaxConcurrentStreams int
}

// Memory is sluice.memory. Neither setting makes Sluice's structures
// smaller; they decide how soon the runtime gives freed memory back.
type Memory struct {
	// Limit is a soft limit in bytes on the memory the Go runtime holds
	// (debug.SetMemoryLimit): near it the garbage collector runs more
	// often instead of letting the heap grow to twice the live data. 0
	// (the default) sets none; GOMEMLIMIT in the environment, when set,
	// wins over this setting. In the file: bytes, or a number with KiB,
	// MiB or GiB.
	Limit int64
	// ReleaseIdle returns freed heap memory to the OS (one collection
	// plus debug.FreeOSMemory) once configuration changes have paused
	// this long after a snapshot build, so that the garbage of a burst of
	// Admin API writes does not stay resident; 0 leaves it to the
	// runtime's own pace. Default 1s.
	ReleaseIdle time.Duration
}
