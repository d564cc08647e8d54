package router

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/expr"
)

type mapVars map[string]string

func (m mapVars) Var(name string) (string, bool) {
	v, ok := m[name]
	return v, ok
}

func mustExpr(t testing.TB, s string) *expr.Expr {
	t.Helper()
	e, err := expr.Compile(json.RawMessage(s))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type req struct {
	path, host, raw, method, addr string
	vars                          mapVars
}

func (q req) request() *Request {
	r := &Request{Path: q.path, Host: q.host, RawHost: q.raw, Method: q.method}
	if r.Method == "" {
		r.Method = "GET"
	}
	if q.addr != "" {
		r.RemoteAddr = netip.MustParseAddr(q.addr)
	} else {
		r.RemoteAddr = netip.MustParseAddr("127.0.0.1")
	}
	if q.vars != nil {
		r.Vars = q.vars
	}
	return r
}

type matchCase struct {
	name string
	req  req
	want string // route ID, "" for no match
}

func runCases(t *testing.T, kind string, routes []Route, cases []matchCase) {
	t.Helper()
	for i := range routes {
		routes[i].Value = routes[i].ID
	}
	tbl, err := New(kind, routes)
	if err != nil {
		t.Fatal(err)
	}
	var p Params
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tbl.Match(c.req.request(), &p)
			id := ""
			if got != nil {
				id = got.Value.(string)
			}
			if id != c.want {
				t.Fatalf("%s %s host=%q: got route %q, want %q", kind, c.req.path, c.req.host, id, c.want)
			}
		})
	}
}

var allKinds = []string{KindHostURI, KindURI, KindURIWithParams}

func TestPrecedenceTable(t *testing.T) {
	// The example from APISIX's router docs (reference §3.5).
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) {
			runCases(t, kind, []Route{
				{ID: "foo*", URIs: []string{"/blog/foo/*"}},
				{ID: "a*", URIs: []string{"/blog/foo/a/*"}},
				{ID: "c*", URIs: []string{"/blog/foo/c/*"}},
				{ID: "bar", URIs: []string{"/blog/foo/bar"}},
			}, []matchCase{
				{"exact", req{path: "/blog/foo/bar"}, "bar"},
				{"longer prefix a", req{path: "/blog/foo/a/b/c"}, "a*"},
				{"longer prefix c", req{path: "/blog/foo/c/d"}, "c*"},
				{"short prefix", req{path: "/blog/foo/gloo"}, "foo*"},
				{"no match", req{path: "/blog/bar"}, ""},
				{"prefix needs slash", req{path: "/blog/foo"}, ""},
				{"prefix with empty tail", req{path: "/blog/foo/"}, "foo*"},
			})
		})
	}
}

func TestPatterns(t *testing.T) {
	runCases(t, KindURI, []Route{
		{ID: "star-no-slash", URIs: []string{"/foo*"}},
		{ID: "exact", URIs: []string{"/exact"}},
		{ID: "colon-literal", URIs: []string{"/file:list"}},
		{ID: "named", URIs: []string{"/files/*path/raw"}},
		{ID: "root", URIs: []string{"/*"}},
	}, []matchCase{
		{"foo star matches foo", req{path: "/foo"}, "star-no-slash"},
		{"foo star matches foobar", req{path: "/foobar"}, "star-no-slash"},
		{"foo star matches foo slash", req{path: "/foo/x"}, "star-no-slash"},
		{"exact", req{path: "/exact"}, "exact"},
		{"exact is case sensitive", req{path: "/EXACT"}, "root"},
		{"exact no trailing slash tolerance", req{path: "/exact/"}, "root"},
		{"colon literal", req{path: "/file:list"}, "colon-literal"},
		{"named star", req{path: "/files/a/b/raw"}, "named"},
		{"named star tail mismatch", req{path: "/files/a/b/cooked"}, "root"},
		{"root catch all", req{path: "/anything"}, "root"},
	})
}

func TestPriority(t *testing.T) {
	runCases(t, KindURI, []Route{
		{ID: "p1", URIs: []string{"/server_port"}, Priority: 1},
		{ID: "p2", URIs: []string{"/server_port"}, Priority: 2},
		{ID: "d1", URIs: []string{"/dup"}},
		{ID: "d2", URIs: []string{"/dup"}},
		{ID: "low", URIs: []string{"/a/*"}, Priority: -5},
		{ID: "high", URIs: []string{"/a/*"}, Priority: 10},
		{ID: "shorter", URIs: []string{"/b*"}},
		{ID: "longer", URIs: []string{"/b*"}},
		{ID: "exact-low", URIs: []string{"/a/x"}, Priority: -100},
		{ID: "prefix-short-high", URIs: []string{"/c/*"}, Priority: 100},
		{ID: "prefix-long-low", URIs: []string{"/c/d/*"}, Priority: -100},
		{ID: "len-short", URIs: []string{"/e/*"}},
		{ID: "len-long", URIs: []string{"/e/*name"}},
	}, []matchCase{
		{"higher priority on same exact path", req{path: "/server_port"}, "p2"},
		{"insertion order breaks ties", req{path: "/dup"}, "d1"},
		{"higher priority on same prefix", req{path: "/a/y"}, "high"},
		{"exact beats prefix regardless of priority", req{path: "/a/x"}, "exact-low"},
		{"longer prefix beats priority", req{path: "/c/d/e"}, "prefix-long-low"},
		{"insertion order on identical prefix", req{path: "/bz"}, "shorter"},
		{"longer pattern first on same prefix", req{path: "/e/f"}, "len-long"},
	})
}

func TestConditions(t *testing.T) {
	routes := []Route{
		{ID: "get", URIs: []string{"/m"}, Methods: []string{"GET"}},
		{ID: "post-put", URIs: []string{"/m"}, Methods: []string{"POST", "PUT"}},
		{ID: "any", URIs: []string{"/m"}},
		{ID: "lan", URIs: []string{"/ip"}, RemoteAddrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{ID: "mapped", URIs: []string{"/ip"}, RemoteAddrs: []netip.Prefix{netip.MustParsePrefix("::ffff:192.168.0.0/112")}},
		{ID: "json", URIs: []string{"/v/*"}, Vars: mustExpr(t, `[["arg_fmt","==","json"]]`)},
		{ID: "old", URIs: []string{"/v/*"}, Vars: mustExpr(t, `[["http_version","<",2]]`), Priority: 1},
		{ID: "v-fallback", URIs: []string{"/v*"}},
		{ID: "host", URIs: []string{"/h"}, Hosts: []string{"Foo.COM"}},
		{ID: "wild", URIs: []string{"/h"}, Hosts: []string{"*.bar.com"}},
		{ID: "port", URIs: []string{"/h"}, Hosts: []string{"baz.com:8080"}},
		{ID: "any-host", URIs: []string{"/h2"}, Hosts: []string{"*"}},
	}
	runCases(t, KindURI, routes, []matchCase{
		{"method get", req{path: "/m", method: "GET"}, "get"},
		{"method put", req{path: "/m", method: "PUT"}, "post-put"},
		{"method other", req{path: "/m", method: "DELETE"}, "any"},
		{"method unknown", req{path: "/m", method: "BREW"}, "any"},
		{"remote addr cidr", req{path: "/ip", addr: "10.9.8.7"}, "lan"},
		{"remote addr v6", req{path: "/ip", addr: "::1"}, "lan"},
		{"remote addr mapped prefix", req{path: "/ip", addr: "192.168.3.4"}, "mapped"},
		{"remote addr mapped request", req{path: "/ip", addr: "::ffff:10.0.0.1"}, "lan"},
		{"remote addr none", req{path: "/ip", addr: "172.16.0.1"}, ""},
		{"vars priority", req{path: "/v/x", vars: mapVars{"arg_fmt": "json", "http_version": "1"}}, "old"},
		{"vars second", req{path: "/v/x", vars: mapVars{"arg_fmt": "json", "http_version": "2"}}, "json"},
		{"vars fall to shorter prefix", req{path: "/v/x", vars: mapVars{"arg_fmt": "xml"}}, "v-fallback"},
		{"vars nil vars", req{path: "/v/x"}, "v-fallback"},
		{"host exact lowercased", req{path: "/h", host: "foo.com"}, "host"},
		{"host wildcard", req{path: "/h", host: "a.b.bar.com"}, "wild"},
		{"host wildcard not apex", req{path: "/h", host: "bar.com"}, ""},
		{"host wildcard bare dot", req{path: "/h", host: ".bar.com"}, "wild"},
		{"host with port uses raw", req{path: "/h", host: "baz.com", raw: "baz.com:8080"}, "port"},
		{"host with port mismatch", req{path: "/h", host: "baz.com", raw: "baz.com:9090"}, ""},
		{"host star", req{path: "/h2", host: "whatever"}, "any-host"},
	})
}

func TestHostURIPrecedence(t *testing.T) {
	routes := []Route{
		{ID: "uri-exact", URIs: []string{"/server_port"}},
		{ID: "wild-all", URIs: []string{"/*"}, Hosts: []string{"*.test.com"}},
		{ID: "exact-host", URIs: []string{"/server_port"}, Hosts: []string{"www.test.com"}, Methods: []string{"POST"}},
		{ID: "longer-wild", URIs: []string{"/deep/*"}, Hosts: []string{"*.api.test.com"}},
		{ID: "star-host", URIs: []string{"/star"}, Hosts: []string{"*"}},
		{ID: "uri-fallback", URIs: []string{"/deep/*"}},
		{ID: "multi", URIs: []string{"/multi"}, Hosts: []string{"a.com", "b.com"}},
	}
	runCases(t, KindHostURI, routes, []matchCase{
		{"host wildcard prefix beats host-less exact", req{path: "/server_port", host: "a.test.com"}, "wild-all"},
		{"no host route -> uri tree", req{path: "/server_port", host: "other.com"}, "uri-exact"},
		{"exact host first", req{path: "/server_port", host: "www.test.com", method: "POST"}, "exact-host"},
		{"exact host fails, wildcard next", req{path: "/server_port", host: "www.test.com"}, "wild-all"},
		{"longest suffix first", req{path: "/deep/x", host: "v1.api.test.com"}, "longer-wild"},
		{"shorter suffix next", req{path: "/other", host: "v1.api.test.com"}, "wild-all"},
		{"star host", req{path: "/star", host: "x.org"}, "star-host"},
		{"host route wins over host-less longer prefix", req{path: "/deep/x", host: "b.test.com"}, "wild-all"},
		{"host-less when no host bucket matches", req{path: "/deep/x", host: "x.org"}, "uri-fallback"},
		{"apex not covered by wildcard", req{path: "/deep/x", host: "test.com"}, "uri-fallback"},
		{"multi host a", req{path: "/multi", host: "a.com"}, "multi"},
		{"multi host b", req{path: "/multi", host: "b.com"}, "multi"},
		{"multi host c", req{path: "/multi", host: "c.com"}, ""},
	})
	// The same routes in radixtree_uri: hosts are only a condition, so the
	// host-less exact path wins over a host-wildcard prefix.
	runCases(t, KindURI, routes, []matchCase{
		{"uri mode exact path first", req{path: "/server_port", host: "a.test.com"}, "uri-exact"},
		{"uri mode longer prefix with host", req{path: "/deep/x", host: "v1.api.test.com"}, "longer-wild"},
	})
}

func TestParams(t *testing.T) {
	routes := []Route{
		{ID: "user", URIs: []string{"/user/:id"}},
		{ID: "user-ext", URIs: []string{"/user/:id/*"}},
		{ID: "files", URIs: []string{"/files/*path/raw"}},
		{ID: "nested", URIs: []string{"/a/:x/b/:y"}},
		{ID: "slash", URIs: []string{"/s/:name/"}},
		{ID: "v1", URIs: []string{"/v1/:id/products/:type/list"}},
	}
	for i := range routes {
		routes[i].Value = routes[i].ID
	}
	tbl, err := New(KindURIWithParams, routes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
		params     map[string]string
	}{
		{"/user/42", "user", map[string]string{"id": "42"}},
		{"/user/", "", nil},
		{"/user/42/posts/1", "user-ext", map[string]string{"id": "42", ":ext": "posts/1"}},
		{"/files/x/y/raw", "files", map[string]string{"path": "x/y"}},
		{"/a/1/b/2", "nested", map[string]string{"x": "1", "y": "2"}},
		{"/a/1/c/2", "", nil},
		{"/s/bob/", "slash", map[string]string{"name": "bob"}},
		{"/s/bob", "", nil},
		// t/router/radixtree-uri-with-parameter-encoded-slash.t: an encoded
		// slash (the engine normaliser decodes it; this case feeds the router directly) is not a separator.
		{"/v1/te%2Fst/products/electronics/list", "v1", map[string]string{"id": "te%2Fst", "type": "electronics"}},
	}
	var p Params
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := tbl.Match(&Request{Path: tt.path, Method: "GET"}, &p)
			id := ""
			if got != nil {
				id = got.Value.(string)
			}
			if id != tt.want {
				t.Fatalf("got %q want %q", id, tt.want)
			}
			if p.Len() != len(tt.params) {
				t.Fatalf("got %d params, want %d", p.Len(), len(tt.params))
			}
			for k, v := range tt.params {
				if g, ok := p.Get(k); !ok || g != v {
					t.Fatalf("param %s = %q,%v want %q", k, g, ok, v)
				}
			}
		})
	}
	// In radixtree_uri, ':' is literal.
	runCases(t, KindURI, []Route{{ID: "lit", URIs: []string{"/user/:id"}}}, []matchCase{
		{"literal colon", req{path: "/user/:id"}, "lit"},
		{"no param", req{path: "/user/42"}, ""},
	})
}

func TestMatchedPatternAndHost(t *testing.T) {
	tbl, err := New(KindHostURI, []Route{
		{ID: "1", URIs: []string{"/x", "/y/*"}, Hosts: []string{"*.foo.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var p Params
	if tbl.Match(&Request{Path: "/y/z", Host: "a.foo.com"}, &p) == nil {
		t.Fatal("no match")
	}
	if p.Pattern() != "/y/*" || p.Host() != "*.foo.com" {
		t.Fatalf("pattern %q host %q", p.Pattern(), p.Host())
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name, kind string
		routes     []Route
		err        string
	}{
		{"kind", "trie", nil, "unknown router kind"},
		{"no uris", KindURI, []Route{{ID: "r"}}, "no uris"},
		{"method", KindURI, []Route{{ID: "r", URIs: []string{"/"}, Methods: []string{"get"}}}, "invalid method"},
		{"prefix", KindURI, []Route{{ID: "r", URIs: []string{"/"}, RemoteAddrs: []netip.Prefix{{}}}}, "invalid remote_addrs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.kind, tt.routes)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestMatchZeroAlloc(t *testing.T) {
	routes := buildRoutes(1000)
	routes = append(routes,
		Route{ID: "p", URIs: []string{"/u/:id/*"}, Vars: mustExpr(t, `[["arg_a","==","1"]]`)},
		Route{ID: "h", URIs: []string{"/h/*"}, Hosts: []string{"*.foo.com"}},
	)
	for _, kind := range allKinds {
		tbl, err := New(kind, routes)
		if err != nil {
			t.Fatal(err)
		}
		var p Params
		reqs := []*Request{
			{Path: "/svc999/items/42", Method: "GET", Host: "x.com"},
			{Path: "/u/1/x/y", Method: "GET", Vars: mapVars{"arg_a": "1"}},
			{Path: "/h/x", Host: "a.foo.com", Method: "GET"},
			{Path: "/nothing/here", Method: "GET"},
		}
		for _, r := range reqs {
			tbl.Match(r, &p)
			if n := testing.AllocsPerRun(100, func() { tbl.Match(r, &p) }); n != 0 {
				t.Errorf("%s %s: %v allocs", kind, r.Path, n)
			}
		}
	}
}

func buildRoutes(n int) []Route {
	routes := make([]Route, n)
	for i := range routes {
		routes[i] = Route{
			ID:      fmt.Sprint(i),
			URIs:    []string{fmt.Sprintf("/svc%d/*", i), fmt.Sprintf("/svc%d/status", i)},
			Methods: []string{"GET", "POST"},
			Value:   i,
		}
	}
	return routes
}

func benchMatch(b *testing.B, n int) {
	tbl, err := New(KindHostURI, buildRoutes(n))
	if err != nil {
		b.Fatal(err)
	}
	r := &Request{Path: fmt.Sprintf("/svc%d/items/42", n-1), Host: "api.example.com", Method: "GET"}
	var p Params
	b.ReportAllocs()
	for b.Loop() {
		if rt := tbl.Match(r, &p); rt == nil || rt.Value.(int) != n-1 {
			b.Fatal("wrong match")
		}
	}
}

func BenchmarkMatch10(b *testing.B)    { benchMatch(b, 10) }
func BenchmarkMatch10000(b *testing.B) { benchMatch(b, 10000) }

func BenchmarkNew10000(b *testing.B) {
	routes := buildRoutes(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(KindHostURI, routes); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBacktrackingBounded(t *testing.T) {
	tbl, err := New(KindURI, []Route{{ID: "r", URIs: []string{"/*a/*b/*c/*d/*e/x"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/" + strings.Repeat("a/", 4000) + "y"
	start := time.Now()
	if tbl.Match(&Request{Path: path, Method: "GET"}, nil) != nil {
		t.Fatal("unexpected match")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("match took %v", d)
	}
	// Ordinary multi-capture paths still match within the budget.
	if tbl.Match(&Request{Path: "/1/2/3/4/5/x", Method: "GET"}, nil) == nil {
		t.Fatal("want match")
	}
}
