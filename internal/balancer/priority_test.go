package balancer

import (
	"fmt"
	"slices"
	"testing"
)

// TestPriorityLevelResetsTried follows t/node/priority-balancer/sanity.t
// TEST 2: a node listed at two priorities is tried once per level, because
// APISIX forgets the tried nodes when it moves to the next level.
func TestPriorityLevelResetsTried(t *testing.T) {
	cases := []struct {
		name   string
		nodes  []Node
		levels [][]string // attempts per level, in level order; free order inside one
	}{
		{"same node at 1 and -1", nodes("a:1@1", 2, "b:1@0", 1, "a:1@-1", 2), [][]string{{"a:1"}, {"b:1"}, {"a:1"}}},
		{"two levels of two", nodes("a:1@1", 1, "b:1@1", 1, "a:1@0", 1, "b:1@0", 1), [][]string{{"a:1", "b:1"}, {"a:1", "b:1"}}},
		{"single level", nodes("a:1", 1, "b:1", 1), [][]string{{"a:1", "b:1"}}},
	}
	for _, c := range cases {
		for _, typ := range []string{TypeRoundRobin, TypeCHash, TypeLeastConn, TypeEWMA} {
			t.Run(c.name+"/"+typ, func(t *testing.T) {
				b := mustNew(t, Config{Type: typ, Nodes: c.nodes})
				var tr Tried
				var got []string
				for range 10 {
					p := b.Pick(&tr, "k")
					if p == nil {
						break
					}
					got = append(got, p.Addr)
					tr.Add(p)
				}
				i := 0
				for _, lv := range c.levels {
					if i+len(lv) > len(got) {
						t.Fatalf("attempts %v, want levels %v", got, c.levels)
					}
					part := slices.Clone(got[i : i+len(lv)])
					slices.Sort(part)
					if fmt.Sprint(part) != fmt.Sprint(lv) {
						t.Fatalf("attempts %v, want levels %v", got, c.levels)
					}
					i += len(lv)
				}
				if i != len(got) {
					t.Fatalf("attempts %v, want levels %v", got, c.levels)
				}
				tr.Reset()
				if p := b.Pick(&tr, "k"); p == nil || p.Priority != c.nodes[0].Priority {
					t.Fatalf("after Reset the highest level serves again, got %v", p)
				}
			})
		}
	}
}
