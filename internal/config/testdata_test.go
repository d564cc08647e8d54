package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTestdata(t *testing.T) {
	tests := []struct {
		file    string
		errs    []string // full error lines, in order
		warning string   // full warning text, "" for none
		check   func(t *testing.T, c *Config)
	}{
		{file: "apisix-stock.yaml", check: func(t *testing.T, c *Config) {
			if c.Deployment.ConfigProvider != "etcd" {
				t.Errorf("provider = %q, want etcd", c.Deployment.ConfigProvider)
			}
		}},
		{file: "apisix-style.yaml",
			warning: "testdata/apisix-style.yaml:7: ignoring keys Sluice does not implement: apisix.enable_ipv6, " +
				"apisix.ssl.listen[0].enable_http3, nginx_config.error_log_level, nginx_config.worker_processes, " +
				"nginx_config.http.client_max_body_size, stream_plugins",
			check: func(t *testing.T, c *Config) {
				if got := c.Deployment.Admin.AdminKey; len(got) != 2 || got[1] != (AdminKey{"viewer", "4054f7cf07e344346cd3f287985e76a2", "viewer"}) {
					t.Errorf("AdminKey = %+v", got)
				}
				if got := c.Apisix.NodeListen; len(got) != 2 || got[1] != (Listen{IP: "127.0.0.1", Port: 9081}) {
					t.Errorf("NodeListen = %+v", got)
				}
				if c.Apisix.EnableServerTokens || c.Apisix.Router.HTTP != "radixtree_uri" || c.Apisix.SSL.FallbackSNI != "gateway.example.com" {
					t.Errorf("apisix = %+v", c.Apisix)
				}
				if c.Deployment.Admin.AdminListen != (Listen{IP: "0.0.0.0", Port: 9180}) || len(c.Deployment.Admin.AllowAdmin) != 2 {
					t.Errorf("admin = %+v", c.Deployment.Admin)
				}
				if len(c.Plugins) != 4 || c.PluginAttr["prometheus"]["export_uri"] != "/apisix/prometheus/metrics" {
					t.Errorf("plugins = %v, attr = %v", c.Plugins, c.PluginAttr)
				}
			}},
		{file: "sluice.yaml", check: func(t *testing.T, c *Config) {
			if c.Apisix.NodeListen[0].Port != 8080 || c.Deployment.Admin.AdminKey[0].Key != "change-me" {
				t.Errorf("env defaults not applied: %+v %+v", c.Apisix.NodeListen, c.Deployment.Admin.AdminKey)
			}
			if c.Sluice.DataDir != "/var/lib/sluice" || c.Sluice.ShutdownTimeout != 30*time.Second || c.Sluice.LogLevel != "warn" {
				t.Errorf("sluice = %+v", c.Sluice)
			}
		}},
		{file: "data-plane.yaml", check: func(t *testing.T, c *Config) {
			if c.Apisix.EnableAdmin || c.Deployment.Role != "data_plane" || c.Deployment.ConfigProvider != "embedded" {
				t.Errorf("data plane: enable_admin=%v role=%q provider=%q", c.Apisix.EnableAdmin, c.Deployment.Role, c.Deployment.ConfigProvider)
			}
		}},
		{file: "empty.yaml", check: func(t *testing.T, c *Config) {
			c.Path = ""
			sameAsDefault(t, c)
		}},
		{file: "bad-types.yaml", errs: []string{
			`testdata/bad-types.yaml:2: apisix.node_listen: expected a port number, a {ip, port} map or a list of them, got "abc"`,
			`testdata/bad-types.yaml:3: apisix.enable_admin: expected true or false, got "sometimes"`,
		}},
		{file: "bad-values.yaml", errs: []string{
			`testdata/bad-values.yaml:2: apisix.node_listen[0]: port 70000 is out of range 1-65535`,
			`testdata/bad-values.yaml:4: apisix.router.http: must be one of "radixtree_host_uri", "radixtree_uri", "radixtree_uri_with_parameter", got "radixtree_everything"`,
			`testdata/bad-values.yaml:8: deployment.admin.allow_admin[0]: "300.0.0.1/8" is not an IP address or CIDR`,
			`testdata/bad-values.yaml:12: deployment.admin.admin_key[0].role: must be "admin" or "viewer"`,
		}},
		{file: "bad-syntax.yaml", errs: []string{
			`testdata/bad-syntax.yaml:3: invalid YAML: did not find expected key`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, w, err := Load(filepath.Join("testdata", tt.file))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tt.errs, "\n") {
				t.Fatalf("errors\n got %q\nwant %q", got, tt.errs)
			}
			switch {
			case tt.warning == "" && len(w) != 0:
				t.Errorf("unexpected warnings %v", w)
			case tt.warning != "" && (len(w) != 1 || w[0].String() != tt.warning):
				t.Errorf("warnings\n got %v\nwant %s", w, tt.warning)
			}
			if tt.check != nil && c != nil {
				tt.check(t, c)
			}
		})
	}
}

// FuzzParse feeds arbitrary bytes to Parse and Validate: they must never
// panic, and a config that parses must come back with its defaults filled.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "~", "[]", "a: *b", "a: &a [*a]", "apisix: {node_listen: [{port: 1}, 2, x]}",
		"x: &x [a, a]\ny: &y [*x, *x]\napisix:\n  trusted_addresses: *y\n",
		"apisix:\n  node_listen: ${{X:=1}}\n", "plugin_attr:\n  p: {a: !!binary aGk=}\n",
		"sluice:\n  shutdown_timeout: 1e300\n", "deployment:\n  admin:\n    admin_key: [{role: ${{Y}}}]\n",
		"? [a]\n: b\n", "<<: {a: 1}\n", "apisix:\n  ssl:\n    listen: {port: 70000}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var e *Error
			var es Errors
			if !errors.As(err, &e) && !errors.As(err, &es) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if c.Deployment.Role == "" && c.Deployment.ConfigProvider == "" {
			t.Fatal("defaults lost")
		}
		_ = c.Validate()
	})
}
