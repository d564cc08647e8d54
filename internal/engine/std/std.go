// Package std is the net/http engine: HTTP/1.1, HTTP/2 over TLS (ALPN) and
// optionally h2c, with the framing checks net/http leaves out. It is the
// reference engine; it adapts net/http requests into pooled engine.Ctx
// values and never exposes net/http types to the handler.
package std

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/version"
)

// Limits bounds what one client can make the server hold.
//
// DefaultLimits follows hardening.md's proposed gateway defaults:
//
//	field                 default   why
//	MaxHeaderBytes        64 KiB    Envoy 60 KiB, nginx 4x8 KiB; Go's 1 MiB invites memory abuse (431 above)
//	MaxRequestLine        8 KiB     nginx large_client_header_buffers (414 above)
//	MaxHeaderCount        100       Envoy/HAProxy ~100; Go has no cap (431 above)
//	ReadHeaderTimeout     10 s      slowloris; Go's default is none
//	ReadTimeout           0         whole-body deadline would cut long uploads; proxy send timeout governs
//	WriteTimeout          0         would cut SSE/long downloads; proxy read timeout governs
//	IdleTimeout           60 s      APISIX keepalive_timeout
//	MaxBodyBytes          0         APISIX client_max_body_size 0 (unlimited); routes set their own
//	MaxConcurrentStreams  100       HTTP/2 streams per connection (Go 250, nginx 128)
type Limits struct {
	// MaxHeaderBytes caps the request line plus headers (net/http's check).
	MaxHeaderBytes int
	// MaxRequestLine caps the request line; longer ones get 414. 0 = off.
	MaxRequestLine int
	// MaxHeaderCount caps header lines per request; more get 431. 0 = off.
	MaxHeaderCount int
	// ReadHeaderTimeout bounds reading a request's header block.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request including its body.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// MaxBodyBytes caps request bodies (413); 0 means unlimited.
	MaxBodyBytes int64
	// MaxConcurrentStreams caps concurrent HTTP/2 streams per connection.
	MaxConcurrentStreams uint32
	// AllowBareLF accepts header lines ending in LF alone (RFC 9112 §2.2
	// MAY, nginx accepts them); by default they get 400.
	AllowBareLF bool
	// Server is the Server header value of every response; "" means
	// version.Server ("APISIX/<version>"). apisix.enable_server_tokens:
	// false sets it to "APISIX".
	Server string
}

// ServerHeader returns the Server header value lim asks for, as a shared
// one-element slice (never mutated).
func (lim *Limits) ServerHeader() []string {
	if lim.Server == "" {
		return []string{version.Server}
	}
	return []string{lim.Server}
}

// DefaultLimits returns the defaults documented on Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxHeaderBytes:       64 << 10,
		MaxRequestLine:       8 << 10,
		MaxHeaderCount:       100,
		ReadHeaderTimeout:    10 * time.Second,
		IdleTimeout:          60 * time.Second,
		MaxConcurrentStreams: 100,
	}
}

// Option configures a Server.
type Option func(*Server)

// WithH2C accepts HTTP/2 with prior knowledge on cleartext listeners
// (gRPC without TLS).
func WithH2C() Option { return func(s *Server) { s.h2c = true } }

// Server serves HTTP on listeners with net/http and hands each request to
// an engine.Handler.
type Server struct {
	h      engine.Handler
	lim    Limits
	logger *slog.Logger
	server []string // the Server header value (Limits.Server)
	srv    *http.Server
	h2c    bool
	pool   sync.Pool // *reqState
	jobs   sync.Pool // *h2Job
	// h2jobs hands HTTP/2 requests to idle workers (serveOnWorker).
	h2jobs chan *h2Job
	// quit ends idle workers at Shutdown.
	quit     chan struct{}
	quitOnce sync.Once

	mu  sync.Mutex
	lns []net.Listener
}

type connKey struct{}

// New returns a Server for h.
func New(h engine.Handler, lim Limits, logger *slog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{h: h, lim: lim, logger: logger, server: lim.ServerHeader()}
	for _, o := range opts {
		o(s)
	}
	s.pool.New = func() any { return new(reqState) }
	s.jobs.New = func() any { return &h2Job{done: make(chan any, 1)} }
	s.h2jobs = make(chan *h2Job)
	s.quit = make(chan struct{})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(s.h2c)
	s.srv = &http.Server{
		Handler:           s,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		Protocols:         &protos,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          int(lim.MaxConcurrentStreams),
			MaxReceiveBufferPerStream:     64 << 10,
			MaxReceiveBufferPerConnection: 1 << 20,
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if sc, ok := c.(*sniffConn); ok {
				return context.WithValue(ctx, connKey{}, sc)
			}
			return ctx
		},
	}
	return s
}

// Serve accepts cleartext HTTP/1.1 (and h2c with WithH2C) on ln until
// Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(&plainListener{Listener: ln, lim: &s.lim})
}

// ServeTLS accepts TLS on ln and serves HTTP/2 or HTTP/1.1 as negotiated by
// ALPN. cfg is the gateway's (GetCertificate by SNI); its NextProtos default
// to h2 and http/1.1.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	cfg = cfg.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	hs := s.lim.ReadHeaderTimeout
	if hs <= 0 {
		hs = 10 * time.Second
	}
	return s.serve(newTLSListener(ln, cfg, hs, &s.lim, s.logger))
}

func (s *Server) serve(ln net.Listener) error {
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, closes idle connections and waits for in-flight
// requests until ctx ends. Hijacked connections (WebSocket tunnels) are not
// waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.quitOnce.Do(func() { close(s.quit) })
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// plainListener wraps accepted cleartext connections in the framing checker.
type plainListener struct {
	net.Listener
	lim *Limits
}

func (l *plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newSniffConn(c, nil, l.lim), nil
}

// tlsListener does the TLS handshake itself, off the accept loop, so that
// HTTP/1.1-over-TLS connections can be wrapped in the framing checker (a
// wrapped conn is no longer a *tls.Conn, so net/http would otherwise skip
// ALPN). h2 connections go to net/http as *tls.Conn unchanged.
type tlsListener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
	lim     *Limits
	logger  *slog.Logger
	conns   chan net.Conn
	errc    chan error
	done    chan struct{}
	once    sync.Once
}

func newTLSListener(ln net.Listener, cfg *tls.Config, timeout time.Duration, lim *Limits, logger *slog.Logger) *tlsListener {
	l := &tlsListener{Listener: ln, cfg: cfg, timeout: timeout, lim: lim, logger: logger,
		conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *tlsListener) acceptLoop() {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		go l.handshake(raw)
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	tc := tls.Server(raw, l.cfg)
	_ = raw.SetDeadline(time.Now().Add(l.timeout))
	if err := tc.Handshake(); err != nil {
		l.logger.Debug("tls handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		_ = raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	var c net.Conn = tc
	if st := tc.ConnectionState(); st.NegotiatedProtocol != "h2" {
		c = newSniffConn(tc, &st, l.lim)
	}
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
