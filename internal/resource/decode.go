package resource

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/schema"
)

// decodeDepth bounds nesting of stored objects.
const decodeDepth = 1000

// Decode validates a stored object of kind k (schema and the checks that
// need no plugin registry: upstream, SSL, vars, Lua-only fields) and
// returns its typed form with defaults applied: *Route, *Service,
// *Upstream, *Consumer, *Credential, *ConsumerGroup, *SSL, *GlobalRule,
// *PluginConfig, *PluginMetadata, *Proto, *Secret or *StreamRoute. Ids
// given as integers become their decimal string. Plugin confs are kept raw;
// the plugin layer decodes them.
func Decode(k *Kind, raw []byte) (any, error) {
	v, err := schema.DecodeJSON(raw, decodeDepth)
	if err != nil {
		return nil, failMsg("invalid configuration: " + err.Error())
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, failMsg("invalid configuration: wrong type: expected object, got " + schema.LuaType(v))
	}
	var c *Checker // no registry: plugin checks are the plugin layer's job
	if err := c.check(k, obj, false); err != nil {
		return nil, err
	}
	return decodeObject(k, obj)
}

// DecodeObject is Decode for an already decoded (and checked) object.
func DecodeObject(k *Kind, obj map[string]any) (any, error) {
	return decodeObject(k, obj)
}

func decodeObject(k *Kind, m map[string]any) (any, error) {
	switch k.Name {
	case "routes":
		r := &Route{
			ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
			URI: str(m, "uri"), URIs: strs(m, "uris"),
			Host: str(m, "host"), Hosts: strs(m, "hosts"),
			RemoteAddr: str(m, "remote_addr"), RemoteAddrs: strs(m, "remote_addrs"),
			Methods: strs(m, "methods"), Priority: intOr(m, "priority", 0),
			Plugins: plugins(m), PluginConfigID: IDString(m["plugin_config_id"]),
			UpstreamID: IDString(m["upstream_id"]), ServiceID: IDString(m["service_id"]),
			Timeout: timeout(m), EnableWebsocket: boolPtr(m, "enable_websocket"),
			Status: intOr(m, "status", 1), Labels: labels(m),
		}
		if v, ok := m["vars"]; ok {
			r.Vars = rawJSON(v)
		}
		if up, ok := m["upstream"].(map[string]any); ok {
			r.Upstream = decodeUpstream(up)
		}
		return r, nil
	case "services":
		s := &Service{
			ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
			Plugins: plugins(m), UpstreamID: IDString(m["upstream_id"]),
			EnableWebsocket: boolPtr(m, "enable_websocket"), Hosts: strs(m, "hosts"), Labels: labels(m),
		}
		if up, ok := m["upstream"].(map[string]any); ok {
			s.Upstream = decodeUpstream(up)
		}
		return s, nil
	case "upstreams":
		return decodeUpstream(m), nil
	case "consumers":
		return &Consumer{Username: str(m, "username"), Desc: str(m, "desc"), GroupID: IDString(m["group_id"]),
			Plugins: plugins(m), Labels: labels(m)}, nil
	case "credentials":
		return &Credential{ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
			Plugins: plugins(m), Labels: labels(m)}, nil
	case "consumer_groups":
		return &ConsumerGroup{ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
			Plugins: plugins(m), Labels: labels(m)}, nil
	case "global_rules":
		return &GlobalRule{ID: IDString(m["id"]), Plugins: plugins(m)}, nil
	case "plugin_configs":
		return &PluginConfig{ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
			Plugins: plugins(m), Labels: labels(m)}, nil
	case "plugin_metadata":
		return &PluginMetadata{ID: IDString(m["id"]), Conf: rawJSON(m)}, nil
	case "protos":
		return &Proto{ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
			Content: str(m, "content"), Labels: labels(m)}, nil
	case "secrets":
		id := IDString(m["id"])
		manager, _, _ := strings.Cut(id, "/")
		return &Secret{ID: id, Manager: manager, Conf: m}, nil
	case "ssls":
		s := &SSL{
			ID: IDString(m["id"]), Type: strOr(m, "type", "server"), Cert: str(m, "cert"), Key: str(m, "key"),
			Certs: strs(m, "certs"), Keys: strs(m, "keys"), Status: intOr(m, "status", 1),
			SSLProtocols: strs(m, "ssl_protocols"), Labels: labels(m),
		}
		if snis := strs(m, "snis"); len(snis) > 0 {
			s.SNIs = snis
		} else if sni := str(m, "sni"); sni != "" {
			s.SNIs = []string{sni}
		}
		if cl, ok := m["client"].(map[string]any); ok {
			s.Client = &SSLClient{CA: str(cl, "ca"), Depth: intOr(cl, "depth", 1), SkipMTLSURIRegex: strs(cl, "skip_mtls_uri_regex")}
		}
		return s, nil
	case "stream_routes":
		r := &StreamRoute{
			ID: IDString(m["id"]), Name: str(m, "name"), RemoteAddr: str(m, "remote_addr"),
			ServerAddr: str(m, "server_addr"), ServerPort: intOr(m, "server_port", 0), SNI: str(m, "sni"),
			UpstreamID: IDString(m["upstream_id"]), ServiceID: IDString(m["service_id"]),
			Plugins: plugins(m), Labels: labels(m),
		}
		if p, ok := m["protocol"]; ok {
			r.Protocol = rawJSON(p)
		}
		if up, ok := m["upstream"].(map[string]any); ok {
			r.Upstream = decodeUpstream(up)
		}
		return r, nil
	}
	return nil, failMsg("unsupported resource type: " + k.Name)
}

func decodeUpstream(m map[string]any) *Upstream {
	u := &Upstream{
		ID: IDString(m["id"]), Name: str(m, "name"), Desc: str(m, "desc"),
		Type: strOr(m, "type", "roundrobin"), HashOn: strOr(m, "hash_on", "vars"), Key: str(m, "key"),
		RetryTimeout: num(m, "retry_timeout", 0), Timeout: timeout(m),
		Scheme: strOr(m, "scheme", "http"), PassHost: strOr(m, "pass_host", "pass"),
		UpstreamHost: str(m, "upstream_host"), ServiceName: str(m, "service_name"),
		DiscoveryType: str(m, "discovery_type"), Labels: labels(m),
	}
	if _, ok := m["retries"]; ok {
		r := intOr(m, "retries", 0)
		u.Retries = &r
	}
	if da, ok := m["discovery_args"].(map[string]any); ok {
		u.DiscoveryArgs = map[string]string{}
		for k, v := range da {
			if s, ok := v.(string); ok {
				u.DiscoveryArgs[k] = s
			}
		}
	}
	switch nodes := m["nodes"].(type) {
	case map[string]any:
		for addr, w := range nodes {
			host, port, ok := parseAddr(addr)
			n := Node{Host: host, Weight: toInt(w)}
			if ok {
				n.Port = int(port)
			}
			u.Nodes = append(u.Nodes, n)
		}
	case []any:
		for _, item := range nodes {
			nm, ok := item.(map[string]any)
			if !ok {
				continue
			}
			n := Node{Host: str(nm, "host"), Port: intOr(nm, "port", 0), Weight: intOr(nm, "weight", 0),
				Priority: intOr(nm, "priority", 0)}
			if md, ok := nm["metadata"].(map[string]any); ok {
				n.Metadata = md
			}
			u.Nodes = append(u.Nodes, n)
		}
	}
	sort.SliceStable(u.Nodes, func(i, j int) bool {
		if u.Nodes[i].Host != u.Nodes[j].Host {
			return u.Nodes[i].Host < u.Nodes[j].Host
		}
		return u.Nodes[i].Port < u.Nodes[j].Port
	})
	if t, ok := m["tls"].(map[string]any); ok {
		u.TLS = &UpstreamTLS{ClientCert: str(t, "client_cert"), ClientKey: str(t, "client_key"),
			ClientCertID: IDString(t["client_cert_id"]), Verify: boolOr(t, "verify", false)}
	}
	if kp, ok := m["keepalive_pool"].(map[string]any); ok {
		u.KeepalivePool = &KeepalivePool{Size: intOr(kp, "size", 320), IdleTimeout: num(kp, "idle_timeout", 60),
			Requests: intOr(kp, "requests", 1000)}
	}
	if ch, ok := m["checks"].(map[string]any); ok {
		u.Checks = decodeChecks(ch)
	}
	return u
}

func decodeChecks(m map[string]any) *HealthChecks {
	hc := &HealthChecks{}
	if a, ok := m["active"].(map[string]any); ok {
		h, _ := a["healthy"].(map[string]any)
		uh, _ := a["unhealthy"].(map[string]any)
		hc.Active = &ActiveCheck{
			Type: strOr(a, "type", "http"), Timeout: num(a, "timeout", 1), Concurrency: intOr(a, "concurrency", 10),
			Host: str(a, "host"), Port: intOr(a, "port", 0), HTTPMethod: strOr(a, "http_method", "GET"),
			HTTPPath: strOr(a, "http_path", "/"), HTTPReqBody: str(a, "http_req_body"),
			HTTPSVerifyCertificate: boolOr(a, "https_verify_certificate", true), ReqHeaders: strs(a, "req_headers"),
			Healthy: ActiveHealthy{Interval: intOr(h, "interval", 1), HTTPStatuses: intsOr(h, "http_statuses", []int{200, 302}),
				Successes: intOr(h, "successes", 2)},
			Unhealthy: ActiveUnhealthy{Interval: intOr(uh, "interval", 1),
				HTTPStatuses: intsOr(uh, "http_statuses", []int{429, 404, 500, 501, 502, 503, 504, 505}),
				HTTPFailures: intOr(uh, "http_failures", 5), TCPFailures: intOr(uh, "tcp_failures", 2), Timeouts: intOr(uh, "timeouts", 3)},
		}
	}
	if p, ok := m["passive"].(map[string]any); ok {
		h, _ := p["healthy"].(map[string]any)
		uh, _ := p["unhealthy"].(map[string]any)
		hc.Passive = &PassiveCheck{
			Type: strOr(p, "type", "http"),
			Healthy: PassiveHealthy{HTTPStatuses: intsOr(h, "http_statuses",
				[]int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308}),
				Successes: intOr(h, "successes", 5)},
			Unhealthy: PassiveUnhealthy{HTTPStatuses: intsOr(uh, "http_statuses", []int{429, 500, 503}),
				TCPFailures: intOr(uh, "tcp_failures", 2), Timeouts: intOr(uh, "timeouts", 7), HTTPFailures: intOr(uh, "http_failures", 5)},
		}
	}
	return hc
}

// Small accessors over decoded JSON; absent or mistyped values give the
// default (the schema has already rejected wrong types).

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func strOr(m map[string]any, k, def string) string {
	if s, ok := m[k].(string); ok {
		return s
	}
	return def
}

func strs(m map[string]any, k string) []string {
	arr, ok := m[k].([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(arr))
	for _, v := range arr {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

func toInt(v any) int {
	f, _ := toFloat(v)
	if f > math.MaxInt32*1024 || f < -math.MaxInt32*1024 {
		return 0
	}
	return int(f)
}

func intOr(m map[string]any, k string, def int) int {
	if v, ok := m[k]; ok {
		if f, ok := toFloat(v); ok {
			return toInt(f)
		}
	}
	return def
}

func intsOr(m map[string]any, k string, def []int) []int {
	arr, ok := m[k].([]any)
	if !ok {
		return def
	}
	out := make([]int, 0, len(arr))
	for _, v := range arr {
		out = append(out, toInt(v))
	}
	return out
}

func num(m map[string]any, k string, def float64) float64 {
	if f, ok := toFloat(m[k]); ok {
		return f
	}
	return def
}

func boolPtr(m map[string]any, k string) *bool {
	if b, ok := m[k].(bool); ok {
		return &b
	}
	return nil
}

func boolOr(m map[string]any, k string, def bool) bool {
	if b, ok := m[k].(bool); ok {
		return b
	}
	return def
}

func labels(m map[string]any) map[string]string {
	lm, ok := m["labels"].(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(lm))
	for k, v := range lm {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func timeout(m map[string]any) *Timeout {
	t, ok := m["timeout"].(map[string]any)
	if !ok {
		return nil
	}
	return &Timeout{Connect: num(t, "connect", 60), Send: num(t, "send", 60), Read: num(t, "read", 60)}
}

func plugins(m map[string]any) map[string]json.RawMessage {
	ps, ok := m["plugins"].(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]json.RawMessage, len(ps))
	for name, conf := range ps {
		out[name] = rawJSON(conf)
	}
	return out
}

func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
