package stream

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// closeWriter is a connection that can shut down its write half
// (*net.TCPConn, *tls.Conn).
type closeWriter interface{ CloseWrite() error }

// pipe copies bytes both ways between a client and an upstream connection
// until both directions reach EOF, either side fails, or the session is
// silent for idle. An EOF in one direction is passed on as a half-close
// (CloseWrite) and the other direction keeps going, as nginx's stream
// proxy does; an error in either direction closes both connections. It
// returns the first error, nil when both sides finished cleanly.
func (s *Server) pipe(client, upstream net.Conn, idle time.Duration) error {
	var clock idleClock
	clock.touch()
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	errc := make(chan error, 1)
	go func() { errc <- s.copy(upstream, client, &clock, idle, abort) }()
	down := s.copy(client, upstream, &clock, idle, abort)
	up := <-errc
	abort()
	if down != nil && !errors.Is(down, net.ErrClosed) {
		return down
	}
	if up != nil && !errors.Is(up, net.ErrClosed) {
		return up
	}
	if down != nil {
		return down
	}
	return up
}

// errIdle ends a session that was silent for its idle timeout.
var errIdle = errors.New("stream: session idle timeout")

// copy moves bytes from src to dst through one pooled buffer. The read
// deadline is not reset per read: it is set once and, when it fires while
// the other direction moved bytes within the idle period, pushed to
// idle past the last activity, so a busy session costs no timer update
// per read.
func (s *Server) copy(dst, src net.Conn, clock *idleClock, idle time.Duration, abort func()) error {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	_ = src.SetReadDeadline(time.Now().Add(idle))
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			clock.touch()
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort()
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					return errIdle
				}
				return werr
			}
			clock.touch()
		}
		switch {
		case rerr == nil:
			continue
		case rerr == io.EOF:
			// Half-close: the peer sees EOF while the other direction
			// may still carry a response.
			if cw, ok := dst.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil {
					abort()
					return err
				}
				return nil
			}
			abort()
			return nil
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			if last := clock.last.Load(); !clock.quietFor(idle) {
				_ = src.SetReadDeadline(time.Unix(0, last).Add(idle))
				continue
			}
			abort()
			return errIdle
		default:
			abort()
			return rerr
		}
	}
}
