// Package prometheus implements APISIX's prometheus plugin: in the log
// phase it records per-route HTTP status, latency and bandwidth metrics,
// served in the Prometheus text format on plugin_attr.prometheus.export_addr
// + export_uri (default 127.0.0.1:9091/apisix/prometheus/metrics). As in
// APISIX only requests whose route (or a global rule) carries the plugin
// are counted.
package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Name is the plugin name.
const Name = "prometheus"

// Priority is APISIX's priority for prometheus.
const Priority = 500

// Label lists of the HTTP metrics, in APISIX's order (exporter.lua
// metric_label_map).
var (
	statusLabels = []string{"code", "route", "matched_uri", "matched_host", "service", "consumer", "node",
		"request_type", "request_llm_model", "llm_model", "response_source"}
	latencyLabels = []string{"type", "route", "service", "consumer", "node",
		"request_type", "request_llm_model", "llm_model"}
)

// metadataMetrics lists, per metric of metric_label_map, the labels that
// plugin_metadata disabled_labels may blank (structural labels excluded).
var metadataMetrics = map[string][]string{
	"http_status":                {"route", "matched_uri", "matched_host", "service", "consumer", "node", "request_type", "request_llm_model", "llm_model", "response_source"},
	"http_latency":               {"route", "service", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"bandwidth":                  {"route", "service", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"llm_latency":                {"route_id", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"llm_prompt_tokens":          {"route_id", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"llm_completion_tokens":      {"route_id", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"llm_active_connections":     {"route", "route_id", "matched_uri", "matched_host", "service", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"llm_prompt_tokens_dist":     {"route_id", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"llm_completion_tokens_dist": {"route_id", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"ai_cache_hits_total":        {"route", "route_id", "service", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"ai_cache_misses_total":      {"route", "route_id", "service", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"ai_cache_bypasses_total":    {"route", "route_id", "service", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
	"ai_cache_embedding_latency": {"route", "route_id", "service", "service_id", "consumer", "node", "request_type", "request_llm_model", "llm_model"},
}

var schema = json.RawMessage(`{"type":"object","properties":{"prefer_name":{"type":"boolean","default":false}}}`)

// metadataSchema transcribes prometheus.lua's metadata_schema.
func metadataSchema() json.RawMessage {
	names := make([]string, 0, len(metadataMetrics))
	for n := range metadataMetrics {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(`{"type":"object","properties":{"disabled_labels":{"type":"object","properties":{`)
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		enum, _ := json.Marshal(metadataMetrics[n])
		fmt.Fprintf(&b, `%q:{"type":"array","items":{"type":"string","enum":%s}}`, n, enum)
	}
	b.WriteString(`},"additionalProperties":false}}}`)
	return json.RawMessage(b.String())
}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: schema, MetadataSchema: metadataSchema(),
		New: New, PreferRoute: true, Init: initExporter}
}

// initExporter starts the export server when the gateway starts (not on
// the first route that uses the plugin) and stops it at shutdown.
func initExporter(ctx context.Context, attr map[string]any, shared *plugin.Shared, logger *slog.Logger) error {
	_, srv, err := EnsureServer(shared, attr)
	if err != nil {
		// Metrics keep being recorded; only the scrape endpoint is
		// missing, which must not keep the gateway from serving traffic.
		logger.Error("prometheus export server not started", "err", err)
		return nil
	}
	if srv != nil {
		go func() {
			<-ctx.Done()
			if err := srv.Close(); err != nil {
				logger.Warn("prometheus export server close", "err", err)
			}
		}()
	}
	return nil
}

// Config is prometheus's configuration.
type Config struct {
	// PreferName labels metrics with route and service names instead of
	// ids. Sluice's request context carries only ids, so ids are used
	// (see README).
	PreferName bool `json:"prefer_name"`
}

// Plugin is a built prometheus instance.
type Plugin struct {
	cfg Config
	exp *Exporter // nil when built for validation
	// recent caches the children this instance used last: comparing a
	// childKey is a few string compares, while the exporter's sync.Map
	// hashes all its fields through the interface (most of the cost of
	// recording). Slots hold pointers the exporter keeps anyway (it never
	// drops a child, so a slot never goes stale) and are filled once, by
	// the first label sets seen: a miss allocates nothing and writes no
	// shared memory (an instance with more label sets, a global rule,
	// pays the sync.Map lookup as before and no more).
	recent [4]atomic.Pointer[children]
}

// childFor returns the children for k, from the recent slots if there.
func (p *Plugin) childFor(e *Exporter, k *childKey) *children {
	for i := range p.recent {
		if ch := p.recent[i].Load(); ch != nil && ch.key == *k {
			return ch
		}
	}
	ch := e.child(k)
	for i := range p.recent {
		if p.recent[i].Load() == nil && p.recent[i].CompareAndSwap(nil, ch) {
			break
		}
	}
	return ch
}

// New decodes conf. With a build env it attaches the process-wide exporter
// and starts the export server the first time (see EnsureServer).
func New(conf json.RawMessage, env *plugin.BuildEnv) (any, error) {
	p := &Plugin{}
	if err := json.Unmarshal(conf, &p.cfg); err != nil {
		return nil, fmt.Errorf("invalid conf: %w", err)
	}
	if env == nil {
		return p, nil
	}
	if env.Shared == nil {
		// Tests without shared state: a private exporter, no server.
		a, err := ParseAttr(env.Attr)
		if err != nil {
			return nil, err
		}
		e, err := NewExporter(a)
		if err != nil {
			return nil, err
		}
		p.exp = e
		return p, nil
	}
	e, _, _ := EnsureServer(env.Shared, env.Attr)
	// A listen failure of the export server must not disable metric
	// recording on the route; it is visible through EnsureServer.
	if e == nil {
		var err error
		if e, err = ExporterFor(env.Shared, env.Attr); err != nil {
			return nil, err
		}
	}
	p.exp = e
	return p, nil
}

// Exporter returns the exporter the instance records into (nil when built
// for validation).
func (p *Plugin) Exporter() *Exporter { return p.exp }

// valuesKey is where the per-request state lives in engine.Ctx.Values.
const valuesKey = "prometheus"

// reqState is the per-request state between before_proxy and log, pooled.
type reqState struct {
	upstreamStart time.Time
}

// logged marks a request already recorded, so a global-rule copy and a
// route copy of the plugin count it once (prefer_route).
var logged = &reqState{}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

// BeforeProxy notes when the first upstream attempt starts, for the
// upstream latency, and counts the request as in flight.
func (p *Plugin) BeforeProxy(r *plugin.Request) {
	if p.exp == nil {
		return
	}
	if _, ok := r.Values[valuesKey]; ok {
		return // a retry, or the other copy of the plugin
	}
	st := statePool.Get().(*reqState)
	st.upstreamStart = time.Now()
	r.SetValue(valuesKey, st)
	p.exp.inflight.Add(1)
}

// childKey identifies one set of labelled children. dis is the parsed
// disabled_labels in force (nil: none), so a metadata change starts new
// children with the blanked labels.
type childKey struct {
	code                                   int
	route, service, consumer, node, source string
	matchedURI, matchedHost                string
	dis                                    *disabled
}

// label is the value of label l (one of statusLabels or latencyLabels,
// after the first) for the request k describes; "" for labels Sluice does
// not fill (the LLM ones).
func (k *childKey) label(l string) string {
	switch l {
	case "route":
		return k.route
	case "matched_uri":
		return k.matchedURI
	case "matched_host":
		return k.matchedHost
	case "service":
		return k.service
	case "consumer":
		return k.consumer
	case "node":
		return k.node
	case "request_type":
		return "traditional_http"
	case "response_source":
		return k.source
	}
	return ""
}

// children are the labelled metrics of one childKey.
type children struct {
	key                      childKey // the labels these children were made for
	status                   prom.Counter
	latReq, latUp, latAPISIX prom.Observer
	bwIn, bwOut              prom.Counter
}

// Log records the request.
func (p *Plugin) Log(r *plugin.Request) {
	e := p.exp
	if e == nil {
		return
	}
	var st *reqState
	if v, ok := r.Values[valuesKey]; ok {
		st, _ = v.(*reqState)
		if st == logged {
			return
		}
	}
	now := time.Now()
	c := r.Ctx
	e.requests.Add(1)
	route, service := c.RouteID, c.ServiceID
	if p.cfg.PreferName {
		if c.RouteName != "" {
			route = c.RouteName
		}
		if c.ServiceName != "" {
			service = c.ServiceName
		}
	}
	k := childKey{code: c.Status, route: route, service: service, consumer: c.ConsumerName,
		matchedURI: c.MatchedURI, matchedHost: c.MatchedHost,
		node: hostOf(c.UpstreamAddr), source: responseSource(r), dis: e.disabledFor(r.Metadata(Name))}
	ch := p.childFor(e, &k)
	ch.status.Inc()
	var total float64
	if !c.StartTime.IsZero() {
		total = msSince(c.StartTime, now)
	}
	ch.latReq.Observe(total)
	apisix := total
	if st != nil {
		up := msSince(st.upstreamStart, now)
		ch.latUp.Observe(up)
		apisix = max(total-up, 0)
		e.inflight.Add(-1)
		*st = reqState{}
		statePool.Put(st)
	}
	ch.latAPISIX.Observe(apisix)
	// The fast engine knows the head sizes exactly; otherwise they are
	// estimated from the fields (a map walk each).
	in, out := int64(c.RequestHeadBytes), int64(c.ResponseHeadBytes)
	if in == 0 {
		in = requestLength(c.Method, c.RequestURI, c.Proto, c.Header, 0)
	}
	if c.ContentLength > 0 {
		in += c.ContentLength
	}
	if out == 0 {
		out = responseHeaderLength(c.Proto, r.W.Header())
	}
	ch.bwIn.Add(float64(in))
	ch.bwOut.Add(float64(c.BytesSent + out))
	r.SetValue(valuesKey, logged)
}

func msSince(t, now time.Time) float64 {
	return float64(now.Sub(t)) / float64(time.Millisecond)
}

// child finds or creates the children of k.
func (e *Exporter) child(k *childKey) *children {
	if v, ok := e.children.Load(*k); ok {
		return v.(*children)
	}
	code := strconv.Itoa(k.code)
	if k.code == 0 {
		code = ""
	}
	// values lists the label values of one metric: first, then each of
	// labels after the first (blank where metadata disables it).
	values := func(metric, first string, labels []string) []string {
		out := []string{first}
		for _, l := range labels[1:] {
			v := k.label(l)
			if k.dis != nil && k.dis.has(metric, l) {
				v = ""
			}
			out = append(out, v)
		}
		return out
	}
	sl := values("http_status", code, statusLabels)
	lat := func(metric, typ string) []string { return values(metric, typ, latencyLabels) }
	ch := &children{
		key:       *k,
		status:    e.status.WithLabelValues(sl...),
		latReq:    e.latency.WithLabelValues(lat("http_latency", "request")...),
		latUp:     e.latency.WithLabelValues(lat("http_latency", "upstream")...),
		latAPISIX: e.latency.WithLabelValues(lat("http_latency", "apisix")...),
		bwIn:      e.bandwidth.WithLabelValues(lat("bandwidth", "ingress")...),
		bwOut:     e.bandwidth.WithLabelValues(lat("bandwidth", "egress")...),
	}
	v, _ := e.children.LoadOrStore(*k, ch)
	return v.(*children)
}

// disabled is a parsed disabled_labels: metric -> label -> true.
type disabled struct {
	m map[string]map[string]bool
}

func (d *disabled) has(metric, label string) bool { return d.m[metric][label] }

// mdCache remembers the last parsed plugin_metadata by the identity of
// its bytes: a snapshot's metadata slice is immutable, so the same slice
// means the same metadata.
type mdCache struct {
	ptr *byte
	n   int
	dis *disabled
}

// disabledFor returns the parsed disabled_labels of raw, parsing only
// when the metadata object changed.
func (e *Exporter) disabledFor(raw json.RawMessage) *disabled {
	if len(raw) == 0 {
		return nil
	}
	ptr := unsafe.SliceData(raw)
	if c := e.md.Load(); c != nil && c.ptr == ptr && c.n == len(raw) {
		return c.dis
	}
	var md struct {
		DisabledLabels map[string][]string `json:"disabled_labels"`
	}
	var d *disabled
	if json.Unmarshal(raw, &md) == nil && len(md.DisabledLabels) > 0 {
		d = &disabled{m: map[string]map[string]bool{}}
		for metric, ls := range md.DisabledLabels {
			d.m[metric] = map[string]bool{}
			for _, l := range ls {
				d.m[metric][l] = true
			}
		}
	}
	e.md.Store(&mdCache{ptr: ptr, n: len(raw), dis: d})
	return d
}

// hostOf returns the host of a host:port upstream address (APISIX's
// balancer_ip), without allocating.
func hostOf(addr string) string {
	if addr == "" {
		return ""
	}
	if addr[0] == '[' {
		if i := strings.IndexByte(addr, ']'); i > 0 {
			return addr[1:i]
		}
		return addr
	}
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && strings.IndexByte(addr[:i], ':') < 0 {
		return addr[:i]
	}
	return addr
}

// responseSource approximates core.response.get_response_source: a
// plugin's exit or a gateway answer without any upstream attempt is
// "apisix"; a proxied request whose final status is a 502 or 504 that the
// last attempt recorded is taken for the proxy's own error ("nginx"); the
// rest is "upstream". (The context does not tell whether the upstream sent
// response headers, which is what APISIX looks at.)
func responseSource(r *plugin.Request) string {
	c := r.Ctx
	if r.Exited() || len(c.UpstreamStatus) == 0 {
		return "apisix"
	}
	last := c.UpstreamStatus[len(c.UpstreamStatus)-1]
	if last != c.Status {
		return "apisix"
	}
	if last == 502 || last == 504 {
		return "nginx"
	}
	return "upstream"
}

// requestLength estimates nginx's $request_length: request line, headers
// and body.
func requestLength(method, uri, proto string, h map[string][]string, contentLength int64) int64 {
	n := int64(len(method) + 1 + len(uri) + 1 + len(proto) + 2)
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + 2 + len(v) + 2)
		}
	}
	n += 2
	if contentLength > 0 {
		n += contentLength
	}
	return n
}

// responseHeaderLength estimates the status line and headers of nginx's
// $bytes_sent.
func responseHeaderLength(proto string, h map[string][]string) int64 {
	if proto == "" {
		proto = "HTTP/1.1"
	}
	n := int64(len(proto) + 1 + 3 + 1 + 2) // reason phrase left out
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + 2 + len(v) + 2)
		}
	}
	return n + 2
}
