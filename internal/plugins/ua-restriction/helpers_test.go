package uarestriction_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// doUA sends GET path over a raw connection with one User-Agent line per
// value (Go's client would send only the first), and reads the response.
func doUA(t *testing.T, g *plugintest.Gateway, path string, uas []string) *plugintest.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.ProxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n")
	for _, ua := range uas {
		b.WriteString("User-Agent: " + ua + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &plugintest.Response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}
