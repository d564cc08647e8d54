package stream

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/balancer"
)

// udpSession is one client address's association with an upstream node,
// as nginx's stream module keeps for UDP: datagrams from the client go to
// the node over one connected socket, and the node's datagrams come back
// to the client from the listener, until the session is silent for the
// upstream's idle timeout.
type udpSession struct {
	client netip.AddrPort
	up     net.Conn
	node   *balancer.Node
	lat    time.Duration
	route  *Route
	idle   time.Duration
	clock  idleClock
	// ended is set when the session stops relaying, so that a datagram
	// arriving before the session leaves the map starts a new one.
	ended atomic.Bool
}

// maxDatagram is the largest UDP payload.
const maxDatagram = 64 << 10

// ServeUDP proxies datagrams received on pc until pc fails or Shutdown is
// called (then it returns ErrServerClosed). The route is matched on a
// client's first datagram; server_addr is the listener's bound address
// (on a wildcard listener it is unspecified, so routes with a
// server_addr do not match there: Sluice does not read each datagram's
// destination address).
func (s *Server) ServeUDP(pc *net.UDPConn) error {
	if !s.track(pc) {
		pc.Close()
		return ErrServerClosed
	}
	defer s.untrack(pc)
	local := addrPort(pc.LocalAddr())
	var mu sync.Mutex
	sessions := map[netip.AddrPort]*udpSession{}
	defer func() {
		// The listener is gone: no datagram can reach these sessions
		// again, so they end now.
		mu.Lock()
		for _, ss := range sessions {
			ss.up.Close()
		}
		mu.Unlock()
	}()
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			return err
		}
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		mu.Lock()
		ss := sessions[client]
		if ss != nil && ss.ended.Load() {
			delete(sessions, client)
			ss = nil
		}
		full := len(sessions) >= s.opt.MaxUDPSessions
		mu.Unlock()
		if ss == nil {
			if full {
				s.log.Warn("stream UDP session limit reached; datagram dropped", "client", client.String(), "limit", s.opt.MaxUDPSessions)
				continue
			}
			ss = s.newUDPSession(local, client)
			if ss == nil {
				continue
			}
			if !s.addConn(ss.up) {
				ss.up.Close()
				ss.route.Upstream.Balancer.Done(ss.node, ss.lat, false)
				return ErrServerClosed
			}
			mu.Lock()
			sessions[client] = ss
			mu.Unlock()
			go func() {
				defer s.doneConn(ss.up)
				s.udpReturn(pc, ss)
				mu.Lock()
				if sessions[client] == ss {
					delete(sessions, client)
				}
				mu.Unlock()
			}()
		}
		ss.clock.touch()
		if _, err := ss.up.Write(buf[:n]); err != nil {
			s.log.Debug("stream UDP send to upstream failed", "route", ss.route.ID, "upstream", ss.node.Addr, "err", err)
		}
	}
}

// newUDPSession matches a new client and connects a UDP socket to a node;
// nil means the datagram is dropped (no route, no upstream).
func (s *Server) newUDPSession(local, client netip.AddrPort) *udpSession {
	rt := s.opt.Table().Match(local, client.Addr(), "")
	if rt == nil {
		s.log.Debug("stream datagram matched no route; dropped", "client", client.String(), "server", local.String())
		return nil
	}
	if rt.Upstream == nil {
		s.log.Error("stream route has no usable upstream; datagram dropped", "route", rt.ID)
		return nil
	}
	c, node, lat, err := s.connect(rt.Upstream, "udp", local, client)
	if err != nil {
		s.log.Error("stream upstream connect failed", "route", rt.ID, "client", client.String(), "err", err)
		return nil
	}
	idle := rt.Upstream.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	ss := &udpSession{client: client, up: c, node: node, lat: lat, route: rt, idle: idle}
	ss.clock.touch()
	return ss
}

// udpReturn relays the node's datagrams to the client until the session
// idles out or its socket is closed.
func (s *Server) udpReturn(pc *net.UDPConn, ss *udpSession) {
	defer ss.route.Upstream.Balancer.Done(ss.node, ss.lat, false)
	defer ss.up.Close()
	defer ss.ended.Store(true)
	// Replies larger than the buffer are truncated, as nginx's
	// proxy_buffer_size truncates them.
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	_ = ss.up.SetReadDeadline(time.Now().Add(ss.idle))
	for {
		n, err := ss.up.Read(buf)
		if n > 0 {
			ss.clock.touch()
			if _, werr := pc.WriteToUDPAddrPort(buf[:n], ss.client); werr != nil && errors.Is(werr, net.ErrClosed) {
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if last := ss.clock.last.Load(); !ss.clock.quietFor(ss.idle) {
				_ = ss.up.SetReadDeadline(time.Unix(0, last).Add(ss.idle))
				continue
			}
			return
		case errors.Is(err, net.ErrClosed):
			return
		default:
			// ICMP port unreachable and the like: the node is not
			// there; the next datagram may find it again, as in nginx,
			// where the session ends on such an error.
			s.log.Debug("stream UDP upstream read failed", "route", ss.route.ID, "upstream", ss.node.Addr, "err", err)
			return
		}
	}
}
