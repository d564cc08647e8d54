package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/sluice-gw/sluice/internal/engine"
)

// tunnel completes a WebSocket upgrade the upstream accepted with 101: it
// takes over the client connection, relays the 101 head, then copies bytes
// both ways until either side closes.
func (f *Forwarder) tunnel(c *engine.Ctx, resp *http.Response) (int, error, bool) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return http.StatusBadGateway, errors.New("upstream 101 body is not writable"), false
	}
	defer up.Close()
	hj, ok := c.W.(engine.Hijacker)
	if !ok {
		return http.StatusBadGateway, errors.New("engine cannot hijack the client connection"), false
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return http.StatusBadGateway, err, false
	}
	defer conn.Close()
	c.Status = http.StatusSwitchingProtocols

	hdr := resp.Header.Clone()
	hdr["Server"] = serverOf(c)
	head := &http.Response{StatusCode: resp.StatusCode, ProtoMajor: 1, ProtoMinor: 1, Header: hdr}
	if err := head.Write(brw); err != nil {
		return http.StatusSwitchingProtocols, nil, false
	}
	if err := brw.Flush(); err != nil {
		return http.StatusSwitchingProtocols, nil, false
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bp := f.bufs.Get().(*[]byte)
		defer f.bufs.Put(bp)
		// brw.Reader first: the client may have sent frames right after
		// its request head.
		_, _ = io.CopyBuffer(up, brw.Reader, *bp)
		up.Close()
	}()
	bp := f.bufs.Get().(*[]byte)
	n, _ := io.CopyBuffer(conn, up, *bp)
	f.bufs.Put(bp)
	c.BytesSent += n
	conn.Close()
	wg.Wait()
	return http.StatusSwitchingProtocols, nil, false
}
