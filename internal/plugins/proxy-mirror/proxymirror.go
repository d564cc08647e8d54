// Package proxymirror implements APISIX's proxy-mirror plugin: a sampled,
// fire-and-forget copy of each request (method, URI, headers, body) is
// sent to a mirror host; the mirror's response is discarded and never
// delays or changes the client's response.
package proxymirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name.
const Name = "proxy-mirror"

// Priority is APISIX's priority for proxy-mirror.
const Priority = 1010

// schema transcribes proxy-mirror.lua's schema.
var schema = json.RawMessage(`{"type":"object","properties":{
 "host":{"type":"string","pattern":"^(http(s)?|grpc(s)?):\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?$"},
 "path":{"type":"string","pattern":"^/[^?&]+$"},
 "path_concat_mode":{"type":"string","default":"replace","enum":["replace","prefix"],"description":"the concatenation mode for custom path"},
 "sample_ratio":{"type":"number","minimum":0.00001,"maximum":1,"default":1}},
 "required":["host"]}`)

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, New: New}
}

// Config is proxy-mirror's configuration.
type Config struct {
	// Host is scheme://host[:port] of the mirror (http, https, grpc, grpcs).
	Host string `json:"host"`
	// Path replaces (or prefixes) the mirrored request's path.
	Path string `json:"path"`
	// PathConcatMode is "replace" (Path + original args) or "prefix"
	// (Path + original URI).
	PathConcatMode string `json:"path_concat_mode"`
	// SampleRatio is the share of requests mirrored, 0.00001 to 1.
	SampleRatio float64 `json:"sample_ratio"`
}

// Plugin is a built proxy-mirror instance.
type Plugin struct {
	cfg  Config
	grpc bool
	pool *Pool // nil when built for validation
}

// New decodes conf with APISIX's defaults. With a build env it attaches
// the process-wide mirror pool (plugin_attr.proxy-mirror timeouts).
func New(conf json.RawMessage, env *plugin.BuildEnv) (any, error) {
	p := &Plugin{cfg: Config{PathConcatMode: "replace", SampleRatio: 1}}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, fmt.Errorf("invalid conf: %w", err)
	}
	c := &p.cfg
	if c.Host == "" {
		return nil, errors.New(`property "host" is required`)
	}
	scheme, _, ok := strings.Cut(c.Host, "://")
	if !ok {
		return nil, fmt.Errorf("invalid host %q", c.Host)
	}
	p.grpc = scheme == "grpc" || scheme == "grpcs"
	if c.PathConcatMode != "replace" && c.PathConcatMode != "prefix" {
		return nil, fmt.Errorf("invalid path_concat_mode %q", c.PathConcatMode)
	}
	if env == nil {
		return p, nil
	}
	timeouts, err := ParseTimeouts(env.Attr)
	if err != nil {
		return nil, err
	}
	mk := func() any { return NewPool(PoolConfig{Timeouts: timeouts}) }
	if env.Shared == nil {
		p.pool = mk().(*Pool)
	} else {
		p.pool, _ = env.Shared.LoadOrStore("proxy-mirror:pool", mk).(*Pool)
	}
	return p, nil
}

// Pool returns the pool the instance sends mirrors through.
func (p *Plugin) Pool() *Pool { return p.pool }

// Rewrite decides, as APISIX does in the rewrite phase, whether this
// request is mirrored, and computes the mirror URI from the URI as it is
// now (before proxy-rewrite, priority 1008, changes it).
func (p *Plugin) Rewrite(r *plugin.Request) {
	if p.cfg.SampleRatio < 1 && rand.Float64() >= p.cfg.SampleRatio {
		return
	}
	uri := r.RequestURI
	if p.cfg.Path != "" {
		if p.cfg.PathConcatMode == "prefix" {
			uri = p.cfg.Path + r.RequestURI
		} else if r.Query != "" {
			uri = p.cfg.Path + "?" + r.Query
		} else {
			uri = p.cfg.Path
		}
	}
	r.SetVar("upstream_mirror_host", p.cfg.Host)
	r.SetVar("upstream_mirror_uri", p.cfg.Host+uri)
}

// valuesKey marks a request whose mirror was already started (before_proxy
// runs again before every retry).
const valuesKey = "proxy-mirror"

// BeforeProxy starts the mirror once per request, after every rewrite and
// access plugin has changed the headers (nginx's mirror runs in the
// precontent phase, after access). The body is copied as the main request
// reads it, so the main request never waits for the mirror.
func (p *Plugin) BeforeProxy(r *plugin.Request) {
	if p.pool == nil {
		return
	}
	target, ok := r.Var("upstream_mirror_uri")
	if !ok || target == "" {
		return
	}
	if _, done := r.Values[valuesKey]; done {
		return
	}
	r.SetValue(valuesKey, true)
	if p.grpc {
		// grpc_pass takes the path the request has now.
		target = p.cfg.Host + r.RequestURI
	}
	host := r.UpstreamHost
	if host == "" {
		host = r.RawHost
	}
	j := &Job{Method: r.Method, URL: target, Host: host, Header: cloneHeader(r.Header), GRPC: p.grpc}
	if r.Body == nil || r.ContentLength == 0 {
		p.pool.Submit(j)
		return
	}
	if r.ContentLength > p.pool.cfg.MaxBody {
		p.pool.dropped.Add(1)
		return
	}
	r.Body = newTee(r.Body, r.ContentLength, j, p.pool)
}

// hopHeaders are not forwarded to the mirror (nginx's proxy module drops
// them too).
var hopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Host": true}

func cloneHeader(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		if hopHeaders[k] {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}
