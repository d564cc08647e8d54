package e2e

// Data-plane conformance: each case reproduces an observable behaviour that
// one of Apache APISIX's own tests pins down (the file and test number are
// named in the case), driven through the Admin API (or apisix.yaml) with
// real traffic to real upstreams on loopback. One gateway per group keeps
// the suite fast.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// dpcConfig is a config.yaml with extra keys under "apisix:" (router
// kind, show_upstream_status_in_response_header, ...) and, when tlsPort is
// non-zero, the TLS listener on.
func dpcConfig(adminPort, httpPort, tlsPort int, apisixExtra string) string {
	ssl := "  ssl:\n    enable: false\n"
	if tlsPort != 0 {
		ssl = fmt.Sprintf("  ssl:\n    enable: true\n    listen:\n      - ip: 127.0.0.1\n        port: %d\n", tlsPort)
	}
	return fmt.Sprintf(`apisix:
  node_listen:
    - ip: 127.0.0.1
      port: %d
%s%sdeployment:
  admin:
    admin_key:
      - name: admin
        key: %s
        role: admin
    admin_listen:
      ip: 127.0.0.1
      port: %d
`, httpPort, ssl, apisixExtra, adminKey, adminPort)
}

// dpcStart starts a gateway with dpcConfig.
func dpcStart(t *testing.T, tlsPort int, apisixExtra string) *gw {
	t.Helper()
	a, h := freePort(t), freePort(t)
	return start(t, newDir(t), a, h, dpcConfig(a, h, tlsPort, apisixExtra))
}

// dpcNamed is an upstream that answers 200 with its name as the body, so a
// case can tell which route (and node) served it. /dpc-sleep?ms=N waits
// first; /dpc-status/N answers status N with the body "status N".
func dpcNamed(t *testing.T, name string) *plUpstream {
	t.Helper()
	return newPlUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "upstream-server")
		w.Header().Set("X-Upstream", name)
		if strings.HasPrefix(r.URL.Path, "/dpc-sleep") {
			var ms int
			fmt.Sscan(r.URL.Query().Get("ms"), &ms)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if strings.HasPrefix(r.URL.Path, "/dpc-status/") {
			var st int
			fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/dpc-status/"), &st)
			w.WriteHeader(st)
			fmt.Fprintf(w, "status %d", st)
			return
		}
		io.WriteString(w, name)
	})
}

// dpcLog records, across several dpcCloser listeners, the order in which
// they were connected to.
type dpcLog struct {
	mu    sync.Mutex
	order []string
}

func (l *dpcLog) add(name string) {
	l.mu.Lock()
	l.order = append(l.order, name)
	l.mu.Unlock()
}

// take returns the recorded order and clears it.
func (l *dpcLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.order
	l.order = nil
	return out
}

// dpcCloser is a node that accepts a connection, records it in log, waits
// delay, reads what arrived and closes without answering: the gateway sees
// an upstream error after the request was sent (nginx's "upstream
// prematurely closed connection", a 502 that GET requests retry).
func dpcCloser(t *testing.T, log *dpcLog, name string, delay time.Duration) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) {
		log.add(name)
		time.Sleep(delay)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 4096)
		c.Read(buf)
	})
}

// dpcDead returns a loopback address nothing listens on (connection
// refused).
func dpcDead(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// dpcPage is the nginx error page APISIX answers with, byte for byte
// (reference §3.12).
func dpcPage(title string) string {
	return "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title +
		"</h1></center>\r\n<hr><center>openresty</center>\r\n" +
		"<p><em>Powered by <a href=\"https://apisix.apache.org/\">APISIX</a>.</em></p></body>\r\n</html>\r\n"
}

// dpcNotFound is the JSON body of an unmatched request.
const dpcNotFound = "{\"error_msg\":\"404 Route Not Found\"}\n"

// dpcNodes renders a map-form nodes object from alternating address and
// weight arguments.
func dpcNodes(kv ...any) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:%v", kv[i], kv[i+1])
	}
	b.WriteString("}")
	return b.String()
}

// dpcUp is an inline upstream with one node.
func dpcUp(addr string) string {
	return fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, addr)
}

// dpcPutAll writes Admin API objects in order (path, body pairs) and waits
// until all are live.
func dpcPutAll(t *testing.T, g *gw, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		plPut(t, g, kv[i], kv[i+1])
	}
	plSync(t, g)
}

// dpcWaitStatus polls path until it answers status (for changes whose
// effect is a different answer on the same route).
func dpcWaitStatus(t *testing.T, g *gw, path string, hdr map[string]string, status int) {
	t.Helper()
	for i := 0; i < 250; i++ {
		if g.plDo("GET", path, "", hdr).Status == status {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered %d", path, status)
}

func dpcBody(name string) *string { return plStr(name) }

// TestDPCRouterHostURI covers the default router, radixtree_host_uri:
// t/router/radixtree-host-uri-priority.t, radixtree-host-uri2.t,
// radixtree-uri-priority.t, t/node/wildcard-host.t, route-host.t,
// hosts.t, remote-addr.t, vars.t, route-uris.t, and the precedence
// table of docs/en/latest/router-radixtree.md.
func TestDPCRouterHostURI(t *testing.T) {
	g := dpcStart(t, 0, "")
	ups := map[string]*plUpstream{}
	addr := func(name string) string {
		if ups[name] == nil {
			ups[name] = dpcNamed(t, name)
		}
		return ups[name].addr()
	}
	route := func(id, body string, upName string) []string {
		body = strings.TrimSuffix(body, "}") + fmt.Sprintf(`,"upstream":%s}`, dpcUp(addr(upName)))
		return []string{"/apisix/admin/routes/" + id, body}
	}
	var puts []string
	add := func(kv []string) { puts = append(puts, kv...) }
	// radixtree-host-uri-priority.t TEST 1-4: same host and uri, priority decides.
	add(route("p1", `{"uri":"/server_port","host":"test.com","priority":1}`, "p1"))
	add(route("p2", `{"uri":"/server_port","host":"test.com","priority":2}`, "p2"))
	add(route("d0", `{"uri":"/prio0","host":"test.com"}`, "d0"))
	add(route("d1", `{"uri":"/prio0","host":"test.com","priority":1}`, "d1"))
	// radixtree-host-uri2.t TEST 1-3: a host route beats a host-less one,
	// even a host "/*" against a host-less exact path.
	add(route("nohost", `{"uri":"/server_port"}`, "nohost"))
	add(route("wildall", `{"uri":"/*","host":"*.test.com"}`, "wildall"))
	// wildcard-host.t
	add(route("wild", `{"uri":"/hello","host":"*.foo.com"}`, "wild"))
	// hosts.t
	add(route("hosts", `{"uri":"/hosts","hosts":["foo.com","*.bar.com"]}`, "hosts"))
	// route-host.t TEST 7-9: a configured host is case-insensitive.
	add(route("upper", `{"uri":"/upper","host":"UPPER.com","methods":["GET"]}`, "upper"))
	// radixtree-host-uri2.t TEST 6-11: ':' is literal without the parameter router.
	add(route("colon", `{"uri":"/file:listReputationHistories"}`, "colon"))
	add(route("colonh", `{"uri":"/do:listReputationHistories","hosts":["t.com"]}`, "colonh"))
	add(route("param", `{"uri":"/name/:name/bar"}`, "param"))
	// radixtree-uri-priority.t: identical prefixes, priority decides.
	add(route("sp2", `{"uri":"/sp*","priority":2}`, "sp2"))
	add(route("sp1", `{"uri":"/sp*","priority":1}`, "sp1"))
	// router-radixtree.md precedence table.
	add(route("b1", `{"uri":"/blog/foo/*"}`, "b1"))
	add(route("b2", `{"uri":"/blog/foo/a/*"}`, "b2"))
	add(route("b3", `{"uri":"/blog/foo/c/*"}`, "b3"))
	add(route("b4", `{"uri":"/blog/foo/bar"}`, "b4"))
	// Exact beats prefix, longer prefix beats shorter, whatever the priority.
	add(route("ex", `{"uri":"/ex"}`, "ex"))
	add(route("exp", `{"uri":"/ex*","priority":100}`, "exp"))
	add(route("lp1", `{"uri":"/lp/*","priority":100}`, "lp1"))
	add(route("lp2", `{"uri":"/lp/a/*"}`, "lp2"))
	add(route("star", `{"uri":"/st/*"}`, "star"))
	add(route("starb", `{"uri":"/sb*"}`, "starb"))
	// radixtree-host-uri2.t TEST 14, radixtree-uri-host.t TEST 22:
	// service hosts are inherited; route hosts win over them.
	add([]string{"/apisix/admin/services/sbar", `{"hosts":["bar.com"]}`})
	add(route("inh", `{"uri":"/inherit","service_id":"sbar"}`, "inh"))
	add(route("inhfb", `{"uri":"/inherit","priority":-1}`, "inhfb"))
	add(route("ovr", `{"uri":"/override","service_id":"sbar","host":"foo2.com"}`, "ovr"))
	add(route("ovrfb", `{"uri":"/override","priority":-1}`, "ovrfb"))
	// radixtree-method.t
	add(route("meth", `{"uri":"/meth","methods":["GET","PUT"]}`, "meth"))
	// remote-addr.t, remote_addrs.t
	add(route("ra1", `{"uri":"/ra1","remote_addr":"127.0.0.1"}`, "ra1"))
	add(route("ra2", `{"uri":"/ra2","remote_addr":"127.0.0.2"}`, "ra2"))
	add(route("ra3", `{"uri":"/ra3","remote_addr":"127.0.0.3/24"}`, "ra3"))
	add(route("ra4", `{"uri":"/ra4","remote_addrs":["10.0.0.0/8","127.0.0.0/8"]}`, "ra4"))
	// vars.t
	add(route("varg", `{"uri":"/varg","vars":[["arg_k","==","v"]]}`, "varg"))
	add(route("vck", `{"uri":"/vck","vars":[["cookie_k","==","v"]]}`, "vck"))
	add(route("vhd", `{"uri":"/vhd","vars":[["http_k","==","v"]]}`, "vhd"))
	add(route("vall", `{"uri":"/vall","vars":[["http_k","==","header"],["cookie_k","==","cookie"],["arg_k","==","uri_arg"]]}`, "vall"))
	add(route("vpost", `{"uri":"/vpost","vars":[["post_arg_k","==","post_form"]]}`, "vpost"))
	// lua-resty-expr operators (reference §3.4).
	add(route("vor", `{"uri":"/vor","vars":[["OR",["arg_a","==","1"],["http_x","~~","^ab+c$"]]]}`, "vor"))
	add(route("vnot", `{"uri":"/vnot","vars":[["arg_n","!","==","x"]]}`, "vnot"))
	add(route("vin", `{"uri":"/vin","vars":[["arg_c","in",["a","b"]]]}`, "vin"))
	add(route("vgt", `{"uri":"/vgt","vars":[["arg_n",">",10]]}`, "vgt"))
	add(route("vci", `{"uri":"/vci","vars":[["http_x","~*","^abc$"]]}`, "vci"))
	add(route("vip", `{"uri":"/vip","vars":[["remote_addr","ipmatch",["127.0.0.0/24"]]]}`, "vip"))
	add(route("vipn", `{"uri":"/vipn","vars":[["remote_addr","ipmatch",["10.0.0.0/8"]]]}`, "vipn"))
	add(route("vnand", `{"uri":"/vnand","vars":[["!AND",["arg_a","==","1"],["arg_b","==","2"]]]}`, "vnand"))
	add(route("vtwo", `{"uri":"/vtwo","vars":[["arg_k","v"]]}`, "vtwo"))
	// route-uris.t
	add(route("uris", `{"uris":["/u1","/u2/*"]}`, "uris"))
	// route-status.t
	add(route("st", `{"uri":"/status-route"}`, "st"))
	add(route("sth", `{"uri":"/status-route-h","host":"foo.com"}`, "sth"))
	dpcPutAll(t, g, puts...)

	h := func(host string) map[string]string { return map[string]string{"Host": host} }
	ok := func(name, path string, hdr map[string]string, want string) plCase {
		return plCase{name: name, path: path, hdr: hdr, status: 200, wantBody: dpcBody(want)}
	}
	miss := func(name, path string, hdr map[string]string) plCase {
		return plCase{name: name, path: path, hdr: hdr, status: 404, wantBody: plStr(dpcNotFound),
			wantHdr: map[string]string{"Content-Type": "application/json"}}
	}
	runPlCases(t, g, []plCase{
		ok("host-uri-priority/2 beats 1", "/server_port", h("test.com"), "p2"),
		ok("host-uri-priority/1 beats default", "/prio0", h("test.com"), "d1"),
		ok("host-uri2/exact host before host-less", "/server_port", h("TEST.com"), "p2"),
		ok("host-uri2/wildcard host /* before host-less exact", "/server_port", h("www.test.com"), "wildall"),
		ok("host-uri2/host-less when no host route matches", "/server_port", h("other.com"), "nohost"),
		miss("host-uri2/wildcard does not match the bare domain", "/nothing", h("test.com")),
		miss("wildcard-host/missing host", "/hello", nil),
		ok("wildcard-host/a.foo.com", "/hello", h("a.foo.com"), "wild"),
		ok("wildcard-host/a.b.foo.com", "/hello", h("a.b.foo.com"), "wild"),
		ok("wildcard-host/.foo.com", "/hello", h(".foo.com"), "wild"),
		miss("wildcard-host/foo.com", "/hello", h("foo.com")),
		ok("wildcard-host/host with port", "/hello", h("a.foo.com:8080"), "wild"),
		ok("hosts/foo.com", "/hosts", h("foo.com"), "hosts"),
		ok("hosts/www.bar.com", "/hosts", h("www.bar.com"), "hosts"),
		ok("hosts/uppercase request", "/hosts", h("FOO.com"), "hosts"),
		miss("hosts/not_found.com", "/hosts", h("not_found.com")),
		ok("route-host/uppercase config", "/upper", h("upper.com"), "upper"),
		ok("route-host/uppercase both", "/upper", h("UPPER.COM"), "upper"),
		ok("host-uri2/colon literal", "/file:listReputationHistories", nil, "colon"),
		miss("host-uri2/colon not a parameter", "/file:xx", nil),
		ok("host-uri2/colon literal with host", "/do:listReputationHistories", h("t.com"), "colonh"),
		miss("host-uri2/colon with host not a parameter", "/do:xx", h("t.com")),
		miss("host-uri/:name is literal", "/name/json/bar", nil),
		ok("uri-priority/identical prefix, priority 2 beats 1", "/sp/aa", nil, "sp2"),
		ok("router doc/exact", "/blog/foo/bar", nil, "b4"),
		ok("router doc/longest prefix a", "/blog/foo/a/b/c", nil, "b2"),
		ok("router doc/longest prefix c", "/blog/foo/c/d", nil, "b3"),
		ok("router doc/shortest prefix", "/blog/foo/gloo", nil, "b1"),
		miss("router doc/no match", "/blog/bar", nil),
		ok("exact beats a higher-priority prefix", "/ex", nil, "ex"),
		ok("prefix for the rest", "/exx", nil, "exp"),
		ok("longer prefix beats a higher-priority shorter one", "/lp/a/x", nil, "lp2"),
		ok("/st/* matches /st/", "/st/", nil, "star"),
		miss("/st/* does not match /st", "/st", nil),
		ok("/sb* matches /sb", "/sb", nil, "starb"),
		ok("/sb* matches /sbar", "/sbar", nil, "starb"),
		ok("service hosts inherited", "/inherit", h("bar.com"), "inh"),
		ok("service hosts inherited, other host falls through", "/inherit", h("www.foo.com"), "inhfb"),
		ok("route host overrides service hosts", "/override", h("foo2.com"), "ovr"),
		ok("route host overrides service hosts, service host falls through", "/override", h("bar.com"), "ovrfb"),
		ok("method/GET", "/meth", nil, "meth"),
		{name: "method/PUT", method: "PUT", path: "/meth", status: 200, wantBody: dpcBody("meth")},
		{name: "method/POST", method: "POST", path: "/meth", status: 404, wantBody: plStr(dpcNotFound)},
		ok("remote-addr/127.0.0.1", "/ra1", nil, "ra1"),
		miss("remote-addr/127.0.0.2", "/ra2", nil),
		ok("remote-addr/127.0.0.3/24", "/ra3", nil, "ra3"),
		ok("remote_addrs/list", "/ra4", nil, "ra4"),
		ok("vars/arg hit", "/varg?k=v", nil, "varg"),
		miss("vars/arg miss", "/varg?k=not-hit", nil),
		miss("vars/arg absent", "/varg", nil),
		ok("vars/cookie hit", "/vck", map[string]string{"Cookie": "k=v; kkk=vvv;"}, "vck"),
		miss("vars/cookie miss", "/vck", map[string]string{"Cookie": "k=not-hit; kkk=vvv;"}),
		ok("vars/header hit", "/vhd", map[string]string{"k": "v"}, "vhd"),
		miss("vars/header miss", "/vhd", map[string]string{"k": "not-hit"}),
		ok("vars/all three", "/vall?k=uri_arg", map[string]string{"k": "header", "Cookie": "k=cookie"}, "vall"),
		miss("vars/two of three", "/vall", map[string]string{"k": "header", "Cookie": "k=cookie"}),
		miss("vars/post_arg on GET", "/vpost", nil),
		{name: "vars/post_arg wrong body", method: "POST", path: "/vpost", body: "123", status: 404, wantBody: plStr(dpcNotFound)},
		{name: "vars/post_arg multipart", method: "POST", path: "/vpost", body: "k=post_form",
			hdr: map[string]string{"Content-Type": "multipart/form-data"}, status: 404, wantBody: plStr(dpcNotFound)},
		{name: "vars/post_arg form", method: "POST", path: "/vpost", body: "k=post_form",
			hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 200, wantBody: dpcBody("vpost")},
		ok("vars/OR first", "/vor?a=1", nil, "vor"),
		ok("vars/OR regex", "/vor", map[string]string{"X": "abbbc"}, "vor"),
		miss("vars/OR none", "/vor?a=2", map[string]string{"X": "ac"}),
		ok("vars/! negates", "/vnot?n=y", nil, "vnot"),
		miss("vars/! negates equal", "/vnot?n=x", nil),
		ok("vars/in", "/vin?c=b", nil, "vin"),
		miss("vars/in miss", "/vin?c=z", nil),
		ok("vars/> numeric", "/vgt?n=11", nil, "vgt"),
		miss("vars/> numeric, not lexical", "/vgt?n=9", nil),
		miss("vars/> non-number", "/vgt?n=abc", nil),
		ok("vars/~* case-insensitive", "/vci", map[string]string{"X": "ABC"}, "vci"),
		ok("vars/ipmatch", "/vip", nil, "vip"),
		miss("vars/ipmatch miss", "/vipn", nil),
		ok("vars/!AND", "/vnand?a=1", nil, "vnand"),
		miss("vars/!AND both", "/vnand?a=1&b=2", nil),
		ok("vars/two-element form is ==", "/vtwo?k=v", nil, "vtwo"),
		ok("route-uris/first", "/u1", nil, "uris"),
		ok("route-uris/second", "/u2/x", nil, "uris"),
		{name: "404/Server header", path: "/not_found", status: 404, wantBody: plStr(dpcNotFound),
			check: func(t *testing.T, r resp, _ plReq) {
				if s := r.Header.Get("Server"); !strings.HasPrefix(s, "APISIX/") {
					t.Errorf("Server %q, want APISIX/<version>", s)
				}
			}},
		ok("route-status/enabled", "/status-route", nil, "st"),
		ok("route-status/enabled with host", "/status-route-h", h("foo.com"), "sth"),
	})

	t.Run("route-status/disable and enable", func(t *testing.T) {
		for _, c := range []struct {
			path string
			hdr  map[string]string
			id   string
		}{{"/status-route", nil, "st"}, {"/status-route-h", h("foo.com"), "sth"}} {
			if r := g.admin("PATCH", "/apisix/admin/routes/"+c.id, `{"status":0}`); r.Status != 200 {
				t.Fatalf("patch: %d %s", r.Status, r.Body)
			}
			dpcWaitStatus(t, g, c.path, c.hdr, 404)
			if r := g.plDo("GET", c.path, "", c.hdr); string(r.Body) != dpcNotFound {
				t.Errorf("disabled route body %q", r.Body)
			}
			g.admin("PATCH", "/apisix/admin/routes/"+c.id, `{"status":1}`)
			dpcWaitStatus(t, g, c.path, c.hdr, 200)
		}
	})
}

// TestDPCRouterURIWithParameter covers radixtree_uri_with_parameter:
// t/router/radixtree-uri-with-parameter.t.
func TestDPCRouterURIWithParameter(t *testing.T) {
	g := dpcStart(t, 0, "  router:\n    http: radixtree_uri_with_parameter\n")
	a, b, c := dpcNamed(t, "a"), dpcNamed(t, "b"), dpcNamed(t, "c")
	dpcPutAll(t, g,
		"/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/name/:name/bar","upstream":%s}`, dpcUp(a.addr())),
		"/apisix/admin/routes/2", fmt.Sprintf(`{"uri":"/:name/foo","upstream":%s}`, dpcUp(b.addr())),
		"/apisix/admin/services/1", `{"hosts":["bar.com"]}`,
		"/apisix/admin/routes/3", fmt.Sprintf(`{"uri":"/:name/hello","methods":["GET"],"service_id":"1","upstream":%s}`, dpcUp(a.addr())),
		"/apisix/admin/routes/4", fmt.Sprintf(`{"uri":"/:name/hello","methods":["GET"],"priority":-1,"upstream":%s}`, dpcUp(c.addr())),
		"/apisix/admin/routes/5", fmt.Sprintf(`{"uri":"/user/:name","plugins":{"proxy-rewrite":{"uri":"/got/$uri_param_name"}},"upstream":%s}`, dpcUp(c.addr())),
		"/apisix/admin/routes/6", fmt.Sprintf(`{"uri":"/vuser/:name","vars":[["uri_param_name","==","jack"]],"upstream":%s}`, dpcUp(c.addr())),
	)
	miss := func(name, path string) plCase {
		return plCase{name: name, path: path, status: 404, wantBody: plStr(dpcNotFound)}
	}
	runPlCases(t, g, []plCase{
		miss("TEST 2 /not_found", "/not_found"),
		miss("TEST 3 /name/json2/foo", "/name/json2/foo"),
		miss("TEST 4 /name/json/", "/name/json/"),
		miss("TEST 5 /name//bar", "/name//bar"),
		{name: "TEST 6 /name/json/bar", path: "/name/json/bar", status: 200, wantBody: dpcBody("a"), up: a, reach: true, upURI: "/name/json/bar"},
		{name: "TEST 8 /json/foo", path: "/json/foo", status: 200, wantBody: dpcBody("b")},
		miss("TEST 9 /json/bbb/foo", "/json/bbb/foo"),
		{name: "TEST 11 service hosts inherited, other host", path: "/john/hello", hdr: map[string]string{"Host": "www.foo.com"}, status: 200, wantBody: dpcBody("c")},
		{name: "service hosts inherited, service host", path: "/john/hello", hdr: map[string]string{"Host": "bar.com"}, status: 200, wantBody: dpcBody("a")},
		{name: "uri_param_ var after the match", path: "/user/jack", status: 200, wantBody: dpcBody("c"), up: c, reach: true, upURI: "/got/jack"},
		// lua-resty-radixtree evaluates a route's vars before it captures
		// the parameters (match_route_opts, then compare_param), so
		// uri_param_* is never set while routing.
		miss("uri_param_ var is unset while matching", "/vuser/jack"),
	})
}

// TestDPCRouterURI covers radixtree_uri: t/router/radixtree-uri-host.t,
// radixtree-uri-sanity.t (hosts are a plain per-route condition there).
func TestDPCRouterURI(t *testing.T) {
	g := dpcStart(t, 0, "  router:\n    http: radixtree_uri\n")
	w, n, hp, r1 := dpcNamed(t, "wild"), dpcNamed(t, "nohost"), dpcNamed(t, "hostport"), dpcNamed(t, "route")
	dpcPutAll(t, g,
		"/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/hello","host":"*.foo.com","upstream":%s}`, dpcUp(w.addr())),
		"/apisix/admin/routes/2", fmt.Sprintf(`{"uri":"/*","host":"*.test.com","upstream":%s}`, dpcUp(w.addr())),
		"/apisix/admin/routes/3", fmt.Sprintf(`{"uri":"/server_port","upstream":%s}`, dpcUp(n.addr())),
		"/apisix/admin/routes/4", fmt.Sprintf(`{"uri":"/hp","host":"hostport.com:8080","upstream":%s}`, dpcUp(hp.addr())),
		"/apisix/admin/services/1", `{"hosts":["bar.com"]}`,
		"/apisix/admin/routes/5", fmt.Sprintf(`{"uri":"/pref","host":"foo.com","service_id":"1","upstream":%s}`, dpcUp(r1.addr())),
	)
	h := func(host string) map[string]string { return map[string]string{"Host": host} }
	runPlCases(t, g, []plCase{
		{name: "TEST 3 no host", path: "/hello", status: 404, wantBody: plStr(dpcNotFound)},
		{name: "TEST 4 not_found.com", path: "/hello", hdr: h("not_found.com"), status: 404},
		{name: "TEST 5 www.foo.com", path: "/hello", hdr: h("www.foo.com"), status: 200, wantBody: dpcBody("wild")},
		{name: "TEST 6 user.foo.com", path: "/hello", hdr: h("user.foo.com"), status: 200, wantBody: dpcBody("wild")},
		{name: "exact path beats a host prefix route (no host precedence)", path: "/server_port", hdr: h("www.test.com"), status: 200, wantBody: dpcBody("nohost")},
		{name: "host with port compared to Host header", path: "/hp", hdr: h("hostport.com:8080"), status: 200, wantBody: dpcBody("hostport")},
		{name: "host with port does not match without", path: "/hp", hdr: h("hostport.com"), status: 404},
		{name: "TEST 22 route host preferred", path: "/pref", hdr: h("foo.com"), status: 200, wantBody: dpcBody("route")},
		{name: "TEST 22 service host ignored", path: "/pref", hdr: h("bar.com"), status: 404},
	})
}

// TestDPCUpstream covers t/node/upstream-status-5xx.t, upstream-retries.t,
// not-exist-upstream.t, http_host.t, route-domain.t, timeout-upstream.t
// and reference §3.9-3.12: error statuses, bodies, the upstream status
// header, retries, Host and X-Forwarded-* sent upstream.
func TestDPCUpstream(t *testing.T) {
	g := dpcStart(t, 0, "")
	live := dpcNamed(t, "live")
	p1, p2 := dpcNamed(t, "p1"), dpcNamed(t, "p2")
	var log dpcLog
	// An attempt on a slow node takes 1 s; /rto's retry_timeout (1.5 s)
	// leaves 500 ms for the first to end and the second to start, and
	// 500 ms before a third would be due.
	slow := []string{dpcCloser(t, &log, "s1", time.Second), dpcCloser(t, &log, "s2", time.Second), dpcCloser(t, &log, "s3", time.Second)}
	cl1, cl2 := dpcCloser(t, &log, "c1", 0), dpcCloser(t, &log, "c2", 0)
	d := []string{dpcDead(t), dpcDead(t), dpcDead(t), dpcDead(t)}
	_, p2port, _ := net.SplitHostPort(p2.addr())
	up := func(uri, upstream string) string { return fmt.Sprintf(`{"uri":%q,"upstream":%s}`, uri, upstream) }
	dpcPutAll(t, g,
		"/apisix/admin/routes/noup", `{"uri":"/noup","plugins":{}}`,
		"/apisix/admin/routes/ok", up("/ok", dpcUp(live.addr())),
		"/apisix/admin/routes/nonodes", up("/nonodes", `{"type":"roundrobin","nodes":{}}`),
		"/apisix/admin/routes/st500", up("/dpc-status/*", dpcUp(live.addr())),
		"/apisix/admin/routes/timeout", up("/dpc-sleep", fmt.Sprintf(`{"nodes":{"%s":1},"timeout":{"connect":0.5,"send":0.5,"read":0.5}}`, live.addr())),
		"/apisix/admin/routes/rtimeout", fmt.Sprintf(`{"uri":"/dpc-sleep2","plugins":{"proxy-rewrite":{"uri":"/dpc-sleep"}},"timeout":{"connect":0.3,"send":0.3,"read":0.3},"upstream":{"nodes":{"%s":1},"timeout":{"connect":5,"send":5,"read":5}}}`, live.addr()),
		"/apisix/admin/routes/refused", up("/refused", dpcUp(d[0])),
		"/apisix/admin/upstreams/r4", fmt.Sprintf(`{"nodes":%s}`, dpcNodes(d[0], 1, d[1], 1, d[2], 1, d[3], 1)),
		"/apisix/admin/routes/r4", `{"uri":"/r4","upstream_id":"r4"}`,
		"/apisix/admin/routes/r1", up("/r1", fmt.Sprintf(`{"retries":1,"nodes":%s}`, dpcNodes(d[0], 1, d[1], 1, d[2], 1, d[3], 1))),
		"/apisix/admin/routes/r0", up("/r0", fmt.Sprintf(`{"retries":0,"nodes":%s}`, dpcNodes(d[0], 1, d[1], 1, d[2], 1, d[3], 1))),
		"/apisix/admin/routes/r3", up("/r3", fmt.Sprintf(`{"retries":3,"nodes":%s}`, dpcNodes(d[0], 1, d[1], 1))),
		"/apisix/admin/routes/rok", up("/rok", fmt.Sprintf(`{"retries":2,"nodes":%s}`, dpcNodes(d[0], 1, live.addr(), 1))),
		"/apisix/admin/routes/rto", up("/rto", fmt.Sprintf(`{"retries":10,"retry_timeout":1.5,"nodes":%s}`, dpcNodes(slow[0], 100, slow[1], 100, slow[2], 100))),
		"/apisix/admin/routes/post", up("/post", fmt.Sprintf(`{"nodes":%s}`, dpcNodes(cl1, 1, cl2, 1))),
		"/apisix/admin/routes/fault500", `{"uri":"/fault500","plugins":{"fault-injection":{"abort":{"http_status":500,"body":"Fault Injection!\n"}}}}`,
		"/apisix/admin/routes/fault200", `{"uri":"/fault200","plugins":{"fault-injection":{"abort":{"http_status":200,"body":"Fault Injection!\n"}}}}`,
		"/apisix/admin/routes/rewrite", up("/rewrite", fmt.Sprintf(`{"pass_host":"rewrite","upstream_host":"test.com","nodes":{"%s":1}}`, live.addr())),
		"/apisix/admin/routes/node", up("/node", fmt.Sprintf(`{"pass_host":"node","nodes":{"localhost:%s":1}}`, p2port)),
		"/apisix/admin/routes/weights", up("/weights", fmt.Sprintf(`{"nodes":%s}`, dpcNodes("localhost:"+p2port, 2, p1.addr(), 1))),
		"/apisix/admin/routes/w0", up("/w0", fmt.Sprintf(`{"nodes":%s}`, dpcNodes(d[0], 0, p1.addr(), 1))),
	)
	ust := "X-APISIX-Upstream-Status"
	html := "text/html; charset=utf-8"
	runPlCases(t, g, []plCase{
		{name: "not-exist-upstream/no upstream is 503", path: "/noup", status: 503,
			wantBody: plStr(dpcPage("503 Service Temporarily Unavailable")), wantHdr: map[string]string{"Content-Type": html, ust: ""}},
		{name: "no node is 503", path: "/nonodes", status: 503,
			wantBody: plStr(dpcPage("503 Service Temporarily Unavailable")), wantHdr: map[string]string{"Content-Type": html, ust: ""}},
		{name: "routing uses the resolved path", path: "/x/../ok", status: 200, up: live, reach: true},
		{name: "upstream-status-5xx TEST 2/200 has no status header", path: "/ok", status: 200, wantBody: dpcBody("live"),
			wantHdr: map[string]string{ust: "", "X-Upstream": "live"}},
		{name: "Server replaced on upstream responses", path: "/ok", status: 200,
			check: func(t *testing.T, r resp, _ plReq) {
				if s := r.Header.Get("Server"); !strings.HasPrefix(s, "APISIX/") {
					t.Errorf("Server %q", s)
				}
			}},
		{name: "upstream-status-5xx TEST 8/upstream 500 passes through", path: "/dpc-status/500", status: 500,
			wantBody: plStr("status 500"), wantHdr: map[string]string{ust: "500"}},
		{name: "upstream 503 passes through", path: "/dpc-status/503", status: 503,
			wantBody: plStr("status 503"), wantHdr: map[string]string{ust: "503"}},
		{name: "upstream 404 has no status header", path: "/dpc-status/404", status: 404,
			wantBody: plStr("status 404"), wantHdr: map[string]string{ust: ""}},
		{name: "upstream-status-5xx TEST 4/timeout is 504", path: "/dpc-sleep?ms=1500", status: 504,
			wantBody: plStr(dpcPage("504 Gateway Time-out")), wantHdr: map[string]string{ust: "504", "Content-Type": html},
			elapsed: [2]time.Duration{400 * time.Millisecond, 1400 * time.Millisecond}},
		{name: "route timeout wins over upstream timeout", path: "/dpc-sleep2?ms=1500", status: 504,
			wantHdr: map[string]string{ust: "504"}, elapsed: [2]time.Duration{200 * time.Millisecond, 1400 * time.Millisecond}},
		{name: "upstream-status-5xx TEST 6/refused is 502", path: "/refused", status: 502,
			wantBody: plStr(dpcPage("502 Bad Gateway")), wantHdr: map[string]string{ust: "502", "Content-Type": html}},
		{name: "upstream-retries TEST 4/default retries = nodes - 1", path: "/r4", status: 502, wantHdr: map[string]string{ust: "502, 502, 502, 502"}},
		{name: "upstream-retries TEST 7/retries 1", path: "/r1", status: 502, wantHdr: map[string]string{ust: "502, 502"}},
		{name: "upstream-retries TEST 9/retries 0", path: "/r0", status: 502, wantHdr: map[string]string{ust: "502"}},
		{name: "upstream-retries TEST 11/retries > nodes tries each node once", path: "/r3", status: 502, wantHdr: map[string]string{ust: "502, 502"}},
		{name: "upstream-status-5xx TEST 11/retry reaches the live node", path: "/rok", status: 200, wantBody: dpcBody("live"), wantHdr: map[string]string{ust: ""}},
		{name: "upstream-status-5xx TEST 15/plugin 500 has no status header", path: "/fault500", status: 500,
			wantBody: plStr("Fault Injection!\n"), wantHdr: map[string]string{ust: ""}},
		{name: "upstream-status-5xx TEST 17/plugin 200", path: "/fault200", status: 200, wantBody: plStr("Fault Injection!\n"), wantHdr: map[string]string{ust: ""}},
		{name: "http_host/pass keeps Host with port", path: "/ok", hdr: map[string]string{"Host": "foo.com:1984"}, status: 200,
			up: live, reach: true, check: func(t *testing.T, _ resp, got plReq) {
				if got.Host != "foo.com:1984" {
					t.Errorf("upstream Host %q", got.Host)
				}
			},
			upHdr: map[string]string{"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
				"X-Forwarded-Host": "foo.com:1984", "X-Forwarded-Port": "1984"}},
		{name: "client X-Forwarded-* replaced, XFF appended, Forwarded dropped", path: "/ok",
			hdr: map[string]string{"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.com",
				"X-Forwarded-Port": "1", "Forwarded": "for=1.2.3.4"}, status: 200, up: live, reach: true,
			upHdr: map[string]string{"X-Forwarded-For": "1.2.3.4, 127.0.0.1", "X-Forwarded-Proto": "http", "Forwarded": "", "X-Forwarded-Port": fmt.Sprint(g.httpPort)}},
		{name: "Connection cannot strip gateway headers", path: "/ok",
			hdr: map[string]string{"Connection": "X-Real-IP, X-Forwarded-For, X-Drop", "X-Drop": "1"}, status: 200, up: live, reach: true,
			upHdr: map[string]string{"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1", "X-Drop": "", "Connection": ""}},
		{name: "route-domain TEST 5/pass_host rewrite", path: "/rewrite", status: 200, up: live, reach: true,
			check: func(t *testing.T, _ resp, got plReq) {
				if got.Host != "test.com" {
					t.Errorf("upstream Host %q, want test.com", got.Host)
				}
			}},
		{name: "route-domain TEST 7/pass_host node", path: "/node", status: 200, up: p2, reach: true,
			check: func(t *testing.T, _ resp, got plReq) {
				if got.Host != "localhost:"+p2port {
					t.Errorf("upstream Host %q, want localhost:%s", got.Host, p2port)
				}
			}},
		{name: "query string forwarded verbatim", path: "/ok?x=1&y=%2F&z", status: 200, up: live, reach: true, upURI: "/ok?x=1&y=%2F&z"},
	})

	t.Run("route-domain TEST 9/domain node weights", func(t *testing.T) {
		got := []string{}
		for i := 0; i < 3; i++ {
			got = append(got, string(g.plDo("GET", "/weights", "", nil).Body))
		}
		sort.Strings(got)
		if strings.Join(got, ", ") != "p1, p2, p2" {
			t.Fatalf("got %v, want p1 once and p2 twice", got)
		}
	})
	t.Run("route-domain TEST 1/weight 0 never picked", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			if r := g.plDo("GET", "/w0", "", nil); r.Status != 200 || r.Header.Get(ust) != "" {
				t.Fatalf("%d %q %s", r.Status, r.Header.Get(ust), r.Body)
			}
		}
	})
	t.Run("upstream-retries TEST 13/retry_timeout stops retrying", func(t *testing.T) {
		log.take()
		r := g.plDo("GET", "/rto", "", nil)
		if r.Status != 502 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
		if n := len(log.take()); n != 2 {
			t.Fatalf("%d attempts, want 2 (the second starts within retry_timeout, the third would not)", n)
		}
	})
	t.Run("POST is not retried once sent", func(t *testing.T) {
		log.take()
		r := g.plDo("POST", "/post", "a=1", nil)
		if r.Status != 502 || r.Header.Get(ust) != "502" {
			t.Fatalf("%d %q", r.Status, r.Header.Get(ust))
		}
		time.Sleep(50 * time.Millisecond)
		if n := len(log.take()); n != 1 {
			t.Fatalf("%d attempts, want 1", n)
		}
	})
	t.Run("GET is retried after the upstream closed", func(t *testing.T) {
		log.take()
		r := g.plDo("GET", "/post", "", nil)
		if r.Status != 502 || r.Header.Get(ust) != "502, 502" {
			t.Fatalf("%d %q", r.Status, r.Header.Get(ust))
		}
	})
}

// TestDPCPriorityFailover covers t/node/priority-balancer/sanity.t with
// apisix.show_upstream_status_in_response_header on, so every attempt is
// visible in X-APISIX-Upstream-Status.
func TestDPCPriorityFailover(t *testing.T) {
	g := dpcStart(t, 0, "  show_upstream_status_in_response_header: true\n")
	var log dpcLog
	c := map[string]string{}
	for _, n := range []string{"c1", "c2", "c3", "c4", "c5"} {
		c[n] = dpcCloser(t, &log, n, 0)
	}
	live := dpcNamed(t, "live")
	node := func(name string, weight, prio int) string {
		addr := c[name]
		if name == "live" {
			addr = live.addr()
		}
		h, p, _ := net.SplitHostPort(addr)
		return fmt.Sprintf(`{"host":%q,"port":%s,"weight":%d,"priority":%d}`, h, p, weight, prio)
	}
	nodes := func(ns ...string) string { return "[" + strings.Join(ns, ",") + "]" }
	dpcPutAll(t, g,
		"/apisix/admin/routes/sanity", fmt.Sprintf(`{"uri":"/sanity","upstream":{"type":"least_conn","nodes":%s}}`,
			nodes(node("c1", 2, 1), node("c2", 1, 1), node("c3", 2, 0), node("c4", 1, 0), node("live", 2, -1))),
		"/apisix/admin/routes/rr", fmt.Sprintf(`{"uri":"/rr","upstream":{"nodes":%s}}`,
			nodes(node("c1", 1000, 1), node("c2", 1, 1), node("c3", 1000, -1), node("c4", 1, -1))),
		"/apisix/admin/routes/same", fmt.Sprintf(`{"uri":"/same","upstream":{"type":"least_conn","nodes":%s}}`,
			nodes(node("c1", 2, 1), node("c2", 1, 0), node("c1", 2, -1))),
		"/apisix/admin/routes/default", fmt.Sprintf(`{"uri":"/default","upstream":{"type":"least_conn","nodes":[%s,{"host":"127.0.0.1","port":%s,"weight":1},%s]}}`,
			node("c1", 2, 1), strings.Split(c["c2"], ":")[1], node("live", 2, -1)),
		"/apisix/admin/routes/ewma", fmt.Sprintf(`{"uri":"/ewma","upstream":{"type":"ewma","nodes":%s}}`,
			nodes(node("c1", 2, 1), node("c2", 1, 0), node("c3", 2, -1))),
		"/apisix/admin/routes/chash", fmt.Sprintf(`{"uri":"/chash","upstream":{"type":"chash","key":"remote_addr","nodes":%s}}`,
			nodes(node("c1", 2, 1), node("c2", 1, 1), node("c3", 2, -1), node("c4", 1, -1))),
		"/apisix/admin/routes/ok", fmt.Sprintf(`{"uri":"/ok","upstream":%s}`, dpcUp(live.addr())),
	)
	cases := []struct {
		name, path string
		status     int
		header     string
		groups     [][]string // attempts, in order of priority group; order inside a group is free
	}{
		{"TEST 1 sanity", "/sanity", 200, "502, 502, 502, 502, 200", [][]string{{"c1", "c2"}, {"c3", "c4"}}},
		{"TEST 2 same node in two priorities is tried twice", "/same", 502, "502, 502, 502", [][]string{{"c1"}, {"c2"}, {"c1"}}},
		{"TEST 3 default priority is zero", "/default", 200, "502, 502, 200", [][]string{{"c1"}, {"c2"}}},
		{"TEST 5 roundrobin", "/rr", 502, "502, 502, 502, 502", [][]string{{"c1", "c2"}, {"c3", "c4"}}},
		{"TEST 6 ewma", "/ewma", 502, "502, 502, 502", [][]string{{"c1"}, {"c2"}, {"c3"}}},
		{"TEST 7 chash", "/chash", 502, "502, 502, 502, 502", [][]string{{"c1", "c2"}, {"c3", "c4"}}},
		{"show_upstream_status on a 200", "/ok", 200, "200", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log.take()
			r := g.plDo("GET", tc.path, "", nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d", r.Status, tc.status)
			}
			if got := r.Header.Get("X-APISIX-Upstream-Status"); got != tc.header {
				t.Errorf("X-APISIX-Upstream-Status %q, want %q", got, tc.header)
			}
			time.Sleep(30 * time.Millisecond)
			order := log.take()
			i := 0
			for gi, grp := range tc.groups {
				if i+len(grp) > len(order) {
					t.Fatalf("attempts %v, want groups %v", order, tc.groups)
				}
				got := append([]string(nil), order[i:i+len(grp)]...)
				want := append([]string(nil), grp...)
				sort.Strings(got)
				sort.Strings(want)
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("priority group %d: attempts %v, want %v (all: %v)", gi, got, want, order)
				}
				i += len(grp)
			}
			if i != len(order) {
				t.Errorf("attempts %v, want groups %v", order, tc.groups)
			}
		})
	}
}

// TestDPCStandaloneRefs covers t/node/not-exist-service.t and the missing
// upstream_id case of reference §3.9, which only a store written by someone
// else (etcd, apisix.yaml) can produce: the Admin API refuses both.
func TestDPCStandaloneRefs(t *testing.T) {
	up := dpcNamed(t, "live")
	a, h := freePort(t), freePort(t)
	g := startStandalone(t, newDir(t), a, h, fmt.Sprintf(`routes:
  - id: nosvc
    uri: /nosvc
    service_id: "999999999"
  - id: noup
    uri: /noup
    upstream_id: "999999999"
  - id: ok
    uri: /ok
    upstream:
      nodes:
        "%s": 1
#END
`, up.addr()))
	waitFor(t, 10*time.Second, "route /ok", func() bool { return g.plDo("GET", "/ok", "", nil).Status == 200 })
	runPlCases(t, g, []plCase{
		{name: "not-exist-service TEST 2/missing service is an nginx 404", path: "/nosvc", status: 404,
			wantBody: plStr(dpcPage("404 Not Found")), wantHdr: map[string]string{"Content-Type": "text/html; charset=utf-8"}},
		{name: "missing upstream_id is 502", path: "/noup", status: 502, wantBody: plStr(dpcPage("502 Bad Gateway"))},
		{name: "unknown path", path: "/x", status: 404, wantBody: plStr(dpcNotFound)},
	})
}

// TestDPCSNI covers t/router/radixtree-sni.t: exact SNI, "*.x" matching
// exactly one label, status 0 disabling an SSL object, and snis lists.
func TestDPCSNI(t *testing.T) {
	tlsPort := freePort(t)
	g := dpcStart(t, tlsPort, "")
	up := dpcNamed(t, "tls")
	put := func(id string, obj map[string]any) {
		t.Helper()
		b, _ := json.Marshal(obj)
		plPut(t, g, "/apisix/admin/ssls/"+id, string(b))
	}
	c1, k1 := selfSigned(t, "www.test.com")
	c2, k2 := selfSigned(t, "*.test2.com")
	c3, k3 := selfSigned(t, "test3.com", "*.test3.com")
	put("1", map[string]any{"cert": c1, "key": k1, "sni": "www.test.com"})
	put("2", map[string]any{"cert": c2, "key": k2, "sni": "*.test2.com"})
	put("3", map[string]any{"cert": c3, "key": k3, "snis": []string{"test3.com", "*.test3.com"}})
	dpcPutAll(t, g, "/apisix/admin/routes/1", fmt.Sprintf(`{"uri":"/tls","upstream":%s}`, dpcUp(up.addr())))
	get := func(sni string) error {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/tls", tlsPort), nil)
		req.Host = sni
		r, err := tr.RoundTrip(req)
		if err != nil {
			return err
		}
		defer r.Body.Close()
		if r.StatusCode != 200 {
			return fmt.Errorf("status %d", r.StatusCode)
		}
		return nil
	}
	for _, c := range []struct {
		sni string
		ok  bool
	}{
		{"www.test.com", true}, {"test.com", false}, {"www.test2.com", true}, {"aa.bb.test2.com", false},
		{"test2.com", false}, {"test3.com", true}, {"a.test3.com", true}, {"aa.bb.test3.com", false}, {"WWW.TEST.COM", true},
	} {
		t.Run(c.sni, func(t *testing.T) {
			err := get(c.sni)
			if c.ok && err != nil {
				t.Fatalf("want success: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("handshake must fail")
			}
		})
	}
	t.Run("TEST 12-15 status 0 disables the certificate", func(t *testing.T) {
		if r := g.admin("PATCH", "/apisix/admin/ssls/2", `{"status":0}`); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		waitFor(t, 5*time.Second, "disabled SSL refused", func() bool { return get("www.test2.com") != nil })
		g.admin("PATCH", "/apisix/admin/ssls/2", `{"status":1}`)
		waitFor(t, 5*time.Second, "enabled SSL served", func() bool { return get("www.test2.com") == nil })
	})
}
