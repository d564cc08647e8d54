package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseValid runs what Load runs, on a string.
func parseValid(src string) (*Config, []Warning, error) {
	c, w, err := Parse([]byte(src), "conf/config.yaml")
	if err != nil {
		return nil, w, err
	}
	return c, w, c.Validate()
}

// sameAsDefault compares the exported fields only.
func sameAsDefault(t *testing.T, c *Config) {
	t.Helper()
	want := Default()
	got := *c
	got.Path, got.lines = "", nil
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("config differs from Default():\n got %+v\nwant %+v", got, *want)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	if c.Plugins != nil {
		t.Fatal("default Plugins must be nil (all plugins)")
	}
	if got := c.Apisix.NodeListen; len(got) != 1 || got[0] != (Listen{Port: 9080}) {
		t.Fatalf("NodeListen = %v", got)
	}
	// Each call returns an independent value.
	c.Apisix.NodeListen[0].Port = 1
	if Default().Apisix.NodeListen[0].Port != 9080 {
		t.Fatal("Default() shares state between calls")
	}
}

func TestEmptyInputs(t *testing.T) {
	for name, src := range map[string]string{
		"empty":         "",
		"blank":         "\n\n   \n",
		"comments only": "# just a comment\n  # another ${{NOT_SET_ANYWHERE}}\n",
		"document mark": "---\n",
		"null":          "~\n",
		"null sections": "apisix:\ndeployment:\nsluice:\nplugin_attr:\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, w, err := parseValid(src)
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != 0 {
				t.Fatalf("warnings: %v", w)
			}
			sameAsDefault(t, c)
		})
	}
}

func TestGood(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(c *Config) any // returns the value to compare
		want  any
	}{
		{"node_listen int", "apisix:\n  node_listen: 8080\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8080}}},
		{"node_listen list of ints", "apisix:\n  node_listen: [8080, 8081]\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8080}, {Port: 8081}}},
		{"node_listen maps", "apisix:\n  node_listen:\n    - ip: 127.0.0.1\n      port: 8080\n    - port: 8081\n    - ip: \"::1\"\n",
			func(c *Config) any { return c.Apisix.NodeListen },
			[]Listen{{IP: "127.0.0.1", Port: 8080}, {Port: 8081}, {IP: "::1", Port: 9080}}},
		{"node_listen single map", "apisix:\n  node_listen: {ip: 10.0.0.1, port: 80}\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{IP: "10.0.0.1", Port: 80}}},
		{"node_listen empty list", "apisix:\n  node_listen: []\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{}},
		{"enable_admin", "apisix:\n  enable_admin: false\n",
			func(c *Config) any { return c.Apisix.EnableAdmin }, false},
		{"memory", "sluice:\n  memory:\n    limit: 96MiB\n    release_idle: 0\n",
			func(c *Config) any { return c.Sluice.Memory }, Memory{Limit: 96 << 20}},
		{"memory limit bytes", "sluice:\n  memory:\n    limit: 1048576\n",
			func(c *Config) any { return c.Sluice.Memory }, Memory{Limit: 1 << 20, ReleaseIdle: time.Second}},
		{"enable_http2", "apisix:\n  enable_http2: false\n",
			func(c *Config) any { return c.Apisix.EnableHTTP2 }, false},
		{"yaml 1.1 bool", "apisix:\n  enable_http2: no\n",
			func(c *Config) any { return c.Apisix.EnableHTTP2 }, false},
		{"ssl", "apisix:\n  ssl:\n    enable: false\n    listen:\n      - port: 8443\n      - ip: 127.0.0.1\n    ssl_protocols: TLSv1.3\n    fallback_sni: example.com\n",
			func(c *Config) any { return c.Apisix.SSL },
			struct {
				Enable       bool
				Listen       []Listen
				SSLProtocols string
				FallbackSNI  string
			}{false, []Listen{{Port: 8443}, {IP: "127.0.0.1", Port: 9443}}, "TLSv1.3", "example.com"}},
		{"router", "apisix:\n  router:\n    http: radixtree_uri\n    ssl: radixtree_sni\n",
			func(c *Config) any { return c.Apisix.Router.HTTP }, "radixtree_uri"},
		{"router with parameter", "apisix:\n  router:\n    http: radixtree_uri_with_parameter\n",
			func(c *Config) any { return c.Apisix.Router.HTTP }, "radixtree_uri_with_parameter"},
		{"proxy_mode", "apisix:\n  proxy_mode: http&stream\n",
			func(c *Config) any { return c.Apisix.ProxyMode }, "http&stream"},
		{"enable_server_tokens", "apisix:\n  enable_server_tokens: false\n",
			func(c *Config) any { return c.Apisix.EnableServerTokens }, false},
		{"show_upstream_status", "apisix:\n  show_upstream_status_in_response_header: true\n",
			func(c *Config) any { return c.Apisix.ShowUpstreamStatusInResponseHeader }, true},
		{"delete_uri_tail_slash", "apisix:\n  delete_uri_tail_slash: true\n",
			func(c *Config) any { return c.Apisix.DeleteURITailSlash }, true},
		{"normalize_uri_like_servlet", "apisix:\n  normalize_uri_like_servlet: true\n",
			func(c *Config) any { return c.Apisix.NormalizeURILikeServlet }, true},
		{"trusted_addresses", "apisix:\n  trusted_addresses: [10.0.0.0/8, 192.168.1.1, \"::1\", \"fe80::/10\"]\n",
			func(c *Config) any { return c.Apisix.TrustedAddresses }, []string{"10.0.0.0/8", "192.168.1.1", "::1", "fe80::/10"}},
		{"disable_upstream_healthcheck", "apisix:\n  disable_upstream_healthcheck: true\n",
			func(c *Config) any { return c.Apisix.DisableUpstreamHealthcheck }, true},
		{"data_encryption", "apisix:\n  data_encryption:\n    enable_encrypt_fields: false\n    keyring:\n      - edd1c9f0985e76a2\n      - qeddd145sfvddff3qeddd145sfvddff3\n",
			func(c *Config) any { return c.Apisix.DataEncryption },
			struct {
				EnableEncryptFields bool
				Keyring             []string
			}{false, []string{"edd1c9f0985e76a2", "qeddd145sfvddff3qeddd145sfvddff3"}}},
		{"keyring single string", "apisix:\n  data_encryption:\n    keyring: edd1c9f0985e76a2\n",
			func(c *Config) any { return c.Apisix.DataEncryption.Keyring }, []string{"edd1c9f0985e76a2"}},
		{"role data_plane disables admin", "deployment:\n  role: data_plane\n  role_data_plane:\n    config_provider: embedded\n",
			func(c *Config) any { return c.Apisix.EnableAdmin }, false},
		{"role control_plane enables admin", "apisix:\n  enable_admin: false\ndeployment:\n  role: control_plane\n",
			func(c *Config) any { return c.Apisix.EnableAdmin }, true},
		{"provider of other role ignored", "deployment:\n  role: traditional\n  role_data_plane:\n    config_provider: yaml\n",
			func(c *Config) any { return c.Deployment.ConfigProvider }, "embedded"},
		{"admin_key_required", "deployment:\n  admin:\n    admin_key_required: false\n",
			func(c *Config) any { return c.Deployment.Admin.AdminKeyRequired }, false},
		{"admin_key list", "deployment:\n  admin:\n    admin_key:\n      - name: admin\n        key: edd1c9f034335f136f87ad84b625c8f1\n        role: admin\n      - name: viewer\n        key: 4054f7cf07e344346cd3f287985e76a2\n        role: viewer\n",
			func(c *Config) any { return c.Deployment.Admin.AdminKey },
			[]AdminKey{{"admin", "edd1c9f034335f136f87ad84b625c8f1", "admin"}, {"viewer", "4054f7cf07e344346cd3f287985e76a2", "viewer"}}},
		{"admin_key numeric key", "deployment:\n  admin:\n    admin_key:\n      - {name: a, key: 123456, role: admin}\n",
			func(c *Config) any { return c.Deployment.Admin.AdminKey[0].Key }, "123456"},
		{"admin_key null", "deployment:\n  admin:\n    admin_key: ~\n",
			func(c *Config) any { return len(c.Deployment.Admin.AdminKey) }, 0},
		{"allow_admin", "deployment:\n  admin:\n    allow_admin: [0.0.0.0/0, \"::/0\"]\n",
			func(c *Config) any { return c.Deployment.Admin.AllowAdmin }, []string{"0.0.0.0/0", "::/0"}},
		{"allow_admin null allows all", "deployment:\n  admin:\n    allow_admin:\n",
			func(c *Config) any { return c.Deployment.Admin.AllowAdmin }, []string{}},
		{"admin_listen", "deployment:\n  admin:\n    admin_listen:\n      ip: 0.0.0.0\n      port: 9181\n",
			func(c *Config) any { return c.Deployment.Admin.AdminListen }, Listen{IP: "0.0.0.0", Port: 9181}},
		{"admin_listen port only keeps ip", "deployment:\n  admin:\n    admin_listen:\n      port: 9181\n",
			func(c *Config) any { return c.Deployment.Admin.AdminListen }, Listen{IP: "127.0.0.1", Port: 9181}},
		{"enable_admin_cors", "deployment:\n  admin:\n    enable_admin_cors: false\n",
			func(c *Config) any { return c.Deployment.Admin.EnableAdminCORS }, false},
		{"admin_api_version", "deployment:\n  admin:\n    admin_api_version: v2\n",
			func(c *Config) any { return c.Deployment.Admin.AdminAPIVersion }, "v2"},
		{"etcd", "deployment:\n  etcd:\n    host: [\"https://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n    prefix: /gw\n    timeout: 5\n    watch_timeout: 10\n    startup_retry: 3\n    resync_delay: 1\n    user: root\n    password: 123\n    tls:\n      cert: /c.pem\n      key: /k.pem\n      verify: false\n      sni: etcd.local\n",
			func(c *Config) any { return c.Deployment.Etcd },
			func() any {
				e := Default().Deployment.Etcd
				e.Host = []string{"https://10.0.0.1:2379", "http://10.0.0.2:2379"}
				e.Prefix, e.Timeout, e.WatchTimeout, e.StartupRetry, e.ResyncDelay = "/gw", 5, 10, 3, 1
				e.User, e.Password = "root", "123"
				e.TLS.Cert, e.TLS.Key, e.TLS.Verify, e.TLS.SNI = "/c.pem", "/k.pem", false, "etcd.local"
				return e
			}()},
		{"plugins", "plugins:\n  - key-auth\n  - limit-count\n",
			func(c *Config) any { return c.Plugins }, []string{"key-auth", "limit-count"}},
		{"plugins empty list", "plugins: []\n",
			func(c *Config) any { return c.Plugins }, []string{}},
		{"plugins null enables none", "plugins:\n",
			func(c *Config) any { return c.Plugins }, []string{}},
		{"plugin_attr", "plugin_attr:\n  prometheus:\n    export_uri: /m\n    export_addr: {ip: 127.0.0.1, port: 9091}\n  some-unknown-plugin:\n    x: 1\n",
			func(c *Config) any { return c.PluginAttr },
			map[string]map[string]any{
				"prometheus":          {"export_uri": "/m", "export_addr": map[string]any{"ip": "127.0.0.1", "port": 9091}},
				"some-unknown-plugin": {"x": 1},
			}},
		{"sluice", "sluice:\n  data_dir: /var/lib/sluice\n  shutdown_timeout: 1m30s\n  log_level: debug\n",
			func(c *Config) any { return []any{c.Sluice.DataDir, c.Sluice.ShutdownTimeout, c.Sluice.LogLevel} },
			[]any{"/var/lib/sluice", 90 * time.Second, "debug"}},
		{"sluice limits", "sluice:\n  limits:\n    max_header_count: 50\n    max_body_bytes: 1048576\n    read_header_timeout: 5s\n",
			func(c *Config) any {
				l := c.Sluice.Limits
				return []any{l.MaxHeaderCount, l.MaxBodyBytes, l.ReadHeaderTimeout, l.MaxHeaderBytes}
			},
			[]any{50, 1048576, 5 * time.Second, 64 << 10}},
		{"shutdown_timeout seconds", "sluice:\n  shutdown_timeout: 3\n",
			func(c *Config) any { return c.Sluice.ShutdownTimeout }, 3 * time.Second},
		{"shutdown_timeout fractional", "sluice:\n  shutdown_timeout: 0.5\n",
			func(c *Config) any { return c.Sluice.ShutdownTimeout }, 500 * time.Millisecond},
		{"anchors and aliases", "x-ports: &ports [8080, 8081]\napisix:\n  node_listen: *ports\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8080}, {Port: 8081}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseValid(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got := tt.check(c)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestBad(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the whole error text
	}{
		{"node_listen string", "apisix:\n  node_listen: abc\n",
			`conf/config.yaml:2: apisix.node_listen: expected a port number, a {ip, port} map or a list of them, got "abc"`},
		{"node_listen item", "apisix:\n  node_listen:\n    - 9080\n    - true\n",
			`conf/config.yaml:4: apisix.node_listen[1]: expected a port number, a {ip, port} map or a list of them, got "true"`},
		{"node_listen port type", "apisix:\n  node_listen:\n    - port: http\n",
			`conf/config.yaml:3: apisix.node_listen[0].port: expected an integer, got "http"`},
		{"node_listen port range", "apisix:\n  node_listen: 70000\n",
			`conf/config.yaml:2: apisix.node_listen[0]: port 70000 is out of range 1-65535`},
		{"node_listen port zero", "apisix:\n  node_listen: [{port: 0}]\n",
			`conf/config.yaml:2: apisix.node_listen[0]: port 0 is out of range 1-65535`},
		{"node_listen bad ip", "apisix:\n  node_listen:\n    - ip: localhost\n      port: 80\n",
			`conf/config.yaml:3: apisix.node_listen[0]: ip "localhost" is not an IP address`},
		{"port conflict", "apisix:\n  node_listen: [9080]\n  ssl:\n    listen: [{port: 9080}]\n",
			`conf/config.yaml:4: apisix.ssl.listen[0]: port 9080 conflicts with apisix.node_listen[0]`},
		{"admin port conflict", "apisix:\n  node_listen: 9180\n",
			`conf/config.yaml:2: deployment.admin.admin_listen: port 9180 conflicts with apisix.node_listen[0]`},
		{"memory limit unit", "sluice:\n  memory:\n    limit: 96MB\n",
			`conf/config.yaml:3: sluice.memory.limit: expected a number of bytes or a size such as "96MiB", got "96MB"`},
		{"memory limit negative", "sluice:\n  memory:\n    limit: -1\n",
			`conf/config.yaml:3: sluice.memory.limit: must not be negative, got -1`},
		{"enable_admin not bool", "apisix:\n  enable_admin: maybe\n",
			`conf/config.yaml:2: apisix.enable_admin: expected true or false, got "maybe"`},
		{"quoted bool", "apisix:\n  enable_http2: \"yes\"\n",
			`conf/config.yaml:2: apisix.enable_http2: expected true or false, got "yes"`},
		{"ssl not map", "apisix:\n  ssl: true\n",
			`conf/config.yaml:2: apisix.ssl: expected a map, got "true"`},
		{"ssl listen port range", "apisix:\n  ssl:\n    listen:\n      - port: 99999\n",
			`conf/config.yaml:4: apisix.ssl.listen[0]: port 99999 is out of range 1-65535`},
		{"ssl_protocols", "apisix:\n  ssl:\n    ssl_protocols: TLSv1.2 SSLv3\n",
			`conf/config.yaml:3: apisix.ssl.ssl_protocols: unknown protocol "SSLv3" (use TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)`},
		{"router", "apisix:\n  router:\n    http: radixtree_host\n",
			`conf/config.yaml:3: apisix.router.http: must be one of "radixtree_host_uri", "radixtree_uri", "radixtree_uri_with_parameter", got "radixtree_host"`},
		{"router ssl", "apisix:\n  router:\n    ssl: other\n",
			`conf/config.yaml:3: apisix.router.ssl: must be one of "radixtree_sni", got "other"`},
		{"proxy_mode", "apisix:\n  proxy_mode: tcp\n",
			`conf/config.yaml:2: apisix.proxy_mode: must be one of "http", "stream", "http&stream", got "tcp"`},
		{"trusted_addresses cidr", "apisix:\n  trusted_addresses:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n",
			`conf/config.yaml:4: apisix.trusted_addresses[1]: "10.0.0.0/33" is not an IP address or CIDR`},
		{"trusted_addresses not list", "apisix:\n  trusted_addresses: {a: b}\n",
			`conf/config.yaml:2: apisix.trusted_addresses: expected a list of strings, got a map`},
		{"keyring length", "apisix:\n  data_encryption:\n    keyring:\n      - short\n",
			`conf/config.yaml:4: apisix.data_encryption.keyring[0]: must be 16 bytes (AES-128) or 32 bytes (AES-256) long, got 5 bytes`},
		{"keyring empty", "apisix:\n  data_encryption:\n    keyring: []\n",
			`conf/config.yaml:3: apisix.data_encryption.keyring: must have at least one key`},
		{"role", "deployment:\n  role: standalone\n",
			`conf/config.yaml:2: deployment.role: must be one of "traditional", "control_plane", "data_plane", got "standalone"`},
		{"provider yaml traditional", "deployment:\n  role: traditional\n  role_traditional:\n    config_provider: yaml\n",
			`conf/config.yaml:4: deployment.role_traditional.config_provider: config_provider "yaml" with role "traditional" is APISIX's standalone API mode, which Sluice does not support; for the standalone file mode (conf/apisix.yaml) set deployment.role: data_plane and role_data_plane.config_provider: yaml`},
		{"provider json", "deployment:\n  role: data_plane\n  role_data_plane:\n    config_provider: json\n",
			`conf/config.yaml:4: deployment.role_data_plane.config_provider: config_provider "json" is not supported yet; use "embedded", "etcd" or "yaml"`},
		{"provider unknown", "deployment:\n  role_traditional:\n    config_provider: consul\n",
			`conf/config.yaml:3: deployment.role_traditional.config_provider: config_provider "consul" is not valid for role "traditional"; use one of "embedded", "etcd", "yaml"`},
		{"provider yaml for control plane", "deployment:\n  role: control_plane\n  role_control_plane:\n    config_provider: yaml\n",
			`conf/config.yaml:4: deployment.role_control_plane.config_provider: config_provider "yaml" is not valid for role "control_plane"; use one of "embedded", "etcd"`},
		{"admin key role", "deployment:\n  admin:\n    admin_key:\n      - name: a\n        key: k\n        role: root\n",
			`conf/config.yaml:6: deployment.admin.admin_key[0].role: must be "admin" or "viewer"`},
		{"admin key role missing", "deployment:\n  admin:\n    admin_key:\n      - name: a\n        key: k\n",
			`conf/config.yaml:4: deployment.admin.admin_key[0].role: must be "admin" or "viewer"`},
		{"admin key not list", "deployment:\n  admin:\n    admin_key: secret\n",
			`conf/config.yaml:3: deployment.admin.admin_key: expected a list of {name, key, role} maps, got "secret"`},
		{"admin key item", "deployment:\n  admin:\n    admin_key:\n      - secret\n",
			`conf/config.yaml:4: deployment.admin.admin_key[0]: expected a {name, key, role} map, got "secret"`},
		{"admin key bool key", "deployment:\n  admin:\n    admin_key:\n      - {name: a, key: true, role: admin}\n",
			`conf/config.yaml:4: deployment.admin.admin_key[0].key: expected a string, got "true"`},
		{"allow_admin", "deployment:\n  admin:\n    allow_admin:\n      - 127.0.0.0/24\n      - nope\n",
			`conf/config.yaml:5: deployment.admin.allow_admin[1]: "nope" is not an IP address or CIDR`},
		{"admin_listen int", "deployment:\n  admin:\n    admin_listen: 9180\n",
			`conf/config.yaml:3: deployment.admin.admin_listen: expected an {ip, port} map, got "9180"`},
		{"admin_listen port", "deployment:\n  admin:\n    admin_listen:\n      port: -1\n",
			`conf/config.yaml:3: deployment.admin.admin_listen: port -1 is out of range 1-65535`},
		{"admin_api_version", "deployment:\n  admin:\n    admin_api_version: v4\n",
			`conf/config.yaml:3: deployment.admin.admin_api_version: must be one of "v3", "v2", got "v4"`},
		{"etcd host scheme", "deployment:\n  etcd:\n    host:\n      - 127.0.0.1:2379\n",
			`conf/config.yaml:4: deployment.etcd.host[0]: "127.0.0.1:2379" must start with http:// or https://`},
		{"etcd timeout", "deployment:\n  etcd:\n    timeout: 0\n",
			`conf/config.yaml:3: deployment.etcd.timeout: must be at least 1 second, got 0`},
		{"etcd timeout type", "deployment:\n  etcd:\n    timeout: 1.5\n",
			`conf/config.yaml:3: deployment.etcd.timeout: expected an integer, got "1.5"`},
		{"etcd resync", "deployment:\n  etcd:\n    resync_delay: -1\n",
			`conf/config.yaml:3: deployment.etcd.resync_delay: must not be negative, got -1`},
		{"etcd verify", "deployment:\n  etcd:\n    tls:\n      verify: 1\n",
			`conf/config.yaml:4: deployment.etcd.tls.verify: expected true or false, got "1"`},
		{"plugins not list", "plugins: key-auth\n",
			`conf/config.yaml:1: plugins: expected a list of strings, got "key-auth"`},
		{"plugins item", "plugins:\n  - key-auth\n  - {a: 1}\n",
			`conf/config.yaml:3: plugins[1]: expected a string, got a map`},
		{"plugin_attr value", "plugin_attr:\n  prometheus: 1\n",
			`conf/config.yaml:2: plugin_attr.prometheus: expected a map, got "1"`},
		{"plugin_attr not map", "plugin_attr: [1]\n",
			`conf/config.yaml:1: plugin_attr: expected a map of plugin name to settings, got a list`},
		{"sluice unknown key", "sluice:\n  log_levle: debug\n",
			`conf/config.yaml:2: sluice.log_levle: unknown key`},
		{"log_level", "sluice:\n  log_level: trace\n",
			`conf/config.yaml:2: sluice.log_level: must be one of "debug", "info", "warn", "error", got "trace"`},
		{"engine", "sluice:\n  engine: turbo\n",
			`conf/config.yaml:2: sluice.engine: must be one of "std", "fast", got "turbo"`},
		{"shutdown_timeout", "sluice:\n  shutdown_timeout: soon\n",
			`conf/config.yaml:2: sluice.shutdown_timeout: expected a duration such as "10s" or a number of seconds, got "soon"`},
		{"shutdown_timeout negative", "sluice:\n  shutdown_timeout: -1s\n",
			`conf/config.yaml:2: sluice.shutdown_timeout: must not be negative, got -1s`},
		{"data_dir empty", "sluice:\n  data_dir: \"\"\n",
			`conf/config.yaml:2: sluice.data_dir: must not be empty`},
		{"top level list", "- a\n- b\n",
			`conf/config.yaml:1: expected a map of settings at the top level, got a list`},
		{"top level scalar", "hello\n",
			`conf/config.yaml:1: expected a map of settings at the top level, got "hello"`},
		{"syntax", "apisix:\n  node_listen: [9080\n  x: y\n",
			"conf/config.yaml:2: invalid YAML: did not find expected ',' or ']'"},
		{"syntax tab", "apisix:\n\tnode_listen: 1\n",
			"conf/config.yaml:2: invalid YAML: found character that cannot start any token"},
		{"syntax parser error line", "a: 1\n- b\n",
			"conf/config.yaml:2: invalid YAML: did not find expected key"},
		{"unknown anchor", "a: *nope\n",
			"conf/config.yaml: invalid YAML: unknown anchor 'nope' referenced"},
		{"duplicate key", "apisix:\n  enable_admin: true\n  enable_admin: false\n",
			"conf/config.yaml:3: apisix.enable_admin: duplicate key"},
		{"merge key", "base: &b {enable_admin: true}\napisix:\n  <<: *b\n",
			"conf/config.yaml:3: apisix: YAML merge keys (<<) are not supported"},
		{"env missing", "apisix:\n  node_listen: ${{SLUICE_TEST_UNSET_VAR}}\n",
			"conf/config.yaml:2: can't find environment variable SLUICE_TEST_UNSET_VAR (set it or write ${{SLUICE_TEST_UNSET_VAR:=default}})"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseValid(tt.src)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n got %s\nwant %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
		})
	}
}

func TestSeveralErrors(t *testing.T) {
	src := "apisix:\n  node_listen: abc\n  enable_admin: 3\nsluice:\n  log_level: [x]\n"
	_, _, err := parseValid(src)
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %T %v", err, err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "conf/config.yaml:2: ") || !strings.HasPrefix(lines[2], "conf/config.yaml:5: sluice.log_level") {
		t.Fatalf("unexpected error text:\n%s", err)
	}
	// Validation errors are reported together and sorted by line too.
	_, _, err = parseValid("apisix:\n  router:\n    http: x\n  proxy_mode: y\ndeployment:\n  role: z\n")
	if !errors.As(err, &es) || len(es) != 3 || es[0].Line != 3 || es[2].Line != 6 {
		t.Fatalf("want 3 sorted validation errors, got %v", err)
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("SLUICE_T_PORT", "8088")
	t.Setenv("SLUICE_T_HOST", "10.1.2.3")
	t.Setenv("SLUICE_T_BOOL", "false")
	t.Setenv("SLUICE_T_EMPTY", "")
	t.Setenv("SLUICE_T_KEY", "edd1c9f0985e76a2")
	t.Setenv("SLUICE_T_INJECT", "[1, 2]")
	tests := []struct {
		name  string
		src   string
		check func(c *Config) any
		want  any
	}{
		{"int", "apisix:\n  node_listen: ${{SLUICE_T_PORT}}\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8088}}},
		{"quoted still becomes int like APISIX", "apisix:\n  node_listen: \"${{SLUICE_T_PORT}}\"\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8088}}},
		{"spaces", "apisix:\n  node_listen: ${{ SLUICE_T_PORT }}\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8088}}},
		{"inside a string", "deployment:\n  etcd:\n    host:\n      - http://${{SLUICE_T_HOST}}:${{SLUICE_T_PORT}}\n",
			func(c *Config) any { return c.Deployment.Etcd.Host }, []string{"http://10.1.2.3:8088"}},
		{"bool", "apisix:\n  enable_http2: ${{SLUICE_T_BOOL}}\n",
			func(c *Config) any { return c.Apisix.EnableHTTP2 }, false},
		{"default used", "sluice:\n  log_level: ${{SLUICE_T_UNSET:=debug}}\n",
			func(c *Config) any { return c.Sluice.LogLevel }, "debug"},
		{"default with spaces", "sluice:\n  log_level: ${{ SLUICE_T_UNSET := warn }}\n",
			func(c *Config) any { return c.Sluice.LogLevel }, "warn"},
		{"env wins over default", "apisix:\n  node_listen: ${{SLUICE_T_PORT:=1}}\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 8088}}},
		{"set but empty", "apisix:\n  ssl:\n    fallback_sni: x${{SLUICE_T_EMPTY:=zzz}}\n",
			func(c *Config) any { return c.Apisix.SSL.FallbackSNI }, "x"},
		{"no structure injection", "apisix:\n  ssl:\n    fallback_sni: ${{SLUICE_T_INJECT}}\n",
			func(c *Config) any { return c.Apisix.SSL.FallbackSNI }, "[1, 2]"},
		{"in keys", "plugin_attr:\n  ${{SLUICE_T_NAME:=prometheus}}:\n    a: 1\n",
			func(c *Config) any { return c.PluginAttr["prometheus"]["a"] }, 1},
		{"keyring secret", "apisix:\n  data_encryption:\n    keyring:\n      - ${{SLUICE_T_KEY}}\n",
			func(c *Config) any { return c.Apisix.DataEncryption.Keyring }, []string{"edd1c9f0985e76a2"}},
		{"comment ignored", "# ${{SLUICE_T_UNSET}}\napisix: # ${{SLUICE_T_UNSET}}\n  node_listen: 1 # ${{SLUICE_T_UNSET}}\n",
			func(c *Config) any { return c.Apisix.NodeListen }, []Listen{{Port: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseValid(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	// Every unresolvable reference is reported, each with its line.
	_, _, err := parseValid("apisix:\n  node_listen: ${{SLUICE_T_A}}\n  ssl:\n    fallback_sni: ${{SLUICE_T_B}}\n")
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Line != 2 || es[1].Line != 4 || !strings.Contains(es[1].Msg, "SLUICE_T_B") {
		t.Fatalf("want two env errors, got %v", err)
	}
}

func TestWarnings(t *testing.T) {
	src := `apisix:
  node_listen:
    - port: 9080
      enable_http2: true
  enable_ipv6: false
  ssl:
    ssl_ciphers: x
deployment:
  admin:
    https_admin: true
nginx_config:
  worker_processes: auto
  http:
    keepalive_timeout: 60s
stream_plugins: [mqtt-proxy]
something_else: 1
`
	c, w, err := parseValid(src)
	if err != nil {
		t.Fatal(err)
	}
	if c.Apisix.NodeListen[0] != (Listen{Port: 9080, HTTP2: true}) {
		t.Fatalf("NodeListen = %v", c.Apisix.NodeListen)
	}
	if len(w) != 1 {
		t.Fatalf("want one warning, got %v", w)
	}
	want := "conf/config.yaml:5: ignoring keys Sluice does not implement: " +
		"apisix.enable_ipv6, apisix.ssl.ssl_ciphers, deployment.admin.https_admin, " +
		"nginx_config.worker_processes, nginx_config.http.keepalive_timeout, stream_plugins, something_else"
	if w[0].String() != want {
		t.Fatalf("warning\n got %s\nwant %s", w[0], want)
	}
}

func TestLoad(t *testing.T) {
	c, w, err := Load("")
	if err != nil || w != nil {
		t.Fatal(err, w)
	}
	sameAsDefault(t, c)

	if _, _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}

	// Load runs Validate.
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte("apisix:\n  node_listen: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":2: apisix.node_listen[0]: port 0") {
		t.Fatalf("Load did not validate: %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Deployment.ConfigProvider = "yaml"
	c.Deployment.Admin.AdminKey = []AdminKey{{Name: "x", Key: "y", Role: "god"}}
	err := c.Validate()
	want := "deployment.role_traditional.config_provider: config_provider \"yaml\" with role \"traditional\" is APISIX's standalone API mode, which Sluice does not support; for the standalone file mode (conf/apisix.yaml) set deployment.role: data_plane and role_data_plane.config_provider: yaml\n" +
		"deployment.admin.admin_key[0].role: must be \"admin\" or \"viewer\""
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestListenAddr(t *testing.T) {
	for _, tt := range []struct {
		l    Listen
		want string
	}{
		{Listen{Port: 9080}, ":9080"},
		{Listen{IP: "127.0.0.1", Port: 1}, "127.0.0.1:1"},
		{Listen{IP: "::1", Port: 2}, "[::1]:2"},
		{Listen{IP: "[::]", Port: 3}, "[::]:3"},
	} {
		if got := tt.l.Addr(); got != tt.want {
			t.Errorf("%+v.Addr() = %q, want %q", tt.l, got, tt.want)
		}
	}
}
