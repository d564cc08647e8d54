package fast

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-done
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSockRawPath holds sock's raw reads and writes to net.Conn's
// behaviour: data both ways, a write far larger than the socket buffers
// (EAGAIN, wait, resume) while the same socket reads, deadlines, the end
// of the stream, a reset and a closed socket, with net.Conn's error shapes.
func TestSockRawPath(t *testing.T) {
	if !rawSupported {
		t.Skip("raw socket calls are Linux only")
	}
	a, b := tcpPair(t)
	var s sock
	s.init(a)
	if !s.raw {
		t.Fatal("a plain TCP connection did not take the raw path")
	}

	// Small exchange.
	if n, err := s.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	buf := make([]byte, 16)
	if n, err := io.ReadFull(b, buf[:4]); n != 4 || err != nil || string(buf[:4]) != "ping" {
		t.Fatalf("peer read %q %v", buf[:n], err)
	}
	if _, err := b.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if n, err := io.ReadFull(&s, buf[:4]); n != 4 || err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d %v", n, err)
	}

	// 8 MiB one way while 8 MiB come the other: both calls wait in the
	// poller (the peer reads and writes slowly at first) and finish whole.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19)
	wrote := make(chan error, 1)
	go func() {
		n, err := s.Write(big)
		if err == nil && n != len(big) {
			err = errors.New("short write")
		}
		wrote <- err
	}()
	peerGot := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		got, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
		peerGot <- got
	}()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = b.Write(big)
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(&s, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("raw read of 8 MiB: %v, equal %v", err, bytes.Equal(got, big))
	}
	if err := <-wrote; err != nil {
		t.Fatalf("raw write of 8 MiB: %v", err)
	}
	if p := <-peerGot; !bytes.Equal(p, big) {
		t.Fatalf("peer got %d bytes, not the 8 MiB written", len(p))
	}

	// A read deadline: a timeout error, as net.Conn's.
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := s.Read(buf)
	var ne net.Error
	var oe *net.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past the deadline: %#v", err)
	}
	_ = a.SetReadDeadline(time.Time{})

	// The end of the stream.
	_ = b.(*net.TCPConn).CloseWrite()
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d %v", n, err)
	}

	// A write to a peer that reset the connection fails with ECONNRESET
	// or EPIPE in an *net.OpError "write".
	_ = b.(*net.TCPConn).SetLinger(0)
	b.Close()
	time.Sleep(20 * time.Millisecond)
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		_, werr = s.Write([]byte("x"))
	}
	if !(errors.Is(werr, syscall.ECONNRESET) || errors.Is(werr, syscall.EPIPE)) || !errors.As(werr, &oe) || oe.Op != "write" {
		t.Fatalf("write after a reset: %#v", werr)
	}

	// A closed socket: net.ErrClosed, as net.Conn's.
	a.Close()
	if _, err := s.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed socket: %v", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v", err)
	}
}

// TestSockFallback: a connection that is not plain TCP uses its own
// Read and Write.
func TestSockFallback(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var s sock
	s.init(a)
	if s.raw || s.rc != nil {
		t.Fatal("a pipe took the raw path")
	}
	go func() { _, _ = b.Write([]byte("hi")) }()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(&s, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}
}

// A TCP socket where raw calls are off (every system but Linux:
// rawSupported) reads and writes through the net.Conn, with net.Conn's
// errors, and keeps its RawConn for flush-then-wait.
func TestSockTCPWithoutRaw(t *testing.T) {
	a, b := tcpPair(t)
	var s sock
	s.init(a)
	s.raw = false // as init leaves it where rawSupported is false
	if s.rc == nil {
		t.Fatal("the RawConn flush-then-wait waits on is gone")
	}
	if n, err := s.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q %v", buf, err)
	}
	if _, err := b.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(&s, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q %v", buf, err)
	}
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	_ = a.SetReadDeadline(time.Time{})
	b.Close()
	if _, err := s.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
}
