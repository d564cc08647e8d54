package engine

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// HeaderValue slices share one backing array per request, never each
// other's elements, and cost no allocation once the array is grown.
func TestHeaderValue(t *testing.T) {
	c := AcquireCtx()
	defer ReleaseCtx(c)
	h := Header{}
	for i := 0; i < 20; i++ {
		h[fmt.Sprint("K", i)] = c.HeaderValue(fmt.Sprint(i))
	}
	for i := 0; i < 20; i++ {
		if v := h[fmt.Sprint("K", i)]; len(v) != 1 || v[0] != fmt.Sprint(i) {
			t.Fatalf("K%d = %q", i, v)
		}
	}
	// Appending to one copies: the next value is not overwritten.
	a, b := c.HeaderValue("a"), c.HeaderValue("b")
	a = append(a, "a2")
	if b[0] != "b" || len(a) != 2 {
		t.Fatalf("append to one value changed another: a=%q b=%q", a, b)
	}
	c.Reset()
	if n := testing.AllocsPerRun(100, func() {
		c.Reset()
		for i := 0; i < 8; i++ {
			h["X"] = c.HeaderValue("v")
		}
	}); n != 0 {
		t.Fatalf("HeaderValue allocates %.1f times per request", n)
	}
}

// Text's and IntText's strings stay what they were while later ones are
// carved, across chunk changes and request resets (a plugin may keep
// one), and they allocate once per chunk, not per string.
func TestText(t *testing.T) {
	c := AcquireCtx()
	defer ReleaseCtx(c)
	type kept struct{ got, want string }
	var all []kept
	for round := 0; round < 200; round++ {
		for _, n := range []int64{0, 7, -1, 999, 1000, 999999999, math.MaxInt64, math.MinInt64} {
			n += int64(round)
			all = append(all, kept{c.IntText(n), strconv.FormatInt(n, 10)})
		}
		for _, n := range []int{0, 1, 127, 128, 129, 300} {
			want := strings.Repeat(string(rune('a'+round%26)), n)
			b := []byte(want)
			all = append(all, kept{c.Text(b), want})
			for i := range b {
				b[i] = '!' // the caller's buffer is reused
			}
		}
		if round%7 == 0 {
			c.Reset()
		}
	}
	for _, k := range all {
		if k.got != k.want {
			t.Fatalf("text = %q later, want %q", k.got, k.want)
		}
	}
	// 1000 ten-digit numbers: about 1000*10/512 chunks, not 1000 strings.
	if n := testing.AllocsPerRun(20, func() {
		for i := int64(0); i < 1000; i++ {
			_ = c.IntText(1e9 + i)
		}
	}); n > 25 {
		t.Fatalf("IntText: %.1f allocations per 1000 numbers", n)
	}
}

// Ctx keeps a lock-shaped marker so go vet (CI runs it) reports copies:
// a copy would share the text chunk and overwrite strings already handed
// out.
func TestCtxNotCopyable(t *testing.T) {
	locker := reflect.TypeOf((*sync.Locker)(nil)).Elem()
	ct := reflect.TypeOf(Ctx{})
	for i := 0; i < ct.NumField(); i++ {
		if reflect.PointerTo(ct.Field(i).Type).Implements(locker) {
			return
		}
	}
	t.Fatal("engine.Ctx has no noCopy marker: go vet would not report copies")
}
