package yamlfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/plugin"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/store"
)

const goodFile = `routes:
  - id: 1
    uri: /hello
    upstream_id: u1
  - uri: /noid
    upstream:
      nodes:
        "127.0.0.1:1980": 1
      type: roundrobin
upstreams:
  - id: u1
    nodes:
      "127.0.0.1:1980": 1
    type: roundrobin
consumers:
  - username: jack
    plugins:
      key-auth:
        key: jack-key
  - id: rose/credentials/c1
    plugins:
      key-auth:
        key: rose-key
  - username: rose
plugin_metadata:
  - id: key-auth
global_rules:
  - plugins: {}
#END
`

func checker() *resource.Checker {
	reg, _ := plugin.NewRegistry([]*plugin.Def{keyauth.Def()}, nil)
	return resource.NewChecker(reg)
}

func keys(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Key)
	}
	sort.Strings(out)
	return out
}

func TestParse(t *testing.T) {
	t.Setenv("YF_PORT", "1981")
	tests := []struct {
		name     string
		file     string
		wantKeys []string
		wantErr  string // whole-file failure
		problems []string
		check    func(t *testing.T, c *Config)
	}{
		{
			name: "good file",
			file: goodFile,
			wantKeys: []string{"/consumers/jack", "/consumers/rose", "/consumers/rose/credentials/c1",
				"/global_rules/arr_1", "/plugin_metadata/key-auth", "/routes/1", "/routes/arr_2", "/upstreams/u1"},
			check: func(t *testing.T, c *Config) {
				for _, it := range c.Items {
					var m map[string]any
					if err := json.Unmarshal(it.Value, &m); err != nil {
						t.Fatal(err)
					}
					switch it.Key {
					case "/routes/arr_2":
						if m["id"] != "arr_2" {
							t.Errorf("id = %v, want arr_2", m["id"])
						}
					case "/routes/1":
						if m["id"] != "1" || it.Line != 2 {
							t.Errorf("id = %v line %d, want \"1\" line 2", m["id"], it.Line)
						}
					case "/consumers/rose/credentials/c1":
						if m["id"] != "c1" {
							t.Errorf("credential id = %v, want c1", m["id"])
						}
					}
				}
			},
		},
		{
			name:    "missing end marker",
			file:    "routes:\n  - uri: /a\n",
			wantErr: `cfg.yaml:3: missing the "#END" marker`,
		},
		{
			name:    "syntax error",
			file:    "routes:\n  - uri: /a\n   bad: [\n#END\n",
			wantErr: "cfg.yaml:",
		},
		{
			name:    "unresolved env",
			file:    "routes:\n  - uri: /a\n    upstream_id: ${{YF_NOPE_UNSET}}\n#END\n",
			wantErr: "cfg.yaml:3: can't find environment variable YF_NOPE_UNSET",
		},
		{
			name:     "env substitution with default",
			file:     "upstreams:\n  - id: u\n    nodes:\n      \"127.0.0.1:${{YF_PORT}}\": ${{YF_W:=3}}\n#END\n",
			wantKeys: []string{"/upstreams/u"},
			check: func(t *testing.T, c *Config) {
				if v := string(c.Items[0].Value); !strings.Contains(v, `"127.0.0.1:1981":3`) {
					t.Errorf("value %s lacks the substituted node", v)
				}
			},
		},
		{
			name: "invalid items skipped",
			file: `routes:
  - id: ok
    uri: /ok
    upstream_id: 1
  - id: bad
    uri: 42
  - id: unknown-plugin
    uri: /x
    upstream_id: 1
    plugins:
      no-such-plugin: {}
  - id: bad-conf
    uri: /y
    upstream_id: 1
    plugins:
      key-auth:
        header: 5
  - just a string
  - id: ok
    uri: /dup
consumers:
  - plugins: {}
#END
`,
			wantKeys: []string{"/routes/ok"},
			problems: []string{
				"cfg.yaml:5: routes[1]: invalid configuration",
				"cfg.yaml:7: routes[2]: unknown plugin [no-such-plugin]",
				"cfg.yaml:12: routes[3]: failed to check the configuration of plugin key-auth",
				"cfg.yaml:18: routes[4]: must be an object",
				"cfg.yaml:19: routes[5]: duplicate of routes[0]",
				`cfg.yaml:22: consumers[0]: a consumer needs a "username"`,
			},
		},
		{
			name:     "null plugin conf is empty",
			file:     "routes:\n  - uri: /a\n    upstream_id: 1\n    plugins:\n      key-auth:\n#END\n",
			wantKeys: []string{"/routes/arr_1"},
		},
		{
			name:     "plugins list and only comments",
			file:     "# nothing\nplugins:\n  - name: key-auth\n  - name: mqtt-proxy\n    stream: true\n#END",
			wantKeys: nil,
			check: func(t *testing.T, c *Config) {
				if len(c.Plugins) != 1 || c.Plugins[0] != "key-auth" {
					t.Errorf("plugins = %v", c.Plugins)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file), "cfg.yaml", checker())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(c.Items); strings.Join(got, " ") != strings.Join(tt.wantKeys, " ") {
				t.Errorf("keys = %v, want %v", got, tt.wantKeys)
			}
			if len(c.Problems) != len(tt.problems) {
				t.Errorf("problems = %v, want %d", c.Problems, len(tt.problems))
			}
			for i, want := range tt.problems {
				if i < len(c.Problems) && !strings.Contains(c.Problems[i].Error(), want) {
					t.Errorf("problem %d = %q, want %q", i, c.Problems[i].Error(), want)
				}
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParseWithoutRegistry(t *testing.T) {
	// Without a checker the registry-free checks still run; plugins pass.
	c, err := Parse([]byte("routes:\n  - uri: /a\n    upstream_id: 1\n    plugins:\n      whatever: {}\n  - uri: 5\n#END\n"), "f", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Items) != 1 || len(c.Problems) != 1 {
		t.Fatalf("items %v problems %v", keys(c.Items), c.Problems)
	}
}

func TestLooksLikeApisixYAML(t *testing.T) {
	for in, want := range map[string]bool{
		"routes:\n  - uri: /\n":          true,
		"upstreams: []\n":                true,
		"apisix:\n  node_listen: 9080\n": false,
		"deployment:\n  role: x\n#END\n": true,
		"plugins:\n  - a\n":              false,
	} {
		if got := LooksLikeApisixYAML([]byte(in)); got != want {
			t.Errorf("%q: got %v want %v", in, got, want)
		}
	}
}

// logBuf is a concurrency-safe log sink for tests.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openStore(t *testing.T, content string) (*Store, string, *logBuf) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apisix.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := &logBuf{}
	s, err := Open(Options{Path: path, Interval: 20 * time.Millisecond, Checker: checker(),
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(lb), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path, lb
}

// rewrite writes a new version and makes sure its mtime differs from the
// previous one even on coarse-grained filesystems.
func rewrite(t *testing.T, path, content string) {
	t.Helper()
	fi, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi != nil {
		mt := fi.ModTime().Add(time.Second)
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func waitEvents(t *testing.T, ch <-chan store.WatchResponse) store.WatchResponse {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
	return store.WatchResponse{}
}

func TestStoreReadOnly(t *testing.T) {
	s, _, _ := openStore(t, goodFile)
	ctx := context.Background()
	if _, _, err := s.Put(ctx, "/routes/9", []byte("{}"), store.PutOptions{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put err = %v", err)
	}
	if _, err := s.Delete(ctx, "/routes/1"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Delete err = %v", err)
	}
	if _, err := s.DeletePrefix(ctx, "/routes/"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("DeletePrefix err = %v", err)
	}
	if _, err := s.NextID(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("NextID err = %v", err)
	}
	kv, err := s.Get(ctx, "/routes/1")
	if err != nil || kv.ModRev != 1 {
		t.Fatalf("Get = %+v, %v", kv, err)
	}
	if _, err := s.Get(ctx, "/routes/nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get missing err = %v", err)
	}
	kvs, rev, err := s.List(ctx, "/consumers/")
	if err != nil || rev != 1 || len(kvs) != 3 {
		t.Fatalf("List = %d items rev %d err %v", len(kvs), rev, err)
	}
}

func TestOpenFailsOnBadFile(t *testing.T) {
	for name, content := range map[string]string{
		"no marker":  "routes: []\n",
		"bad syntax": "routes: [\n#END\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "apisix.yaml")
			os.WriteFile(path, []byte(content), 0o644)
			if _, err := Open(Options{Path: path}); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
	if _, err := Open(Options{Path: filepath.Join(t.TempDir(), "missing.yaml")}); err == nil {
		t.Fatal("Open of a missing file succeeded")
	}
}

func TestReloadEmitsDiff(t *testing.T) {
	s, path, _ := openStore(t, goodFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, 1)

	// Change route 1, drop the id-less route, add route 2.
	next := strings.Replace(goodFile, "uri: /hello", "uri: /hello2", 1)
	next = strings.Replace(next, `  - uri: /noid
    upstream:
      nodes:
        "127.0.0.1:1980": 1
      type: roundrobin
`, "  - id: 2\n    uri: /two\n    upstream_id: u1\n", 1)
	rewrite(t, path, next)
	r := waitEvents(t, ch)
	if r.Err != nil || r.Revision != 2 {
		t.Fatalf("resp = %+v", r)
	}
	var got []string
	for _, e := range r.Events {
		typ := "put"
		if e.Type == store.EventDelete {
			typ = "del"
		}
		got = append(got, typ+" "+e.KV.Key)
		if e.KV.ModRev != 2 {
			t.Errorf("%s ModRev = %d", e.KV.Key, e.KV.ModRev)
		}
	}
	want := "put /routes/1,put /routes/2,del /routes/arr_2"
	if strings.Join(got, ",") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	kv, _ := s.Get(ctx, "/upstreams/u1")
	if kv.ModRev != 1 {
		t.Errorf("unchanged item got ModRev %d, want 1", kv.ModRev)
	}
	rt, _ := s.Get(ctx, "/routes/1")
	if rt.CreateRev != 1 || rt.ModRev != 2 {
		t.Errorf("route 1 revs = %d/%d, want 1/2", rt.CreateRev, rt.ModRev)
	}

	// A watch from revision 1 opened later replays the reload.
	ch2 := s.Watch(ctx, 1)
	if r := waitEvents(t, ch2); r.Revision != 2 || len(r.Events) != 3 {
		t.Errorf("replay = %+v", r)
	}
}

func TestBrokenFileKeepsLastGood(t *testing.T) {
	tests := []struct {
		name, content, log string
	}{
		{"missing end marker", "routes:\n  - id: z\n    uri: /z\n    upstream_id: 1\n", "missing the \\\"#END\\\" marker"},
		{"syntax error", "routes:\n  - id: z\n   uri: [\n#END\n", "invalid YAML"},
		{"unresolved env", "routes:\n  - id: ${{YF_UNSET_X}}\n    uri: /z\n#END\n", "YF_UNSET_X"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path, lb := openStore(t, goodFile)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := s.Watch(ctx, 1)
			rewrite(t, path, tt.content)
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(lb.String(), tt.log) {
				if time.Now().After(deadline) {
					t.Fatalf("log lacks %q:\n%s", tt.log, lb.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(lb.String(), path+":") {
				t.Errorf("log lacks file:line:\n%s", lb.String())
			}
			if rev, _ := s.Revision(ctx); rev != 1 {
				t.Errorf("revision = %d after a broken file", rev)
			}
			if _, err := s.Get(ctx, "/routes/1"); err != nil {
				t.Errorf("last good route gone: %v", err)
			}
			// Fix the file: the next good version loads.
			rewrite(t, path, goodFile+"\n# touched\n#END\n")
			// Content is the same as the first version: no events, but
			// still no error, so fix it with a real change.
			rewrite(t, path, strings.Replace(goodFile, "/hello", "/fixed", 1))
			if r := waitEvents(t, ch); r.Revision != 2 || len(r.Events) != 1 || r.Events[0].KV.Key != "/routes/1" {
				t.Errorf("after fix: %+v", r)
			}
		})
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	s, _, _ := openStore(t, goodFile)
	ch := s.Watch(context.Background(), 1)
	s.Close()
	r := waitEvents(t, ch)
	if !errors.Is(r.Err, store.ErrClosed) {
		t.Fatalf("resp = %+v", r)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed")
	}
}

func TestWatchCompacted(t *testing.T) {
	s, path, _ := openStore(t, goodFile)
	ctx := context.Background()
	for i := 0; i < historyCap+2; i++ {
		rewrite(t, path, strings.Replace(goodFile, "/hello", "/h"+strings.Repeat("x", i+1), 1))
		want := int64(i + 2)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if rev, _ := s.Revision(ctx); rev == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revision did not reach %d", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	r := waitEvents(t, s.Watch(ctx, 0))
	if !errors.Is(r.Err, store.ErrCompacted) {
		t.Fatalf("resp = %+v", r)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("routes:\n  - uri: 1\n#END"))
	f.Add([]byte("consumers:\n  - id: a/credentials/b\n#END\n"))
	f.Add([]byte("a: &x [*x]\n#END"))
	chk := checker()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "f", chk)
		if err != nil {
			return
		}
		for _, it := range c.Items {
			if !json.Valid(it.Value) {
				t.Fatalf("invalid JSON for %s", it.Key)
			}
		}
	})
}
