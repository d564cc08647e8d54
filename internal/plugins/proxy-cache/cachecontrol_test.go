package proxycache

import (
	"testing"
	"time"
)

func TestDirectives(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		cc, expires string
		ttl         time.Duration
		private     bool
	}{
		{"max-age=60", "", 60 * time.Second, false},
		{"public, max-age=10, s-maxage=30", "", 30 * time.Second, false},
		{"private, max-age=600", "", 600 * time.Second, true},
		{"Max-Age=5", "", 5 * time.Second, false},
		{"max-age=abc", "", 0, false},
		{"", "Thu, 01 Jan 2026 00:01:00 GMT", time.Minute, false},
		{"", "Wed, 31 Dec 2025 00:00:00 GMT", 0, false},
		{"", "garbage", 0, false},
	} {
		t.Run(tc.cc+tc.expires, func(t *testing.T) {
			d := parseDirectives([]string{tc.cc})
			var exp []string
			if tc.expires != "" {
				exp = []string{tc.expires}
			}
			if got := resourceTTL(d, exp, now); got != tc.ttl {
				t.Fatalf("ttl %v, want %v", got, tc.ttl)
			}
			if d.private != tc.private {
				t.Fatalf("private %v", d.private)
			}
		})
	}
}

func FuzzDirectives(f *testing.F) {
	for _, s := range []string{"max-age=1", "no-cache, no-store", "s-maxage=\"5\"", "=,=,", "min-fresh=1e309"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseDirectives([]string{s})
		if resourceTTL(d, []string{s}, time.Now()) < 0 {
			t.Fatal("negative ttl")
		}
		parseVary([]string{s})
	})
}

func TestHugeMaxAge(t *testing.T) {
	if got := resourceTTL(parseDirectives([]string{"max-age=1e300"}), nil, time.Now()); got < 24*time.Hour {
		t.Fatalf("ttl %v", got)
	}
}
