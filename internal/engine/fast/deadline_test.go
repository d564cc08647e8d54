package fast

import (
	"testing"
	"time"
)

// TestLooseDeadlines: loose keeps a deadline up to 1/16 of the timeout
// early; looseWatch keeps the disconnect-watch deadline while a quarter
// to all of watchDelay is left, and otherwise sets it watchDelay ahead.
func TestLooseDeadlines(t *testing.T) {
	now := time.Unix(1000, 0)
	d := 16 * time.Second
	for _, tc := range []struct {
		cur  time.Duration // from now; -1: none
		keep bool
	}{
		{-1, false},
		{d, true},
		{d - time.Second + time.Millisecond, true},
		{d - time.Second, false},
		{d + time.Millisecond, false},
	} {
		var cur time.Time
		if tc.cur >= 0 {
			cur = now.Add(tc.cur)
		}
		was := cur
		got, set := loose(&cur, now, d)
		if set == tc.keep || (tc.keep && !cur.Equal(was)) || (!tc.keep && (!got.Equal(now.Add(d)) || !cur.Equal(got))) {
			t.Errorf("loose with %v left: set %v, deadline %v", tc.cur, set, cur.Sub(now))
		}
	}
	for _, tc := range []struct {
		cur  time.Duration
		keep bool
	}{
		{-1, false},
		{watchDelay, true},
		{watchDelay / 4, true},
		{watchDelay/4 - time.Millisecond, false},
		{time.Millisecond, false}, // answered()'s 1 ms peek
		{watchDelay + time.Millisecond, false},
		{time.Minute, false}, // a read timeout's deadline
	} {
		var cur time.Time
		if tc.cur >= 0 {
			cur = now.Add(tc.cur)
		}
		was := cur
		got, set := looseWatch(&cur, now)
		if set == tc.keep || (tc.keep && (!cur.Equal(was) || !got.Equal(was))) || (!tc.keep && (!got.Equal(now.Add(watchDelay)) || !cur.Equal(got))) {
			t.Errorf("looseWatch with %v left: set %v, deadline %v", tc.cur, set, cur.Sub(now))
		}
	}
}
