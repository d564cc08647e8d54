package balancer

import (
	"fmt"
	"testing"
	"time"
)

func benchNodes(n int) []Node {
	ns := make([]Node, n)
	for i := range ns {
		ns[i] = Node{Host: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 8080, Weight: 1 + i%3}
	}
	return ns
}

func benchPick(b *testing.B, typ string, n int, withHealth, done bool) {
	bal, err := New(Config{Type: typ, Nodes: benchNodes(n)})
	if err != nil {
		b.Fatal(err)
	}
	if withHealth {
		bal.SetHealth(NewChecker(bal.Nodes(), Checks{Active: &Active{}}, nil))
	}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("192.168.%d.%d", i, i*3)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var tr Tried
		i := 0
		for pb.Next() {
			tr.Reset()
			p := bal.Pick(&tr, keys[i&63])
			if done {
				bal.Done(p, time.Millisecond, false)
			}
			i++
		}
	})
}

func BenchmarkPickRoundRobin(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) { benchPick(b, TypeRoundRobin, n, false, false) })
	}
	b.Run("nodes=3/health", func(b *testing.B) { benchPick(b, TypeRoundRobin, 3, true, false) })
}

func BenchmarkPickChash(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) { benchPick(b, TypeCHash, n, false, false) })
	}
	b.Run("nodes=3/health", func(b *testing.B) { benchPick(b, TypeCHash, 3, true, false) })
}

func BenchmarkPickLeastConn(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) { benchPick(b, TypeLeastConn, n, false, true) })
	}
}

func BenchmarkPickEWMA(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) { benchPick(b, TypeEWMA, n, false, true) })
	}
}

// BenchmarkPickRetry measures a retry pick with two tried nodes.
func BenchmarkPickRetry(b *testing.B) {
	for _, typ := range []string{TypeRoundRobin, TypeCHash} {
		b.Run(typ, func(b *testing.B) {
			bal, _ := New(Config{Type: typ, Nodes: benchNodes(5)})
			b.ReportAllocs()
			var tr Tried
			for i := 0; b.Loop(); i++ {
				tr.Reset()
				tr.Add(bal.Pick(&tr, "k"))
				tr.Add(bal.Pick(&tr, "k"))
				if bal.Pick(&tr, "k") == nil {
					b.Fatal("nil")
				}
			}
		})
	}
}
