package fast

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An upstream that answers (413) as soon as it has the head and then
// keeps the connection open without reading the body: both engines
// forward that answer at once, not after the send timeout (60 s here),
// and never forward a truncated request as if it were whole.
func TestEarlyAnswerWhileBodyStalls(t *testing.T) {
	hold := make(chan struct{})
	pair := startEnginePair(t, time.Minute, func(_ *scriptOrigin, c net.Conn, _ *bufio.Reader, _ *http.Request) {
		io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
		<-hold // keep the connection, read nothing more
	})
	t.Cleanup(func() { close(hold) })
	for _, e := range pair {
		t.Run(e.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			const size = 64 << 20
			fmt.Fprintf(nc, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
			go func() {
				chunk := []byte(strings.Repeat("x", 64<<10))
				for sent := 0; sent < size; sent += len(chunk) {
					if _, err := nc.Write(chunk); err != nil {
						return
					}
				}
			}()
			// Far below the send timeout: the answer must not wait for it.
			nc.SetReadDeadline(time.Now().Add(15 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatalf("no answer before the send timeout: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || string(b) != "big!" {
				t.Fatalf("got %d %q, want the upstream's 413", resp.StatusCode, b)
			}
		})
	}
}
