// Package enginetest holds allocation-free HTTP/1.1 test peers for the
// engine and gateway benchmarks: an origin that answers every request
// with fixed bytes, and a response reader for keep-alive clients. Being
// allocation-free, they leave allocs/op to the code under test.
package enginetest

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// Origin starts a keep-alive HTTP/1.1 origin on a loopback port that
// answers every body-less request head with resp, and returns its
// address; it stops with tb.
func Origin(tb testing.TB, resp []byte) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c, resp)
		}
	}()
	return ln.Addr().String()
}

func serve(c net.Conn, resp []byte) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(l) <= 2 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// ReadResponse reads one Content-Length response from br without
// allocating and returns its status code.
func ReadResponse(br *bufio.Reader) (int, error) {
	cl, status := 0, 0
	for first := true; ; first = false {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if first && len(l) > 12 {
			status = int(l[9]-'0')*100 + int(l[10]-'0')*10 + int(l[11]-'0')
		}
		if len(l) <= 2 {
			break
		}
		if len(l) > 16 && strings.EqualFold(string(l[:15]), "content-length:") {
			for _, d := range l[15:] {
				if d >= '0' && d <= '9' {
					cl = cl*10 + int(d-'0')
				}
			}
		}
	}
	_, err := br.Discard(cl)
	return status, err
}
