package limitcount

import (
	"math"
	"testing"
)

// resetText prints what formatLuaNumber prints, from its cache or not.
func TestResetText(t *testing.T) {
	p := &Plugin{}
	for _, tc := range []struct {
		in   float64
		want string
	}{{60, "60"}, {59.87, "59.87"}, {59.87, "59.87"}, {0.5, "0.5"}, {0, "0"}, {59.8, "59.8"}, {59.87, "59.87"}} {
		if got := p.resetText(int64(math.Floor(tc.in * 100))); got != tc.want || got != formatLuaNumber(tc.in) {
			t.Errorf("resetText(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
