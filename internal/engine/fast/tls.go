package fast

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// ServeTLS accepts TLS on ln: clients whose ClientHello offers ALPN "h2"
// are handed, before the handshake, to the net/http engine given to New
// (it completes the handshake and negotiates h2 exactly as on its own
// listeners); everything else is terminated here with ALPN http/1.1 and
// served by the fast engine. cfg is the gateway's (GetCertificate by SNI).
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	h1 := cfg.Clone()
	h1.NextProtos = []string{"http/1.1"}
	wantH2 := s.h2 != nil && (len(cfg.NextProtos) == 0 || slices.Contains(cfg.NextProtos, "h2"))
	var h2ln *chanListener
	if wantH2 {
		h2ln = newChanListener(ln.Addr())
		go func() {
			// The hand-off listener closes when this Serve returns
			// (shutdown): that is not worth a warning.
			if err := s.h2.ServeTLS(h2ln, cfg); err != nil && !errors.Is(err, net.ErrClosed) {
				s.logger.Warn("h2 hand-off listener stopped", "err", err)
			}
		}()
		defer h2ln.Close()
	}
	hs := s.lim.ReadHeaderTimeout
	if hs <= 0 {
		hs = 10 * time.Second
	}
	return s.serve(ln, func(nc net.Conn) {
		_ = nc.SetDeadline(time.Now().Add(hs))
		pc := &peekConn{Conn: nc}
		if wantH2 && pc.offersH2() {
			_ = nc.SetDeadline(time.Time{})
			if !h2ln.push(pc) {
				_ = nc.Close()
			}
			return
		}
		tc := tls.Server(pc, h1)
		if err := tc.Handshake(); err != nil {
			s.logger.Debug("tls handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
			_ = nc.Close()
			return
		}
		_ = nc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		s.startConn(tc, &st)
	})
}

// peekConn replays the bytes read while looking at the ClientHello.
type peekConn struct {
	net.Conn
	buf []byte
}

func (c *peekConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// offersH2 reads the first TLS record and reports whether it is a
// ClientHello whose ALPN extension lists "h2". Anything it cannot parse
// counts as no (the fast engine's handshake then decides).
func (c *peekConn) offersH2() bool {
	var hdr [5]byte
	if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
		c.buf = append(c.buf, hdr[:]...)
		return false
	}
	c.buf = append(c.buf, hdr[:]...)
	if hdr[0] != 0x16 {
		return false
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n > 1<<14+2048 {
		return false
	}
	rec := make([]byte, n)
	m, _ := io.ReadFull(c.Conn, rec)
	c.buf = append(c.buf, rec[:m]...)
	return clientHelloHasALPN(rec[:m], "h2")
}

func clientHelloHasALPN(b []byte, proto string) bool {
	// Handshake header: type 1 (ClientHello), 3-byte length.
	if len(b) < 4 || b[0] != 1 {
		return false
	}
	b = b[4:]
	skip := func(n int) bool {
		if len(b) < n {
			return false
		}
		b = b[n:]
		return true
	}
	vec := func(lenBytes int) ([]byte, bool) {
		if len(b) < lenBytes {
			return nil, false
		}
		n := 0
		for i := 0; i < lenBytes; i++ {
			n = n<<8 | int(b[i])
		}
		b = b[lenBytes:]
		if len(b) < n {
			return nil, false
		}
		v := b[:n]
		b = b[n:]
		return v, true
	}
	if !skip(2 + 32) { // version, random
		return false
	}
	if _, ok := vec(1); !ok { // session id
		return false
	}
	if _, ok := vec(2); !ok { // cipher suites
		return false
	}
	if _, ok := vec(1); !ok { // compression methods
		return false
	}
	exts, ok := vec(2)
	if !ok {
		return false
	}
	for len(exts) >= 4 {
		typ := int(exts[0])<<8 | int(exts[1])
		n := int(exts[2])<<8 | int(exts[3])
		exts = exts[4:]
		if len(exts) < n {
			return false
		}
		data := exts[:n]
		exts = exts[n:]
		if typ != 16 || len(data) < 2 {
			continue
		}
		list := data[2:]
		for len(list) > 0 {
			l := int(list[0])
			if len(list) < 1+l {
				return false
			}
			if string(list[1:1+l]) == proto {
				return true
			}
			list = list[1+l:]
		}
	}
	return false
}

// chanListener is a net.Listener fed by ServeTLS with connections for the
// net/http engine.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
