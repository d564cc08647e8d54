package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func sleepMs(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

// tryAdmin is like gw.admin but returns transport errors instead of failing.
func tryAdmin(g *gw, method, path, body string) (resp, error) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", g.adminPort, path), strings.NewReader(body))
	if err != nil {
		return resp{}, err
	}
	req.Header.Set("X-API-KEY", adminKey)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{Status: r.StatusCode, Header: r.Header, Body: b}, nil
}
