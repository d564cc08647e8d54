// Package reqbody buffers a request body for plugins that must read it
// before proxying (hmac-auth signs it, forward-auth sends it to the auth
// service) while the upstream still receives it unchanged.
package reqbody

import (
	"bytes"
	"fmt"
	"io"
	"strconv"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// Read buffers the request body up to max bytes and puts it back so the
// upstream still receives it. The error text is APISIX's.
func Read(r *plugin.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, fmt.Errorf("request size %d is greater than the maximum size %d allowed", r.ContentLength, max)
	}
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("request size %d is greater than the maximum size %d allowed", len(b), max)
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	if _, ok := r.Header["Content-Length"]; ok {
		r.Header["Content-Length"] = []string{strconv.Itoa(len(b))}
	}
	return b, nil
}
