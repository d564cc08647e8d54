package prometheus

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/version"
)

// Defaults of plugin_attr.prometheus (conf/config.yaml.example).
const (
	DefaultExportURI  = "/apisix/prometheus/metrics"
	DefaultExportIP   = "127.0.0.1"
	DefaultExportPort = 9091
	DefaultPrefix     = "apisix_"
)

// DefaultBuckets are APISIX's latency buckets in milliseconds.
var DefaultBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000}

// Shared keys: one exporter and one export server per process (per
// plugin.Shared), as APISIX has one metrics dict per nginx instance.
const (
	sharedExporterKey = "prometheus:exporter"
	sharedServerKey   = "prometheus:server"
)

// Attr is plugin_attr.prometheus.
type Attr struct {
	// ExportURI is where the metrics are served.
	ExportURI string
	// ExportAddr is the listen address of the export server (ip:port).
	ExportAddr string
	// EnableExportServer starts the separate export server (default true).
	EnableExportServer bool
	// MetricPrefix prefixes every metric name (default "apisix_").
	MetricPrefix string
	// DefaultBuckets are the http_latency buckets in milliseconds.
	DefaultBuckets []float64
}

// ParseAttr reads plugin_attr.prometheus, filling APISIX's defaults.
func ParseAttr(m map[string]any) (Attr, error) {
	a := Attr{ExportURI: DefaultExportURI, EnableExportServer: true, MetricPrefix: DefaultPrefix,
		DefaultBuckets: DefaultBuckets}
	ip, port := DefaultExportIP, DefaultExportPort
	if v, ok := m["export_uri"].(string); ok && v != "" {
		a.ExportURI = v
	}
	if v, ok := m["metric_prefix"].(string); ok {
		a.MetricPrefix = v
	}
	if v, ok := m["enable_export_server"].(bool); ok {
		a.EnableExportServer = v
	}
	if ea, ok := m["export_addr"].(map[string]any); ok {
		if v, ok := ea["ip"].(string); ok && v != "" {
			ip = v
		}
		if v, ok := ea["port"]; ok {
			p, err := toInt(v)
			if err != nil || p < 0 || p > 65535 {
				return a, fmt.Errorf("plugin_attr.prometheus.export_addr.port: invalid port %v", v)
			}
			port = p
		}
	}
	a.ExportAddr = net.JoinHostPort(ip, strconv.Itoa(port))
	if v, ok := m["default_buckets"].([]any); ok && len(v) > 0 {
		bs := make([]float64, 0, len(v))
		for _, b := range v {
			f, err := toFloat(b)
			if err != nil {
				return a, fmt.Errorf("plugin_attr.prometheus.default_buckets: %w", err)
			}
			bs = append(bs, f)
		}
		a.DefaultBuckets = bs
	}
	return a, nil
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		return int(x), nil
	case string:
		return strconv.Atoi(x)
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

func toFloat(v any) (float64, error) {
	switch x := v.(type) {
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case string:
		return strconv.ParseFloat(x, 64)
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

// Exporter holds the metric families of one process and the cache of
// their labelled children. Recording is lock-free: the children are found
// in a sync.Map keyed by a small struct, and client_golang's counters and
// histograms are atomic.
type Exporter struct {
	reg       *prom.Registry
	status    *prom.CounterVec
	latency   *prom.HistogramVec
	bandwidth *prom.CounterVec

	children sync.Map // childKey -> *children

	requests atomic.Int64 // requests logged
	inflight atomic.Int64 // requests between before_proxy and log

	md atomic.Pointer[mdCache] // last parsed plugin_metadata
}

// NewExporter builds the metric families with the attr's prefix and
// buckets, registered in a fresh registry (never the global one).
func NewExporter(a Attr) (*Exporter, error) {
	e := &Exporter{reg: prom.NewRegistry()}
	p := a.MetricPrefix
	e.status = prom.NewCounterVec(prom.CounterOpts{Name: p + "http_status", Help: "HTTP status codes per service in APISIX"}, statusLabels)
	e.latency = prom.NewHistogramVec(prom.HistogramOpts{Name: p + "http_latency", Help: "HTTP request latency in milliseconds per service in APISIX",
		Buckets: a.DefaultBuckets}, latencyLabels)
	e.bandwidth = prom.NewCounterVec(prom.CounterOpts{Name: p + "bandwidth", Help: "Total bandwidth in bytes consumed per service in APISIX"}, latencyLabels)
	requests := prom.NewGaugeFunc(prom.GaugeOpts{Name: p + "http_requests_total", Help: "The total number of client requests since APISIX started"},
		func() float64 { return float64(e.requests.Load()) })
	hostname, _ := os.Hostname()
	nodeInfo := prom.NewGaugeVec(prom.GaugeOpts{Name: p + "node_info", Help: "Info of APISIX node"}, []string{"hostname", "version"})
	nodeInfo.WithLabelValues(hostname, version.APISIXVersion).Set(1)
	cs := []prom.Collector{e.status, e.latency, e.bandwidth, requests, nodeInfo}
	// nginx_http_current_connections is nginx's stub_status; the
	// approximation: active and writing are requests being proxied,
	// accepted and handled the requests logged, reading and waiting 0.
	conn := func(state string, f func() float64) prom.Collector {
		return prom.NewGaugeFunc(prom.GaugeOpts{Name: p + "nginx_http_current_connections", Help: "Number of HTTP connections",
			ConstLabels: prom.Labels{"state": state}}, f)
	}
	inflight := func() float64 { return float64(e.inflight.Load()) }
	total := func() float64 { return float64(e.requests.Load()) }
	zero := func() float64 { return 0 }
	cs = append(cs, conn("active", inflight), conn("writing", inflight), conn("accepted", total),
		conn("handled", total), conn("reading", zero), conn("waiting", zero))
	for _, c := range cs {
		if err := e.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metric: %w", err)
		}
	}
	return e, nil
}

// Registry returns the exporter's registry, e.g. for a gateway that
// serves the metrics on its own listener.
func (e *Exporter) Registry() *prom.Registry { return e.reg }

// Handler serves the metrics in the Prometheus text format.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
}

// ExporterFor returns the process-wide exporter stored in shared, creating
// it from attr (plugin_attr.prometheus) on first use.
func ExporterFor(shared *plugin.Shared, attr map[string]any) (*Exporter, error) {
	v := shared.LoadOrStore(sharedExporterKey, func() any {
		a, err := ParseAttr(attr)
		if err != nil {
			return err
		}
		e, err := NewExporter(a)
		if err != nil {
			return err
		}
		return e
	})
	switch x := v.(type) {
	case *Exporter:
		return x, nil
	case error:
		return nil, x
	}
	return nil, errors.New("prometheus: unexpected shared exporter")
}

// Server is the export server: export_uri on export_addr, 404 elsewhere.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	err  error
	done chan struct{}
}

// Addr returns the address the server listens on, or "" if it could not
// listen.
func (s *Server) Addr() string {
	if s == nil || s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Err returns the listen error, if the server could not start.
func (s *Server) Err() error {
	if s == nil {
		return nil
	}
	return s.err
}

// Close stops the server.
func (s *Server) Close() error {
	if s == nil || s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	<-s.done
	return err
}

// StartServer listens on a.ExportAddr and serves e's metrics on
// a.ExportURI. A listen error is returned and also kept in the Server.
func StartServer(e *Exporter, a Attr) (*Server, error) {
	mux := http.NewServeMux()
	h := e.Handler()
	uri := a.ExportURI
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != uri {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	s := &Server{done: make(chan struct{})}
	ln, err := net.Listen("tcp", a.ExportAddr)
	if err != nil {
		s.err = fmt.Errorf("prometheus export server: %w", err)
		close(s.done)
		return s, s.err
	}
	s.ln = ln
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// ensureServer starts the export server once per shared state. It is the
// plugin's stand-in for a gateway boot hook: the first build of a
// prometheus instance starts it.
func ensureServer(shared *plugin.Shared, e *Exporter, attr map[string]any) *Server {
	v := shared.LoadOrStore(sharedServerKey, func() any {
		a, err := ParseAttr(attr)
		if err != nil {
			return &Server{err: err, done: closedChan()}
		}
		if !a.EnableExportServer {
			return &Server{done: closedChan()}
		}
		s, _ := StartServer(e, a)
		return s
	})
	s, _ := v.(*Server)
	return s
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// EnsureServer returns the process-wide exporter and starts its export
// server (once per shared state) unless enable_export_server is false. The
// gateway should call it at boot when prometheus is enabled; until it does,
// the first build of a prometheus instance calls it.
func EnsureServer(shared *plugin.Shared, attr map[string]any) (*Exporter, *Server, error) {
	e, err := ExporterFor(shared, attr)
	if err != nil {
		return nil, nil, err
	}
	s := ensureServer(shared, e, attr)
	return e, s, s.Err()
}
