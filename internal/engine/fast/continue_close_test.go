package fast

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

// TestUnansweredContinueSaysClose checks that a final answer to a request
// whose 100-continue was never sent (the handler did not read the body)
// carries Connection: close on both engines, and that a handler that
// reads the body keeps the connection.
func TestUnansweredContinueSaysClose(t *testing.T) {
	h := engine.HandlerFunc(func(c *engine.Ctx) {
		if c.Path == "/read" {
			var b [16]byte
			for {
				if _, err := c.Body.Read(b[:]); err != nil {
					break
				}
			}
		}
		c.W.Header()["Content-Length"] = []string{"2"}
		c.W.WriteHeader(401)
		c.W.Write([]byte("no"))
	})
	lim := std.Limits{}
	for _, eng := range []struct {
		name string
		addr string
	}{{"std", startStd(t, h, lim)}, {"fast", startFast(t, h, lim)}} {
		for _, tc := range []struct {
			path      string
			wantClose bool
		}{{"/skip", true}, {"/read", false}} {
			t.Run(eng.name+tc.path, func(t *testing.T) {
				req := "POST " + tc.path + " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
				if !tc.wantClose {
					req += "hello"
				}
				raw := rawExchange(t, eng.addr, req, 1500*time.Millisecond)
				final := raw
				if i := strings.Index(raw, "HTTP/1.1 401"); i >= 0 {
					final = raw[i:]
				} else {
					t.Fatalf("no 401 in %q", raw)
				}
				head := strings.ToLower(final[:strings.Index(final, "\r\n\r\n")])
				if got := strings.Contains(head, "\r\nconnection: close"); got != tc.wantClose {
					t.Fatalf("Connection: close = %v, want %v in %q", got, tc.wantClose, head)
				}
			})
		}
	}
}
