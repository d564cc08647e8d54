package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Validate checks values that are well-typed but wrong: enum values, port
// ranges, listener conflicts, IPs and CIDRs, admin key roles, keyring
// lengths and the config provider. Errors carry the line the key was read
// from when the Config came from Parse. Load calls it; callers that build a
// Config with Parse or by hand should call it themselves.
func (c *Config) Validate() error {
	v := validator{c: c}
	v.apisix()
	v.deployment()
	v.sluice()
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return v.errs.asError()
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.Path, Line: v.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// line finds the closest recorded line for key, walking up to its parents
// so a default that conflicts with a written value still points somewhere.
func (v *validator) line(key string) int {
	for k := key; k != ""; {
		if l, ok := v.c.lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func (v *validator) enum(key, val string, allowed ...string) {
	if !oneOf(val, allowed...) {
		v.add(key, "must be one of %s, got %q", quoteAll(allowed), val)
	}
}

// listener is a resolved listening address with the key it came from, for
// conflict checks.
type listener struct {
	key string
	l   Listen
}

func (v *validator) listen(key string, l Listen) bool {
	ok := true
	if l.Port < 1 || l.Port > 65535 {
		v.add(key, "port %d is out of range 1-65535", l.Port)
		ok = false
	}
	if l.IP != "" {
		ip := strings.TrimSuffix(strings.TrimPrefix(l.IP, "["), "]")
		if _, err := netip.ParseAddr(ip); err != nil {
			v.add(key, "ip %q is not an IP address", l.IP)
			ok = false
		}
	}
	return ok
}

func sameHost(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if s == "0.0.0.0" || s == "::" {
			return ""
		}
		return s
	}
	a, b = norm(a), norm(b)
	return a == "" || b == "" || a == b
}

func (v *validator) apisix() {
	a := &v.c.Apisix
	var ls []listener
	for i, l := range a.NodeListen {
		k := index("apisix.node_listen", i)
		if v.listen(k, l) {
			ls = append(ls, listener{k, l})
		}
	}
	if a.SSL.Enable {
		for i, l := range a.SSL.Listen {
			k := index("apisix.ssl.listen", i)
			if v.listen(k, l) {
				ls = append(ls, listener{k, l})
			}
		}
	}
	if a.EnableAdmin {
		if l := v.c.Deployment.Admin.AdminListen; v.listen("deployment.admin.admin_listen", l) {
			ls = append(ls, listener{"deployment.admin.admin_listen", l})
		}
	}
	if strings.Contains(a.ProxyMode, "stream") {
		// stream_proxy counts only in the stream modes, as in APISIX's
		// CLI; its TCP ports share the namespace of the HTTP listeners.
		for i, l := range a.StreamProxy.TCP {
			k := index("apisix.stream_proxy.tcp", i)
			if v.streamListen(k, l) {
				ls = append(ls, listener{k, Listen{IP: l.IP, Port: l.Port}})
			}
		}
		var us []listener
		for i, l := range a.StreamProxy.UDP {
			k := index("apisix.stream_proxy.udp", i)
			if !v.streamListen(k, l) {
				continue
			}
			for _, o := range us {
				if o.l.Port == l.Port && sameHost(o.l.IP, l.IP) {
					v.add(k, "port %d conflicts with %s", l.Port, o.key)
					break
				}
			}
			us = append(us, listener{k, Listen{IP: l.IP, Port: l.Port}})
		}
	}
	for i := range ls {
		for j := 0; j < i; j++ {
			if ls[i].l.Port == ls[j].l.Port && sameHost(ls[i].l.IP, ls[j].l.IP) {
				v.add(ls[i].key, "port %d conflicts with %s", ls[i].l.Port, ls[j].key)
				// A default listener has no line; point at the written one.
				if e := v.errs[len(v.errs)-1]; e.Line == 0 {
					e.Line = v.line(ls[j].key)
				}
				break
			}
		}
	}

	protos := strings.Fields(a.SSL.SSLProtocols)
	if len(protos) == 0 {
		v.add("apisix.ssl.ssl_protocols", "must list at least one protocol")
	}
	for _, p := range protos {
		if !oneOf(p, "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3") {
			v.add("apisix.ssl.ssl_protocols", "unknown protocol %q (use TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)", p)
		}
	}
	v.enum("apisix.router.http", a.Router.HTTP, "radixtree_host_uri", "radixtree_uri", "radixtree_uri_with_parameter")
	v.enum("apisix.router.ssl", a.Router.SSL, "radixtree_sni")
	v.enum("apisix.proxy_mode", a.ProxyMode, "http", "stream", "http&stream")
	v.addrs("apisix.trusted_addresses", a.TrustedAddresses)

	if len(a.DataEncryption.Keyring) == 0 {
		v.add("apisix.data_encryption.keyring", "must have at least one key")
	}
	for i, k := range a.DataEncryption.Keyring {
		if len(k) != 16 && len(k) != 32 {
			// Never echo the key itself: it is a secret.
			v.add(index("apisix.data_encryption.keyring", i),
				"must be 16 bytes (AES-128) or 32 bytes (AES-256) long, got %d bytes", len(k))
		}
	}
}

// streamListen checks one stream_proxy entry.
func (v *validator) streamListen(key string, l StreamListen) bool {
	ok := v.listen(key, Listen{IP: l.IP, Port: l.Port})
	if l.ProxyProtocol || l.ProxyProtocolToUpstream {
		// Ignoring them would hand the PROXY header to the upstream as
		// payload (or leave it out where the upstream expects it).
		v.add(key, "proxy_protocol and proxy_protocol_to_upstream are not supported by Sluice yet")
		ok = false
	}
	return ok
}

// addrs checks a list of IPs or CIDRs (APISIX's ip_def).
func (v *validator) addrs(key string, list []string) {
	for i, s := range list {
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		if _, err := netip.ParsePrefix(s); err == nil {
			continue
		}
		v.add(index(key, i), "%q is not an IP address or CIDR", s)
	}
}

// providers lists what APISIX accepts per role (apisix/cli/schema.lua), plus
// Sluice's embedded store, which is valid for every role.
var providers = map[string][]string{
	"traditional":   {"embedded", "etcd", "yaml"},
	"control_plane": {"embedded", "etcd"},
	"data_plane":    {"embedded", "etcd", "yaml", "json"},
}

func (v *validator) deployment() {
	d := &v.c.Deployment
	allowed, ok := providers[d.Role]
	if !ok {
		v.enum("deployment.role", d.Role, "traditional", "control_plane", "data_plane")
	} else {
		key := "deployment.role_" + d.Role + ".config_provider"
		switch {
		case !oneOf(d.ConfigProvider, allowed...):
			v.add(key, "config_provider %q is not valid for role %q; use one of %s",
				d.ConfigProvider, d.Role, quoteAll(allowed))
		case d.ConfigProvider == "yaml" && d.Role == "traditional":
			// APISIX 3.13+ reads this as the standalone API mode
			// (/apisix/admin/configs), which Sluice does not implement;
			// the file mode is a data plane without an Admin API.
			v.add(key, "config_provider \"yaml\" with role \"traditional\" is APISIX's standalone API mode, which Sluice does not support; "+
				"for the standalone file mode (conf/apisix.yaml) set deployment.role: data_plane and role_data_plane.config_provider: yaml")
		case d.ConfigProvider != "embedded" && d.ConfigProvider != "etcd" && d.ConfigProvider != "yaml":
			v.add(key, "config_provider %q is not supported yet; use \"embedded\", \"etcd\" or \"yaml\"", d.ConfigProvider)
		}
	}

	ad := &d.Admin
	for i, k := range ad.AdminKey {
		if !oneOf(k.Role, "admin", "viewer") {
			v.add(index("deployment.admin.admin_key", i)+".role", `must be "admin" or "viewer"`)
		}
	}
	v.addrs("deployment.admin.allow_admin", ad.AllowAdmin)
	if !v.c.Apisix.EnableAdmin {
		// Not already checked with the other listeners.
		v.listen("deployment.admin.admin_listen", ad.AdminListen)
	}
	v.enum("deployment.admin.admin_api_version", ad.AdminAPIVersion, "v3", "v2")

	e := &d.Etcd
	if len(e.Host) == 0 {
		v.add("deployment.etcd.host", "must list at least one etcd address")
	}
	for i, h := range e.Host {
		if !strings.HasPrefix(h, "http://") && !strings.HasPrefix(h, "https://") {
			v.add(index("deployment.etcd.host", i), "%q must start with http:// or https://", h)
		}
	}
	if e.Timeout < 1 {
		v.add("deployment.etcd.timeout", "must be at least 1 second, got %d", e.Timeout)
	}
	for _, f := range []struct {
		key string
		val int
	}{{"deployment.etcd.watch_timeout", e.WatchTimeout}, {"deployment.etcd.startup_retry", e.StartupRetry}, {"deployment.etcd.resync_delay", e.ResyncDelay}} {
		if f.val < 0 {
			v.add(f.key, "must not be negative, got %d", f.val)
		}
	}
}

func (v *validator) sluice() {
	s := &v.c.Sluice
	if s.DataDir == "" {
		v.add("sluice.data_dir", "must not be empty")
	}
	if s.ShutdownTimeout < 0 {
		v.add("sluice.shutdown_timeout", "must not be negative, got %s", s.ShutdownTimeout)
	}
	v.enum("sluice.log_level", s.LogLevel, "debug", "info", "warn", "error")
	v.enum("sluice.engine", s.Engine, "std", "fast")
	if s.Memory.Limit < 0 {
		v.add("sluice.memory.limit", "must not be negative, got %d", s.Memory.Limit)
	}
	if s.Memory.ReleaseIdle < 0 {
		v.add("sluice.memory.release_idle", "must not be negative, got %s", s.Memory.ReleaseIdle)
	}
	l := s.Limits
	for _, f := range []struct {
		key string
		val int
		min int
	}{
		{"sluice.limits.max_header_bytes", l.MaxHeaderBytes, 1024},
		{"sluice.limits.max_request_line", l.MaxRequestLine, 0},
		{"sluice.limits.max_header_count", l.MaxHeaderCount, 0},
		{"sluice.limits.max_body_bytes", l.MaxBodyBytes, 0},
		{"sluice.limits.max_concurrent_streams", l.MaxConcurrentStreams, 1},
	} {
		if f.val < f.min {
			v.add(f.key, "must be at least %d, got %d", f.min, f.val)
		}
	}
	if l.ReadHeaderTimeout <= 0 {
		v.add("sluice.limits.read_header_timeout", "must be positive, got %s", l.ReadHeaderTimeout)
	}
}
