package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
)

// The decisions in this file are shared by the two forwarders, Forwarder
// (net/http transports) and the fast engine's upstream client, so that
// statuses, retries, error pages and upstream TLS defaults cannot drift
// apart. They are plain functions and a stack-allocated struct, not
// callbacks or interfaces: the fast engine calls them on a path that must
// not allocate.

// WithDefaults returns t with every zero (or negative) timeout replaced by
// nginx's default of 60 s.
func (t Timeouts) WithDefaults() Timeouts {
	t.Connect = orDefault(t.Connect, defaultTimeout)
	t.Send = orDefault(t.Send, defaultTimeout)
	t.Read = orDefault(t.Read, defaultTimeout)
	return t
}

// WithDefaults returns p with APISIX's defaults (320 idle connections,
// 60 s idle timeout) where p leaves them unset.
func (p Pool) WithDefaults() Pool {
	if p.Size <= 0 {
		p.Size = defaultPoolSize
	}
	p.IdleTimeout = orDefault(p.IdleTimeout, defaultPoolIdle)
	return p
}

// ServerName is the TLS server name for t: its SNI, else its Host (or,
// without one, its Addr) without the port.
func (t *Target) ServerName() string {
	if t.SNI != "" {
		return t.SNI
	}
	h := t.Host
	if h == "" {
		h = t.Addr
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// ClientTLS returns a TLS client config of its own for connections to t:
// a clone of t.TLS, or APISIX's default (the upstream certificate is not
// verified) when t has none, with ServerName set to serverName unless the
// config names one. Forwarders call it once per connection pool.
func (t *Target) ClientTLS(serverName string) *tls.Config {
	var cfg *tls.Config
	if t.TLS != nil {
		cfg = t.TLS.Clone()
	} else {
		cfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // APISIX default: no upstream verification
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	return cfg
}

// IsIdempotent reports whether a request with method m may be repeated on
// another node after it reached an upstream (nginx's
// proxy_next_upstream non_idempotent off).
func IsIdempotent(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// IsDialError reports whether err is a failure to connect: the request
// never reached the upstream, so even a non-idempotent one may be retried.
func IsDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// Classify maps an upstream error to the status nginx would answer and
// whether it is the kind proxy_next_upstream error/timeout retries:
// 499 once the client has gone (clientGone), 413 for a client body over
// the limit, 504 for timeouts (timedOut: the forwarder's own watchdog
// fired; network timeouts are found in err), otherwise 502.
func Classify(clientGone, timedOut bool, err error) (status int, retry bool) {
	if clientGone {
		return StatusClientClosed, false
	}
	if errors.Is(err, engine.ErrBodyTooLarge) {
		return http.StatusRequestEntityTooLarge, false
	}
	if timedOut {
		return http.StatusGatewayTimeout, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, true
	}
	return http.StatusBadGateway, true
}

// AttemptFailed classifies the error of an attempt that wrote nothing to
// the client (see Classify), records the status in c.UpstreamStatus (not
// a 499: no upstream answered) and reports whether the next node may be
// tried. sent counts the request body bytes taken from the client: they
// cannot be replayed, and a non-idempotent request that may have reached
// the upstream is not repeated (nginx).
func AttemptFailed(c *engine.Ctx, err error, clientGone, timedOut bool, sent int64, idempotent bool) (status int, retry bool) {
	status, retry = Classify(clientGone, timedOut, err)
	if status != StatusClientClosed {
		c.UpstreamStatus = append(c.UpstreamStatus, status)
	}
	if retry && (sent > 0 || !idempotent && !IsDialError(err)) {
		retry = false
	}
	return status, retry
}

// SetResponseHeaders adds what the gateway sets on an answer to a proxied
// request with status: X-APISIX-Upstream-Status listing the attempts'
// statuses (when there were any, and the status is a 5xx or
// opt.ShowUpstreamStatus asks for it always). Server is not set here:
// both engines set it on every response when the head is written.
func SetResponseHeaders(h engine.Header, c *engine.Ctx, status int, opt *Options) {
	if len(c.UpstreamStatus) > 0 && (status >= 500 || opt.ShowUpstreamStatus) {
		h["X-Apisix-Upstream-Status"] = []string{engine.FormatStatusList(c.UpstreamStatus)}
	}
}

// serverOf is the Server header value c's engine sends, for a head the
// forwarder writes itself (a WebSocket 101 on a hijacked connection).
func serverOf(c *engine.Ctx) []string {
	if c.ServerHeader != nil {
		return c.ServerHeader
	}
	return serverHeader
}

// ReplyError answers c with nginx's error page for status once forwarding
// has failed. Nothing is written when the client went away (499) or a
// before_proxy plugin has already answered.
func ReplyError(c *engine.Ctx, status int, opt *Options) {
	if status == StatusClientClosed || c.Status != 0 {
		return
	}
	SetResponseHeaders(c.W.Header(), c, status, opt)
	c.ReplyError(status)
}

// Retry runs the attempt loop both forwarders share: the node for each
// attempt, when to stop (opt.Retries further nodes, opt.RetryTimeout since
// the first attempt, a failure that must not be repeated, the client
// gone) and the error page at the end. Use a zero Retry with Options set,
// on the stack:
//
//	r := proxy.Retry{Options: opt}
//	for {
//		t, ok := r.Next(pick)
//		if !ok {
//			break
//		}
//		status, err, retry := attempt(&t)
//		if err == nil {
//			return status, nil
//		}
//		if !r.Failed(status, err, retry) {
//			break
//		}
//	}
//	return r.Reply(c)
type Retry struct {
	// Options are the route's forwarding settings.
	Options *Options
	n       int
	start   time.Time
	status  int
	err     error
}

// Next returns the target of the next attempt, or false when no attempt
// is left: the retries or the retry timeout are used up, or pick has no
// (more) node. With no node at all, Reply answers 503.
func (r *Retry) Next(pick Picker) (Target, bool) {
	n, opt := r.n, r.Options
	if n > 0 && (n > opt.Retries || opt.RetryTimeout > 0 && time.Since(r.start) > opt.RetryTimeout) {
		return Target{}, false
	}
	t, ok := pick(n)
	if !ok {
		if n == 0 {
			r.status, r.err = http.StatusServiceUnavailable, errNoTarget
		}
		return Target{}, false
	}
	if n == 0 && opt.RetryTimeout > 0 {
		r.start = time.Now()
	}
	r.n++
	return t, true
}

// Attempt is the 0-based number of the attempt Next last returned.
func (r *Retry) Attempt() int { return r.n - 1 }

// Failed records a failed attempt (its status, error and whether it may
// be retried) and reports whether to go on with Next.
func (r *Retry) Failed(status int, err error, retry bool) bool {
	r.status, r.err = status, err
	return retry && status != StatusClientClosed
}

// Reply ends a forward whose attempts all failed: it writes the error page
// for the last failure (ReplyError) and returns that status and error.
func (r *Retry) Reply(c *engine.Ctx) (int, error) {
	ReplyError(c, r.status, r.Options)
	return r.status, r.err
}
