package gateway_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	"github.com/sluice-gw/sluice/internal/plugins/plugintest"
)

// tracer is a test plugin that appends "<tag>:<phase>" to X-Trace on the
// request, and exits with its conf's status when one is set.
type tracer struct {
	tag    string
	status int
}

func (t *tracer) mark(r *plugin.Request, phase string) {
	prev := r.Header.Get("X-Trace")
	if prev != "" {
		prev += ","
	}
	r.Header.Set("X-Trace", prev+t.tag+":"+phase)
}

type rewriteTracer struct{ *tracer }

func (t rewriteTracer) Rewrite(r *plugin.Request) {
	t.mark(r, "rewrite")
	if t.status != 0 {
		r.Exit(t.status, map[string]string{"message": "stopped by " + t.tag})
	}
}

type accessTracer struct{ *tracer }

func (t accessTracer) Access(r *plugin.Request) {
	t.mark(r, "access")
	if t.status != 0 {
		r.Exit(t.status, map[string]string{"message": "stopped by " + t.tag})
	}
}

// tracerDef builds a test plugin running in one phase.
func tracerDef(name string, priority int, phase string, preferRoute bool) *plugin.Def {
	return &plugin.Def{
		Name: name, Priority: priority, PreferRoute: preferRoute,
		Schema: json.RawMessage(`{"type":"object","properties":{"tag":{"type":"string"},"status":{"type":"integer"}}}`),
		New: func(conf json.RawMessage, env *plugin.BuildEnv) (any, error) {
			var c struct {
				Tag    string `json:"tag"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal(conf, &c); err != nil {
				return nil, err
			}
			if c.Tag == "" {
				c.Tag = name
			}
			t := &tracer{tag: c.Tag, status: c.Status}
			if phase == "rewrite" {
				return rewriteTracer{t}, nil
			}
			return accessTracer{t}, nil
		},
	}
}

func TestPluginRuntime(t *testing.T) {
	defs := []*plugin.Def{
		tracerDef("t-rw-low", 100, "rewrite", false),
		tracerDef("t-rw-high", 9000, "rewrite", false),
		tracerDef("t-acc-high", 9999, "access", false),
		tracerDef("t-acc-low", 10, "access", false),
		tracerDef("t-prefer", 50, "access", true),
		keyauth.Def(),
	}
	g := plugintest.Start(t, defs, nil)
	rec := plugintest.NewRecorder(t)
	up := rec.Upstream()
	trace := func(path string, hdr map[string]string) (string, *plugintest.Response) {
		t.Helper()
		r := g.Do("GET", path, hdr, "")
		if last := rec.Last(); last != nil && r.Status == 200 {
			return last.Header.Get("X-Trace"), r
		}
		return "", r
	}

	t.Run("phases then priority, global rules first in each phase", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/global_rules/1", `{"plugins":{"t-rw-low":{"tag":"g"}}}`)
		g.MustAdmin("PUT", "/apisix/admin/routes/1", `{"uri":"/order","plugins":{"t-acc-high":{},"t-acc-low":{},"t-rw-low":{},"t-rw-high":{}},"upstream":`+up+`}`)
		got, r := trace("/order", nil)
		want := "g:rewrite,t-rw-high:rewrite,t-rw-low:rewrite,t-acc-high:access,t-acc-low:access"
		if got != want {
			t.Fatalf("order\n got %s\nwant %s (status %d)", got, want, r.Status)
		}
		g.MustAdmin("DELETE", "/apisix/admin/global_rules/1", "")
	})
	t.Run("_meta priority and disable", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/routes/2", `{"uri":"/meta","plugins":{"t-acc-low":{"_meta":{"priority":100000}},"t-acc-high":{},"t-rw-low":{"_meta":{"disable":true}}},"upstream":`+up+`}`)
		if got, _ := trace("/meta", nil); got != "t-acc-low:access,t-acc-high:access" {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("_meta filter", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/routes/3", `{"uri":"/filter","plugins":{"t-acc-low":{"_meta":{"filter":[["arg_v","==","2"]]}}},"upstream":`+up+`}`)
		if got, _ := trace("/filter?v=1", nil); got != "" {
			t.Fatalf("filter false must skip: %s", got)
		}
		if got, _ := trace("/filter?v=2", nil); got != "t-acc-low:access" {
			t.Fatalf("filter true must run: %s", got)
		}
	})
	t.Run("_meta error_response", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/routes/4", `{"uri":"/err","plugins":{"t-acc-low":{"status":403,"_meta":{"error_response":{"msg":"custom"}}}},"upstream":`+up+`}`)
		r := g.Do("GET", "/err", nil, "")
		if r.Status != 403 || strings.TrimSpace(r.Body) != `{"msg":"custom"}` {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("exit stops later plugins and the upstream", func(t *testing.T) {
		before := rec.Count()
		g.MustAdmin("PUT", "/apisix/admin/routes/5", `{"uri":"/stop","plugins":{"t-rw-high":{"status":429},"t-acc-high":{}},"upstream":`+up+`}`)
		r := g.Do("GET", "/stop", nil, "")
		if r.Status != 429 || !strings.Contains(r.Body, "stopped by t-rw-high") || rec.Count() != before {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("service < plugin_config < route", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/services/s", `{"plugins":{"t-acc-low":{"tag":"svc"},"t-acc-high":{"tag":"svc"}}}`)
		g.MustAdmin("PUT", "/apisix/admin/plugin_configs/pc", `{"plugins":{"t-acc-low":{"tag":"pc"},"t-rw-low":{"tag":"pc"}}}`)
		g.MustAdmin("PUT", "/apisix/admin/routes/6", `{"uri":"/merge","service_id":"s","plugin_config_id":"pc","plugins":{"t-rw-low":{"tag":"route"}},"upstream":`+up+`}`)
		if got, _ := trace("/merge", nil); got != "route:rewrite,svc:access,pc:access" {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("consumer beats route, consumer-only plugins run their rewrite", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/consumers", `{"username":"jack","plugins":{"key-auth":{"key":"k1"},"t-acc-low":{"tag":"consumer"},"t-rw-low":{"tag":"consumer-rw"}}}`)
		g.MustAdmin("PUT", "/apisix/admin/routes/7", `{"uri":"/consumer","plugins":{"key-auth":{},"t-acc-low":{"tag":"route"}},"upstream":`+up+`}`)
		got, r := trace("/consumer", map[string]string{"apikey": "k1"})
		if got != "consumer-rw:rewrite,consumer:access" {
			t.Fatalf("got %q (%d %s)", got, r.Status, r.Body)
		}
	})
	t.Run("prefer_route global plugin steps aside", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/global_rules/p", `{"plugins":{"t-prefer":{"tag":"global"}}}`)
		g.MustAdmin("PUT", "/apisix/admin/routes/8", `{"uri":"/prefer","plugins":{"t-prefer":{"tag":"route"}},"upstream":`+up+`}`)
		g.MustAdmin("PUT", "/apisix/admin/routes/9", `{"uri":"/noprefer","upstream":`+up+`}`)
		if got, _ := trace("/prefer", nil); got != "route:access" {
			t.Fatalf("route has it: %s", got)
		}
		if got, _ := trace("/noprefer", nil); got != "global:access" {
			t.Fatalf("route lacks it: %s", got)
		}
		g.MustAdmin("DELETE", "/apisix/admin/global_rules/p", "")
	})
	t.Run("no route: global rewrite and access still run", func(t *testing.T) {
		g.MustAdmin("PUT", "/apisix/admin/global_rules/nr", `{"plugins":{"t-acc-low":{"status":401}}}`)
		if r := g.Do("GET", "/nowhere", nil, ""); r.Status != 401 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		g.MustAdmin("DELETE", "/apisix/admin/global_rules/nr", "")
		if r := g.Do("GET", "/nowhere", nil, ""); r.Status != 404 {
			t.Fatalf("%d", r.Status)
		}
	})
}
