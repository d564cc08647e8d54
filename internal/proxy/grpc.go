package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// roundTripper is what the Forwarder keeps per upstream pool: an
// *http.Transport for http/https, an *http2.Transport for grpc/grpcs.
type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// isH2 reports whether scheme is one of the HTTP/2-only upstream schemes.
func isH2(scheme string) bool { return scheme == "grpc" || scheme == "grpcs" }

// isTLS reports whether scheme dials the upstream over TLS.
func isTLS(scheme string) bool { return scheme == "https" || scheme == "grpcs" }

var errNotH2 = errors.New("upstream did not negotiate h2")

// newH2Transport builds the HTTP/2 transport for a grpc (h2c, prior
// knowledge) or grpcs (TLS, ALPN h2) pool. net/http's Transport cannot be
// told to speak h2c to one address only, and over TLS it falls back to
// HTTP/1.1 when ALPN says so, which gRPC cannot survive; x/net's transport
// speaks HTTP/2 or fails.
func newH2Transport(key transportKey, dialer *net.Dialer, tlsCfg *tls.Config) *http2.Transport {
	connect := dialer.Timeout
	tr := &http2.Transport{
		// The client's grpc-encoding/Accept-Encoding pass through.
		DisableCompression: true,
		MaxHeaderListSize:  1 << 20,
		IdleConnTimeout:    orDefault(key.idle, defaultPoolIdle),
		// A silent upstream connection is probed with a PING so streams on
		// a dead connection fail instead of waiting for the read timeout.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     15 * time.Second,
	}
	if key.scheme == "grpc" {
		// h2c with prior knowledge: the "TLS" dial is a plain TCP dial.
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		}
		return tr
	}
	cfg := tlsCfg.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	tr.TLSClientConfig = cfg
	tr.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		// The connect timeout bounds the dial and the handshake together,
		// as TLSHandshakeTimeout does for https pools.
		ctx, cancel := context.WithTimeout(ctx, connect)
		defer cancel()
		d := &tls.Dialer{NetDialer: dialer, Config: cfg}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w (ALPN %q)", addr, errNotH2, p)
		}
		return c, nil
	}
	return tr
}

// h2RespBody retires the request body when the response is done. The h2
// transport's Close waits for its request-body writer, which may be
// blocked reading a client that keeps its stream open after the upstream
// ended the RPC; cancelling the attempt releases Close, and finishing the
// body (closing an HTTP/2 client's) wakes the writer before the Ctx goes
// back to its pool.
type h2RespBody struct {
	io.ReadCloser
	b           *body
	cancel      context.CancelCauseFunc
	closeClient bool
}

func (r *h2RespBody) Close() error {
	r.cancel(nil)
	r.b.finish(r.closeClient)
	return r.ReadCloser.Close()
}
