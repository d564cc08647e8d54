package engine

import (
	"fmt"
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
