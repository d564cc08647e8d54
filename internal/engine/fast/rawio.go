package fast

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// sock reads and writes one connection's socket. On a plain TCP socket it
// does so through the socket's syscall.RawConn with raw system calls:
// the poller still owns the descriptor (its lock keeps the descriptor
// from being closed under the call, its deadlines and readiness apply as
// for net.Conn), but the calls skip the runtime's syscall entry and exit,
// which exist for calls that may block: these cannot, the socket is
// non-blocking and a call that would block returns EAGAIN and waits in
// the poller like net.Conn's. Loopback profiles put entersyscall,
// exitsyscall and the fd mutex at about 3 % of the proxy's CPU time
// (docs/engine.md). Other connections (TLS), and every connection where
// raw calls are not supported (rawSupported), use the net.Conn.
type sock struct {
	nc  net.Conn
	rc  syscall.RawConn // a plain TCP socket's (nil otherwise); flush-then-wait waits on it too
	raw bool            // reads and writes are raw calls through rc

	// The read and the write in progress, for the bound callbacks (a
	// read and a write may run at once, as on a net.Conn).
	rbuf, wbuf []byte
	rn, wn     int
	rerr, werr error
	readFn     func(uintptr) bool
	writeFn    func(uintptr) bool
}

// init binds s to nc.
func (s *sock) init(nc net.Conn) {
	s.nc, s.rc, s.raw = nc, nil, false
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	s.rc, s.raw = rc, rawSupported
	if s.readFn == nil {
		s.readFn, s.writeFn = s.readFD, s.writeFD
	}
}

// Read reads as net.Conn.Read does, with its errors: io.EOF at the end,
// *net.OpError otherwise (timeouts match os.ErrDeadlineExceeded).
func (s *sock) Read(p []byte) (int, error) {
	if !s.raw {
		return s.nc.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	n := s.rn
	if err == nil {
		err = s.rerr
	}
	s.rbuf, s.rerr = nil, nil
	if err != nil && err != io.EOF {
		err = s.opError("read", err)
	}
	return n, err
}

// Write writes all of p unless an error (a deadline, a reset) stops it.
func (s *sock) Write(p []byte) (int, error) {
	if !s.raw {
		return s.nc.Write(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	n := s.wn
	if err == nil {
		err = s.werr
	}
	s.wbuf, s.werr = nil, nil
	if err != nil {
		err = s.opError("write", err)
	}
	return n, err
}

// readFD is the RawConn.Read callback: false asks the poller to wait.
func (s *sock) readFD(fd uintptr) bool {
	for {
		r, e := rawRead(fd, s.rbuf)
		switch e {
		case 0:
			if r == 0 {
				s.rerr = io.EOF
			}
			s.rn = r
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rerr = os.NewSyscallError("read", e)
		return true
	}
}

// writeFD is the RawConn.Write callback: it writes until s.wbuf is sent,
// or asks the poller to wait for room.
func (s *sock) writeFD(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		rest := s.wbuf[s.wn:]
		r, e := rawWrite(fd, rest)
		switch e {
		case 0:
			s.wn += r
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.werr = os.NewSyscallError("write", e)
		return true
	}
	return true
}

// opError gives err net.Conn's shape: an *net.OpError named after the
// operation (RawConn's own say "raw-read" and "raw-write").
func (s *sock) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.nc.LocalAddr(), Addr: s.nc.RemoteAddr(), Err: err}
}
