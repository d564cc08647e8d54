package csrf

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// Tokens from APISIX's t/plugin/csrf.t, issued by APISIX with key
// "userkey": apisixValid expires in 2053, apisixBadSign has a wrong
// signature, apisixOld was issued in 2022.
const (
	apisixValid   = "eyJyYW5kb20iOjAuNDI5ODYzMTk3MTYxMzksInNpZ24iOiI0ODRlMDY4NTkxMWQ5NmJhMDc5YzQ1ZGI0OTE2NmZkYjQ0ODhjODVkNWQ0NmE1Y2FhM2UwMmFhZDliNjE5OTQ2IiwiZXhwaXJlcyI6MjY0MzExOTYyNH0="
	apisixBadSign = "eyJyYW5kb20iOjAuMTYwOTgzMDYwMTg0NDksInNpZ24iOiI2YTEyYmViYTI4MzAyNDg4MDRmNGU0N2VkZDY5MWFmNjg5N2IyNzQ4YTY1YWMwMDJiMGFjMzFlN2NlMDdlZTViIiwiZXhwaXJlcyI6MTc0MzExOTkxMX0="
	apisixOld     = "eyJyYW5kb20iOjAuMDY3NjAxMDQwMDM5MzI4LCJzaWduIjoiOTE1Yjg2MjBhNTg1N2FjZmIzNjIxOTNhYWVlN2RkYjY5NmM0NWYwZjE5YjY5Zjg3NjM4ZTllNGNjNjYxYjQwNiIsImV4cGlyZXMiOjE2NDMxMjAxOTN9"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, conf, err string
		want            Config
	}{
		{"defaults", `{"key":"k"}`, "", Config{Key: "k", Expires: 7200, Name: "apisix-csrf-token"}},
		{"all", `{"name":"_csrf","expires":3600,"key":"testkey"}`, "", Config{Key: "testkey", Expires: 3600, Name: "_csrf"}},
		{"no key", `{}`, `property "key" is required`, Config{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(json.RawMessage(tc.conf))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.conf != tc.want {
				t.Fatalf("conf = %+v, want %+v", p.conf, tc.want)
			}
		})
	}
}

func TestAdminSchema(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	r := g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"csrf":{}},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}}`)
	if want := `{"error_msg":"failed to check the configuration of plugin csrf err: property \"key\" is required"}`; r.Status != 400 || strings.TrimSpace(r.Body) != want {
		t.Errorf("%d %s", r.Status, r.Body)
	}
	r = g.Admin("PUT", "/apisix/admin/routes/1", `{"uri":"/a","plugins":{"csrf":{"key":"k","expires":"1"}},"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}}}`)
	if r.Status != 400 || !strings.Contains(r.Body, `property \"expires\" validation failed: wrong type: expected integer, got string`) {
		t.Errorf("%d %s", r.Status, r.Body)
	}
}

// TestInterop checks that tokens are APISIX's: APISIX-issued tokens verify
// here, and ours have the same layout and signature scheme.
func TestInterop(t *testing.T) {
	p, err := New(json.RawMessage(`{"key":"userkey","expires":1000000000}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.verify(apisixValid); err != nil {
		t.Errorf("APISIX token rejected: %v", err)
	}
	if err := p.verify(strings.TrimRight(apisixValid, "=")); err != nil {
		t.Errorf("unpadded APISIX token rejected: %v", err)
	}
	if err := p.verify(apisixBadSign); err == nil || err.Error() != "Invalid signatures" {
		t.Errorf("bad signature: %v", err)
	}
	short, _ := New(json.RawMessage(`{"key":"userkey","expires":1}`))
	if err := short.verify(apisixOld); err == nil || err.Error() != "token has expired" {
		t.Errorf("old token: %v", err)
	}
	never, _ := New(json.RawMessage(`{"key":"userkey","expires":0}`))
	if err := never.verify(apisixOld); err != nil && err.Error() == "token has expired" {
		t.Errorf("expires 0 must never expire: %v", err)
	}
	// Reissue APISIX's valid token from its own random and time: the JSON
	// members and signature must come out identical.
	tok := p.token(0.42986319716139, 2643119624)
	raw, _ := base64.StdEncoding.DecodeString(tok)
	var ours, theirs map[string]any
	_ = json.Unmarshal(raw, &ours)
	apisixRaw, _ := base64.StdEncoding.DecodeString(apisixValid)
	_ = json.Unmarshal(apisixRaw, &theirs)
	if ours["sign"] != theirs["sign"] || ours["random"] != theirs["random"] || ours["expires"] != theirs["expires"] {
		t.Errorf("token %s differs from APISIX's %s", raw, apisixRaw)
	}
	for _, bad := range []string{"", "!!!", base64.StdEncoding.EncodeToString([]byte(`[1]`)),
		base64.StdEncoding.EncodeToString([]byte(`{"expires":1}`)),
		base64.StdEncoding.EncodeToString([]byte(`{"random":1}`)),
		base64.StdEncoding.EncodeToString(append(apisixRaw, 'x'))} {
		if err := p.verify(bad); err == nil {
			t.Errorf("verify(%q) accepted", bad)
		}
	}
}

func TestCookieTime(t *testing.T) {
	tests := []struct {
		unix int64
		want string
	}{
		{1290079655, "Thu, 18-Nov-10 11:27:35 GMT"},
		{0, "Thu, 01-Jan-70 00:00:00 GMT"},
		{2643119624, "Fri, 03-Oct-2053 15:53:44 GMT"},
	}
	for _, tc := range tests {
		if got := string(appendCookieTime(nil, tc.unix)); got != tc.want {
			t.Errorf("cookie time %d = %q, want %q", tc.unix, got, tc.want)
		}
	}
}

var cookieRe = regexp.MustCompile(`^apisix-csrf-token=([^;]+);path=/;SameSite=Lax;Expires=[A-Z][a-z]{2}, \d\d-[A-Z][a-z]{2}-\d\d(\d\d)? \d\d:\d\d:\d\d GMT$`)

func TestBehaviour(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"csrf":{"key":"userkey","expires":1000000000}},"upstream":`+rec.Upstream()+`}`)

	get := g.Do("GET", "/hello", nil, "")
	if get.Status != 200 {
		t.Fatalf("GET: %d", get.Status)
	}
	m := cookieRe.FindStringSubmatch(get.Header.Get("Set-Cookie"))
	if m == nil {
		t.Fatalf("Set-Cookie = %q", get.Header.Get("Set-Cookie"))
	}
	issued := m[1]
	setCookie := get.Header.Get("Set-Cookie")

	tests := []struct {
		name    string
		method  string
		headers map[string]string
		status  int
		body    string
	}{
		{"head passes", "HEAD", nil, 200, ""},
		{"options passes", "OPTIONS", nil, 200, "ok"},
		{"no token", "POST", nil, 401, `{"error_msg":"no csrf token in headers"}`},
		{"only header", "POST", map[string]string{"apisix-csrf-token": "wrongtoken"}, 401, `{"error_msg":"no csrf cookie"}`},
		{"only cookie", "POST", map[string]string{"Cookie": "apisix-csrf-token=testcookie"}, 401, `{"error_msg":"no csrf token in headers"}`},
		{"empty header", "PUT", map[string]string{"apisix-csrf-token": "", "Cookie": "apisix-csrf-token=x"}, 401, `{"error_msg":"no csrf token in headers"}`},
		{"mismatch", "POST", map[string]string{"apisix-csrf-token": "wrongtoken", "Cookie": "apisix-csrf-token=testcookie"}, 401, `{"error_msg":"csrf token mismatch"}`},
		{"bad signature", "POST", map[string]string{"apisix-csrf-token": apisixBadSign, "Cookie": "apisix-csrf-token=" + apisixBadSign}, 401, `{"error_msg":"Failed to verify the csrf token signature"}`},
		{"garbage token", "DELETE", map[string]string{"apisix-csrf-token": "abc", "Cookie": "apisix-csrf-token=abc"}, 401, `{"error_msg":"Failed to verify the csrf token signature"}`},
		{"apisix token", "POST", map[string]string{"apisix-csrf-token": apisixValid, "Cookie": "apisix-csrf-token=" + apisixValid}, 200, "ok"},
		{"issued token", "PATCH", map[string]string{"apisix-csrf-token": issued, "Cookie": setCookie}, 200, "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.Count()
			r := g.Do(tc.method, "/hello", tc.headers, "")
			if r.Status != tc.status || strings.TrimSpace(r.Body) != tc.body {
				t.Fatalf("got %d %q, want %d %q", r.Status, r.Body, tc.status, tc.body)
			}
			// Every response, rejections included, carries a new token.
			if !cookieRe.MatchString(r.Header.Get("Set-Cookie")) {
				t.Errorf("Set-Cookie = %q", r.Header.Get("Set-Cookie"))
			}
			reached := rec.Count() > before
			if reached != (tc.status == 200) {
				t.Errorf("upstream reached = %v", reached)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	g := plugintest.Start(t, []*plugin.Def{Def()}, nil)
	rec := plugintest.NewRecorder(t)
	g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/hello","plugins":{"csrf":{"key":"userkey","expires":1}},"upstream":`+rec.Upstream()+`}`)
	r := g.Do("POST", "/hello", map[string]string{"apisix-csrf-token": apisixOld, "Cookie": "apisix-csrf-token=" + apisixOld}, "")
	if r.Status != 401 || strings.TrimSpace(r.Body) != `{"error_msg":"Failed to verify the csrf token signature"}` {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	// A token issued by the gateway passes at once and fails once it is
	// more than expires seconds old (whole seconds, as ngx.time()).
	p, _ := New(json.RawMessage(`{"key":"userkey","expires":1}`))
	now := time.Unix(1700000000, 0)
	p.now = func() time.Time { return now }
	tok := p.token(0.5, now.Unix())
	if err := p.verify(tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if err := p.verify(tok); err == nil || err.Error() != "token has expired" {
		t.Fatalf("verify after 2s: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(apisixValid)
	f.Add(apisixBadSign)
	f.Add("")
	f.Add("e30=")
	p, _ := New(json.RawMessage(`{"key":"userkey"}`))
	f.Fuzz(func(t *testing.T, tok string) {
		_ = p.verify(tok)
	})
}

func BenchmarkCSRF(b *testing.B) {
	p, _ := New(json.RawMessage(`{"key":"userkey","expires":1000000000}`))
	c := engine.AcquireCtx()
	defer engine.ReleaseCtx(c)
	hdr := engine.Header{"Apisix-Csrf-Token": {apisixValid}, "Cookie": {"apisix-csrf-token=" + apisixValid}}
	w := &nopWriter{h: engine.Header{}}
	r := &plugin.Request{Ctx: c}
	b.ReportAllocs()
	for b.Loop() {
		c.Method, c.Header, c.W = "POST", hdr, w
		clear(w.h)
		p.Access(r)
		if r.Exited() {
			b.Fatal("rejected")
		}
		p.HeaderFilter(r)
	}
}

type nopWriter struct{ h engine.Header }

func (w *nopWriter) Header() engine.Header       { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) Flush() error                { return nil }
