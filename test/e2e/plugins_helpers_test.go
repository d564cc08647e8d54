package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// plReq is one request as a plugin test upstream received it.
type plReq struct {
	Method string
	URI    string
	Host   string
	Header http.Header
	Body   string
}

// plUpstream records every request it receives, so a test can tell what a
// plugin forwarded and, as importantly, that a rejected request never got
// there. Without a handler it answers 200 text/plain "upstream-body"; the
// query argument "status" picks another status.
type plUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []plReq
}

func newPlUpstream(t *testing.T, h http.HandlerFunc) *plUpstream {
	t.Helper()
	u := &plUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, plReq{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: string(b)})
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Upstream", "up")
		status := 200
		if s := r.URL.Query().Get("status"); s != "" {
			fmt.Sscan(s, &status)
		}
		w.WriteHeader(status)
		io.WriteString(w, "upstream-body")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *plUpstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

// count is how many requests the upstream received so far.
func (u *plUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// last is the latest request received (zero value when none).
func (u *plUpstream) last() plReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return plReq{}
	}
	return u.reqs[len(u.reqs)-1]
}

// plDo sends a data-plane request with a body and does not follow
// redirects (redirect tests need to see the 3xx itself). A header value of
// "" for User-Agent makes Go send no User-Agent at all.
func (g *gw) plDo(method, path, body string, hdr map[string]string) resp {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", g.httpPort, path), rd)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	c := http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}
	r, err := c.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return resp{Status: r.StatusCode, Header: r.Header, Body: b}
}

// plPut writes an Admin API object that must be accepted.
func plPut(t *testing.T, g *gw, path, body string) {
	t.Helper()
	r := g.admin("PUT", path, body)
	if r.Status != 200 && r.Status != 201 {
		t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
	}
}

// plSync writes a throw-away mocking route and waits until it is served:
// snapshots are swapped in write order, so every object written before is
// live too. Unlike waitRoute it sends nothing to the routes under test, so
// counters and breakers start clean.
func plSync(t *testing.T, g *gw) {
	t.Helper()
	n := time.Now().UnixNano()
	path := fmt.Sprintf("/__plsync/%d", n)
	plPut(t, g, fmt.Sprintf("/apisix/admin/routes/plsync-%d", n),
		fmt.Sprintf(`{"uri":%q,"plugins":{"mocking":{"response_example":"synced"}}}`, path))
	for i := 0; i < 250; i++ {
		if r := g.plDo("GET", path, "", nil); r.Status == 200 && string(r.Body) == "synced" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("route %s never served\n%s", path, g.output())
}

// plRefused is one Admin API write that must be refused with an exact
// error_msg.
type plRefused struct {
	name, path, body, msg string
}

// plRoute builds a route body for uri with plugins (a JSON object's
// members) and an upstream at addr.
func plRoute(uri, plugins, addr string) string {
	return fmt.Sprintf(`{"uri":%q,"plugins":{%s},"upstream":{"type":"roundrobin","nodes":{"%s":1}}}`, uri, plugins, addr)
}

func runPlRefused(t *testing.T, g *gw, cases []plRefused) {
	t.Helper()
	for _, c := range cases {
		t.Run("refused/"+c.name, func(t *testing.T) {
			path := c.path
			if path == "" {
				path = "/apisix/admin/routes/refused"
			}
			wantError(t, g.admin("PUT", path, c.body), 400, c.msg)
		})
	}
	// A refused write must not have created anything.
	if r := g.admin("GET", "/apisix/admin/routes/refused", ""); r.Status != 404 {
		t.Errorf("a refused route was stored: %d %s", r.Status, r.Body)
	}
}

// plCase is one request through the gateway and what must come of it.
type plCase struct {
	name   string
	method string // GET when empty
	path   string
	body   string
	hdr    map[string]string

	status   int
	wantBody *string           // exact body when set
	bodyHas  string            // substring of the body when set
	wantHdr  map[string]string // response headers; "" = absent

	up      *plUpstream       // the upstream to watch, if any
	reach   bool              // up must (true) or must not (false) receive it
	upURI   string            // request-target the upstream saw, when set
	upHdr   map[string]string // headers the upstream saw; "" = absent
	upBody  *string           // body the upstream saw, when set
	check   func(t *testing.T, r resp, got plReq)
	elapsed [2]time.Duration // min/max duration, when max > 0
}

// plStr is a pointer to s, for the optional exact-body fields.
func plStr(s string) *string { return &s }

// plJSON is APISIX's JSON error body: the object and one newline.
func plJSON(key, msg string) *string { return plStr(fmt.Sprintf("{%q:%q}\n", key, msg)) }

func runPlCases(t *testing.T, g *gw, cases []plCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.method
			if m == "" {
				m = "GET"
			}
			before := 0
			if c.up != nil {
				before = c.up.count()
			}
			start := time.Now()
			r := g.plDo(m, c.path, c.body, c.hdr)
			took := time.Since(start)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d; body %q", r.Status, c.status, r.Body)
			}
			if c.wantBody != nil && string(r.Body) != *c.wantBody {
				t.Errorf("body %q, want %q", r.Body, *c.wantBody)
			}
			if c.bodyHas != "" && !strings.Contains(string(r.Body), c.bodyHas) {
				t.Errorf("body %q, want it to contain %q", r.Body, c.bodyHas)
			}
			for k, v := range c.wantHdr {
				if got := r.Header.Get(k); got != v {
					t.Errorf("response header %s = %q, want %q", k, got, v)
				}
			}
			if c.elapsed[1] > 0 && (took < c.elapsed[0] || took > c.elapsed[1]) {
				t.Errorf("took %v, want between %v and %v", took, c.elapsed[0], c.elapsed[1])
			}
			var got plReq
			if c.up != nil {
				n := c.up.count() - before
				if c.reach && n != 1 {
					t.Fatalf("upstream received %d requests, want 1", n)
				}
				if !c.reach && n != 0 {
					t.Fatalf("upstream received %d requests, want none", n)
				}
				if c.reach {
					got = c.up.last()
				}
			}
			if c.upURI != "" && got.URI != c.upURI {
				t.Errorf("upstream request-target %q, want %q", got.URI, c.upURI)
			}
			for k, v := range c.upHdr {
				if g := got.Header.Get(k); g != v {
					t.Errorf("upstream header %s = %q, want %q", k, g, v)
				}
			}
			if c.upBody != nil && got.Body != *c.upBody {
				t.Errorf("upstream body %q, want %q", got.Body, *c.upBody)
			}
			if c.check != nil {
				c.check(t, r, got)
			}
		})
	}
}
