package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/balancer"
	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/expr"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/resolver"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/router"
)

// compiled is the data plane's form of a snapshot: the route table and
// every upstream with its balancer, ready to serve.
type compiled struct {
	router    *router.Table
	upstreams map[string]*upstream // by upstream id
	inline    map[string]*upstream // by config hash, for route/service inline upstreams
	certs     *certIndex
	global    *plugin.Chain // merged global rules; nil when none
	// consumerFilters is set when some consumer or consumer group has a
	// response-filtering plugin, so its merge may need the writer wrapper.
	consumerFilters bool
	env             *plugin.Env
	entries         map[string]*plugin.Entry // built plugin instances, reused by the next build

	hc      healthEnv
	prevUps map[string]*upstream
	dynMu   sync.Mutex
	dyn     map[*resource.Upstream]*upstream // upstreams chosen by plugins
}

// route is a matched route with its service merged in.
type route struct {
	id, serviceID     string
	name, serviceName string
	upstream          *upstream // resolved inline or by id; nil with upstreamID set means missing
	upstreamID        string
	timeout           *resource.Timeout
	websocket         bool
	chain             *plugin.Chain // service + plugin_config + route plugins; nil when none
	broken            int           // non-zero: answer this status (missing plugin_config)
}

// upstream is one upstream's runtime: its config, balancer and proxy
// options. It is reused across snapshots while its config is unchanged, so
// balancer state and connection pools survive unrelated changes.
type upstream struct {
	hash    string
	cfg     *resource.Upstream
	bal     *balancer.Balancer
	opts    proxy.Options
	checker *balancer.Checker // nil without checks
	tls     *tls.Config       // upstream TLS (verify, client certificate); nil = APISIX default
	// hashVar is the variable chash hashes on (hash_on header, cookie or
	// vars), named once here instead of per request.
	hashVar string
}

// dataPlane serves traffic from the current snapshot.
type dataPlane struct {
	builder *Builder
	fwd     *proxy.Forwarder
	// fastFwd forwards requests of the fast engine (sluice.engine: fast);
	// nil otherwise. It hands Ctxs from the net/http engine to fwd.
	fastFwd    proxy.Forwarding
	server     string
	showStatus bool
	logger     *slog.Logger
	// deleteTailSlash strips one trailing "/" before routing
	// (apisix.delete_uri_tail_slash).
	deleteTailSlash bool
	// resolver resolves upstream node hostnames, cached by TTL.
	resolver *resolver.Resolver
	// realIP lets trusted peers set the client address (nginx realip).
	realIP *realIP
	// trusted reports peers whose X-Forwarded-* headers are kept
	// (apisix.trusted_addresses).
	trusted    func(netip.Addr) bool
	paramsPool sync.Pool
	reqPool    sync.Pool
	fwdPool    sync.Pool // *fwdState
}

var notFoundBody = []byte("{\"error_msg\":\"404 Route Not Found\"}\n")

// matchState is the pooled per-request state of a route match.
type matchState struct {
	params router.Params
	vars   routeVars
}

// maxPostArgsBody caps the body read to evaluate post_arg_<name> in route
// vars. APISIX reads it with ngx.req.get_post_args, which yields nothing
// once nginx has spilled the body to a temporary file (past
// client_body_buffer_size), so larger forms never match there either; the
// cap also keeps routing from buffering an attacker's upload.
const maxPostArgsBody = 64 << 10

// routeVars resolves the variables of routes' vars conditions: the
// request's own, plus post_arg_<name> (apisix/core/ctx.lua), which reads
// an application/x-www-form-urlencoded body once and puts it back for the
// upstream.
type routeVars struct {
	c    *engine.Ctx
	read bool
	form url.Values
}

// Var implements expr.Vars.
func (v *routeVars) Var(name string) (string, bool) {
	if !strings.HasPrefix(name, "post_arg_") {
		return v.c.Var(name)
	}
	if !v.read {
		v.read = true
		v.form = readPostArgs(v.c)
	}
	if vals := v.form[name[len("post_arg_"):]]; len(vals) > 0 {
		return vals[0], true
	}
	return "", false
}

// readPostArgs parses a urlencoded request body of at most maxPostArgsBody
// bytes. Whatever it reads is replayed in front of the rest of the body, so
// the upstream receives the body unchanged.
func readPostArgs(c *engine.Ctx) url.Values {
	if c.Body == nil || c.ContentLength == 0 || c.ContentLength > maxPostArgsBody ||
		!strings.HasPrefix(c.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(c.Body, maxPostArgsBody+1))
	c.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(buf), c.Body), rc: c.Body}
	if err != nil || len(buf) > maxPostArgsBody {
		return nil
	}
	// Like nginx's get_post_args, keep the pairs that parse.
	form, _ := url.ParseQuery(string(buf))
	return form
}

// replayBody is a request body with its first bytes already read and put
// back; Close closes the engine's body.
type replayBody struct {
	io.Reader
	rc io.ReadCloser
}

// Close implements io.Closer.
func (r *replayBody) Close() error { return r.rc.Close() }

// Serve handles one request on either engine: route match, plugin
// phases (global rules first in each phase), upstream selection, proxying,
// response filters and logging.
func (d *dataPlane) Serve(c *engine.Ctx) {
	snap := d.builder.Current()
	data, _ := snap.Data.(*compiled)
	if data == nil || data.router == nil {
		c.Reply(404, "application/json", notFoundBody)
		return
	}
	d.realIP.apply(c)
	alignForwardedPath(c)
	if c.TLS != nil && !mtlsCheck(data, c) {
		return
	}
	path := c.Path
	if d.deleteTailSlash && len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	ms, _ := d.paramsPool.Get().(*matchState)
	if ms == nil {
		ms = new(matchState)
	}
	p := &ms.params
	ms.vars = routeVars{c: c}
	req := router.Request{Path: path, Host: c.Host, RawHost: c.RawHost, Method: c.Method, RemoteAddr: c.RemoteAddr.Addr().Unmap(), Vars: &ms.vars}
	m := data.router.Match(&req, p)
	if m != nil {
		c.MatchedURI, c.MatchedHost = p.Pattern(), p.Host()
		for i := 0; i < p.Len(); i++ {
			k, v := p.At(i)
			c.ParamKeys = append(c.ParamKeys, k)
			c.ParamValues = append(c.ParamValues, v)
		}
	}
	ms.vars = routeVars{}
	d.paramsPool.Put(ms)
	var rt *route
	if m != nil {
		rt = m.Value.(*route)
		c.RouteID, c.ServiceID = rt.id, rt.serviceID
		c.RouteName, c.ServiceName = rt.name, rt.serviceName
	}
	if data.global.Empty() && (rt == nil || rt.chain.Empty()) {
		// No plugin anywhere: the runtime costs nothing.
		if rt == nil {
			c.Reply(404, "application/json", notFoundBody)
			return
		}
		if rt.broken != 0 {
			c.ReplyError(rt.broken)
			return
		}
		d.proxyRoute(c, nil, data, rt, nil, nil)
		return
	}
	r, _ := d.reqPool.Get().(*plugin.Request)
	if r == nil {
		r = new(plugin.Request)
	}
	defer func() { r.Reset(); d.reqPool.Put(r) }()
	r.Ctx, r.Env = c, data.env
	var chain *plugin.Chain
	if rt != nil {
		chain = rt.chain
	}
	r.Route = chain
	var fw *filterWriter
	if data.global.HasResponseFilters() || chain.HasResponseFilters() || data.consumerFilters {
		fw = &filterWriter{w: c.W, r: r, global: data.global, route: chain}
		c.W = fw
		defer func() { c.W = fw.w }()
	}
	orig := captureForwarded(c.Header)
	d.phases(r, data, rt, chain, fw, &orig)
	if fw != nil {
		fw.finish()
	}
	data.global.Log(r)
	if rt != nil {
		if r.Consumer != nil {
			chain = chain.WithConsumer(r.Consumer)
		}
		chain.Log(r)
	}
}

// phases runs rewrite and access, then proxies.
func (d *dataPlane) phases(r *plugin.Request, data *compiled, rt *route, chain *plugin.Chain, fw *filterWriter, orig *forwardedHeaders) {
	c := r.Ctx
	if rt == nil {
		// No route: global rules' rewrite and access still run.
		if data.global.Rewrite(r) || data.global.Access(r) {
			return
		}
		c.Reply(404, "application/json", notFoundBody)
		return
	}
	if rt.broken != 0 {
		c.ReplyError(rt.broken)
		return
	}
	if data.global.Rewrite(r) || chain.Rewrite(r) {
		return
	}
	if r.Consumer != nil && len(r.Consumer.Plugins) > 0 {
		chain = chain.WithConsumer(r.Consumer)
		r.Route = chain
		if fw != nil {
			fw.route = chain
		}
		if chain.RewriteConsumerOnly(r) {
			return
		}
	}
	if data.global.Access(r) || chain.Access(r) {
		return
	}
	d.proxyRoute(c, r, data, rt, chain, orig)
}

// proxyRoute resolves the upstream (a plugin's choice first) and forwards.
func (d *dataPlane) proxyRoute(c *engine.Ctx, r *plugin.Request, data *compiled, rt *route, chain *plugin.Chain, orig *forwardedHeaders) {
	up := rt.upstream
	upID := rt.upstreamID
	if r != nil && r.Upstream != nil {
		switch v := r.Upstream.(type) {
		case string:
			up, upID = nil, v
		case *resource.Upstream:
			cu, err := data.upstreamFor(v)
			if err != nil {
				c.ReplyError(502)
				return
			}
			up = cu
		}
	}
	if up == nil && upID != "" {
		up = data.upstreams[upID]
		if up == nil {
			c.ReplyError(502)
			return
		}
	}
	if up == nil {
		d.logger.Error("missing upstream configuration in Route or Service", "route", rt.id)
		c.ReplyError(503)
		return
	}
	d.forward(c, r, data, rt, up, chain, orig)
}

// forward picks nodes with the upstream's balancer and proxies.
func (d *dataPlane) forward(c *engine.Ctx, r *plugin.Request, data *compiled, rt *route, up *upstream, chain *plugin.Chain, orig *forwardedHeaders) {
	st, _ := d.fwdPool.Get().(*fwdState)
	if st == nil {
		st = new(fwdState)
		st.pickFn = st.pick // bound once: a method value allocates
	}
	defer st.release(&d.fwdPool)
	st.d, st.c, st.r, st.data, st.up, st.chain = d, c, r, data, up, chain
	opts := &st.opts
	*opts = up.opts
	if rt.timeout != nil {
		opts.Timeouts = timeouts(rt.timeout)
	}
	opts.WebSocket = rt.websocket
	opts.ShowUpstreamStatus = d.showStatus
	opts.TrustedProxy = d.trusted
	if orig != nil {
		opts.PluginForwarded = orig.changed(c.Header)
	}
	if up.cfg.Type == "chash" {
		st.hashKey = chashKey(c, up.cfg.HashOn, up.hashVar, up.cfg.Key)
	}
	// Only the EWMA balancer uses the latency; a clock read costs.
	var start time.Time
	timed := up.bal.TracksLatency()
	if timed {
		start = time.Now()
	}
	var fwd proxy.Forwarding = d.fwd
	// The fast engine's upstream client speaks HTTP/1.1 only; gRPC
	// upstreams need net/http's HTTP/2 transport.
	if d.fastFwd != nil && c.EngineData != nil && up.cfg.Scheme != "grpc" && up.cfg.Scheme != "grpcs" {
		fwd = d.fastFwd
	}
	status, err := fwd.Forward(c, st.pickFn, opts)
	if err != nil && status != proxy.StatusClientClosed {
		// nginx's error log: what failed upstream, never request secrets.
		d.logger.Warn("upstream request failed", "route", rt.id, "upstream", c.UpstreamAddr, "status", status, "err", err)
	}
	exited := r != nil && r.Exited()
	var lat time.Duration
	if timed {
		lat = time.Since(start)
	}
	picked := st.picked
	for i, n := range picked {
		failed := i < len(picked)-1 || err != nil
		// Every pick is released (least_conn counts), even when a
		// before_proxy plugin ended the request.
		up.bal.Done(n, lat, failed)
		if up.checker == nil || exited {
			continue
		}
		// Passive health: attempts before the last failed at the
		// connection level; the last one failed there only if the proxy
		// produced the status itself.
		code := status
		if i < len(c.UpstreamStatus) {
			code = c.UpstreamStatus[i]
		}
		gatewayMade := i < len(picked)-1 || err != nil
		up.checker.Report(n.Addr, code, gatewayMade && code == 502, gatewayMade && code == 504)
	}
}

// fwdState is forward's per-request state, pooled so that the proxy
// options, the balancer's tried set and the Picker (bound once per state)
// cost no allocation per request.
type fwdState struct {
	d     *dataPlane
	c     *engine.Ctx
	r     *plugin.Request
	data  *compiled
	up    *upstream
	chain *plugin.Chain
	opts  proxy.Options
	tried balancer.Tried
	// picked lists every node tried, so each is released (least_conn
	// counts) and reported; it lives in pickedBuf unless a request makes
	// more than 8 attempts.
	picked    []*balancer.Node
	pickedBuf [8]*balancer.Node
	hashKey   string
	pickFn    proxy.Picker
}

func (s *fwdState) release(p *sync.Pool) {
	pick := s.pickFn
	*s = fwdState{pickFn: pick}
	p.Put(s)
}

// pick is the Picker handed to the forwarder: the balancer's next node
// (never one already tried), resolved and with pass_host applied; the
// before_proxy phase runs for every attempt.
func (s *fwdState) pick(attempt int) (proxy.Target, bool) {
	d, c, r, up := s.d, s.c, s.r, s.up
	n := up.bal.Pick(&s.tried, s.hashKey)
	if n == nil {
		return proxy.Target{}, false
	}
	s.tried.Add(n)
	if s.picked == nil {
		s.picked = s.pickedBuf[:0]
	}
	s.picked = append(s.picked, n)
	t := up.target(c, n)
	if d.resolver != nil {
		// Node hostnames are resolved through the TTL cache.
		var err error
		if t.Addr, err = n.DialAddr(c.Context, d.resolver.Pick); err != nil {
			d.logger.Warn("upstream node name not resolved", "host", n.Host, "err", err)
		}
	}
	if r != nil {
		if r.UpstreamHost != "" {
			t.Host = r.UpstreamHost
		}
		if s.data.global.BeforeProxy(r) || s.chain.BeforeProxy(r) {
			return proxy.Target{}, false
		}
	}
	return t, true
}

// target builds the proxy target for a node, applying pass_host.
func (u *upstream) target(c *engine.Ctx, n *balancer.Node) proxy.Target {
	// grpc/grpcs stay as they are: the forwarder speaks HTTP/2 for them.
	scheme := u.cfg.Scheme
	if scheme == "" {
		scheme = "http"
	}
	tlsScheme := scheme == "https" || scheme == "grpcs"
	t := proxy.Target{Scheme: scheme, Addr: n.Addr}
	switch u.cfg.PassHost {
	case "node":
		t.Host = n.Addr
		if (!tlsScheme && n.Port == 80) || (tlsScheme && n.Port == 443) {
			t.Host = n.Host
		}
	case "rewrite":
		t.Host = u.cfg.UpstreamHost
	default:
		t.Host = c.RawHost
	}
	if tlsScheme {
		// t.SNI stays empty: the forwarder derives it from the Host
		// (IPv6 literals included).
		t.TLS = u.tls
	}
	return t
}

// chashKey resolves the consistent-hash key; missing keys fall back to the
// client address as APISIX does.
func chashKey(c *engine.Ctx, hashOn, hashVar, key string) string {
	var v string
	var ok bool
	switch hashOn {
	case "header", "cookie":
		v, ok = c.Var(hashVar)
	case "consumer":
		v, ok = c.ConsumerName, c.ConsumerName != ""
	case "vars_combinations":
		v = expandVars(c, key)
		ok = v != ""
	default:
		v, ok = c.Var(hashVar)
	}
	if !ok || v == "" {
		v, _ = c.Var("remote_addr")
	}
	return v
}

// hashVarName is the variable chash reads for hashOn and key: the
// header's http_* variable, the cookie's cookie_* variable, or key itself
// (hash_on vars).
func hashVarName(hashOn, key string) string {
	switch hashOn {
	case "header":
		return "http_" + strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	case "cookie":
		return "cookie_" + key
	default:
		return key
	}
}

// expandVars replaces $name references in a vars_combinations template.
func expandVars(c *engine.Ctx, tmpl string) string {
	var b strings.Builder
	for i := 0; i < len(tmpl); {
		if tmpl[i] != '$' {
			b.WriteByte(tmpl[i])
			i++
			continue
		}
		j := i + 1
		for j < len(tmpl) && (tmpl[j] == '_' || tmpl[j] >= 'a' && tmpl[j] <= 'z' || tmpl[j] >= 'A' && tmpl[j] <= 'Z' || tmpl[j] >= '0' && tmpl[j] <= '9') {
			j++
		}
		if v, ok := c.Var(tmpl[i+1 : j]); ok {
			b.WriteString(v)
		}
		i = j
	}
	return b.String()
}

func timeouts(t *resource.Timeout) proxy.Timeouts {
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	return proxy.Timeouts{Connect: sec(t.Connect), Send: sec(t.Send), Read: sec(t.Read)}
}

// newUpstream compiles an upstream, reusing prev's runtime when the config
// is unchanged.
func newUpstream(u *resource.Upstream, prev map[string]*upstream, hc healthEnv) (*upstream, error) {
	raw, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	// tls.client_cert_id names an SSL object whose cert and key may change
	// while the upstream stays the same: the resolved pair is part of the
	// upstream's identity, so a new certificate gets a new TLS config and
	// connection pool.
	var cert, key string
	if ut := u.TLS; ut != nil {
		cert, key = ut.ClientCert, ut.ClientKey
		if ut.ClientCertID != "" && hc.clientCert != nil {
			cert, key = hc.clientCert(ut.ClientCertID)
			raw = append(append(append(append(raw, 0), cert...), 0), key...)
		}
	}
	sum := sha256.Sum256(raw)
	hash := string(sum[:])
	if p := prev[hash]; p != nil {
		return p, nil
	}
	scheme := u.Scheme
	defPort := 80
	if scheme == "https" || scheme == "grpcs" {
		defPort = 443
	}
	nodes := make([]balancer.Node, 0, len(u.Nodes))
	for _, n := range u.Nodes {
		port := n.Port
		if port == 0 {
			port = defPort
		}
		host := strings.TrimSuffix(strings.TrimPrefix(n.Host, "["), "]")
		nodes = append(nodes, balancer.Node{Host: host, Port: port, Weight: n.Weight, Priority: n.Priority})
	}
	bal, err := balancer.New(balancer.Config{Type: u.Type, HashOn: u.HashOn, Key: u.Key, Nodes: nodes})
	if err != nil {
		return nil, err
	}
	out := &upstream{hash: hash, cfg: u, bal: bal, hashVar: hashVarName(u.HashOn, u.Key)}
	if ut := u.TLS; ut != nil {
		cfg := &tls.Config{InsecureSkipVerify: !ut.Verify} //nolint:gosec // APISIX verifies upstreams only when asked
		if cert != "" {
			pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
			if err != nil {
				return nil, fmt.Errorf("upstream tls client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		} else if ut.ClientCertID != "" {
			return nil, fmt.Errorf("tls.client_cert_id %s: no client SSL object", ut.ClientCertID)
		}
		out.tls = cfg
	}
	if u.Checks != nil && u.Checks.Active != nil && hc.enabled {
		out.checker = balancer.NewChecker(nodes, convertChecks(u.Checks), hc.logger)
		out.checker.Start(hc.ctx)
		bal.SetHealth(out.checker)
	}
	if u.Timeout != nil {
		out.opts.Timeouts = timeouts(u.Timeout)
	}
	if u.Retries != nil {
		out.opts.Retries = *u.Retries
	} else {
		out.opts.Retries = len(nodes) - 1
	}
	out.opts.RetryTimeout = time.Duration(u.RetryTimeout * float64(time.Second))
	if kp := u.KeepalivePool; kp != nil {
		out.opts.KeepalivePool = proxy.Pool{Size: kp.Size, IdleTimeout: time.Duration(kp.IdleTimeout * float64(time.Second)), Requests: kp.Requests}
	}
	return out, nil
}

// compileFunc returns the snapshot compile hook for the given router kind.
func compileFunc(routerKind string, hc healthEnv, reg *plugin.Registry, shared *plugin.Shared, attrs map[string]map[string]any) CompileFunc {
	return func(s *Snapshot, prevSnap *Snapshot) (any, []BuildError) {
		var errs []BuildError
		prev := map[string]*upstream{}
		pb := &pluginBuild{reg: reg, shared: shared, attrs: attrs, prev: map[string]*plugin.Entry{}, next: map[string]*plugin.Entry{}}
		if prevSnap != nil {
			if pc, ok := prevSnap.Data.(*compiled); ok {
				pb.prev = pc.entries
				for _, u := range pc.upstreams {
					prev[u.hash] = u
				}
				for _, u := range pc.inline {
					prev[u.hash] = u
				}
				// Upstreams plugins chose (traffic-split) are reused by
				// hash too, so their balancer and health state survive.
				pc.dynMu.Lock()
				for _, u := range pc.dyn {
					prev[u.hash] = u
				}
				pc.dynMu.Unlock()
			}
		}
		hc := hc
		hc.clientCert = func(id string) (string, string) {
			if ssl, ok := s.Objects["ssls"][id].(*resource.SSL); ok && ssl.Type == "client" {
				return ssl.Cert, ssl.Key
			}
			return "", ""
		}
		out := &compiled{upstreams: map[string]*upstream{}, inline: map[string]*upstream{}, hc: hc, prevUps: prev}
		out.env = &plugin.Env{Consumers: pb.consumers(s), Metadata: map[string]json.RawMessage{}}
		out.consumerFilters = pb.consumerFilters
		for name, v := range s.Objects["plugin_metadata"] {
			if md, ok := v.(*resource.PluginMetadata); ok {
				out.env.Metadata[name] = md.Conf
			}
		}
		out.global = pb.globalChain(s)
		for id, v := range s.Objects["upstreams"] {
			u, ok := v.(*resource.Upstream)
			if !ok {
				continue
			}
			cu, err := newUpstream(u, prev, hc)
			if err != nil {
				errs = append(errs, BuildError{Key: "/upstreams/" + id, Error: err.Error()})
				continue
			}
			out.upstreams[id] = cu
		}
		inline := func(u *resource.Upstream, key string) *upstream {
			cu, err := newUpstream(u, prev, hc)
			if err != nil {
				errs = append(errs, BuildError{Key: key, Error: err.Error()})
				return nil
			}
			out.inline[cu.hash] = cu
			return cu
		}
		ids := make([]string, 0, len(s.Objects["routes"]))
		for id := range s.Objects["routes"] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		rts := make([]router.Route, 0, len(ids)) // the router keeps pointers into it: no slack, no regrowth garbage
		for _, id := range ids {
			r, ok := s.Objects["routes"][id].(*resource.Route)
			if !ok || r.Status == 0 {
				continue
			}
			key := "/routes/" + id
			rt := &route{id: id, name: r.Name, timeout: r.Timeout}
			hosts := r.Hosts
			if r.Host != "" {
				hosts = []string{r.Host}
			}
			var svc *resource.Service
			if r.ServiceID != "" {
				sv, ok := s.Objects["services"][r.ServiceID].(*resource.Service)
				if !ok {
					// APISIX keeps such a route in the router (matching on
					// its own conditions only) and answers nginx's 404 page
					// when it matches (init.lua: "failed to fetch service
					// configuration by id"), after a missing plugin_config's
					// 503.
					errs = append(errs, BuildError{Key: key, Error: fmt.Sprintf("service %s not found", r.ServiceID)})
					rt.broken = 404
				} else {
					svc = sv
					rt.serviceID, rt.serviceName = r.ServiceID, sv.Name
					if len(hosts) == 0 {
						hosts = svc.Hosts
					}
				}
			}
			switch {
			case r.UpstreamID != "":
				rt.upstreamID = r.UpstreamID
			case r.Upstream != nil:
				rt.upstream = inline(r.Upstream, key)
			case svc != nil && svc.UpstreamID != "":
				rt.upstreamID = svc.UpstreamID
			case svc != nil && svc.Upstream != nil:
				rt.upstream = inline(svc.Upstream, "/services/"+svc.ID)
			}
			confs := map[string]confRef{}
			if svc != nil {
				withParent(confs, svc.Plugins, "/services/"+svc.ID)
			}
			if r.PluginConfigID != "" {
				pcfg, ok := s.Objects["plugin_configs"][r.PluginConfigID].(*resource.PluginConfig)
				if !ok {
					rt.broken = 503
				} else {
					for n, raw := range pcfg.Plugins {
						if _, onRoute := r.Plugins[n]; !onRoute {
							confs[n] = confRef{raw: raw, parent: "/plugin_configs/" + pcfg.ID}
						}
					}
				}
			}
			withParent(confs, r.Plugins, key)
			es, failed := pb.entries(confs, false)
			switch {
			case failed:
				rt.broken = 503
			case len(es) > 0:
				rt.chain = plugin.NewChain(es)
			}
			if r.EnableWebsocket != nil {
				rt.websocket = *r.EnableWebsocket
			} else if svc != nil && svc.EnableWebsocket != nil {
				rt.websocket = *svc.EnableWebsocket
			}
			var vars *expr.Expr
			if len(r.Vars) > 0 {
				e, err := expr.Compile(r.Vars)
				if err != nil {
					errs = append(errs, BuildError{Key: key, Error: err.Error()})
					continue
				}
				vars = e
			}
			addrs := r.RemoteAddrs
			if r.RemoteAddr != "" {
				addrs = []string{r.RemoteAddr}
			}
			var prefixes []netip.Prefix
			bad := false
			for _, a := range addrs {
				p, err := parsePrefix(a)
				if err != nil {
					errs = append(errs, BuildError{Key: key, Error: "remote_addr " + strconv.Quote(a) + ": " + err.Error()})
					bad = true
					break
				}
				prefixes = append(prefixes, p)
			}
			if bad {
				continue
			}
			lower := make([]string, len(hosts))
			for i, h := range hosts {
				lower[i] = strings.ToLower(h)
			}
			rts = append(rts, router.Route{ID: id, URIs: r.Paths(), Hosts: lower, Methods: r.Methods,
				RemoteAddrs: prefixes, Vars: vars, Priority: r.Priority, Value: rt})
		}
		tbl, err := router.New(routerKind, rts)
		if err != nil {
			errs = append(errs, BuildError{Key: "/routes/", Error: err.Error()})
			tbl, _ = router.New(routerKind, nil)
		}
		out.router = tbl
		out.certs, errs = buildCerts(s, errs)
		out.entries = pb.next
		// Closable shared plugin values (Redis clients) no entry uses
		// any more are closed after a grace period.
		shared.Sweep(maps.Values(pb.next))
		errs = append(errs, pb.errs...)
		// Health checkers of upstreams that are gone or changed stop; the
		// ones reused above keep their state.
		for h, u := range prev {
			if u.checker == nil {
				continue
			}
			if _, kept := out.inline[h]; kept {
				continue
			}

			still := false
			for _, cu := range out.upstreams {
				if cu.hash == h {
					still = true
					break
				}
			}
			if !still {
				u.checker.Stop()
			}
		}
		return out, errs
	}
}

// healthEnv is what health checkers need from the gateway.
type healthEnv struct {
	enabled bool
	ctx     context.Context
	logger  *slog.Logger
	// clientCert resolves tls.client_cert_id to a client SSL object's
	// certificate and key in the snapshot being built.
	clientCert func(id string) (cert, key string)
}

// convertChecks maps the decoded upstream checks to the balancer's form.
func convertChecks(h *resource.HealthChecks) balancer.Checks {
	var out balancer.Checks
	if a := h.Active; a != nil {
		verify := a.HTTPSVerifyCertificate
		out.Active = &balancer.Active{
			Type: a.Type, Timeout: a.Timeout, Concurrency: a.Concurrency, Host: a.Host, Port: a.Port,
			HTTPPath: a.HTTPPath, HTTPMethod: a.HTTPMethod, HTTPReqBody: a.HTTPReqBody,
			HTTPSVerifyCertificate: &verify, ReqHeaders: a.ReqHeaders,
			Healthy: balancer.ActiveHealthy{Interval: float64(a.Healthy.Interval), HTTPStatuses: a.Healthy.HTTPStatuses, Successes: a.Healthy.Successes},
			Unhealthy: balancer.ActiveUnhealthy{Interval: float64(a.Unhealthy.Interval), HTTPStatuses: a.Unhealthy.HTTPStatuses,
				HTTPFailures: a.Unhealthy.HTTPFailures, TCPFailures: a.Unhealthy.TCPFailures, Timeouts: a.Unhealthy.Timeouts},
		}
	}
	if p := h.Passive; p != nil {
		out.Passive = &balancer.Passive{
			Type:      p.Type,
			Healthy:   balancer.PassiveHealthy{HTTPStatuses: p.Healthy.HTTPStatuses, Successes: p.Healthy.Successes},
			Unhealthy: balancer.PassiveUnhealthy{HTTPStatuses: p.Unhealthy.HTTPStatuses, TCPFailures: p.Unhealthy.TCPFailures, Timeouts: p.Unhealthy.Timeouts, HTTPFailures: p.Unhealthy.HTTPFailures},
		}
	}
	return out
}

// upstreamFor compiles an upstream object a plugin chose at request time
// (traffic-split), reusing the snapshot's runtime for identical configs.
func (d *compiled) upstreamFor(u *resource.Upstream) (*upstream, error) {
	d.dynMu.Lock()
	defer d.dynMu.Unlock()
	if d.dyn == nil {
		d.dyn = map[*resource.Upstream]*upstream{}
	}
	if cu := d.dyn[u]; cu != nil {
		return cu, nil
	}
	// Upstreams chosen by plugins are built lazily, outside the snapshot
	// build that stops retired health checkers, so they run without
	// active checks (documented in traffic-split's README); their balancer
	// state is still reused across snapshots by config hash.
	hc := d.hc
	hc.enabled = false
	cu, err := newUpstream(u, d.prevUps, hc)
	if err != nil {
		return nil, err
	}
	d.dyn[u] = cu
	return cu, nil
}

// forwardedHeaders remembers the client's X-Forwarded-Proto/-Host/-Port
// before plugins run, so that values a plugin set (proxy-rewrite headers)
// are sent as the plugin left them, as in APISIX.
type forwardedHeaders [3][]string

var forwardedKeys = [3]string{"X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"}

func captureForwarded(h engine.Header) forwardedHeaders {
	var f forwardedHeaders
	for i, k := range forwardedKeys {
		f[i] = h[k]
	}
	return f
}

// changed reports which of the headers a plugin replaced or removed.
func (f *forwardedHeaders) changed(h engine.Header) proxy.ForwardedSet {
	var set proxy.ForwardedSet
	for i, k := range forwardedKeys {
		now := h[k]
		if len(now) == len(f[i]) && (len(now) == 0 || &now[0] == &f[i][0]) {
			continue
		}
		if len(now) > 0 { // a removal lets the gateway compute it again
			set |= proxy.ForwardedProto << i
		}
	}
	return set
}

// alignForwardedPath makes the upstream see the path the router matched.
// The client's raw request-target is forwarded as is (APISIX does the same)
// when decoding it gives the routed path; when it does not — dot segments,
// "//", encoded dots or slashes — the normalised path is forwarded instead,
// so a path can never match one route and reach another path upstream
// (hardening.md §F). The query string is kept verbatim.
func alignForwardedPath(c *engine.Ctx) {
	if c.RawPath == c.Path || c.RawPath == "" || c.RawPath == "*" {
		return
	}
	if dec, err := url.PathUnescape(c.RawPath); err == nil && dec == c.Path && !hasEncodedSeparator(c.RawPath) {
		return
	}
	u := url.URL{Path: c.Path}
	uri := u.EscapedPath()
	if c.Query != "" || strings.HasSuffix(c.RequestURI, "?") {
		uri += "?" + c.Query
	}
	c.RequestURI = uri
	c.RawPath = u.EscapedPath()
}

// hasEncodedSeparator reports an encoded "/" or "\\", which an upstream may
// keep as part of a segment while the router treated it as a separator.
func hasEncodedSeparator(p string) bool {
	for i := 0; i+2 < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		switch p[i+1 : i+3] {
		case "2f", "2F", "5c", "5C":
			return true
		}
	}
	return false
}
