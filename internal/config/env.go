package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// envRef matches APISIX's `${{VAR}}` and `${{VAR:=default}}` (see
// apisix/cli/file.lua var_sub): the name is letters, digits and "_",
// surrounding spaces are trimmed and the default may be empty.
var envRef = regexp.MustCompile(`\$\{\{\s*(\w+)(?:\s*:=(.*?))?\s*\}\}`)

// substituteEnv replaces env references in every mapping key and scalar
// value of the tree, recording an error (with the line) for each reference
// that has neither a value nor a default.
//
// It works on the parsed tree rather than the raw text, as APISIX does for
// config.yaml, for two reasons: APISIX's stock config.yaml carries
// `${{ETCD_HOST}}` inside comments, which a text substitution would reject,
// and a value can never inject YAML structure. As in APISIX, a value that
// used a variable and now reads as a number or true/false gets that type,
// even when it was quoted, so `port: "${{PORT}}"` still works.
func (d *decoder) substituteEnv(n *yaml.Node, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		d.substituteScalar(n)
	case yaml.DocumentNode, yaml.SequenceNode, yaml.MappingNode:
		for _, c := range n.Content {
			d.substituteEnv(c, depth+1)
		}
	}
	// Alias nodes are skipped: their anchor is substituted where it stands.
}

// maxDepth bounds recursion over hostile input; yaml.v3 has its own nesting
// limit, this is a second fence that real configs never reach.
const maxDepth = 1000

func (d *decoder) substituteScalar(n *yaml.Node) {
	if !strings.Contains(n.Value, "${{") {
		return
	}
	locs := envRef.FindAllStringSubmatchIndex(n.Value, -1)
	if len(locs) == 0 {
		return
	}
	var b strings.Builder
	last := 0
	ok := true
	for _, m := range locs {
		b.WriteString(n.Value[last:m[0]])
		last = m[1]
		name := n.Value[m[2]:m[3]]
		if v, found := os.LookupEnv(name); found {
			b.WriteString(v)
			continue
		}
		if m[4] >= 0 {
			b.WriteString(strings.TrimSpace(n.Value[m[4]:m[5]]))
			continue
		}
		ok = false
		d.errs = append(d.errs, &Error{File: d.file, Line: n.Line,
			Msg: fmt.Sprintf("can't find environment variable %s (set it or write ${{%s:=default}})", name, name)})
	}
	if !ok {
		return
	}
	b.WriteString(n.Value[last:])
	n.Value = b.String()
	n.Style = 0
	n.Tag = inferTag(n.Value)
}

// inferTag mirrors APISIX's post-substitution conversion: numbers and
// true/false change type, everything else is a string (never null, a map
// or a list).
func inferTag(s string) string {
	switch s {
	case "true", "false":
		return "!!bool"
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return "!!int"
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "xXnN_") {
		return "!!float"
	}
	return "!!str"
}

// SubstituteEnv applies the `${{VAR}}` / `${{VAR:=default}}` substitution of
// config.yaml to another YAML tree (the standalone apisix.yaml), so both
// files follow one rule. file names the source in errors; each unresolvable
// reference is reported with its line.
func SubstituteEnv(n *yaml.Node, file string) error {
	d := &decoder{file: file}
	d.substituteEnv(n, 0)
	return d.errs.asError()
}

// SyntaxError turns a yaml.v3 error into an *Error with the file and the
// corrected line, as Parse reports config.yaml syntax errors.
func SyntaxError(err error, file string) error {
	return (&decoder{file: file}).syntaxError(err)
}
