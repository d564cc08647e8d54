package uarestriction

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
)

// CompileRule compiles one rule with Go's RE2 syntax. APISIX rules are
// PCRE; the common subset (classes, groups, alternation, anchors,
// quantifiers, (?i)) behaves the same, while look-around and
// backreferences are rejected when the conf is written. Errors read like
// APISIX's (lua-resty-core's re_match_compile): "pcre_compile() failed:
// <reason> in "<rule>"".
func CompileRule(rule string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(rule)
	if err != nil {
		return nil, PCREError(rule, err)
	}
	return re, nil
}

// PCREError words a Go regexp error the way PCRE reports the same mistake.
func PCREError(rule string, err error) error {
	reason := err.Error()
	var se *syntax.Error
	if errors.As(err, &se) {
		switch se.Code {
		case syntax.ErrMissingParen:
			reason = "missing )"
		case syntax.ErrUnexpectedParen:
			reason = "unmatched parentheses"
		case syntax.ErrMissingBracket:
			reason = "missing terminating ] for character class"
		case syntax.ErrMissingRepeatArgument:
			reason = "nothing to repeat"
		case syntax.ErrTrailingBackslash:
			reason = `\ at end of pattern`
		case syntax.ErrInvalidPerlOp:
			reason = "unsupported by RE2 (look-around, backreference or PCRE-only group): " + se.Expr
		default:
			reason = string(se.Code) + ": " + se.Expr
		}
	}
	return fmt.Errorf("pcre_compile() failed: %s in %q", reason, rule)
}
