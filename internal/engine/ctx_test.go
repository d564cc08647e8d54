package engine

import (
	"fmt"
	"math"
	"strconv"
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

// IntText's strings stay what they were while later numbers are carved,
// across chunk changes and request resets (a plugin may keep one), and it
// allocates once per chunk, not per number.
func TestIntText(t *testing.T) {
	c := AcquireCtx()
	defer ReleaseCtx(c)
	nums := []int64{0, 7, -1, 999, 1000, 999999999, math.MaxInt64, math.MinInt64}
	type kept struct {
		n int64
		s string
	}
	var all []kept
	for round := 0; round < 200; round++ {
		for _, n := range nums {
			n += int64(round)
			all = append(all, kept{n, c.IntText(n)})
		}
		if round%7 == 0 {
			c.Reset()
		}
	}
	for _, k := range all {
		if want := strconv.FormatInt(k.n, 10); k.s != want {
			t.Fatalf("IntText(%d) = %q later, want %q", k.n, k.s, want)
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
