package fast

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine/std"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// net/http reads a request head without a deadline when there is no
// read-header timeout; on a hot keep-alive connection the fast engine
// leaves flush-then-wait's ftwWait deadline in place for the rest of the
// head, so a head sent in two parts more than ftwWait apart is dropped.
func TestReviewFTWSlowHeadNoTimeout(t *testing.T) {
	for _, eng := range []string{"std", "fast"} {
		t.Run(eng, func(t *testing.T) {
			var addr string
			if eng == "std" {
				addr = startStd(t, okHandler, std.Limits{})
			} else {
				_, addr = startFastServer(t, okHandler, std.Limits{})
			}
			nc, br := hotConn(t, addr)
			fmt.Fprintf(nc, "GET /slow HTTP/1.1\r\n")
			time.Sleep(4 * ftwWait)
			fmt.Fprintf(nc, "Host: x\r\n\r\n")
			readOK(t, nc, br, "slow head")
		})
	}
}

// Two Content-Encoding fields, the first empty: the header map judges the
// first value (as net/http does: Header.Get), the direct head the last.
func TestReviewDirectContentEncodingFirstValue(t *testing.T) {
	for _, resp := range []string{
		"HTTP/1.1 200 OK\r\nContent-Encoding: \r\nContent-Encoding: gzip\r\nContent-Length: 6\r\n\r\n<html>",
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: \r\nContent-Length: 6\r\n\r\n<html>",
	} {
		up := startUpstream(t, func(*http.Request) string { return resp })
		req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		a, b := headsBothWays(t, up.addr(), proxy.Options{}, req, nil, nil)
		if a != b {
			t.Errorf("direct head differs from the map's:\ndirect:\n%s\nmap:\n%s", a, b)
		}
	}
}
