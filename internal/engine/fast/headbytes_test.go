package fast

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/engine/std"
)

// TestHeadBytes checks Ctx.RequestHeadBytes and Ctx.ResponseHeadBytes
// against the bytes on the wire, including a response head larger than
// the connection's write buffer (which flushes while the head is
// written).
func TestHeadBytes(t *testing.T) {
	type seen struct{ req, resp int }
	got := make(chan seen, 2)
	addr := startFast(t, engine.HandlerFunc(func(c *engine.Ctx) {
		h := c.W.Header()
		h["X-Big"] = []string{strings.Repeat("b", atoiOr(c.Query, 0))}
		h["Content-Length"] = []string{"2"}
		c.W.WriteHeader(200)
		c.W.Write([]byte("ok"))
		c.W.Flush()
		got <- seen{c.RequestHeadBytes, c.ResponseHeadBytes}
	}), std.Limits{})
	for _, big := range []int{0, 20000} {
		req := "GET /x?" + strconv.Itoa(big) + " HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 100) + "\r\n\r\n"
		raw := rawExchange(t, addr, req+"GET /x?0 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2*time.Second)
		s := <-got
		<-got // the second request's
		i := strings.Index(raw, "\r\n\r\n")
		if i < 0 {
			t.Fatalf("no head in %q", raw)
		}
		if s.req != len(req) || s.resp != i+4 {
			t.Fatalf("big=%d: RequestHeadBytes %d (want %d), ResponseHeadBytes %d (want %d)", big, s.req, len(req), s.resp, i+4)
		}
	}
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
