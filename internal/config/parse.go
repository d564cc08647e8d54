package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Parse decodes config.yaml content; file names it in errors and warnings.
// It checks syntax and types only: call Validate (Load does) for value
// checks such as port ranges, CIDRs and enum values. Empty input, or input
// with only comments, gives Default().
func Parse(data []byte, file string) (c *Config, warns []Warning, err error) {
	d := &decoder{file: file, lines: map[string]int{}}
	var doc yaml.Node
	if uerr := unmarshal(data, &doc); uerr != nil {
		return nil, nil, d.syntaxError(uerr)
	}
	c = Default()
	c.Path = file
	c.lines = d.lines
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return c, nil, nil
	}
	root := resolve(doc.Content[0])
	d.substituteEnv(root, 0)
	if len(d.errs) > 0 {
		return nil, nil, d.errs.asError()
	}
	if !isNull(root) {
		d.decodeRoot(c, root)
	}
	warns = d.warnings()
	if sp := c.Apisix.StreamProxy; (len(sp.TCP) > 0 || len(sp.UDP) > 0) && !strings.Contains(c.Apisix.ProxyMode, "stream") {
		// APISIX's CLI skips stream_proxy outside the stream modes; say so
		// instead of leaving the operator to wonder why nothing listens.
		warns = append(warns, Warning{File: file, Line: d.lines["apisix.stream_proxy"],
			Msg: fmt.Sprintf("apisix.stream_proxy is ignored: apisix.proxy_mode is %q (use \"http&stream\" or \"stream\")", c.Apisix.ProxyMode)})
	}
	if len(d.errs) > 0 {
		return nil, warns, d.errs.asError()
	}
	// APISIX's CLI forces the Admin API by role (apisix/cli/file.lua):
	// a data plane never serves it, a control plane always does.
	switch c.Deployment.Role {
	case "data_plane":
		c.Apisix.EnableAdmin = false
	case "control_plane":
		c.Apisix.EnableAdmin = true
	}
	return c, warns, nil
}

// unmarshal wraps yaml.Unmarshal so that a panic inside the YAML library on
// hostile input becomes an ordinary error instead of crashing the process
// that is merely validating a file.
func unmarshal(data []byte, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return yaml.Unmarshal(data, doc)
}

// decoder walks the yaml.Node tree, collecting errors and ignored keys
// instead of stopping at the first problem.
type decoder struct {
	file        string
	errs        Errors
	ignored     []string
	ignoredLine int
	lines       map[string]int
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func (d *decoder) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimPrefix(msg, m[0]+": ")
		// yaml.v3 adds one to libyaml's 0-based marks for scanner errors
		// only; parser errors come out one line early.
		if isParserError(msg) {
			line++
		}
	}
	return &Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg}
}

// isParserError recognises libyaml's parser (as opposed to scanner)
// messages, see parserc.go in yaml.v3.
func isParserError(msg string) bool {
	for _, p := range []string{"did not find expected", "found undefined tag handle", "found duplicate", "found incompatible"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// ignore records an APISIX (or foreign) key that Sluice accepts but does not
// act on. For an unknown top-level section its direct children are listed,
// which says more than the section name and stays short.
func (d *decoder) ignore(path string, k, v *yaml.Node, top bool) {
	if d.ignoredLine == 0 {
		d.ignoredLine = k.Line
	}
	v = resolve(v)
	if top && v != nil && v.Kind == yaml.MappingNode && len(v.Content) > 0 {
		for i := 0; i+1 < len(v.Content); i += 2 {
			d.ignored = append(d.ignored, path+"."+v.Content[i].Value)
		}
		return
	}
	d.ignored = append(d.ignored, path)
}

func (d *decoder) warnings() []Warning {
	if len(d.ignored) == 0 {
		return nil
	}
	return []Warning{{File: d.file, Line: d.ignoredLine,
		Msg: "ignoring keys Sluice does not implement: " + strings.Join(d.ignored, ", ")}}
}

// resolve follows alias nodes to their anchor.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe renders a node for "got ..." in messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n == nil || isNull(n):
		return "null"
	case n.Kind == yaml.MappingNode:
		return "a map"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return strconv.Quote(v)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// handler decodes the value of one known key; path is its dotted name.
type handler func(path string, v *yaml.Node)

// fields walks a mapping and dispatches known keys to their handler.
// Unknown keys are ignored with a warning, or are errors when strict (our
// own `sluice:` section, where a typo would otherwise go unnoticed). A null
// section keeps its defaults.
func (d *decoder) fields(path string, n *yaml.Node, hs map[string]handler, strict bool) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a map, got %s", describe(n))
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			d.errorf(n.Content[i], path, "map keys must be strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errorf(k, path, "YAML merge keys (<<) are not supported")
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			d.errorf(k, p, "duplicate key")
			continue
		}
		seen[k.Value] = true
		h, ok := hs[k.Value]
		if !ok {
			if strict {
				d.errorf(k, p, "unknown key")
			} else {
				d.ignore(p, k, v, path == "")
			}
			continue
		}
		d.lines[p] = k.Line
		h(p, v)
	}
}

func (d *decoder) boolean(p string, v *yaml.Node, dst *bool) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	if v.Kind == yaml.ScalarNode {
		tag := v.ShortTag()
		// yaml.v3 reads plain yes/no/on/off as YAML 1.1 booleans when the
		// target is a bool, which is what APISIX's libyaml does too.
		if tag == "!!bool" || tag == "!!str" && v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			var b bool
			if err := v.Decode(&b); err == nil {
				*dst = b
				return
			}
		}
	}
	d.errorf(v, p, "expected true or false, got %s", describe(v))
}

func (d *decoder) integer(p string, v *yaml.Node, dst *int) bool {
	v = resolve(v)
	if isNull(v) {
		return false
	}
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		var i int
		if err := v.Decode(&i); err == nil {
			*dst = i
			return true
		}
	}
	d.errorf(v, p, "expected an integer, got %s", describe(v))
	return false
}

// str accepts any scalar except booleans and null: a numeric password or
// key is common and harmless, a boolean is almost always a mistake.
func (d *decoder) str(p string, v *yaml.Node, dst *string) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	if s, ok := scalarString(v); ok {
		*dst = s
		return
	}
	d.errorf(v, p, "expected a string, got %s", describe(v))
}

func scalarString(v *yaml.Node) (string, bool) {
	if v == nil || v.Kind != yaml.ScalarNode {
		return "", false
	}
	switch v.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp", "!!binary":
		return v.Value, true
	}
	return "", false
}

// strList decodes a list of strings. onNull is stored for an explicit null
// (APISIX drops the key, which for some keys means "empty" rather than
// "default"). single allows a bare string to stand for a one-item list.
func (d *decoder) strList(p string, v *yaml.Node, dst *[]string, onNull []string, single bool) {
	v = resolve(v)
	if isNull(v) {
		if onNull != nil {
			*dst = onNull
		}
		return
	}
	if single {
		if s, ok := scalarString(v); ok {
			d.lines[index(p, 0)] = v.Line
			*dst = []string{s}
			return
		}
	}
	if v.Kind != yaml.SequenceNode {
		if single {
			d.errorf(v, p, "expected a string or a list of strings, got %s", describe(v))
		} else {
			d.errorf(v, p, "expected a list of strings, got %s", describe(v))
		}
		return
	}
	out := make([]string, 0, len(v.Content))
	ok := true
	for i, item := range v.Content {
		item = resolve(item)
		s, good := scalarString(item)
		if !good {
			d.errorf(item, index(p, i), "expected a string, got %s", describe(item))
			ok = false
			continue
		}
		d.lines[index(p, i)] = item.Line
		out = append(out, s)
	}
	if ok {
		*dst = out
	}
}

func (d *decoder) duration(p string, v *yaml.Node, dst *time.Duration) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!int", "!!float":
			var f float64
			if err := v.Decode(&f); err == nil && !math.IsNaN(f) && math.Abs(f) < float64(math.MaxInt64)/float64(time.Second) {
				*dst = time.Duration(f * float64(time.Second))
				return
			}
		case "!!str":
			if dur, err := time.ParseDuration(v.Value); err == nil {
				*dst = dur
				return
			}
		}
	}
	d.errorf(v, p, `expected a duration such as "10s" or a number of seconds, got %s`, describe(v))
}

// size decodes a byte count: an integer, or a number with a KiB, MiB or
// GiB suffix ("96MiB").
func (d *decoder) size(p string, v *yaml.Node, dst *int64) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	if v.Kind == yaml.ScalarNode {
		s := strings.TrimSpace(v.Value)
		mult := int64(1)
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
			if strings.HasSuffix(s, u.suffix) {
				s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
				break
			}
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n <= math.MaxInt64/mult {
			*dst = n * mult
			return
		}
	}
	d.errorf(v, p, `expected a number of bytes or a size such as "96MiB", got %s`, describe(v))
}

const listenWant = "expected a port number, a {ip, port} map or a list of them"

// listens decodes node_listen / ssl.listen: a port, an {ip, port} map, or a
// list mixing both. A map without a port gets defPort, as in APISIX's CLI.
func (d *decoder) listens(p string, v *yaml.Node, dst *[]Listen, defPort int) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	switch v.Kind {
	case yaml.ScalarNode:
		if l, ok := d.listenItem(p, v, defPort); ok {
			*dst = []Listen{l}
		}
	case yaml.MappingNode:
		if l, ok := d.listenItem(p, v, defPort); ok {
			*dst = []Listen{l}
		}
	case yaml.SequenceNode:
		out := make([]Listen, 0, len(v.Content))
		ok := true
		for i, item := range v.Content {
			l, good := d.listenItem(index(p, i), item, defPort)
			ok = ok && good
			out = append(out, l)
		}
		if ok {
			*dst = out
		}
	default:
		d.errorf(v, p, "%s, got %s", listenWant, describe(v))
	}
}

func (d *decoder) listenItem(p string, v *yaml.Node, defPort int) (Listen, bool) {
	v = resolve(v)
	if v != nil && v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		l := Listen{}
		d.lines[p] = v.Line
		return l, d.integer(p, v, &l.Port)
	}
	if v == nil || v.Kind != yaml.MappingNode {
		d.errorf(v, p, "%s, got %s", listenWant, describe(v))
		return Listen{}, false
	}
	d.lines[p] = v.Line
	l := Listen{Port: defPort}
	return l, d.listenMap(p, v, &l)
}

// listenMap decodes {ip, port} on top of the values already in l.
func (d *decoder) listenMap(p string, v *yaml.Node, l *Listen) bool {
	before := len(d.errs)
	d.fields(p, v, map[string]handler{
		"ip":           func(p string, v *yaml.Node) { d.str(p, v, &l.IP) },
		"port":         func(p string, v *yaml.Node) { d.integer(p, v, &l.Port) },
		"enable_http2": func(p string, v *yaml.Node) { d.boolean(p, v, &l.HTTP2) },
	}, false)
	return len(d.errs) == before
}

func (d *decoder) decodeRoot(c *Config, root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "expected a map of settings at the top level, got %s", describe(root))
		return
	}
	d.fields("", root, map[string]handler{
		"apisix":     func(p string, v *yaml.Node) { d.decodeApisix(c, p, v) },
		"deployment": func(p string, v *yaml.Node) { d.decodeDeployment(c, p, v) },
		"plugins": func(p string, v *yaml.Node) {
			d.strList(p, v, &c.Plugins, []string{}, false)
		},
		"plugin_attr": func(p string, v *yaml.Node) { d.decodePluginAttr(c, p, v) },
		"sluice":      func(p string, v *yaml.Node) { d.decodeSluice(c, p, v) },
		"nginx_config": func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"http": func(p string, v *yaml.Node) {
					h := &c.NginxConfig.HTTP
					d.fields(p, v, map[string]handler{
						"real_ip_header": func(p string, v *yaml.Node) { d.str(p, v, &h.RealIPHeader) },
						"real_ip_from": func(p string, v *yaml.Node) {
							d.strList(p, v, &h.RealIPFrom, []string{}, true)
						},
						"real_ip_recursive": func(p string, v *yaml.Node) { d.str(p, v, &h.RealIPRecursive) },
					}, false)
				},
			}, false)
		},
	}, false)
}

func (d *decoder) decodeApisix(c *Config, path string, n *yaml.Node) {
	a := &c.Apisix
	bools := func(dst *bool) handler { return func(p string, v *yaml.Node) { d.boolean(p, v, dst) } }
	strs := func(dst *string) handler { return func(p string, v *yaml.Node) { d.str(p, v, dst) } }
	d.fields(path, n, map[string]handler{
		"node_listen":  func(p string, v *yaml.Node) { d.listens(p, v, &a.NodeListen, 9080) },
		"enable_admin": bools(&a.EnableAdmin),
		"enable_http2": bools(&a.EnableHTTP2),
		"ssl": func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"enable":        bools(&a.SSL.Enable),
				"listen":        func(p string, v *yaml.Node) { d.listens(p, v, &a.SSL.Listen, 9443) },
				"ssl_protocols": strs(&a.SSL.SSLProtocols),
				"fallback_sni":  strs(&a.SSL.FallbackSNI),
			}, false)
		},
		"router": func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"http": strs(&a.Router.HTTP),
				"ssl":  strs(&a.Router.SSL),
			}, false)
		},
		"proxy_mode": strs(&a.ProxyMode),
		"stream_proxy": func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"tcp": func(p string, v *yaml.Node) { d.streamListens(p, v, &a.StreamProxy.TCP, true) },
				"udp": func(p string, v *yaml.Node) { d.streamListens(p, v, &a.StreamProxy.UDP, false) },
			}, false)
		},
		"enable_server_tokens":                    bools(&a.EnableServerTokens),
		"show_upstream_status_in_response_header": bools(&a.ShowUpstreamStatusInResponseHeader),
		"delete_uri_tail_slash":                   bools(&a.DeleteURITailSlash),
		"normalize_uri_like_servlet":              bools(&a.NormalizeURILikeServlet),
		"trusted_addresses": func(p string, v *yaml.Node) {
			d.strList(p, v, &a.TrustedAddresses, nil, false)
		},
		"disable_upstream_healthcheck": bools(&a.DisableUpstreamHealthcheck),
		"data_encryption": func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"enable_encrypt_fields": bools(&a.DataEncryption.EnableEncryptFields),
				"keyring": func(p string, v *yaml.Node) {
					d.strList(p, v, &a.DataEncryption.Keyring, nil, true)
				},
			}, false)
		},
	}, false)
}

func (d *decoder) decodeDeployment(c *Config, path string, n *yaml.Node) {
	dep := &c.Deployment
	providers := map[string]string{}
	provider := func(role string) handler {
		return func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"config_provider": func(p string, v *yaml.Node) {
					var s string
					d.str(p, v, &s)
					if s != "" {
						providers[role] = s
					}
				},
			}, false)
		}
	}
	d.fields(path, n, map[string]handler{
		"role":               func(p string, v *yaml.Node) { d.str(p, v, &dep.Role) },
		"role_traditional":   provider("traditional"),
		"role_control_plane": provider("control_plane"),
		"role_data_plane":    provider("data_plane"),
		"admin":              func(p string, v *yaml.Node) { d.decodeAdmin(c, p, v) },
		"etcd":               func(p string, v *yaml.Node) { d.decodeEtcd(c, p, v) },
	}, false)
	if s, ok := providers[dep.Role]; ok {
		dep.ConfigProvider = s
	}
}

func (d *decoder) decodeAdmin(c *Config, path string, n *yaml.Node) {
	ad := &c.Deployment.Admin
	d.fields(path, n, map[string]handler{
		"admin_key_required": func(p string, v *yaml.Node) { d.boolean(p, v, &ad.AdminKeyRequired) },
		"admin_key":          func(p string, v *yaml.Node) { d.decodeAdminKeys(c, p, v) },
		"allow_admin": func(p string, v *yaml.Node) {
			d.strList(p, v, &ad.AllowAdmin, []string{}, false)
		},
		"admin_listen": func(p string, v *yaml.Node) {
			v = resolve(v)
			if isNull(v) {
				return
			}
			if v.Kind != yaml.MappingNode {
				d.errorf(v, p, "expected an {ip, port} map, got %s", describe(v))
				return
			}
			l := ad.AdminListen
			if d.listenMap(p, v, &l) {
				ad.AdminListen = l
			}
		},
		"enable_admin_cors": func(p string, v *yaml.Node) { d.boolean(p, v, &ad.EnableAdminCORS) },
		"admin_api_version": func(p string, v *yaml.Node) { d.str(p, v, &ad.AdminAPIVersion) },
	}, false)
}

func (d *decoder) decodeAdminKeys(c *Config, p string, v *yaml.Node) {
	v = resolve(v)
	if isNull(v) {
		c.Deployment.Admin.AdminKey = nil
		return
	}
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, p, "expected a list of {name, key, role} maps, got %s", describe(v))
		return
	}
	keys := make([]AdminKey, 0, len(v.Content))
	for i, item := range v.Content {
		ip := index(p, i)
		item = resolve(item)
		if item == nil || item.Kind != yaml.MappingNode {
			d.errorf(item, ip, "expected a {name, key, role} map, got %s", describe(item))
			continue
		}
		d.lines[ip] = item.Line
		var k AdminKey
		d.fields(ip, item, map[string]handler{
			"name": func(p string, v *yaml.Node) { d.str(p, v, &k.Name) },
			"key":  func(p string, v *yaml.Node) { d.str(p, v, &k.Key) },
			"role": func(p string, v *yaml.Node) { d.str(p, v, &k.Role) },
		}, false)
		keys = append(keys, k)
	}
	c.Deployment.Admin.AdminKey = keys
}

func (d *decoder) decodeEtcd(c *Config, path string, n *yaml.Node) {
	e := &c.Deployment.Etcd
	ints := func(dst *int) handler { return func(p string, v *yaml.Node) { d.integer(p, v, dst) } }
	strs := func(dst *string) handler { return func(p string, v *yaml.Node) { d.str(p, v, dst) } }
	d.fields(path, n, map[string]handler{
		"host":          func(p string, v *yaml.Node) { d.strList(p, v, &e.Host, nil, false) },
		"prefix":        strs(&e.Prefix),
		"timeout":       ints(&e.Timeout),
		"watch_timeout": ints(&e.WatchTimeout),
		"startup_retry": ints(&e.StartupRetry),
		"resync_delay":  ints(&e.ResyncDelay),
		"user":          strs(&e.User),
		"password":      strs(&e.Password),
		"tls": func(p string, v *yaml.Node) {
			d.fields(p, v, map[string]handler{
				"cert":   strs(&e.TLS.Cert),
				"key":    strs(&e.TLS.Key),
				"verify": func(p string, v *yaml.Node) { d.boolean(p, v, &e.TLS.Verify) },
				"sni":    strs(&e.TLS.SNI),
			}, false)
		},
	}, false)
}

// decodePluginAttr keeps every plugin's attributes, known plugin or not:
// the plugin registry, not this package, knows which names exist.
func (d *decoder) decodePluginAttr(c *Config, path string, n *yaml.Node) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a map of plugin name to settings, got %s", describe(n))
		return
	}
	hs := make(map[string]handler, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := resolve(n.Content[i]).Value
		hs[name] = func(p string, v *yaml.Node) {
			v = resolve(v)
			if isNull(v) {
				return
			}
			if v.Kind != yaml.MappingNode {
				d.errorf(v, p, "expected a map, got %s", describe(v))
				return
			}
			m := map[string]any{}
			if err := v.Decode(&m); err != nil {
				d.errorf(v, p, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
				return
			}
			if c.PluginAttr == nil {
				c.PluginAttr = map[string]map[string]any{}
			}
			c.PluginAttr[name] = m
		}
	}
	d.fields(path, n, hs, false)
}

func (d *decoder) decodeSluice(c *Config, path string, n *yaml.Node) {
	s := &c.Sluice
	d.fields(path, n, map[string]handler{
		"data_dir":         func(p string, v *yaml.Node) { d.str(p, v, &s.DataDir) },
		"shutdown_timeout": func(p string, v *yaml.Node) { d.duration(p, v, &s.ShutdownTimeout) },
		"log_level":        func(p string, v *yaml.Node) { d.str(p, v, &s.LogLevel) },
		"engine":           func(p string, v *yaml.Node) { d.str(p, v, &s.Engine) },
		"memory": func(p string, v *yaml.Node) {
			m := &s.Memory
			d.fields(p, v, map[string]handler{
				"limit":        func(p string, v *yaml.Node) { d.size(p, v, &m.Limit) },
				"release_idle": func(p string, v *yaml.Node) { d.duration(p, v, &m.ReleaseIdle) },
			}, true)
		},
		"limits": func(p string, v *yaml.Node) {
			l := &s.Limits
			d.fields(p, v, map[string]handler{
				"max_header_bytes":       func(p string, v *yaml.Node) { d.integer(p, v, &l.MaxHeaderBytes) },
				"max_request_line":       func(p string, v *yaml.Node) { d.integer(p, v, &l.MaxRequestLine) },
				"max_header_count":       func(p string, v *yaml.Node) { d.integer(p, v, &l.MaxHeaderCount) },
				"read_header_timeout":    func(p string, v *yaml.Node) { d.duration(p, v, &l.ReadHeaderTimeout) },
				"idle_timeout":           func(p string, v *yaml.Node) { d.duration(p, v, &l.IdleTimeout) },
				"max_body_bytes":         func(p string, v *yaml.Node) { d.integer(p, v, &l.MaxBodyBytes) },
				"max_concurrent_streams": func(p string, v *yaml.Node) { d.integer(p, v, &l.MaxConcurrentStreams) },
			}, true)
		},
	}, true)
}

const streamWant = "expected a port, an \"ip:port\" string or a port range"

// streamListens decodes apisix.stream_proxy.tcp or .udp: a list (APISIX's
// schema wants an array with at least one item) of ports, "ip:port"
// strings and, for TCP, {addr, tls, proxy_protocol,
// proxy_protocol_to_upstream} maps. Port ranges become one entry per port.
func (d *decoder) streamListens(p string, v *yaml.Node, dst *[]StreamListen, tcp bool) {
	v = resolve(v)
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		d.errorf(v, p, "expected a non-empty list, got %s", describe(v))
		return
	}
	var out []StreamListen
	ok := true
	for i, item := range v.Content {
		ip := index(p, i)
		item = resolve(item)
		var l StreamListen
		addr := item
		if tcp && item.Kind == yaml.MappingNode {
			addr = nil
			before := len(d.errs)
			d.fields(ip, item, map[string]handler{
				"addr":                       func(_ string, v *yaml.Node) { addr = resolve(v) },
				"tls":                        func(p string, v *yaml.Node) { d.boolean(p, v, &l.TLS) },
				"proxy_protocol":             func(p string, v *yaml.Node) { d.boolean(p, v, &l.ProxyProtocol) },
				"proxy_protocol_to_upstream": func(p string, v *yaml.Node) { d.boolean(p, v, &l.ProxyProtocolToUpstream) },
			}, false)
			if len(d.errs) != before {
				ok = false
				continue
			}
			if addr == nil {
				d.errorf(item, ip, "addr is required")
				ok = false
				continue
			}
			ip = join(ip, "addr")
		}
		s, good := scalarString(addr)
		if !good || addr.ShortTag() != "!!int" && addr.ShortTag() != "!!str" {
			want := streamWant
			if tcp {
				want += " or an {addr, tls} map"
			}
			d.errorf(addr, ip, "%s, got %s", want, describe(addr))
			ok = false
			continue
		}
		host, lo, hi, err := parseStreamAddr(s)
		if err != nil {
			d.errorf(addr, ip, "%v", err)
			ok = false
			continue
		}
		l.IP = host
		for port := lo; port <= hi; port++ {
			// Validate names entries by their index after range
			// expansion; each points at the line it came from.
			d.lines[index(p, len(out))] = item.Line
			l.Port = port
			out = append(out, l)
		}
	}
	if ok {
		*dst = out
	}
}

// maxStreamRange caps a port range so that a typo ("1-65535") cannot make
// the gateway open tens of thousands of sockets.
const maxStreamRange = 1024

// parseStreamAddr splits "port", "ip:port", "[v6]:port" and the same with
// "lo-hi" instead of a port. Ports outside 1..65535 are left for Validate;
// a malformed string is an error here.
func parseStreamAddr(s string) (ip string, lo, hi int, err error) {
	ports := s
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 || end+1 >= len(s) || s[end+1] != ':' {
			return "", 0, 0, fmt.Errorf("%q: expected [ipv6]:port", s)
		}
		ip, ports = s[1:end], s[end+2:]
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		ip, ports = s[:i], s[i+1:]
	case strings.Contains(s, ":"):
		return "", 0, 0, fmt.Errorf("%q: write IPv6 addresses as [ipv6]:port", s)
	}
	if strings.ContainsAny(ip, "[]") {
		return "", 0, 0, fmt.Errorf("%q: expected ip:port or [ipv6]:port", s)
	}
	a, b, isRange := strings.Cut(ports, "-")
	lo, err1 := strconv.Atoi(a)
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 0 || hi < 0 || strings.HasPrefix(a, "+") || strings.HasPrefix(b, "+") {
		return "", 0, 0, fmt.Errorf("%q: %s", s, streamWant)
	}
	if hi < lo {
		return "", 0, 0, fmt.Errorf("%q: port range ends before it starts", s)
	}
	if hi-lo >= maxStreamRange {
		return "", 0, 0, fmt.Errorf("%q: a port range may hold at most %d ports", s, maxStreamRange)
	}
	if ip == "*" {
		ip = ""
	}
	return ip, lo, hi, nil
}
