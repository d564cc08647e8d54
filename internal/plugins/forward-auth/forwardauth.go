// Package forwardauth implements APISIX's forward-auth plugin: in the
// access phase it asks an external authorization service about the
// request. A 2xx answer lets the request through, copying chosen headers
// of the answer to the upstream request; any other answer is sent to the
// client (status, body and chosen headers).
package forwardauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/internal/reqbody"
)

// Name is the plugin name.
const Name = "forward-auth"

const schemaDoc = `{
  "type": "object",
  "properties": {
    "uri": {"type": "string"},
    "allow_degradation": {"type": "boolean", "default": false},
    "status_on_error": {"type": "integer", "minimum": 200, "maximum": 599, "default": 403},
    "ssl_verify": {"type": "boolean", "default": true},
    "request_method": {
      "type": "string",
      "default": "GET",
      "enum": ["GET", "POST"],
      "description": "the method for client to request the authorization service"
    },
    "max_req_body_size": {"type": "integer", "minimum": 1, "default": 67108864},
    "request_headers": {"type": "array", "default": [], "items": {"type": "string"}},
    "extra_headers": {
      "type": "object",
      "minProperties": 1,
      "patternProperties": {"^[^:]+$": {"type": "string"}}
    },
    "upstream_headers": {"type": "array", "default": [], "items": {"type": "string"}},
    "client_headers": {"type": "array", "default": [], "items": {"type": "string"}},
    "timeout": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 3000, "description": "timeout in milliseconds"},
    "keepalive": {"type": "boolean", "default": true},
    "keepalive_timeout": {"type": "integer", "minimum": 1000, "default": 60000},
    "keepalive_pool": {"type": "integer", "minimum": 1, "default": 5}
  },
  "required": ["uri"]
}`

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{
		Name:     Name,
		Priority: 2002,
		Schema:   json.RawMessage(schemaDoc),
		New:      New,
	}
}

// Config is the plugin configuration.
type Config struct {
	// URI is the authorization service's URL.
	URI string `json:"uri"`
	// AllowDegradation lets requests through when the service is unreachable.
	AllowDegradation bool `json:"allow_degradation"`
	// StatusOnError is answered (no body) when the service is unreachable.
	StatusOnError int `json:"status_on_error"`
	// SSLVerify verifies the service's TLS certificate.
	SSLVerify bool `json:"ssl_verify"`
	// RequestMethod is GET or POST; POST forwards the client's body.
	RequestMethod string `json:"request_method"`
	// MaxReqBodySize bounds the body forwarded with POST (413 beyond).
	MaxReqBodySize int64 `json:"max_req_body_size"`
	// RequestHeaders are client request headers copied to the service.
	RequestHeaders []string `json:"request_headers"`
	// ExtraHeaders are sent to the service; values may hold $variables.
	ExtraHeaders map[string]string `json:"extra_headers"`
	// UpstreamHeaders are copied from a 2xx answer to the upstream request.
	UpstreamHeaders []string `json:"upstream_headers"`
	// ClientHeaders are copied from a rejecting answer to the client.
	ClientHeaders []string `json:"client_headers"`
	// Timeout is the whole call's timeout in milliseconds.
	Timeout int `json:"timeout"`
	// Keepalive keeps connections to the service open.
	Keepalive bool `json:"keepalive"`
	// KeepaliveTimeout is how long an idle connection is kept, in ms.
	KeepaliveTimeout int `json:"keepalive_timeout"`
	// KeepalivePool is how many idle connections are kept per host.
	KeepalivePool int `json:"keepalive_pool"`
}

// maxAuthBody bounds how much of a rejecting answer is relayed to the
// client, so a misbehaving service cannot make the gateway buffer without
// limit.
const maxAuthBody = 16 << 20

type extraHeader struct {
	name, tpl string
}

// Plugin is a built forward-auth instance.
type Plugin struct {
	conf     Config
	client   *http.Client
	url      *url.URL
	urlErr   error
	reqHdrs  []string // canonical
	upHdrs   []string
	cliHdrs  []string
	extra    []extraHeader
	fwdCount int
}

// New builds an instance with its HTTP client; env may be nil.
func New(raw json.RawMessage, env *plugin.BuildEnv) (any, error) {
	c := Config{
		StatusOnError:    403,
		SSLVerify:        true,
		RequestMethod:    "GET",
		MaxReqBodySize:   67108864,
		Timeout:          3000,
		Keepalive:        true,
		KeepaliveTimeout: 60000,
		KeepalivePool:    5,
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode forward-auth conf: %w", err)
		}
	}
	if c.RequestMethod != "GET" && c.RequestMethod != "POST" {
		return nil, fmt.Errorf(`property "request_method" validation failed: matches none of the enum values`)
	}
	p := &Plugin{conf: c}
	// The schema accepts any string; like APISIX, a uri that cannot be
	// called fails at request time with status_on_error.
	p.url, p.urlErr = url.Parse(c.URI)
	if p.urlErr == nil && (p.url.Scheme != "http" && p.url.Scheme != "https" || p.url.Host == "") {
		p.urlErr = fmt.Errorf("unsupported uri %q", c.URI)
	}
	canon := func(in []string) []string {
		out := make([]string, 0, len(in))
		for _, h := range in {
			out = append(out, textproto.CanonicalMIMEHeaderKey(h))
		}
		return out
	}
	p.reqHdrs, p.upHdrs, p.cliHdrs = canon(c.RequestHeaders), canon(c.UpstreamHeaders), canon(c.ClientHeaders)
	for k, v := range c.ExtraHeaders {
		p.extra = append(p.extra, extraHeader{textproto.CanonicalMIMEHeaderKey(k), v})
	}
	p.fwdCount = 6 + len(p.reqHdrs) + len(p.extra)
	if env == nil {
		// Validation only: no client needed.
		return p, nil
	}
	p.client = &http.Client{
		Transport: transport(env.Shared, c),
		Timeout:   time.Duration(c.Timeout) * time.Millisecond,
		// resty.http does not follow redirects; the answer is relayed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p, nil
}

// transport returns a pooled transport shared by every instance with the
// same connection settings, so config swaps keep warm connections.
func transport(shared *plugin.Shared, c Config) http.RoundTripper {
	key := fmt.Sprintf("%s/transport/%t/%t/%d/%d", Name, c.SSLVerify, c.Keepalive, c.KeepaliveTimeout, c.KeepalivePool)
	return shared.LoadOrStore(key, func() any {
		d := &net.Dialer{Timeout: 60 * time.Second, KeepAlive: 30 * time.Second}
		return closableTransport{&http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: !c.SSLVerify}, //nolint:gosec // ssl_verify=false is the user's explicit choice
			DisableKeepAlives:   !c.Keepalive,
			MaxIdleConnsPerHost: c.KeepalivePool,
			IdleConnTimeout:     time.Duration(c.KeepaliveTimeout) * time.Millisecond,
			TLSHandshakeTimeout: 10 * time.Second,
		}}
	}).(http.RoundTripper)
}

// closableTransport lets plugin.Shared close the idle connections of a
// transport no instance uses any more (its settings changed).
type closableTransport struct{ *http.Transport }

// Close closes the transport's idle connections. It runs a grace period
// after the last instance using the transport left the snapshot, when no
// request holds a connection of it any more.
func (t closableTransport) Close() error {
	t.CloseIdleConnections()
	return nil
}

// Access calls the authorization service and acts on its answer.
func (p *Plugin) Access(r *plugin.Request) {
	if p.client == nil {
		// Built for validation only; never serve with it.
		r.Exit(p.conf.StatusOnError, nil)
		return
	}
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if p.urlErr != nil {
		p.warn(r, p.urlErr)
		p.fail(r)
		return
	}
	u := *p.url
	req := &http.Request{
		Method:     p.conf.RequestMethod,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, p.fwdCount),
		Host:       u.Host,
	}
	req = req.WithContext(ctx)
	h := req.Header
	h["X-Forwarded-Proto"] = []string{scheme(r)}
	h["X-Forwarded-Method"] = []string{r.Method}
	h["X-Forwarded-Host"] = []string{r.Host}
	h["X-Forwarded-Uri"] = []string{r.RequestURI}
	h["X-Forwarded-For"] = []string{r.RemoteIP()}
	if p.conf.RequestMethod == "POST" {
		if v, ok := first(r.Header, "Content-Encoding"); ok {
			h["Content-Encoding"] = []string{v}
		}
	}
	for _, e := range p.extra {
		h[e.name] = []string{resolveVars(e.tpl, r.Var)}
	}
	for _, name := range p.reqHdrs {
		if _, set := h[name]; set {
			continue
		}
		if v, ok := first(r.Header, name); ok {
			h[name] = []string{v}
		}
	}
	if p.conf.RequestMethod == "POST" {
		body, err := reqbody.Read(r, p.conf.MaxReqBodySize)
		if err != nil {
			if r.Env != nil && r.Env.Logger != nil {
				r.Env.Logger.Error("forward-auth: failed to read request body", "error", err)
			}
			r.Exit(413, nil)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}

	resp, err := p.client.Do(req)
	if err != nil {
		if p.conf.AllowDegradation {
			return
		}
		p.warn(r, err)
		p.fail(r)
		return
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 300 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthBody))
		if err != nil {
			p.warn(r, err)
			p.fail(r)
			return
		}
		out := r.W.Header()
		var ct []string
		for _, name := range p.cliHdrs {
			if engine.IsHopByHop(name) {
				continue
			}
			if vv := resp.Header[name]; len(vv) > 0 {
				out[name] = vv
				if name == "Content-Type" {
					ct = vv
				}
			}
		}
		if ct != nil {
			// Exit would replace a Content-Type the auth service chose
			// and the conf asked to relay; keep it, as nginx does.
			orig := r.Ctx.W
			r.Ctx.W = keepContentType{orig, ct}
			defer func() { r.Ctx.W = orig }()
		}
		r.Exit(resp.StatusCode, body)
		return
	}
	// Drain a small answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	for _, name := range p.upHdrs {
		if vv := resp.Header[name]; len(vv) > 0 {
			r.Header[name] = append([]string(nil), vv...)
		} else {
			delete(r.Header, name)
		}
	}
}

func (p *Plugin) fail(r *plugin.Request) { r.Exit(p.conf.StatusOnError, nil) }

func (p *Plugin) warn(r *plugin.Request, err error) {
	if r.Env != nil && r.Env.Logger != nil {
		r.Env.Logger.Warn("failed to process forward auth, err: " + err.Error())
	}
}

func scheme(r *plugin.Request) string {
	if r.Scheme != "" {
		return r.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// keepContentType restores a relayed Content-Type when the response
// header is written.
type keepContentType struct {
	engine.ResponseWriter
	ct []string
}

func (w keepContentType) WriteHeader(status int) {
	w.ResponseWriter.Header()["Content-Type"] = w.ct
	w.ResponseWriter.WriteHeader(status)
}

// first returns the first value of a canonical header name.
func first(h engine.Header, name string) (string, bool) {
	if vv, ok := h[name]; ok && len(vv) > 0 {
		return vv[0], true
	}
	return "", false
}

// resolveVars substitutes $name and ${name} (and ${name ?? default}) with
// request variables, as APISIX's core.utils.resolve_var does: a "$"
// preceded by a backslash is left alone, unknown variables become "".
func resolveVars(tpl string, get func(string) (string, bool)) string {
	if strings.IndexByte(tpl, '$') < 0 {
		return tpl
	}
	var b strings.Builder
	for i := 0; i < len(tpl); i++ {
		c := tpl[i]
		if c != '$' || (i > 0 && tpl[i-1] == '\\') || i+1 >= len(tpl) {
			b.WriteByte(c)
			continue
		}
		if tpl[i+1] == '{' {
			end := strings.IndexByte(tpl[i+2:], '}')
			inner := ""
			if end >= 0 {
				inner = strings.TrimSpace(tpl[i+2 : i+2+end])
			}
			if end < 0 || inner == "" {
				b.WriteByte(c)
				continue
			}
			name, def, hasDef := inner, "", false
			if k := strings.Index(inner, "??"); k >= 0 {
				name, def, hasDef = strings.TrimSpace(inner[:k]), strings.TrimSpace(inner[k+2:]), true
			}
			if v, ok := get(name); ok {
				b.WriteString(v)
			} else if hasDef {
				b.WriteString(def)
			}
			i += 2 + end
			continue
		}
		j := i + 1
		for j < len(tpl) && isVarByte(tpl[j]) {
			j++
		}
		if j == i+1 {
			b.WriteByte(c)
			continue
		}
		if v, ok := get(tpl[i+1 : j]); ok {
			b.WriteString(v)
		}
		i = j - 1
	}
	return b.String()
}

func isVarByte(c byte) bool {
	return c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
