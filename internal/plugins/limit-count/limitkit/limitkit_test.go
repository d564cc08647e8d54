package limitkit

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
)

func ctx() *engine.Ctx {
	c := engine.AcquireCtx()
	c.Header = engine.Header{"User": {"jack"}, "Empty": {""}}
	return c
}

func TestTemplate(t *testing.T) {
	tests := []struct {
		tpl  string
		want string
		n    int
	}{
		{"plain", "plain", 0},
		{"$http_user", "jack", 1},
		{"${http_user}", "jack", 1},
		{"${ http_user }-x", "jack-x", 1},
		{"$http_user $http_missing", "jack ", 1},
		{"$http_missing", "", 0},
		{"${http_missing ?? anon}", "anon", 1},
		{"${http_user??anon}", "jack", 1},
		{`\$http_user`, `\$http_user`, 0},
		{"$", "$", 0},
		{"${", "${", 0},
		{"a$http_empty.b", "a", 0}, // "." is part of the name
		{"$http_empty", "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.tpl, func(t *testing.T) {
			got, n := CompileTemplate(tc.tpl).Resolve(ctx())
			if got != tc.want || n != tc.n {
				t.Fatalf("Resolve(%q) = %q, %d; want %q, %d", tc.tpl, got, n, tc.want, tc.n)
			}
		})
	}
}

func TestNum(t *testing.T) {
	tests := []struct {
		raw       string
		header    string
		allowZero bool
		want      int64
		err       bool
	}{
		{`5`, "", false, 5, false},
		{`"${http_n}"`, "7", false, 7, false},
		{`"${http_n}"`, "0", false, 0, true},
		{`"${http_n}"`, "0", true, 0, false},
		{`"${http_n}"`, "1.5", false, 0, true},
		{`"${http_n}"`, "x", false, 0, true},
		{`"${http_n}"`, "1e20", false, 0, true},
	}
	for _, tc := range tests {
		n, err := ParseNum(json.RawMessage(tc.raw))
		if err != nil {
			t.Fatal(err)
		}
		c := ctx()
		c.Header["N"] = []string{tc.header}
		got, err := n.Resolve(c, tc.allowZero)
		if (err != nil) != tc.err || got != tc.want {
			t.Fatalf("%s with %q: %d, %v", tc.raw, tc.header, got, err)
		}
	}
}

type ent struct{ stale bool }

func TestRegistrySweep(t *testing.T) {
	reg := NewRegistry(time.Hour, func(e *ent, _ int64) bool { return e.stale })
	h := NewHandle(reg, "s")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := h.Get(string(rune('a'+i)), func() *ent { return &ent{} })
			e.stale = i%2 == 0
		}(i)
	}
	wg.Wait()
	reg.Sweep(0)
	if n := h.Table().Len(); n != 4 {
		t.Fatalf("after sweep %d entries", n)
	}
	h.Table().sweep(func(*ent) bool { return true })
	if !h.t.Load().dead.Load() {
		t.Fatal("empty table not retired")
	}
	// A retired table is replaced transparently.
	if e := h.Get("z", func() *ent { return &ent{} }); e == nil || h.Table().Len() != 1 {
		t.Fatal("fresh table not used")
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"$a", "${a ?? b}", `\$x`, "${", "$$", "a${b}c$d.e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl := CompileTemplate(s)
		got, n := tpl.Resolve(ctx())
		if !tpl.HasVars() && (got != s || n != 0) {
			t.Fatalf("template without vars changed: %q -> %q", s, got)
		}
		if n < 0 || len(got) > len(s)*8+64 {
			t.Fatalf("odd result %q %d", got, n)
		}
	})
}
