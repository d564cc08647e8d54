package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/internal/balancer"
)

// Options configure a Server.
type Options struct {
	// Logger receives connection errors; nil discards them.
	Logger *slog.Logger
	// Table returns the current route table. It is called once per TCP
	// connection and once per new UDP session, so a configuration change
	// applies to new connections while established ones keep going.
	Table func() *Table
	// TLS serves the TCP listeners started with tls (certificates by SNI).
	// Nil refuses those connections.
	TLS *tls.Config
	// BufferSize is the copy buffer per direction of a TCP session
	// (default 16 KiB, nginx's proxy_buffer_size).
	BufferSize int
	// HandshakeTimeout bounds the TLS handshake on tls listeners (default
	// 60 s, nginx's ssl_handshake_timeout).
	HandshakeTimeout time.Duration
	// MaxUDPSessions caps the UDP sessions per listener; datagrams from
	// new clients beyond it are dropped (default 10,000).
	MaxUDPSessions int
	// Resolve names an upstream node's host (the gateway's TTL-caching
	// resolver, as for HTTP upstreams); nil, or a failure, leaves it to
	// the dialer's own lookup.
	Resolve func(ctx context.Context, host string) (netip.Addr, error)
}

// Server proxies stream connections. One Server serves any number of
// listeners; Shutdown stops them all.
type Server struct {
	opt    Options
	log    *slog.Logger
	dialer net.Dialer
	bufs   sync.Pool // *[]byte of opt.BufferSize

	// ctx ends when Shutdown gives up waiting: dials in progress stop.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	listeners map[io.Closer]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup // connections and UDP sessions
}

// ErrServerClosed is returned by the Serve methods after Shutdown.
var ErrServerClosed = errors.New("stream: server closed")

// New returns a Server; start it with ServeTCP and ServeUDP.
func New(opt Options) *Server {
	if opt.BufferSize <= 0 {
		opt.BufferSize = 16 << 10
	}
	if opt.HandshakeTimeout <= 0 {
		opt.HandshakeTimeout = 60 * time.Second
	}
	if opt.MaxUDPSessions <= 0 {
		opt.MaxUDPSessions = 10000
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opt: opt, log: log, listeners: map[io.Closer]struct{}{}, conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	size := opt.BufferSize
	s.bufs.New = func() any { b := make([]byte, size); return &b }
	return s
}

// track registers a listener; false means the server is shutting down.
func (s *Server) track(l io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrack(l io.Closer) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

// addConn registers a session's connection so that a forced shutdown can
// close it; false means the server is shutting down.
func (s *Server) addConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) doneConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// ServeTCP accepts connections on ln until ln fails or Shutdown is called
// (then it returns ErrServerClosed). useTLS terminates TLS first, which
// also makes the client's SNI available to the routes.
func (s *Server) ServeTCP(ln net.Listener, useTLS bool) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of file descriptors or similar: back off as
				// net/http does instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("stream accept failed; retrying", "addr", ln.Addr().String(), "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("stream accept: %w", err)
		}
		delay = 0
		if !s.addConn(c) {
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.doneConn(c)
			s.handle(c, useTLS)
		}()
	}
}

// handle serves one TCP connection from accept to close.
func (s *Server) handle(c net.Conn, useTLS bool) {
	defer c.Close()
	local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	var sni string
	if useTLS {
		if s.opt.TLS == nil {
			return
		}
		tc := tls.Server(c, s.opt.TLS)
		ctx, cancel := context.WithTimeout(s.ctx, s.opt.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("stream TLS handshake failed", "client", remote.String(), "err", err)
			return
		}
		sni = tc.ConnectionState().ServerName
		c = tc
		defer tc.Close()
	}
	rt := s.opt.Table().Match(local, remote.Addr(), sni)
	if rt == nil {
		s.log.Debug("stream connection matched no route; closing", "client", remote.String(), "server", local.String(), "sni", sni)
		return
	}
	up := rt.Upstream
	if up == nil {
		s.log.Error("stream route has no usable upstream; closing", "route", rt.ID)
		return
	}
	uc, node, lat, err := s.connect(up, "tcp", local, remote)
	if err != nil {
		s.log.Error("stream upstream connect failed", "route", rt.ID, "client", remote.String(), "err", err)
		return
	}
	defer up.Balancer.Done(node, lat, false)
	idle := up.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if err := s.pipe(c, uc, idle); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("stream session ended", "route", rt.ID, "client", remote.String(), "upstream", node.Addr, "err", err)
	}
}

// connect picks nodes and dials until one accepts, trying up to
// up.Retries other nodes after a failure (nginx's proxy_next_upstream on
// error and timeout). Failed attempts are released and reported to the
// health checker; the successful node is returned for the caller to
// release when the session ends.
func (s *Server) connect(up *Upstream, network string, local, remote netip.AddrPort) (net.Conn, *balancer.Node, time.Duration, error) {
	key := ""
	if up.Balancer.Type() == balancer.TypeCHash {
		key = hashKey(up.Balancer.HashOn(), up.Balancer.Key(), local, remote)
	}
	timeout := up.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	var tried balancer.Tried
	first := time.Now()
	var lastErr error
	for attempt := 0; attempt <= max(up.Retries, 0); attempt++ {
		if attempt > 0 && up.RetryTimeout > 0 && time.Since(first) >= up.RetryTimeout {
			break
		}
		n := up.Balancer.Pick(&tried, key)
		if n == nil {
			break
		}
		tried.Add(n)
		start := time.Now()
		c, err := s.dial(up, network, n, timeout)
		lat := time.Since(start)
		if err == nil {
			return c, n, lat, nil
		}
		up.Balancer.Done(n, lat, true)
		var ne net.Error
		isTimeout := errors.As(err, &ne) && ne.Timeout()
		if up.Checker != nil {
			up.Checker.Report(n.Addr, 0, !isTimeout, isTimeout)
		}
		lastErr = err
		if s.ctx.Err() != nil {
			break
		}
		s.log.Warn("stream upstream connect failed", "upstream", n.Addr, "attempt", attempt+1, "err", err)
	}
	if lastErr == nil {
		lastErr = errors.New("no upstream node available")
	}
	return nil, nil, 0, lastErr
}

// dial opens one upstream connection, with TLS when the upstream's scheme
// is tls; the connect timeout covers the handshake too.
func (s *Server) dial(up *Upstream, network string, n *balancer.Node, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	addr, err := n.DialAddr(ctx, s.opt.Resolve)
	if err != nil {
		s.log.Warn("stream upstream node name not resolved", "host", n.Host, "err", err)
	}
	if up.TLS == nil || network != "tcp" {
		return s.dialer.DialContext(ctx, network, addr)
	}
	cfg := up.TLS
	if cfg.ServerName == "" && n.Named {
		cfg = cfg.Clone()
		cfg.ServerName = n.Host
	}
	d := tls.Dialer{NetDialer: &s.dialer, Config: cfg}
	return d.DialContext(ctx, "tcp", addr)
}

// hashKey is the chash key of a stream connection: hash_on vars with one
// of the stream variables APISIX has at that point, else the client
// address (APISIX's fallback for a missing key).
func hashKey(hashOn, key string, local, remote netip.AddrPort) string {
	if hashOn == "" || hashOn == "vars" {
		switch key {
		case "remote_port":
			return strconv.Itoa(int(remote.Port()))
		case "server_addr":
			return local.Addr().Unmap().String()
		case "server_port":
			return strconv.Itoa(int(local.Port()))
		}
	}
	return remote.Addr().Unmap().String()
}

// addrPort converts a TCP or UDP address; anything else gives the zero
// AddrPort, which only routes without address conditions match.
func addrPort(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Shutdown stops every listener, then waits for open sessions to end on
// their own until ctx is done; then it closes them and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// active reports the number of open sessions (for tests).
func (s *Server) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// idleClock is the last time a session moved a byte, shared by both
// directions: nginx's proxy_timeout counts silence on the whole session.
type idleClock struct{ last atomic.Int64 }

func (c *idleClock) touch() { c.last.Store(time.Now().UnixNano()) }

// quietFor reports whether nothing moved for d.
func (c *idleClock) quietFor(d time.Duration) bool {
	return time.Now().UnixNano()-c.last.Load() >= int64(d)
}
