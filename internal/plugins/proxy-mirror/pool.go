package proxymirror

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the mirror pool.
const (
	// DefaultMaxBody bounds the request body copied to the mirror; a
	// request with a larger body is not mirrored.
	DefaultMaxBody = 1 << 20
	// DefaultQueue is how many mirror requests may wait; more are dropped.
	DefaultQueue = 1024
	// DefaultWorkers is the most mirror requests in flight at once.
	DefaultWorkers = 32
	// DefaultTimeout is APISIX's mirror timeout (connect, send, read).
	DefaultTimeout = 60 * time.Second
	// workerIdle is how long an idle worker waits before it exits.
	workerIdle = 30 * time.Second
)

// Timeouts are plugin_attr.proxy-mirror.timeout.
type Timeouts struct {
	Connect, Send, Read time.Duration
}

// ParseTimeouts reads plugin_attr.proxy-mirror.timeout (nginx time
// strings such as "60s", "500ms", "1m", or numbers of seconds).
func ParseTimeouts(attr map[string]any) (Timeouts, error) {
	t := Timeouts{Connect: DefaultTimeout, Send: DefaultTimeout, Read: DefaultTimeout}
	m, _ := attr["timeout"].(map[string]any)
	for name, dst := range map[string]*time.Duration{"connect": &t.Connect, "send": &t.Send, "read": &t.Read} {
		v, ok := m[name]
		if !ok {
			continue
		}
		d, err := parseNginxTime(v)
		if err != nil {
			return t, fmt.Errorf("plugin_attr.proxy-mirror.timeout.%s: %w", name, err)
		}
		*dst = d
	}
	return t, nil
}

// maxTime bounds configured timeouts so that conversions cannot overflow.
const maxTime = 24 * time.Hour

func parseNginxTime(v any) (time.Duration, error) {
	d, err := parseNginxTimeRaw(v)
	if err != nil {
		return 0, err
	}
	if d < 0 || d > maxTime {
		return 0, fmt.Errorf("invalid time %v: out of range", v)
	}
	return d, nil
}

func parseNginxTimeRaw(v any) (time.Duration, error) {
	within := func(f float64, unit time.Duration) (time.Duration, error) {
		if f < 0 || f > float64(maxTime)/float64(unit) {
			return 0, fmt.Errorf("invalid time %v: out of range", v)
		}
		return time.Duration(f * float64(unit)), nil
	}
	switch x := v.(type) {
	case int:
		return within(float64(x), time.Second)
	case float64:
		return within(x, time.Second)
	case string:
		s := strings.TrimSpace(x)
		for _, u := range []struct {
			suffix string
			unit   time.Duration
		}{{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
			if n, ok := strings.CutSuffix(s, u.suffix); ok {
				f, err := strconv.ParseFloat(n, 64)
				if err != nil {
					return 0, fmt.Errorf("invalid time %q", x)
				}
				return within(f, u.unit)
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid time %q", x)
		}
		return within(f, time.Second)
	}
	return 0, fmt.Errorf("invalid time %v", v)
}

// PoolConfig sizes a Pool; zero fields take the defaults.
type PoolConfig struct {
	Timeouts Timeouts
	MaxBody  int64
	Queue    int
	Workers  int
}

// Job is one mirror request.
type Job struct {
	Method, URL, Host string
	Header            map[string][]string
	Body              []byte
	GRPC              bool
}

// Pool sends mirror requests from a bounded queue with a bounded number of
// workers; workers start on demand and exit when idle. Submit never
// blocks: a full queue drops the mirror.
type Pool struct {
	cfg     PoolConfig
	jobs    chan *Job
	workers atomic.Int32
	http    *http.Client
	grpc    *http.Client

	sent, failed, dropped atomic.Int64
}

// NewPool builds a pool.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	t := cfg.Timeouts
	if t.Connect <= 0 {
		t.Connect = DefaultTimeout
	}
	if t.Send <= 0 {
		t.Send = DefaultTimeout
	}
	if t.Read <= 0 {
		t.Read = DefaultTimeout
	}
	cfg.Timeouts = t
	dialer := &net.Dialer{Timeout: t.Connect}
	// nginx does not verify upstream certificates unless told to
	// (proxy_ssl_verify off), and the mirror location does not.
	tlsConf := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // nginx's proxy_ssl_verify default
	mk := func(protos *http.Protocols) *http.Client {
		return &http.Client{
			Transport: &http.Transport{
				DialContext: dialer.DialContext, TLSClientConfig: tlsConf, Protocols: protos,
				ResponseHeaderTimeout: t.Send + t.Read, MaxIdleConnsPerHost: cfg.Workers, IdleConnTimeout: 60 * time.Second,
			},
			// A mirror never follows redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetUnencryptedHTTP2(true)
	h2.SetHTTP2(true)
	return &Pool{cfg: cfg, jobs: make(chan *Job, cfg.Queue), http: mk(&h1), grpc: mk(&h2)}
}

// Submit queues j, starting a worker if fewer than the maximum run. It
// reports false when the queue is full and j was dropped.
func (p *Pool) Submit(j *Job) bool {
	select {
	case p.jobs <- j:
	default:
		p.dropped.Add(1)
		return false
	}
	for {
		n := p.workers.Load()
		if int(n) >= p.cfg.Workers {
			return true
		}
		if p.workers.CompareAndSwap(n, n+1) {
			go p.work()
			return true
		}
	}
}

// work sends queued mirrors until it has been idle for workerIdle.
func (p *Pool) work() {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case j := <-p.jobs:
			p.send(j)
			idle.Reset(workerIdle)
		case <-idle.C:
			p.workers.Add(-1)
			// A job queued while this worker was deciding to exit, when
			// the pool looked full, must still find a worker.
			if len(p.jobs) == 0 {
				return
			}
			if n := p.workers.Add(1); int(n) > p.cfg.Workers {
				p.workers.Add(-1)
				return
			}
			idle.Reset(workerIdle)
		}
	}
}

// send makes one mirror request and discards the response.
func (p *Pool) send(j *Job) {
	t := p.cfg.Timeouts
	ctx, cancel := context.WithTimeout(context.Background(), t.Connect+t.Send+t.Read)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, j.Method, j.URL, bytes.NewReader(j.Body))
	if err != nil {
		p.failed.Add(1)
		return
	}
	req.Header = http.Header(j.Header)
	req.Host = j.Host
	req.ContentLength = int64(len(j.Body))
	if len(j.Body) == 0 {
		req.Body = http.NoBody
	}
	c := p.http
	if j.GRPC {
		c = p.grpc
	}
	resp, err := c.Do(req)
	if err != nil {
		p.failed.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	p.sent.Add(1)
}

// Stats reports mirrors sent, failed (transport errors) and dropped
// (queue full or body too large).
func (p *Pool) Stats() (sent, failed, dropped int64) {
	return p.sent.Load(), p.failed.Load(), p.dropped.Load()
}

// tee copies the request body into the mirror job as the main request
// reads it; at EOF the job is submitted. A body that grows past the limit,
// fails, or is closed before EOF is not mirrored.
type tee struct {
	rc    io.ReadCloser
	want  int64 // declared length, -1 unknown
	job   *Job
	pool  *Pool
	buf   bytes.Buffer
	state atomic.Int32 // 0 copying, 1 submitted, 2 abandoned
	mu    sync.Mutex   // Read and Close may come from different goroutines
}

func newTee(rc io.ReadCloser, want int64, j *Job, p *Pool) *tee {
	return &tee{rc: rc, want: want, job: j, pool: p}
}

// complete reports whether the whole body was copied: EOF, or as many
// bytes as declared (the proxy may stop reading there).
func (t *tee) complete(err error) bool {
	return err == io.EOF || (t.want > 0 && int64(t.buf.Len()) == t.want)
}

func (t *tee) submit() {
	t.state.Store(1)
	t.job.Body = t.buf.Bytes()
	t.pool.Submit(t.job)
}

func (t *tee) Read(b []byte) (int, error) {
	n, err := t.rc.Read(b)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state.Load() == 0 {
		if n > 0 {
			if int64(t.buf.Len()+n) > t.pool.cfg.MaxBody {
				t.abandon()
			} else {
				t.buf.Write(b[:n])
			}
		}
		if t.state.Load() == 0 {
			switch {
			case t.complete(err):
				t.submit()
			case err != nil:
				t.abandon()
			}
		}
	}
	return n, err
}

func (t *tee) abandon() {
	t.state.Store(2)
	t.buf = bytes.Buffer{}
	t.pool.dropped.Add(1)
}

func (t *tee) Close() error {
	t.mu.Lock()
	if t.state.Load() == 0 {
		if t.complete(nil) {
			t.submit()
		} else {
			t.abandon()
		}
	}
	t.mu.Unlock()
	return t.rc.Close()
}
