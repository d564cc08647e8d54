package proxyrewrite

import (
	"reflect"
	"regexp"
	"testing"
)

// The prefix fast path of regex_uri gives exactly what RE2 gives, and is
// taken only for ^literal(.*) and ^literal(.*)$.
func TestPrefixRuleMatchesRegexp(t *testing.T) {
	patterns := []struct {
		pat    string
		prefix bool
	}{
		{`^/api/v1/orders/(.*)`, true},
		{`^/a(.*)$`, true},
		{`^/x/(.*)`, true},
		{`^/é/(.*)`, true},
		{`(?i)^/A(.*)`, false},
		{`^/a(.*?)`, false},
		{`(?s)^/a(.*)`, false},
		{`(?m)^/a(.*)`, false},
		{`^/a(.+)`, false},
		{`^/a/(.*)/b`, false},
		{`/a(.*)`, false},
		{`^(.*)`, false},
		{`^/a((.*))`, false},
		// RE2 matches U+FFFD against invalid UTF-8 bytes; a byte
		// compare would not: such literals stay with RE2.
		{`^/a\x{FFFD}(.*)`, false},
		{"^/b\uFFFD(.*)$", false},
	}
	inputs := []string{"", "/", "/a", "/a/", "/api/v1/orders/", "/api/v1/orders/12?x=1",
		"/api/v1/orders/1\n2", "/a\n", "/x/y/z", "/é/ü", "/A/b", "/api/v1/order", "x/api/v1/orders/1", "/a\xff/b", "/\xff"}
	for _, tc := range patterns {
		_, _, ok := prefixRule(tc.pat)
		if ok != tc.prefix {
			t.Errorf("prefixRule(%q) = %v, want %v", tc.pat, ok, tc.prefix)
			continue
		}
		if !ok {
			continue
		}
		re := regexp.MustCompile(tc.pat)
		rp := regexPair{re: re}
		rp.prefix, rp.tail, _ = prefixRule(tc.pat)
		for _, in := range inputs {
			want := re.FindStringSubmatchIndex(in)
			var m [4]int
			got := rp.matchPrefix(in, &m)
			if got != (want != nil) || got && !reflect.DeepEqual(m[:], want) {
				t.Errorf("%q on %q: fast %v %v, regexp %v", tc.pat, in, got, m, want)
			}
		}
	}
}

// FuzzPrefixRule checks the fast path against RE2 on arbitrary paths.
func FuzzPrefixRule(f *testing.F) {
	f.Add("/api/v1/orders/1")
	f.Add("/api/v1/orders/\n")
	f.Add("/a\xff/b")
	pats := []string{`^/api/v1/orders/(.*)`, `^/api/(.*)$`}
	f.Fuzz(func(t *testing.T, in string) {
		for _, pat := range pats {
			re := regexp.MustCompile(pat)
			rp := regexPair{re: re}
			rp.prefix, rp.tail, _ = prefixRule(pat)
			want := re.FindStringSubmatchIndex(in)
			var m [4]int
			got := rp.matchPrefix(in, &m)
			if got != (want != nil) || got && !reflect.DeepEqual(m[:], want) {
				t.Fatalf("%q on %q: fast %v %v, regexp %v", pat, in, got, m, want)
			}
		}
	})
}
