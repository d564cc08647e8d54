package fast

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// TestResponseLineMemo: the upstream client takes a response field line
// that repeats the one at the same position last time without splitting
// it again (strCache.field). Responses on one upstream connection that
// change some lines, move fields around, shorten or grow values, or put a
// bad line where a good one was must still be read exactly. All go over
// one upstream connection (checked).
func TestResponseLineMemo(t *testing.T) {
	heads := []struct {
		head   string
		status int    // what the client gets
		x      string // its X-A value
	}{
		{"HTTP/1.1 200 OK\r\nX-A: one\r\nX-B:  b \r\nContent-Length: 2\r\n\r\nok", 200, "one"},
		{"HTTP/1.1 200 OK\r\nX-A: one\r\nX-B:  b \r\nContent-Length: 2\r\n\r\nok", 200, "one"},
		{"HTTP/1.1 200 OK\r\nX-A: two\r\nX-B:  b \r\nContent-Length: 2\r\n\r\nok", 200, "two"},
		{"HTTP/1.1 200 OK\r\nX-B:  b \r\nX-A: two\r\nContent-Length: 2\r\n\r\nok", 200, "two"},
		{"HTTP/1.1 200 OK\r\nX-B:  b \r\nX-A:t\r\nContent-Length: 2\r\n\r\nok", 200, "t"},
		{"HTTP/1.1 200 OK\r\nX-B:  b \r\nX-A:\tthree and more\r\nContent-Length: 2\r\n\r\nok", 200, "three and more"},
		// A bad name where X-A was: the response is refused (502).
		{"HTTP/1.1 200 OK\r\nX-B:  b \r\nX A: bad\r\nContent-Length: 2\r\n\r\nok", 502, ""},
	}
	var n atomic.Int64
	up := startUpstream(t, func(*http.Request) string {
		i := int(n.Add(1) - 1)
		if i >= len(heads) { // a request sent twice: fail in the test, not with a panic
			return "HTTP/1.1 500 Repeated\r\nContent-Length: 0\r\n\r\n"
		}
		return heads[i].head
	})
	fwd := NewForwarder(nil, nil)
	addr := startFast(t, forwardTo(fwd, up.addr(), proxy.Options{}), std.DefaultLimits())
	nc, br := dialClient(t, addr, 30*time.Second)
	for i, h := range heads {
		fmt.Fprintf(nc, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != h.status || resp.Header.Get("X-A") != h.x || h.status == 200 && resp.Header.Get("X-B") != "b" {
			t.Fatalf("response %d: %d X-A %q X-B %q, want %d X-A %q", i, resp.StatusCode,
				resp.Header.Get("X-A"), resp.Header.Get("X-B"), h.status, h.x)
		}
	}
	// The memo is per upstream connection: every response above must have
	// come on one, or the test proved nothing about repeated lines.
	if a := up.accepted.Load(); a != 1 {
		t.Fatalf("the upstream accepted %d connections, want 1", a)
	}
}
