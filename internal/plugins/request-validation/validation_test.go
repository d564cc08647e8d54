package requestvalidation

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, conf, err string
	}{
		{"empty body schema", `{"body_schema":{}}`, ""},
		{"header schema", `{"header_schema":{"type":"object","required":["x"]}}`, ""},
		{"neither", `{"rejected_msg":"m"}`, `object matches none of the required: ["header_schema"] or ["body_schema"]`},
		{"bad type", `{"body_schema":{"type":"test"}}`, "invalid JSON type: test"},
		{"bad header type", `{"header_schema":{"type":"test"}}`, "invalid JSON type: test"},
		{"bad nested type", `{"body_schema":{"type":"object","properties":{"a":{"type":"nope"}}}}`, "invalid JSON type: nope"},
		{"enum not array", `{"body_schema":{"type":"string","properties":{"test":{"type":"string","enum":"test-enum"}}}}`, "table expected, got string"},
		{"required not array", `{"header_schema":{"type":"object","required":"test-required"}}`, "table expected, got string"},
		{"property named type", `{"body_schema":{"type":"object","properties":{"type":{"type":"string"}}}}`, ""},
		{"bad pattern", `{"body_schema":{"pattern":"("}}`, "invalid schema: compile schema: \"sluice:///schema.json#\" is not valid against metaschema: jsonschema validation failed with 'http://json-schema.org/draft-07/schema#' - at '/pattern': '(' is not valid regex: error parsing regexp: missing closing ): `(`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tc.conf))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("err = %q, want %q", got, tc.err)
			}
		})
	}
}

func TestAdminSchema(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	tests := []struct {
		conf, want string
	}{
		{`{"rejected_msg":"customize reject message"}`, `object matches none of the required`},
		{`{"body_schema":{"type":"test"}}`, `failed to check the configuration of plugin request-validation err: invalid JSON type: test`},
		{`{"header_schema":{"type":"object","required":"test-required"}}`, `failed to check the configuration of plugin request-validation err: table expected, got string`},
		{`{"body_schema":{},"rejected_msg":"` + strings.Repeat("x", 257) + `"}`, `string too long`},
		{`{"body_schema":{},"rejected_code":600}`, `property \"rejected_code\" validation failed`},
		{`{"body_schema":{},"max_req_body_size":0}`, `property \"max_req_body_size\" validation failed`},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"request-validation":`+tc.conf+`},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}}`)
			if r.Status != 400 || !strings.Contains(r.Body, tc.want) {
				t.Fatalf("%d %s, want 400 containing %s", r.Status, r.Body, tc.want)
			}
		})
	}
}

// echo is an upstream that records the body and declared length of every
// request (plugintest's Recorder does not expose bodies).
type echo struct {
	mu   sync.Mutex
	reqs []seen
	url  string
}

type seen struct {
	body    string
	length  int64
	chunked bool
}

func newEcho(t *testing.T) *echo {
	e := &echo{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.reqs = append(e.reqs, seen{string(b), r.ContentLength, len(r.TransferEncoding) > 0})
		e.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	e.url = s.URL
	return e
}

func (e *echo) Count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.reqs)
}

func (e *echo) last() seen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reqs[len(e.reqs)-1]
}

func (e *echo) Upstream() string {
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, strings.TrimPrefix(e.url, "http://"))
}

// rawDo sends a request over a raw connection, so tests can send
// duplicate headers and chunked bodies exactly.
func rawDo(t *testing.T, g *plugintest.Gateway, raw string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.ProxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRaw covers what net/http's client cannot send: duplicate
// Content-Type headers and a chunked body.
func TestRaw(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := newEcho(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/echo","plugins":{"request-validation":{"body_schema":{"type":"object","required":["required_payload"],"properties":{"required_payload":{"type":"string"}}},"rejected_code":400,"rejected_msg":"duplicated content-type"}},"upstream":`+rec.Upstream()+`}`)
	body := `{"required_payload": "hello"}`
	for _, cts := range [][2]string{{"application/x-www-form-urlencoded", "application/json"}, {"application/json", "application/x-www-form-urlencoded"}} {
		st, b := rawDo(t, g, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: "+cts[0]+"\r\nContent-Type: "+cts[1]+
			fmt.Sprintf("\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))+body)
		if st != 400 || b != "duplicated content-type" {
			t.Errorf("%v: %d %q", cts, st, b)
		}
	}
	if rec.Count() != 0 {
		t.Fatal("rejected requests reached the upstream")
	}
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	st, b := rawDo(t, g, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+chunked)
	if st != 200 || b != "ok" {
		t.Fatalf("chunked: %d %q", st, b)
	}
	if got := rec.last(); got.body != body || got.length != int64(len(body)) || got.chunked {
		t.Fatalf("upstream got %+v", got)
	}
}

func TestBehaviour(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := newEcho(t)
	route := func(conf string) {
		g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/v","plugins":{"request-validation":`+conf+`},"upstream":`+rec.Upstream()+`}`)
	}
	bodyAll := `{"body_schema":{"type":"object","required":["required_payload"],"properties":{"required_payload":{"type":"string"},"boolean_payload":{"type":"boolean"},"timeouts":{"type":"integer","minimum":1,"maximum":254,"default":3},"req_headers":{"type":"array","minItems":1,"items":{"type":"string"}}}}}`
	// The engine drops header names with '_' (nginx's default), so the
	// header version of APISIX's test uses '-'.
	headerAll := `{"header_schema":{"type":"object","required":["required-payload"],"properties":{"required-payload":{"type":"string"},"boolean-payload":{"type":"boolean"}}}}`
	enumMsg := `{"header_schema":{"type":"object","properties":{"test":{"type":"string","enum":["a","b","c"]}},"required":["test"]},"rejected_msg":"customize reject message for header_schema.required"}`
	bodyMsg := `{"body_schema":{"type":"object","properties":{"test":{"type":"string","enum":["a","b","c"]}},"required":["test"]},"rejected_msg":"customize reject message for body_schema.required"}`
	bodyCode := `{"body_schema":{"type":"object","properties":{"test":{"type":"string","enum":["a","b","c"]}},"required":["test"]},"rejected_code":505}`
	form := `{"body_schema":{"type":"object","required":["required_payload"],"properties":{"required_payload":{"type":"string"},"flag":{"type":"boolean"}}},"rejected_msg":"duplicated content-type"}`
	small := `{"max_req_body_size":10,"body_schema":{"type":"object","required":["required_payload"],"properties":{"required_payload":{"type":"string"}}}}`
	dup := `{"body_schema":{"type":"object","properties":{"k":{"pattern":"^good$"}}}}`

	type rq struct {
		method  string
		headers map[string]string
		body    string
		status  int
		resp    string // exact response body; "*" = any
		// upstream is the body the upstream must receive; "-" = never
		// reached.
		upstream string
	}
	json := map[string]string{"Content-Type": "application/json"}
	formCT := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	longForm := strings.Repeat("a=b&", 101) + "required_payload=101-hello"
	tests := []struct {
		name string
		conf string
		reqs []rq
	}{
		{"body required", bodyAll, []rq{
			{"POST", json, `{"boolean-payload": true}`, 400, `property "required_payload" is required`, "-"},
			{"POST", json, `{"required_payload":"x","timeouts":300}`, 400, `property "timeouts" validation failed: expected 300 to be at most 254`, "-"},
			{"POST", json, `{"required_payload": "hello", "req_headers": ["a"]}`, 200, "ok", `{"required_payload": "hello", "req_headers": ["a"]}`},
			{"POST", nil, `{"required_payload":`, 400, "*", "-"},
			{"GET", nil, "", 400, "*", "-"},
		}},
		{"header required", headerAll, []rq{
			{"GET", json, "", 400, `property "required-payload" is required`, "-"},
			{"GET", map[string]string{"Required-Payload": "test payload"}, "", 200, "ok", ""},
			{"GET", map[string]string{"Required-Payload": "p", "Boolean-Payload": "true"}, "", 400, `property "boolean-payload" validation failed: wrong type: expected boolean, got string`, "-"},
		}},
		{"header custom message", enumMsg, []rq{
			{"GET", nil, "", 400, "customize reject message for header_schema.required", "-"},
			{"GET", map[string]string{"test": "abc"}, "", 400, "customize reject message for header_schema.required", "-"},
			{"GET", map[string]string{"test": "a"}, "", 200, "ok", ""},
		}},
		{"body custom message", bodyMsg, []rq{
			{"GET", nil, "", 400, "customize reject message for body_schema.required", "-"},
			{"POST", nil, `{"test":"abc"}`, 400, "customize reject message for body_schema.required", "-"},
			{"POST", nil, `not json`, 400, "customize reject message for body_schema.required", "-"},
			{"POST", nil, `{"test":"a"}`, 200, "ok", `{"test":"a"}`},
		}},
		{"body custom code", bodyCode, []rq{
			{"GET", nil, "", 505, "*", "-"},
			{"POST", nil, `{"test":"abc"}`, 505, `property "test" validation failed: matches none of the enum values`, "-"},
			{"POST", nil, `{"test":"a"}`, 200, "ok", `{"test":"a"}`},
		}},
		{"form", form, []rq{
			{"POST", formCT, longForm, 200, "ok", longForm},
			{"POST", map[string]string{"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=utf-8"}, longForm, 200, "ok", longForm},
			{"POST", formCT, "a=b", 400, "duplicated content-type", "-"},
			{"POST", formCT, "required_payload=x&flag", 200, "ok", "required_payload=x&flag"},
			{"POST", formCT, "required_payload=x&flag=1", 400, "duplicated content-type", "-"},
			{"POST", formCT, "required_payload=a&required_payload=b", 400, "duplicated content-type", "-"},
			{"POST", formCT, "required_payload=hello+w%6Frld%", 200, "ok", "required_payload=hello+w%6Frld%"},
		}},
		{"max body", small, []rq{
			{"POST", json, `{"required_payload": "this body is well over ten bytes"}`, 400, "*", "-"},
			{"POST", json, `{"required_payload":"x"}`, 400, "*", "-"},
			{"POST", json, `{"required_payload":""}`[:10], 400, "*", "-"},
		}},
		{"duplicate keys", dup, []rq{
			{"POST", nil, `{"k":"bad","k":"good"}`, 200, "ok", `{"k":"good"}`},
			{"POST", nil, `{"k":"good","k":"bad"}`, 400, `property "k" validation failed: failed to match pattern "^good$" with "bad"`, "-"},
			{"POST", nil, `{"k":"good"}`, 200, "ok", `{"k":"good"}`},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			route(tc.conf)
			for i, q := range tc.reqs {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					before := rec.Count()
					r := g.Do(q.method, "/v", q.headers, q.body)
					if r.Status != q.status {
						t.Fatalf("status = %d, want %d (body %q)", r.Status, q.status, r.Body)
					}
					if q.resp != "*" && r.Body != q.resp {
						t.Fatalf("body = %q, want %q", r.Body, q.resp)
					}
					if q.upstream == "-" {
						if rec.Count() != before {
							t.Fatal("rejected request reached the upstream")
						}
						return
					}
					if rec.Count() != before+1 {
						t.Fatal("request did not reach the upstream")
					}
					got := rec.last()
					if got.body != q.upstream {
						t.Fatalf("upstream body = %q, want %q", got.body, q.upstream)
					}
					if q.upstream != "" && got.length != int64(len(q.upstream)) {
						t.Fatalf("upstream Content-Length = %d, want %d", got.length, len(q.upstream))
					}
				})
			}
		})
	}
}

// TestLimits checks both body caps on chunked bodies (no Content-Length to
// reject early): max_req_body_size rejects with rejected_code, the
// engine's client_max_body_size (sluice.limits.max_body_bytes) with 413.
func TestLimits(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, func(c *config.Config) { c.Sluice.Limits.MaxBodyBytes = 100 })
	rec := newEcho(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/small","plugins":{"request-validation":{"max_req_body_size":10,"body_schema":{}}},"upstream":`+rec.Upstream()+`}`)
	g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/big","plugins":{"request-validation":{"body_schema":{},"rejected_msg":"no"}},"upstream":`+rec.Upstream()+`}`)
	chunked := func(path, body string) (int, string) {
		return rawDo(t, g, "POST "+path+" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body))
	}
	if st, b := chunked("/small", `{"a":"0123456789"}`); st != 400 || !strings.Contains(b, "400 Bad Request") {
		t.Errorf("over max_req_body_size: %d %q", st, b)
	}
	if st, _ := chunked("/small", `{}`); st != 200 {
		t.Errorf("under max_req_body_size: %d", st)
	}
	if st, b := chunked("/big", `"`+strings.Repeat("x", 200)+`"`); st != 413 || !strings.Contains(b, "413 Request Entity Too Large") {
		t.Errorf("over client_max_body_size: %d %q", st, b)
	}
	if rec.Count() != 1 {
		t.Errorf("upstream got %d requests, want 1", rec.Count())
	}
}

func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]any
	}{
		{"", map[string]any{}},
		{"a=b&c=d", map[string]any{"a": "b", "c": "d"}},
		{"a=1&a=2&a=3", map[string]any{"a": []any{"1", "2", "3"}}},
		{"flag&x=", map[string]any{"flag": true, "x": ""}},
		{"&&=v&k+1=a+b%20c", map[string]any{"k 1": "a b c"}},
		{"bad=%zz%4", map[string]any{"bad": "%zz%4"}},
		{"mix=%41%zz+", map[string]any{"mix": "A%zz "}},
	}
	for _, tc := range tests {
		if got := decodeArgs([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("decodeArgs(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func FuzzDecodeArgs(f *testing.F) {
	for _, s := range []string{"a=b", "a&b=%41", "%", "a=1&a=2&a", "+=+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := decodeArgs([]byte(s))
		for k := range m {
			if k == "" {
				t.Fatal("empty key")
			}
		}
	})
}

func BenchmarkRequestValidation(b *testing.B) {
	p, err := New(json.RawMessage(`{"header_schema":{"type":"object","required":["x-token"]},"body_schema":{"type":"object","required":["name"],"properties":{"name":{"type":"string","minLength":1},"age":{"type":"integer","minimum":0}}}}`))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"name":"alice","age":30,"tags":["a","b"]}`)
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	r := &plugin.Request{Ctx: c}
	hdr := engine.Header{"X-Token": {"t"}, "Content-Type": {"application/json"}, "Content-Length": {fmt.Sprint(len(body))}}
	b.ReportAllocs()
	for b.Loop() {
		r.Reset()
		c.Reset()
		r.Ctx = c
		c.Method, c.Header, c.ContentLength = "POST", hdr, int64(len(body))
		c.Body = io.NopCloser(bytes.NewReader(body))
		p.Rewrite(r)
		if r.Exited() {
			b.Fatal("rejected")
		}
	}
}
