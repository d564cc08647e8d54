package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/stream"
)

// streamSnap decodes objects ("kind/id" → JSON) into a snapshot and runs
// both compile hooks as the builder does.
func streamSnap(t *testing.T, compile CompileFunc, compileStream func(s, prev *Snapshot) (*streamCompiled, []BuildError), prev *Snapshot, objs map[string]string) *Snapshot {
	t.Helper()
	s := &Snapshot{Objects: map[string]map[string]any{}}
	for key, raw := range objs {
		kind, id, _ := strings.Cut(key, "/")
		k, ok := resource.ByName(kind)
		if !ok {
			t.Fatalf("kind %s", kind)
		}
		obj, err := resource.Decode(k, []byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if s.Objects[kind] == nil {
			s.Objects[kind] = map[string]any{}
		}
		s.Objects[kind][id] = obj
	}
	data, errs := compile(s, prev)
	s.Data = data
	sc, serrs := compileStream(s, prev)
	s.stream = sc
	s.Errors = append(errs, serrs...)
	return s
}

func TestStreamCompile(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	hc := healthEnv{enabled: true, ctx: context.Background(), logger: log}
	reg, _ := plugin.NewRegistry(nil, nil)
	compile := compileFunc("radixtree_host_uri", hc, reg, &plugin.Shared{}, nil)
	compileStream := streamCompileFunc(hc, log)
	up := `{"type":"roundrobin","nodes":{"127.0.0.1:9001":1,"127.0.0.1:9002":1},"timeout":{"connect":2,"send":5,"read":7}}`
	objs := map[string]string{
		"upstreams/u1":     `{"id":"u1","type":"chash","hash_on":"vars","key":"remote_addr","nodes":{"127.0.0.1:9003":1}}`,
		"services/s1":      `{"id":"s1","upstream_id":"u1"}`,
		"services/s2":      `{"id":"s2","upstream":` + up + `}`,
		"stream_routes/01": `{"id":"01","server_port":9100,"upstream":` + up + `}`,
		"stream_routes/02": `{"id":"02","server_addr":"127.0.0.1","remote_addr":"10.0.0.0/8","upstream_id":"u1"}`,
		"stream_routes/03": `{"id":"03","service_id":"s1"}`,
		"stream_routes/04": `{"id":"04","service_id":"s2","plugins":{"limit-conn":{}}}`,
		"stream_routes/05": `{"id":"05","upstream_id":"missing"}`,
		"stream_routes/07": `{"id":"07","service_id":"missing"}`,
		"stream_routes/08": `{"id":"08","sni":"A.Example.com","upstream":{"scheme":"tls","nodes":{"127.0.0.1:9004":1}}}`,
	}
	s1 := streamSnap(t, compile, compileStream, nil, objs)
	tbl := s1.stream.table
	if tbl.Len() != 7 {
		t.Fatalf("%d routes compiled, want 7", tbl.Len())
	}
	var errs []string
	for _, e := range s1.Errors {
		errs = append(errs, e.Key+": "+e.Error)
	}
	for _, want := range []string{"/stream_routes/05: upstream missing not found", "/stream_routes/07: service missing not found"} {
		if !strings.Contains(strings.Join(errs, "\n"), want) {
			t.Errorf("build errors %q lack %q", errs, want)
		}
	}
	local := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	cases := []struct {
		name   string
		local  string
		remote string
		sni    string
		want   string
	}{
		{"inline upstream with timeouts", "127.0.0.1:9100", "127.0.0.1", "", "01"},
		{"upstream_id", "127.0.0.1:9999", "10.1.1.1", "", "02"},
		{"service upstream_id", "127.0.0.2:9999", "10.1.1.1", "", "03"},
		{"sni route", "127.0.0.1:9999", "127.0.0.1", "a.example.com", "08"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tbl.Match(local(c.local), netip.MustParseAddr(c.remote), c.sni)
			if r == nil || r.ID != c.want {
				t.Fatalf("matched %+v, want %s", r, c.want)
			}
		})
	}
	byID := map[string]*stream.Route{}
	for _, id := range []string{"01", "02", "03", "04", "05", "07", "08"} {
		byID[id] = findStreamRoute(t, s1, id)
	}
	if u := byID["01"].Upstream; u == nil || u.ConnectTimeout.Seconds() != 2 || u.IdleTimeout.Seconds() != 7 || u.Retries != 1 || u.TLS != nil {
		t.Fatalf("route 01 upstream %+v", u)
	}
	if u := byID["02"].Upstream; u == nil || u.Balancer != s1.Data.(*compiled).upstreams["u1"].bal || u.Balancer.Type() != "chash" {
		t.Fatalf("route 02 does not share upstream u1's balancer")
	}
	if u := byID["04"].Upstream; u == nil || u.IdleTimeout.Seconds() != 7 {
		t.Fatalf("route 04 (service inline upstream) %+v", u)
	}
	if byID["05"].Upstream != nil || byID["07"].Upstream != nil {
		t.Fatal("routes with a missing upstream or service must have no upstream (connections closed)")
	}
	if u := byID["08"].Upstream; u == nil || u.TLS == nil || !u.TLS.InsecureSkipVerify {
		t.Fatalf("route 08 (scheme tls) %+v", u)
	}
	if n := strings.Count(logs.String(), "stream route plugins are not supported yet"); n != 1 {
		t.Fatalf("%d plugin warnings, want 1:\n%s", n, logs.String())
	}

	// A rebuild keeps the inline upstreams' runtime and warns no more.
	// The builder decodes an unchanged object once, so the rebuild sees
	// the same decoded objects.
	s2 := &Snapshot{Objects: s1.Objects}
	s2.Data, _ = compile(s2, s1)
	s2.stream, _ = compileStream(s2, s1)
	if findStreamRoute(t, s2, "01").Upstream.Balancer != byID["01"].Upstream.Balancer {
		t.Fatal("inline upstream runtime not reused across builds")
	}
	if n := strings.Count(logs.String(), "stream route plugins are not supported yet"); n != 1 {
		t.Fatalf("%d plugin warnings after a rebuild, want 1", n)
	}
}

// findStreamRoute returns the compiled stream route with the id.
func findStreamRoute(t *testing.T, s *Snapshot, id string) *stream.Route {
	t.Helper()
	for _, r := range s.stream.table.Routes() {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("stream route %s not compiled", id)
	return nil
}
