package engine

import (
	"strconv"
	"strings"
)

// Var returns the APISIX/nginx variable name and whether it is set.
// Supported: uri, request_uri, host, http_host, request_method, remote_addr,
// remote_port, server_port, server_addr, scheme, server_protocol,
// query_string, args, is_args, content_type, content_length, route_id,
// service_id, consumer_name, upstream_status, upstream_addr, status,
// http_<name> (lowercase, '_' for '-'), arg_<name> (first value, raw),
// cookie_<name> (raw), uri_param_<name>, and anything a plugin set with
// SetVar. http_* and arg_* lookups do not allocate.
func (c *Ctx) Var(name string) (string, bool) {
	for i := range c.vars {
		if c.vars[i].k == name {
			return c.vars[i].v, true
		}
	}
	switch name {
	case "uri":
		return c.Path, true
	case "request_uri":
		return c.RequestURI, true
	case "host":
		return c.Host, true
	case "request_method":
		return c.Method, true
	case "remote_addr":
		return c.RemoteIP(), c.RemoteAddr.IsValid()
	case "remote_port":
		return strconv.Itoa(int(c.RemoteAddr.Port())), c.RemoteAddr.IsValid()
	case "server_addr":
		return c.LocalAddr.Addr().Unmap().String(), c.LocalAddr.IsValid()
	case "server_port":
		return strconv.Itoa(int(c.LocalAddr.Port())), c.LocalAddr.IsValid()
	case "scheme", "request_scheme":
		return c.Scheme, true
	case "server_protocol":
		return c.Proto, true
	case "query_string", "args":
		return c.Query, c.Query != ""
	case "is_args":
		if c.Query != "" {
			return "?", true
		}
		return "", true
	case "content_type":
		return c.headerFirst("Content-Type")
	case "content_length":
		return c.headerFirst("Content-Length")
	case "route_id":
		return c.RouteID, c.RouteID != ""
	case "service_id":
		return c.ServiceID, c.ServiceID != ""
	case "route_name":
		return c.RouteName, c.RouteName != ""
	case "service_name":
		return c.ServiceName, c.ServiceName != ""
	case "consumer_name":
		return c.ConsumerName, c.ConsumerName != ""
	case "upstream_addr":
		return c.UpstreamAddr, c.UpstreamAddr != ""
	case "upstream_status":
		if len(c.UpstreamStatus) == 0 {
			return "", false
		}
		return FormatStatusList(c.UpstreamStatus), true
	case "status":
		if c.Status == 0 {
			return "", false
		}
		return strconv.Itoa(c.Status), true
	}
	switch {
	case strings.HasPrefix(name, "http_"):
		return c.headerVar(name[len("http_"):])
	case strings.HasPrefix(name, "arg_"):
		return QueryArg(c.Query, name[len("arg_"):])
	case strings.HasPrefix(name, "cookie_"):
		return c.cookie(name[len("cookie_"):])
	case strings.HasPrefix(name, "uri_param_"):
		return c.Param(name[len("uri_param_"):])
	}
	return "", false
}

func (c *Ctx) headerFirst(k string) (string, bool) {
	if vv := c.Header[k]; len(vv) > 0 {
		return vv[0], true
	}
	return "", false
}

// headerVar looks up http_<name>: it canonicalises name ("x_api_key" ->
// "X-Api-Key") into a stack buffer; the map lookup with string(buf) does
// not allocate.
func (c *Ctx) headerVar(name string) (string, bool) {
	var buf [128]byte
	if len(name) == 0 || len(name) > len(buf) {
		return "", false
	}
	upper := true
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch == '_' || ch == '-':
			ch = '-'
			upper = true
		case upper && 'a' <= ch && ch <= 'z':
			ch -= 'a' - 'A'
			upper = false
		case !upper && 'A' <= ch && ch <= 'Z':
			ch += 'a' - 'A'
		default:
			upper = false
		}
		buf[i] = ch
	}
	if vv := c.Header[string(buf[:len(name)])]; len(vv) > 0 {
		if len(vv) == 1 {
			return vv[0], true
		}
		// nginx joins repeated headers for $http_x (", "; "; " for Cookie).
		sep := ", "
		if string(buf[:len(name)]) == "Cookie" {
			sep = "; "
		}
		return strings.Join(vv, sep), true
	}
	return "", false
}

// QueryArg returns the raw (still percent-encoded) value of the first
// argument called name in the raw query q; names compare case-insensitively
// as in nginx's $arg_name. An argument without '=' has the value "".
func QueryArg(q, name string) (string, bool) {
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(pair, "=")
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func (c *Ctx) cookie(name string) (string, bool) {
	for _, line := range c.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			k, v, ok := strings.Cut(part, "=")
			if ok && strings.TrimRight(k, " \t") == name {
				return strings.TrimSpace(v), true
			}
		}
	}
	return "", false
}

// FormatStatusList renders statuses as nginx's $upstream_status does:
// "502, 502, 200".
func FormatStatusList(st []int) string {
	b := make([]byte, 0, len(st)*5)
	for i, s := range st {
		if i > 0 {
			b = append(b, ',', ' ')
		}
		b = strconv.AppendInt(b, int64(s), 10)
	}
	return string(b)
}
