package config

import (
	"fmt"
	"strings"
)

// Warning is a non-fatal remark about a config file, such as keys that
// APISIX knows but Sluice ignores. It carries the file and line so that an
// operator can find the spot.
type Warning struct {
	File string
	Line int
	Msg  string
}

// String formats the warning as "file:line: msg", the form editors and
// terminals turn into links.
func (w Warning) String() string {
	return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg)
}

// Error is one problem in a config file, located by file, line and the
// dotted key path (e.g. "deployment.admin.admin_key[0].role").
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error formats the problem as "file:line: key: msg"; the key part is left
// out for problems that belong to no key (a YAML syntax error).
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors collects every problem found in one pass, so an operator can fix a
// file in one go instead of one error per restart.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// asError returns nil for no problems, the single *Error for one, and the
// list for several, as documented on Load.
func (es Errors) asError() error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	default:
		return es
	}
}
