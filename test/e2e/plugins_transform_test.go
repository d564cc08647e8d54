package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

// plPromValue returns the value of the first sample of metric whose labels
// contain every one of labels (`name="value"` strings), or "" when none.
func plPromValue(text, metric string, labels ...string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		end := strings.LastIndex(line, "}")
		if end < 0 {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line[:end], l) {
				continue next
			}
		}
		return strings.TrimSpace(line[end+1:])
	}
	return ""
}

// TestPluginsTransform drives proxy-rewrite, response-rewrite, redirect,
// mocking, echo, gzip, brotli, proxy-cache and prometheus through the
// binary.
func TestPluginsTransform(t *testing.T) {
	t.Parallel()
	promPort := freePort(t)
	g := startDefault(t, fmt.Sprintf("plugin_attr:\n  prometheus:\n    export_addr:\n      ip: 127.0.0.1\n      port: %d\n", promPort))
	up := newPlUpstream(t, nil)
	a := up.addr()
	html := strings.Repeat("<p>sluice compresses this page</p>\n", 60)
	htmlUp := newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, html)
	})

	runPlRefused(t, g, []plRefused{
		{"proxy-rewrite odd regex_uri", "", plRoute("/r", `"proxy-rewrite":{"regex_uri":["^/(.*)","/$1","x"]}`, a),
			`failed to check the configuration of plugin proxy-rewrite err: The length of regex_uri should be an even number`},
		{"proxy-rewrite one regex_uri item", "", plRoute("/r", `"proxy-rewrite":{"regex_uri":["^/(.*"]}`, a),
			`failed to check the configuration of plugin proxy-rewrite err: property "regex_uri" validation failed: expect array to have at least 2 items`},
		{"proxy-rewrite unknown method", "", plRoute("/r", `"proxy-rewrite":{"method":"FOO"}`, a),
			`failed to check the configuration of plugin proxy-rewrite err: property "method" validation failed: matches none of the enum values`},
		{"response-rewrite status 99", "", plRoute("/r", `"response-rewrite":{"status_code":99}`, a),
			`failed to check the configuration of plugin response-rewrite err: property "status_code" validation failed: expected 99 to be at least 200`},
		{"response-rewrite bad base64", "", plRoute("/r", `"response-rewrite":{"body":"!!!","body_base64":true}`, a),
			`failed to check the configuration of plugin response-rewrite err: invalid base64 content`},
		{"redirect nothing", "", plRoute("/r", `"redirect":{}`, a),
			`failed to check the configuration of plugin redirect err: value should match only one schema, but matches none`},
		{"redirect https and query", "", plRoute("/r", `"redirect":{"http_to_https":true,"append_query_string":true}`, a),
			"failed to check the configuration of plugin redirect err: only one of `http_to_https` and `append_query_string` can be configured."},
		{"mocking nothing", "", `{"uri":"/r","plugins":{"mocking":{}}}`,
			`failed to check the configuration of plugin mocking err: object matches none of the required: ["response_example"] or ["response_schema"]`},
		{"mocking content type", "", `{"uri":"/r","plugins":{"mocking":{"response_example":"x","content_type":"image/png"}}}`,
			`failed to check the configuration of plugin mocking err: unsupported content type!`},
		{"echo nothing", "", plRoute("/r", `"echo":{}`, a),
			`failed to check the configuration of plugin echo err: expect object to have at least 1 properties`},
		{"echo body not string", "", plRoute("/r", `"echo":{"body":1}`, a),
			`failed to check the configuration of plugin echo err: property "body" validation failed: wrong type: expected string, got number`},
		{"gzip level 10", "", plRoute("/r", `"gzip":{"comp_level":10}`, a),
			`failed to check the configuration of plugin gzip err: property "comp_level" validation failed: expected 10 to be at most 9`},
		{"brotli level 12", "", plRoute("/r", `"brotli":{"comp_level":12}`, a),
			`failed to check the configuration of plugin brotli err: property "comp_level" validation failed: expected 12 to be at most 11`},
		{"proxy-cache memory strategy on disk zone", "", plRoute("/r", `"proxy-cache":{"cache_strategy":"memory","cache_zone":"disk_cache_one"}`, a),
			`failed to check the configuration of plugin proxy-cache err: invalid or empty cache_zone for cache_strategy: memory`},
		{"proxy-cache request_method key", "", plRoute("/r", `"proxy-cache":{"cache_key":["$request_method"]}`, a),
			`failed to check the configuration of plugin proxy-cache err: cache_key variable $request_method unsupported`},
		{"prometheus prefer_name not boolean", "", plRoute("/r", `"prometheus":{"prefer_name":"x"}`, a),
			`failed to check the configuration of plugin prometheus err: property "prefer_name" validation failed: wrong type: expected boolean, got string`},
	})

	plPut(t, g, "/apisix/admin/consumers", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}}`)
	for id, r := range map[string]string{
		"pr": plRoute("/tf/pr/*", `"proxy-rewrite":{"regex_uri":["^/tf/pr/(.*)","/orders/$1"],"host":"orders.internal","method":"POST",
			"headers":{"add":{"X-Multi":"a"},"set":{"X-Order-Id":"$1","X-Api-Version":"1"},"remove":["Cookie"]}}`, a),
		"pr-uri":    plRoute("/tf/pr-uri", `"proxy-rewrite":{"uri":"/fixed/$arg_id"}`, a),
		"rr":        plRoute("/tf/rr", `"response-rewrite":{"status_code":201,"body":"rewritten","headers":{"set":{"X-Route":"$route_id"},"remove":["X-Upstream"]}}`, a),
		"rr-vars":   plRoute("/tf/rr-vars", `"response-rewrite":{"vars":[["status","==",503]],"status_code":200,"body":"{\"message\":\"try again later\"}","headers":{"Content-Type":"application/json"}}`, a),
		"rr-filter": plRoute("/tf/rr-filter", `"response-rewrite":{"filters":[{"regex":"(up)stream","replace":"$1-","scope":"global"}]}`, a),
		"rr-401":    plRoute("/tf/rr-401", `"key-auth":{},"response-rewrite":{"status_code":403,"body":"no entry"}`, a),
		"redir":     plRoute("/tf/redir", `"redirect":{"uri":"/new/$arg_x","ret_code":301}`, a),
		"redir-re":  plRoute("/tf/redir-re/*", `"redirect":{"regex_uri":["^/tf/redir-re/old/(.*)","/new/$1"],"append_query_string":true}`, a),
		"https":     plRoute("/tf/https", `"redirect":{"http_to_https":true}`, a),
		"mock":      `{"uri":"/tf/mock","plugins":{"mocking":{"response_example":"{\"a\":1}","response_status":201,"response_headers":{"X-Route":"$route_id"}}}}`,
		"mock-up": plRoute("/tf/mock-up", `"mocking":{"with_mock_header":false,"response_schema":{"type":"object","properties":{
			"id":{"type":"integer","example":7},"name":{"type":"string","example":"jack"}}}}`, a),
		"echo":     plRoute("/tf/echo", `"echo":{"before_body":"before ","after_body":" after","headers":{"X-Echo":"1"}}`, a),
		"echo-401": plRoute("/tf/echo-401", `"key-auth":{},"echo":{"body":"replaced"}`, a),
		"gzip":     plRoute("/tf/gzip", `"gzip":{"types":["text/html"],"comp_level":5,"vary":true}`, htmlUp.addr()),
		"gzip-txt": plRoute("/tf/gzip-txt", `"gzip":{"types":["text/html"]}`, a),
		"br":       plRoute("/tf/br", `"brotli":{"types":"*","vary":true}`, htmlUp.addr()),
		"cache":    plRoute("/tf/cache", `"proxy-cache":{"cache_strategy":"memory","cache_zone":"memory_cache","cache_bypass":["$arg_bypass"],"cache_ttl":60}`, a),
		"prom":     plRoute("/tf/prom", `"prometheus":{}`, a),
	} {
		plPut(t, g, "/apisix/admin/routes/"+id, r)
	}
	plSync(t, g)

	t.Run("proxy-rewrite", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "regex_uri, host, method, headers", path: "/tf/pr/42?expand=items", hdr: map[string]string{"Cookie": "a=b", "X-Order-Id": "forged"},
				status: 200, up: up, reach: true, upURI: "/orders/42?expand=items",
				upHdr: map[string]string{"Cookie": "", "X-Order-Id": "42", "X-Api-Version": "1", "X-Multi": "a"},
				check: func(t *testing.T, _ resp, got plReq) {
					if got.Method != "POST" || got.Host != "orders.internal" {
						t.Errorf("upstream got %s Host %s", got.Method, got.Host)
					}
				}},
			{name: "uri template keeps the query", path: "/tf/pr-uri?id=7", status: 200, up: up, reach: true, upURI: "/fixed/7?id=7"},
		})
	})

	t.Run("response-rewrite", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "status, body, headers", path: "/tf/rr", status: 201, wantBody: plStr("rewritten"),
				wantHdr: map[string]string{"X-Route": "rr", "X-Upstream": ""}, up: up, reach: true},
			{name: "vars match", path: "/tf/rr-vars?status=503", status: 200, wantBody: plStr(`{"message":"try again later"}`),
				wantHdr: map[string]string{"Content-Type": "application/json"}, up: up, reach: true},
			{name: "vars do not match", path: "/tf/rr-vars", status: 200, wantBody: plStr("upstream-body"),
				wantHdr: map[string]string{"Content-Type": "text/plain"}, up: up, reach: true},
			{name: "filters", path: "/tf/rr-filter", status: 200, wantBody: plStr("up--body"), up: up, reach: true},
			{name: "gateway rejection rewritten", path: "/tf/rr-401", status: 403, wantBody: plStr("no entry"), up: up},
		})
	})

	t.Run("redirect", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "uri template", path: "/tf/redir?x=1", status: 301, wantHdr: map[string]string{"Location": "/new/1"}, bodyHas: "301", up: up},
			{name: "regex_uri with query", path: "/tf/redir-re/old/a?q=1", status: 302, wantHdr: map[string]string{"Location": "/new/a?q=1"}, up: up},
			{name: "regex_uri no match proxies", path: "/tf/redir-re/other", status: 200, wantHdr: map[string]string{"Location": ""}, up: up, reach: true},
			{name: "http_to_https GET", path: "/tf/https?a=1", hdr: map[string]string{"Host": "shop.example.com"}, status: 301,
				wantHdr: map[string]string{"Location": "https://shop.example.com/tf/https?a=1"}, up: up},
			{name: "http_to_https POST", method: "POST", path: "/tf/https", hdr: map[string]string{"Host": "shop.example.com"}, status: 308,
				wantHdr: map[string]string{"Location": "https://shop.example.com/tf/https"}, up: up},
			{name: "already https", path: "/tf/https", hdr: map[string]string{"X-Forwarded-Proto": "https"}, status: 200, up: up, reach: true},
		})
	})

	t.Run("mocking", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "example, no upstream", path: "/tf/mock", status: 201, wantBody: plStr(`{"a":1}`),
				wantHdr: map[string]string{"Content-Type": "application/json;charset=utf8", "X-Mock-By": "APISIX/3.18.0", "X-Route": "mock"}},
			{name: "schema, upstream never called", path: "/tf/mock-up", status: 200, wantBody: plStr(`{"id":7,"name":"jack"}`),
				wantHdr: map[string]string{"X-Mock-By": ""}, up: up},
		})
	})

	t.Run("echo", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "wrap", path: "/tf/echo", status: 200, wantBody: plStr("before upstream-body after"), wantHdr: map[string]string{"X-Echo": "1"}, up: up, reach: true},
			{name: "gateway rejection", path: "/tf/echo-401", status: 401, wantBody: plStr("replaced"), up: up},
		})
	})

	gunzip := func(t *testing.T, b []byte) string {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	unbr := func(t *testing.T, b []byte) string {
		out, err := io.ReadAll(brotli.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	t.Run("gzip", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "compressed", path: "/tf/gzip", hdr: map[string]string{"Accept-Encoding": "gzip"}, status: 200,
				wantHdr: map[string]string{"Content-Encoding": "gzip", "Vary": "Accept-Encoding", "Content-Length": "", "ETag": `W/"v1"`}, up: htmlUp, reach: true,
				check: func(t *testing.T, r resp, _ plReq) {
					if len(r.Body) >= len(html) || gunzip(t, r.Body) != html {
						t.Errorf("%d compressed bytes do not decode to the page", len(r.Body))
					}
				}},
			{name: "client without gzip", path: "/tf/gzip", hdr: map[string]string{"Accept-Encoding": "identity"}, status: 200, wantBody: plStr(html),
				wantHdr: map[string]string{"Content-Encoding": "", "Vary": "Accept-Encoding"}, up: htmlUp, reach: true},
			{name: "gzip;q=0", path: "/tf/gzip", hdr: map[string]string{"Accept-Encoding": "gzip;q=0"}, status: 200, wantBody: plStr(html),
				wantHdr: map[string]string{"Content-Encoding": ""}, up: htmlUp, reach: true},
			{name: "type not listed", path: "/tf/gzip-txt", hdr: map[string]string{"Accept-Encoding": "gzip"}, status: 200, wantBody: plStr("upstream-body"),
				wantHdr: map[string]string{"Content-Encoding": ""}, up: up, reach: true},
		})
	})

	t.Run("brotli", func(t *testing.T) {
		runPlCases(t, g, []plCase{
			{name: "compressed", path: "/tf/br", hdr: map[string]string{"Accept-Encoding": "gzip, br"}, status: 200,
				wantHdr: map[string]string{"Content-Encoding": "br", "Vary": "Accept-Encoding", "ETag": `W/"v1"`}, up: htmlUp, reach: true,
				check: func(t *testing.T, r resp, _ plReq) {
					if len(r.Body) >= len(html) || unbr(t, r.Body) != html {
						t.Errorf("%d compressed bytes do not decode to the page", len(r.Body))
					}
				}},
			{name: "client without br", path: "/tf/br", hdr: map[string]string{"Accept-Encoding": "gzip"}, status: 200, wantBody: plStr(html),
				wantHdr: map[string]string{"Content-Encoding": ""}, up: htmlUp, reach: true},
			{name: "br;q=0", path: "/tf/br", hdr: map[string]string{"Accept-Encoding": "br;q=0"}, status: 200, wantBody: plStr(html),
				wantHdr: map[string]string{"Content-Encoding": ""}, up: htmlUp, reach: true},
		})
	})

	t.Run("proxy-cache", func(t *testing.T) {
		st := func(s string) map[string]string { return map[string]string{"Apisix-Cache-Status": s} }
		body := plStr("upstream-body")
		runPlCases(t, g, []plCase{
			{name: "miss", path: "/tf/cache?k=1", status: 200, wantBody: body, wantHdr: st("MISS"), up: up, reach: true},
			{name: "hit does not reach the upstream", path: "/tf/cache?k=1", status: 200, wantBody: body, wantHdr: st("HIT"), up: up,
				check: func(t *testing.T, r resp, _ plReq) {
					if r.Header.Get("Age") == "" || r.Header.Get("X-Upstream") != "up" {
						t.Errorf("a hit replays the stored headers and adds Age: %v", r.Header)
					}
				}},
			{name: "other key misses", path: "/tf/cache?k=2", status: 200, wantHdr: st("MISS"), up: up, reach: true},
			{name: "bypass", path: "/tf/cache?k=1&bypass=1", status: 200, wantHdr: st("BYPASS"), up: up, reach: true},
			{name: "POST is not cached", method: "POST", path: "/tf/cache?k=1", status: 200, wantHdr: st("MISS"), up: up, reach: true},
			{name: "purge", method: "PURGE", path: "/tf/cache?k=1", status: 200, wantBody: plStr(""), up: up},
			{name: "purge again", method: "PURGE", path: "/tf/cache?k=1", status: 404, up: up},
			{name: "miss after purge", path: "/tf/cache?k=1", status: 200, wantHdr: st("MISS"), up: up, reach: true},
		})
	})

	t.Run("prometheus", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if r := g.plDo("GET", "/tf/prom", "", nil); r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		}
		if r := g.plDo("GET", "/tf/prom?status=404", "", nil); r.Status != 404 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		// A route without the plugin is not counted.
		g.plDo("GET", "/tf/rr-filter", "", nil)
		url := fmt.Sprintf("http://127.0.0.1:%d/apisix/prometheus/metrics", promPort)
		var text string
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := http.Get(url)
			if err == nil {
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				text = string(b)
				if r.StatusCode == 200 && plPromValue(text, "apisix_http_status", `code="404"`, `route="prom"`) == "1" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("metrics never showed the requests (err %v):\n%s", err, text)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, c := range []struct {
			metric string
			labels []string
			want   string
		}{
			{"apisix_http_status", []string{`code="200"`, `route="prom"`, `response_source="upstream"`, `consumer=""`}, "3"},
			{"apisix_http_status", []string{`code="404"`, `route="prom"`}, "1"},
			{"apisix_http_status", []string{`route="rr-filter"`}, ""},
			{"apisix_http_latency_count", []string{`type="request"`, `route="prom"`}, "4"},
			{"apisix_http_latency_bucket", []string{`type="request"`, `route="prom"`, `le="+Inf"`}, "4"},
		} {
			if got := plPromValue(text, c.metric, c.labels...); got != c.want {
				t.Errorf("%s%v = %q, want %q", c.metric, c.labels, got, c.want)
			}
		}
		if r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/other", promPort)); err != nil || r.StatusCode != 404 {
			t.Errorf("export server, other path: %v %v", r, err)
		} else {
			r.Body.Close()
		}
	})
	if t.Failed() {
		t.Log(strings.TrimSpace(g.output()))
	}
}
