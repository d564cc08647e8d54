package balancer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Checks mirrors an upstream's "checks" object. Decoding JSON into it fills
// APISIX's defaults for every absent field.
type Checks struct {
	Active  *Active  `json:"active,omitempty"`
	Passive *Passive `json:"passive,omitempty"`
}

// Active configures probes (checks.active).
type Active struct {
	// Type is http (default), https or tcp.
	Type string `json:"type,omitempty"`
	// Timeout is the probe timeout in seconds (default 1).
	Timeout float64 `json:"timeout,omitempty"`
	// Concurrency bounds parallel probes per round (default 10).
	Concurrency int `json:"concurrency,omitempty"`
	// Host is the probe's Host header and TLS server name (default: node host).
	Host string `json:"host,omitempty"`
	// Port overrides the probed port; status is still kept per node address.
	Port int `json:"port,omitempty"`
	// HTTPPath is the probe path (default "/").
	HTTPPath string `json:"http_path,omitempty"`
	// HTTPMethod is the probe method (default GET).
	HTTPMethod string `json:"http_method,omitempty"`
	// HTTPReqBody is sent with the probe.
	HTTPReqBody string `json:"http_req_body,omitempty"`
	// HTTPSVerifyCertificate verifies the node's certificate (default true).
	HTTPSVerifyCertificate *bool `json:"https_verify_certificate,omitempty"`
	// ReqHeaders are extra probe headers as "Name: value" strings.
	ReqHeaders []string        `json:"req_headers,omitempty"`
	Healthy    ActiveHealthy   `json:"healthy"`
	Unhealthy  ActiveUnhealthy `json:"unhealthy"`
}

// ActiveHealthy is checks.active.healthy.
type ActiveHealthy struct {
	// Interval between probes of healthy nodes, in seconds (default 1).
	Interval float64 `json:"interval,omitempty"`
	// HTTPStatuses count as success (default [200, 302]).
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	// Successes in a row that make a node healthy (default 2).
	Successes int `json:"successes,omitempty"`
}

// ActiveUnhealthy is checks.active.unhealthy.
type ActiveUnhealthy struct {
	// Interval between probes of unhealthy nodes, in seconds (default 1).
	Interval float64 `json:"interval,omitempty"`
	// HTTPStatuses count as failure (default [429,404,500,501,502,503,504,505]).
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	// HTTPFailures in a row that make a node unhealthy (default 5).
	HTTPFailures int `json:"http_failures,omitempty"`
	// TCPFailures in a row that make a node unhealthy (default 2).
	TCPFailures int `json:"tcp_failures,omitempty"`
	// Timeouts in a row that make a node unhealthy (default 3).
	Timeouts int `json:"timeouts,omitempty"`
}

// Passive configures how proxied responses are judged (checks.passive). A
// zero threshold disables its counter, as in APISIX, so Go code that builds a
// Passive by hand should start from DefaultPassive.
type Passive struct {
	// Type is http (default), https or tcp; tcp ignores status codes.
	Type      string           `json:"type,omitempty"`
	Healthy   PassiveHealthy   `json:"healthy"`
	Unhealthy PassiveUnhealthy `json:"unhealthy"`
}

// PassiveHealthy is checks.passive.healthy.
type PassiveHealthy struct {
	// HTTPStatuses count as success (default 200-208, 226, 300-308).
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	// Successes needed to become healthy (default 5; 0 disables).
	Successes int `json:"successes"`
}

// PassiveUnhealthy is checks.passive.unhealthy.
type PassiveUnhealthy struct {
	// HTTPStatuses count as failure (default [429, 500, 503]).
	HTTPStatuses []int `json:"http_statuses,omitempty"`
	// TCPFailures needed to become unhealthy (default 2; 0 disables).
	TCPFailures int `json:"tcp_failures"`
	// Timeouts needed to become unhealthy (default 7; 0 disables).
	Timeouts int `json:"timeouts"`
	// HTTPFailures needed to become unhealthy (default 5; 0 disables).
	HTTPFailures int `json:"http_failures"`
}

// DefaultActive returns checks.active with APISIX's defaults.
func DefaultActive() Active {
	verify := true
	return Active{
		Type: "http", Timeout: 1, Concurrency: 10, HTTPPath: "/", HTTPMethod: http.MethodGet,
		HTTPSVerifyCertificate: &verify,
		Healthy:                ActiveHealthy{Interval: 1, HTTPStatuses: []int{200, 302}, Successes: 2},
		Unhealthy: ActiveUnhealthy{Interval: 1, HTTPStatuses: []int{429, 404, 500, 501, 502, 503, 504, 505},
			HTTPFailures: 5, TCPFailures: 2, Timeouts: 3},
	}
}

// DefaultPassive returns checks.passive with APISIX's defaults.
func DefaultPassive() Passive {
	return Passive{
		Type: "http",
		Healthy: PassiveHealthy{HTTPStatuses: []int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
			300, 301, 302, 303, 304, 305, 306, 307, 308}, Successes: 5},
		Unhealthy: PassiveUnhealthy{HTTPStatuses: []int{429, 500, 503}, TCPFailures: 2, Timeouts: 7, HTTPFailures: 5},
	}
}

// UnmarshalJSON decodes over the defaults so absent fields take APISIX's
// values while explicit ones (including zeros) are kept.
func (a *Active) UnmarshalJSON(data []byte) error {
	type plain Active
	d := plain(DefaultActive())
	d.Healthy.HTTPStatuses, d.Unhealthy.HTTPStatuses = nil, nil
	if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	*a = Active(d)
	a.fill()
	return nil
}

// UnmarshalJSON decodes over the defaults; see Active.UnmarshalJSON.
func (p *Passive) UnmarshalJSON(data []byte) error {
	type plain Passive
	d := plain(DefaultPassive())
	d.Healthy.HTTPStatuses, d.Unhealthy.HTTPStatuses = nil, nil
	if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	*p = Passive(d)
	def := DefaultPassive()
	if p.Healthy.HTTPStatuses == nil {
		p.Healthy.HTTPStatuses = def.Healthy.HTTPStatuses
	}
	if p.Unhealthy.HTTPStatuses == nil {
		p.Unhealthy.HTTPStatuses = def.Unhealthy.HTTPStatuses
	}
	return nil
}

// fill replaces zero values with defaults; every active threshold has a
// schema minimum of 1, so zero can only mean "not set".
func (a *Active) fill() {
	d := DefaultActive()
	if a.Type == "" {
		a.Type = d.Type
	}
	if a.Timeout <= 0 {
		a.Timeout = d.Timeout
	}
	if a.Concurrency <= 0 {
		a.Concurrency = d.Concurrency
	}
	if a.HTTPPath == "" {
		a.HTTPPath = d.HTTPPath
	}
	if a.HTTPMethod == "" {
		a.HTTPMethod = d.HTTPMethod
	}
	if a.HTTPSVerifyCertificate == nil {
		a.HTTPSVerifyCertificate = d.HTTPSVerifyCertificate
	}
	if a.Healthy.Interval <= 0 {
		a.Healthy.Interval = d.Healthy.Interval
	}
	if a.Healthy.HTTPStatuses == nil {
		a.Healthy.HTTPStatuses = d.Healthy.HTTPStatuses
	}
	if a.Healthy.Successes <= 0 {
		a.Healthy.Successes = d.Healthy.Successes
	}
	if a.Unhealthy.Interval <= 0 {
		a.Unhealthy.Interval = d.Unhealthy.Interval
	}
	if a.Unhealthy.HTTPStatuses == nil {
		a.Unhealthy.HTTPStatuses = d.Unhealthy.HTTPStatuses
	}
	if a.Unhealthy.HTTPFailures <= 0 {
		a.Unhealthy.HTTPFailures = d.Unhealthy.HTTPFailures
	}
	if a.Unhealthy.TCPFailures <= 0 {
		a.Unhealthy.TCPFailures = d.Unhealthy.TCPFailures
	}
	if a.Unhealthy.Timeouts <= 0 {
		a.Unhealthy.Timeouts = d.Unhealthy.Timeouts
	}
}

// Health states as lua-resty-healthcheck names them. mostly_healthy is a
// healthy node that has started failing; mostly_unhealthy is an unhealthy
// node that has started succeeding. Both keep their base verdict.
const (
	StateHealthy         = "healthy"
	StateUnhealthy       = "unhealthy"
	StateMostlyHealthy   = "mostly_healthy"
	StateMostlyUnhealthy = "mostly_unhealthy"
)

var stateNames = [4]string{StateHealthy, StateUnhealthy, StateMostlyHealthy, StateMostlyUnhealthy}

const (
	stHealthy uint64 = iota
	stUnhealthy
	stMostlyHealthy
	stMostlyUnhealthy
)

func isHealthyState(st uint64) bool { return st == stHealthy || st == stMostlyHealthy }

// Counter slots in the packed target state, one byte each as in
// lua-resty-healthcheck's shm multi-counter. A success clears the failure
// counters and any failure clears the success counter.
const (
	ctrSuccess = 0
	ctrHTTP    = 8
	ctrTCP     = 16
	ctrTimeout = 24
	stateShift = 32

	maskSuccess = uint64(0xff)
	maskFailure = uint64(0xffffff00)
)

// NodeStatus is one node's health for a status endpoint.
type NodeStatus struct {
	Addr  string `json:"addr"`
	Host  string `json:"host"`
	Port  int    `json:"port"`
	State string `json:"status"`
	// Counters are the consecutive outcomes counted toward the next change.
	Counters Counters `json:"counter"`
}

// Counters mirrors the Control API's counter object.
type Counters struct {
	Success        int `json:"success"`
	HTTPFailure    int `json:"http_failure"`
	TCPFailure     int `json:"tcp_failure"`
	TimeoutFailure int `json:"timeout_failure"`
}

type target struct {
	node       Node
	client     *http.Client // per target for https, so SNI follows hostHeader
	probeAddr  string
	hostHeader string
	// state packs four 8-bit counters and the state so a report is one CAS.
	state atomic.Uint64
}

// statusSet is a bitmap over HTTP status codes 0..639.
type statusSet [10]uint64

func newStatusSet(codes []int) statusSet {
	var s statusSet
	for _, c := range codes {
		if c >= 0 && c < 640 {
			s[c/64] |= 1 << (c % 64)
		}
	}
	return s
}

func (s *statusSet) has(c int) bool { return c >= 0 && c < 640 && s[c/64]&(1<<(c%64)) != 0 }

// Checker runs active and passive health checks for one upstream's nodes and
// implements VersionedHealthView for its Balancer. Healthy and Report take no
// lock.
type Checker struct {
	logger  *slog.Logger
	active  *Active
	passive *Passive
	targets []*target
	byAddr  map[string]*target
	version atomic.Uint64

	aHealthy, aUnhealthy statusSet
	pHealthy, pUnhealthy statusSet
	headers              http.Header
	client               *http.Client

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewChecker prepares a checker for nodes. Nodes start healthy. With no
// active section nothing is probed; with no passive section Report is a
// no-op. Nodes sharing an address share one target.
func NewChecker(nodes []Node, c Checks, logger *slog.Logger) *Checker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ck := &Checker{logger: logger, byAddr: make(map[string]*target, len(nodes))}
	if c.Active != nil {
		a := *c.Active
		a.fill()
		ck.active = &a
		ck.aHealthy = newStatusSet(a.Healthy.HTTPStatuses)
		ck.aUnhealthy = newStatusSet(a.Unhealthy.HTTPStatuses)
		ck.headers = make(http.Header)
		for _, h := range a.ReqHeaders {
			name, value, ok := strings.Cut(h, ":")
			if ok && strings.TrimSpace(name) != "" {
				ck.headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
			}
		}
		ck.client = ck.newClient("")
	}
	if c.Passive != nil {
		p := *c.Passive
		ck.passive = &p
		ck.pHealthy = newStatusSet(p.Healthy.HTTPStatuses)
		ck.pUnhealthy = newStatusSet(p.Unhealthy.HTTPStatuses)
	}
	for _, n := range nodes {
		if n.Addr == "" {
			n.Addr = joinHostPort(n.Host, n.Port)
		}
		if _, dup := ck.byAddr[n.Addr]; dup {
			continue
		}
		t := &target{node: n, probeAddr: n.Addr, hostHeader: strings.Trim(n.Host, "[]")}
		if ck.active != nil {
			if ck.active.Port > 0 {
				t.probeAddr = joinHostPort(n.Host, ck.active.Port)
			}
			if ck.active.Host != "" {
				t.hostHeader = ck.active.Host
			}
			t.client = ck.client
			if ck.active.Type == "https" {
				t.client = ck.newClient(t.hostHeader)
			}
		}
		ck.targets = append(ck.targets, t)
		ck.byAddr[n.Addr] = t
	}
	return ck
}

// newClient builds the probe client. Probes never reuse connections, as
// lua-resty-healthcheck sends "Connection: close".
func (c *Checker) newClient(serverName string) *http.Client {
	a := c.active
	return &http.Client{
		Timeout: time.Duration(a.Timeout * float64(time.Second)),
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				ServerName:         serverName,
				InsecureSkipVerify: !*a.HTTPSVerifyCertificate, //nolint:gosec // the user's https_verify_certificate
			},
		},
		// A redirect is a status to judge, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Healthy reports whether addr may receive traffic. Unknown addresses are
// healthy: the checker only ever excludes nodes it has evidence against.
func (c *Checker) Healthy(addr string) bool {
	t := c.byAddr[addr]
	return t == nil || isHealthyState(t.state.Load()>>stateShift)
}

// HealthVersion changes whenever a node's healthy/unhealthy verdict flips.
func (c *Checker) HealthVersion() uint64 { return c.version.Load() }

// Start launches the active probe loops; it returns at once. Probes of
// healthy nodes run every healthy.interval and of unhealthy nodes every
// unhealthy.interval, the first ones an interval after Start. Calling Start
// on a running checker does nothing.
func (c *Checker) Start(ctx context.Context) {
	if c.active == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return
	}
	ctx, c.cancel = context.WithCancel(ctx)
	loop := func(interval float64, healthy bool) {
		defer c.wg.Done()
		tick := time.NewTicker(time.Duration(interval * float64(time.Second)))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				c.round(ctx, healthy)
			}
		}
	}
	c.wg.Add(2)
	go loop(c.active.Healthy.Interval, true)
	go loop(c.active.Unhealthy.Interval, false)
}

// Stop ends the probe loops and waits for in-flight probes.
func (c *Checker) Stop() {
	c.mu.Lock()
	cancel := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	c.wg.Wait()
	for _, t := range c.targets {
		t.client.CloseIdleConnections()
	}
}

// round probes every target whose verdict matches healthy, at most
// concurrency at a time.
func (c *Checker) round(ctx context.Context, healthy bool) {
	var work []*target
	for _, t := range c.targets {
		if isHealthyState(t.state.Load()>>stateShift) == healthy {
			work = append(work, t)
		}
	}
	if len(work) == 0 {
		return
	}
	ch := make(chan *target)
	var wg sync.WaitGroup
	for range min(c.active.Concurrency, len(work)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range ch {
				c.probe(ctx, t)
			}
		}()
	}
	for _, t := range work {
		ch <- t
	}
	close(ch)
	wg.Wait()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// probe runs one active check and records its outcome.
func (c *Checker) probe(ctx context.Context, t *target) {
	a := c.active
	timeout := time.Duration(a.Timeout * float64(time.Second))
	if a.Type == "tcp" {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, "tcp", t.probeAddr)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			conn.Close()
			c.incr(t, true, a.Healthy.Successes, ctrSuccess)
		case isTimeout(err):
			c.incr(t, false, a.Unhealthy.Timeouts, ctrTimeout)
		default:
			c.incr(t, false, a.Unhealthy.TCPFailures, ctrTCP)
		}
		return
	}
	scheme := "http"
	if a.Type == "https" {
		scheme = "https"
	}
	var body io.Reader
	if a.HTTPReqBody != "" {
		body = strings.NewReader(a.HTTPReqBody)
	}
	path := a.HTTPPath
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, a.HTTPMethod, scheme+"://"+t.probeAddr+path, body)
	if err != nil {
		c.logger.Error("health check: bad probe request", "addr", t.node.Addr, "err", err)
		return
	}
	req.Close = true
	req.Host = t.hostHeader
	for k, v := range c.headers {
		req.Header[k] = v
	}
	resp, err := t.client.Do(req)
	if ctx.Err() != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return
	}
	if err != nil {
		switch {
		case isTimeout(err):
			c.incr(t, false, a.Unhealthy.Timeouts, ctrTimeout)
		case strings.Contains(err.Error(), "malformed HTTP"):
			// A bad status line is reported as HTTP status 0: an HTTP failure.
			c.incr(t, false, a.Unhealthy.HTTPFailures, ctrHTTP)
		default:
			c.incr(t, false, a.Unhealthy.TCPFailures, ctrTCP)
		}
		return
	}
	resp.Body.Close()
	switch {
	case c.aHealthy.has(resp.StatusCode):
		c.incr(t, true, a.Healthy.Successes, ctrSuccess)
	case c.aUnhealthy.has(resp.StatusCode):
		c.incr(t, false, a.Unhealthy.HTTPFailures, ctrHTTP)
	}
}

// Report records the outcome of a proxied attempt (passive check): timeout
// and connErr count toward timeouts and tcp_failures, otherwise status is
// judged against the passive status lists (statuses in neither are ignored).
func (c *Checker) Report(addr string, status int, connErr, timeout bool) {
	p := c.passive
	t := c.byAddr[addr]
	if p == nil || t == nil {
		return
	}
	switch {
	case timeout:
		c.incr(t, false, p.Unhealthy.Timeouts, ctrTimeout)
	case connErr:
		c.incr(t, false, p.Unhealthy.TCPFailures, ctrTCP)
	case p.Type == "tcp":
		c.incr(t, true, p.Healthy.Successes, ctrSuccess)
	case c.pHealthy.has(status):
		c.incr(t, true, p.Healthy.Successes, ctrSuccess)
	case c.pUnhealthy.has(status) || status == 0:
		c.incr(t, false, p.Unhealthy.HTTPFailures, ctrHTTP)
	}
}

// incr applies one outcome the way lua-resty-healthcheck's incr_counter does:
// a zero limit disables the counter; an outcome matching a fully healthy (or
// fully unhealthy) state is not counted; reaching the limit switches the
// state, otherwise a first contrary outcome makes it mostly_*.
func (c *Checker) incr(t *target, success bool, limit int, slot uint) {
	if limit <= 0 {
		return
	}
	for {
		old := t.state.Load()
		cur := old >> stateShift
		if (success && cur == stHealthy) || (!success && cur == stUnhealthy) {
			return
		}
		ctr := min((old>>slot)&0xff+1, 0xff)
		counters := old&^(0xff<<slot) | ctr<<slot
		if success {
			counters &= maskSuccess
		} else {
			counters &= maskFailure
		}
		next := cur
		switch {
		case ctr >= uint64(limit) && success:
			next = stHealthy
		case ctr >= uint64(limit):
			next = stUnhealthy
		case cur == stHealthy && counters&maskFailure != 0:
			next = stMostlyHealthy
		case cur == stUnhealthy && counters&maskSuccess != 0:
			next = stMostlyUnhealthy
		}
		if !t.state.CompareAndSwap(old, next<<stateShift|counters&0xffffffff) {
			continue
		}
		if isHealthyState(cur) != isHealthyState(next) {
			c.version.Add(1)
			c.logger.Warn("upstream node health changed", "addr", t.node.Addr,
				"from", stateNames[cur], "to", stateNames[next])
		}
		return
	}
}

// Status lists every node's state, in node order.
func (c *Checker) Status() []NodeStatus {
	out := make([]NodeStatus, 0, len(c.targets))
	for _, t := range c.targets {
		v := t.state.Load()
		out = append(out, NodeStatus{
			Addr: t.node.Addr, Host: t.node.Host, Port: t.node.Port,
			State: stateNames[v>>stateShift&3],
			Counters: Counters{
				Success:        int(v >> ctrSuccess & 0xff),
				HTTPFailure:    int(v >> ctrHTTP & 0xff),
				TCPFailure:     int(v >> ctrTCP & 0xff),
				TimeoutFailure: int(v >> ctrTimeout & 0xff),
			},
		})
	}
	return out
}

// String is a compact form of a status for logs and test failures.
func (s NodeStatus) String() string {
	return s.Addr + "=" + s.State + "(" + strconv.Itoa(s.Counters.Success) + "/" +
		strconv.Itoa(s.Counters.HTTPFailure) + "/" + strconv.Itoa(s.Counters.TCPFailure) + "/" +
		strconv.Itoa(s.Counters.TimeoutFailure) + ")"
}
