package uarestriction

import (
	"bytes"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Rules is a compiled list of regular expressions, searched (unanchored)
// in a string; it matches if any rule does. Rules that are plain literals,
// the common case for bot names and path fragments, are searched as
// substrings: Go's regexp has no fast path for case-insensitive literals,
// and a (?i) literal costs microseconds as a regexp but tens of
// nanoseconds as a folded substring search.
type Rules struct {
	rules []rule
}

type rule struct {
	re   *regexp.Regexp // nil for literals
	lit  string
	litb []byte // lit, for Match
	fold bool   // lit is ASCII and compared case-insensitively
}

// CompileRules compiles list; with caseInsensitive every rule is compiled
// as if it began with (?i). Errors are worded like PCRE's (see
// CompileRule).
func CompileRules(list []string, caseInsensitive bool) (*Rules, error) {
	rs := &Rules{}
	for _, src := range list {
		if caseInsensitive {
			src = "(?i)" + src
		}
		re, err := CompileRule(src)
		if err != nil {
			return nil, err
		}
		r := rule{re: re}
		if p, err := syntax.Parse(src, syntax.Perl); err == nil {
			p = p.Simplify()
			if p.Op == syntax.OpLiteral {
				lit := string(p.Rune)
				fold := p.Flags&syntax.FoldCase != 0
				if !fold || isASCII(lit) {
					r = rule{lit: lit, fold: fold}
					if fold {
						r.lit = strings.ToLower(lit)
					}
					r.litb = []byte(r.lit)
				}
			}
		}
		rs.rules = append(rs.rules, r)
	}
	return rs, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// MatchString reports whether any rule matches somewhere in s.
func (rs *Rules) MatchString(s string) bool {
	for i := range rs.rules {
		r := &rs.rules[i]
		switch {
		case r.re != nil:
			if r.re.MatchString(s) {
				return true
			}
		case r.fold:
			if containsFold(s, r.lit) {
				return true
			}
		default:
			if strings.Contains(s, r.lit) {
				return true
			}
		}
	}
	return false
}

// Match is MatchString for a byte slice, without converting it.
func (rs *Rules) Match(b []byte) bool {
	for i := range rs.rules {
		r := &rs.rules[i]
		switch {
		case r.re != nil:
			if r.re.Match(b) {
				return true
			}
		case r.fold:
			if containsFold(b, r.lit) {
				return true
			}
		default:
			if bytes.Contains(b, r.litb) {
				return true
			}
		}
	}
	return false
}

// containsFold reports whether s contains lower (an ASCII, lower-case
// literal) ignoring ASCII case.
func containsFold[T string | []byte](s T, lower string) bool {
	n := len(lower)
	if n == 0 {
		return true
	}
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}
