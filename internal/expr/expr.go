// Package expr implements the route "vars" expression language of Apache
// APISIX (lua-resty-expr v1): a JSON array of comparisons combined with AND,
// OR, !AND and !OR.
//
// Compile follows lua-resty-expr's compile step, including its quirks, so
// that any expression APISIX accepts is accepted here with the same meaning.
// Eval runs on the request hot path and does not allocate for any operator
// except "ipmatch" against a variable that is not a valid IP address.
//
// Deliberate differences from lua-resty-expr, all because Go variables are
// strings where Lua variables may be tables or numbers:
//
//   - "has" treats the variable as a comma-separated list (elements trimmed of
//     spaces and tabs). The engine exposes list-valued variables such as
//     graphql_root_fields or JSON arrays read through post_arg as such lists.
//   - "in" with a number element compares the variable numerically against it;
//     in Lua a string variable never equals a number, so such elements were dead.
//   - "~~" and "~*" use Go's RE2 syntax and are compiled at Compile time; a
//     pattern RE2 cannot compile is rejected rather than silently never matching.
package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Vars gives variable values for evaluation; the engine's request context
// implements it. The boolean reports whether the variable exists: a missing
// variable behaves as Lua's nil.
type Vars interface {
	Var(name string) (string, bool)
}

// noVars is used when Eval is given a nil Vars, so that every variable is
// missing instead of the evaluation panicking.
type noVars struct{}

func (noVars) Var(string) (string, bool) { return "", false }

// Expr is a compiled vars expression. It is immutable and safe for concurrent
// use. A nil *Expr, or one compiled from an empty array, is always true.
type Expr struct {
	root *node
}

type logicOp uint8

const (
	leaf logicOp = iota
	logicAnd
	logicOr
	logicNotAnd
	logicNotOr
)

type opcode uint8

const (
	opEq opcode = iota
	opNe
	opGt
	opGe
	opLt
	opLe
	opRegex
	opRegexI
	opIn
	opHas
	opIPMatch
)

var opcodes = map[string]opcode{
	"==":      opEq,
	"~=":      opNe,
	">":       opGt,
	">=":      opGe,
	"<":       opLt,
	"<=":      opLe,
	"~~":      opRegex,
	"~*":      opRegexI,
	"in":      opIn,
	"has":     opHas,
	"ipmatch": opIPMatch,
}

var logicOps = map[string]logicOp{
	"AND":  logicAnd,
	"OR":   logicOr,
	"!AND": logicNotAnd,
	"!OR":  logicNotOr,
}

// kind is the JSON type of a comparison's right-hand value. kindNil covers
// both JSON null and an absent value, which lua-resty-expr treats alike at
// evaluation time (ngx.null is turned into nil).
type kind uint8

const (
	kindNil kind = iota
	kindString
	kindNumber
	kindOther // booleans, arrays (outside "in"), objects: never equal to a string
)

// value is a precomputed right-hand side.
type value struct {
	kind  kind
	str   string  // kindString: the string; kindNumber: its Lua text form
	num   float64 // kindNumber, or a kindString that Lua's tonumber accepts
	numOK bool    // num is valid (for the ordering operators)
}

type node struct {
	logic    logicOp
	children []*node

	// Leaf fields.
	name     string
	op       opcode
	negate   bool
	rv       value
	re       *regexp.Regexp
	list     []value
	prefixes []netip.Prefix
}

// Compile parses and validates a vars expression given as JSON. Error texts
// match lua-resty-expr's (e.g. "invalid operator '='", "rule too short"); the
// resource layer adds the "failed to validate the 'vars' expression: " prefix.
func Compile(raw json.RawMessage) (*Expr, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, errors.New("missing argument rule")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid json: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid json: trailing data")
	}
	rule, ok := v.([]any)
	if !ok {
		return nil, errors.New("rule should be an array")
	}
	if len(rule) == 0 {
		return &Expr{}, nil
	}
	if _, isArr := rule[0].([]any); !isArr {
		s, ok := luaString(rule[0])
		if !ok {
			return nil, errors.New("rule should be wrapped inside brackets")
		}
		if _, isLogic := logicOps[strings.ToUpper(s)]; !isLogic {
			return nil, errors.New("rule should be wrapped inside brackets")
		}
	}
	root, err := compileRule(rule, 0)
	if err != nil {
		return nil, err
	}
	return &Expr{root: root}, nil
}

// maxDepth bounds nesting so that a hostile expression cannot exhaust the
// stack at compile or evaluation time.
const maxDepth = 64

func compileRule(rules []any, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, errors.New("expression nested too deeply")
	}
	if len(rules) == 0 {
		return nil, errors.New("rule too short")
	}
	if _, isArr := rules[0].([]any); isArr {
		n := &node{logic: logicAnd, children: make([]*node, 0, len(rules))}
		for _, r := range rules {
			sub, ok := r.([]any)
			if !ok {
				return nil, errors.New("invalid expression")
			}
			c, err := compileRule(sub, depth+1)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
		}
		return n, nil
	}
	if s, ok := luaString(rules[0]); ok {
		if lop, isLogic := logicOps[strings.ToUpper(s)]; isLogic {
			if len(rules) <= 2 {
				return nil, errors.New("rule too short")
			}
			n := &node{logic: lop, children: make([]*node, 0, len(rules)-1)}
			for _, r := range rules[1:] {
				sub, ok := r.([]any)
				if !ok {
					return nil, errors.New("invalid expression")
				}
				c, err := compileRule(sub, depth+1)
				if err != nil {
					return nil, err
				}
				n.children = append(n.children, c)
			}
			return n, nil
		}
	}
	return compileLeaf(rules)
}

// absent marks a missing array element (Lua nil), as opposed to JSON null.
type absent struct{}

func at(a []any, i int) any {
	if i < len(a) {
		return a[i]
	}
	return absent{}
}

func compileLeaf(e []any) (*node, error) {
	var l, op, r any
	n := &node{}
	if len(e) == 4 {
		if s, ok := e[1].(string); !ok || s != "!" {
			return nil, errors.New("bad 'not' expression")
		}
		n.negate = true
		l, op, r = e[0], e[2], e[3]
	} else {
		l, op, r = at(e, 0), at(e, 1), at(e, 2)
	}

	opStr, opPresent := "", false
	if _, isAbsent := op.(absent); !isAbsent {
		s, ok := luaString(op)
		if !ok {
			return nil, errors.New("invalid expression")
		}
		opStr, opPresent = strings.ToLower(s), true
	}
	code, known := opcodes[opStr]
	if _, rAbsent := r.(absent); rAbsent && (!opPresent || !known) {
		// The two-element form [var, value]: lua-resty-expr lowercases the
		// operator slot before noticing it is a value, so the value is too.
		if !opPresent {
			return nil, errors.New("invalid expression")
		}
		r, opStr, code, known = opStr, "==", opEq, true
	}
	if _, isAbsent := l.(absent); isAbsent {
		return nil, errors.New("invalid expression")
	}
	name, ok := luaString(l)
	if !ok {
		return nil, errors.New("invalid expression")
	}
	if !known {
		return nil, fmt.Errorf("invalid operator '%s'", opStr)
	}
	n.name, n.op = name, code

	switch code {
	case opRegex, opRegexI:
		pat, ok := luaString(r)
		if !ok {
			return nil, errors.New("invalid expression: regex must be a string")
		}
		if code == opRegexI {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("invalid regex '%s': %w", pat, err)
		}
		n.re = re
	case opIn:
		if arr, ok := r.([]any); ok {
			for _, el := range arr {
				n.list = append(n.list, toValue(el))
			}
		}
	case opIPMatch:
		var items []any
		switch rv := r.(type) {
		case absent:
			return nil, errors.New("invalid ip address")
		case string:
			if rv == "" {
				return nil, errors.New("invalid ip address")
			}
			items = []any{rv}
		case []any:
			items = rv
		default:
			items = []any{rv}
		}
		if len(items) == 0 {
			return nil, errors.New("invalid ip address")
		}
		for _, it := range items {
			s, ok := it.(string)
			if !ok {
				return nil, errors.New("invalid ip address")
			}
			p, err := ParseIPOrPrefix(s)
			if err != nil {
				return nil, err
			}
			n.prefixes = append(n.prefixes, p)
		}
	default:
		n.rv = toValue(r)
	}
	return n, nil
}

// ParseIPOrPrefix parses an IP address or CIDR as lua-resty-ipmatcher accepts
// them ("10.0.0.1", "10.0.0.0/8", "::1", "fe80::/10"). A bare address becomes a
// full-length prefix. The result is masked so that Contains is exact.
func ParseIPOrPrefix(s string) (netip.Prefix, error) {
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid ip address: %s", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid ip address: %s", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// luaString converts a JSON scalar the way Lua's string functions coerce their
// argument: strings as is, numbers in Lua's "%.14g" form. Other types fail.
func luaString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return "", false
		}
		return luaNumberString(f), true
	}
	return "", false
}

func luaNumberString(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 14, 64)
}

func toValue(v any) value {
	switch t := v.(type) {
	case absent, nil:
		return value{kind: kindNil}
	case string:
		n, ok := ToNumber(t)
		return value{kind: kindString, str: t, num: n, numOK: ok}
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return value{kind: kindOther}
		}
		return value{kind: kindNumber, str: luaNumberString(f), num: f, numOK: true}
	}
	return value{kind: kindOther}
}

// Eval reports whether the expression holds for the given variables. A nil
// expression is true. Missing variables behave as Lua's nil does in
// lua-resty-expr: they fail every comparison except "~=", and "== null".
func (e *Expr) Eval(v Vars) bool {
	if e == nil || e.root == nil {
		return true
	}
	if v == nil {
		v = noVars{}
	}
	return e.root.eval(v)
}

func (n *node) eval(v Vars) bool {
	switch n.logic {
	case leaf:
		return n.compare(v) != n.negate
	case logicAnd:
		return n.all(v)
	case logicOr:
		return n.any(v)
	case logicNotAnd:
		return !n.all(v)
	default:
		return !n.any(v)
	}
}

func (n *node) all(v Vars) bool {
	for _, c := range n.children {
		if !c.eval(v) {
			return false
		}
	}
	return true
}

func (n *node) any(v Vars) bool {
	for _, c := range n.children {
		if c.eval(v) {
			return true
		}
	}
	return false
}

func (n *node) compare(v Vars) bool {
	val, ok := v.Var(n.name)
	switch n.op {
	case opEq:
		switch n.rv.kind {
		case kindNumber:
			if !ok {
				return false
			}
			f, fok := ToNumber(val)
			return fok && f == n.rv.num
		case kindString:
			return ok && val == n.rv.str
		case kindNil:
			return !ok
		}
		return false
	case opNe:
		switch n.rv.kind {
		case kindNumber:
			if !ok {
				return true
			}
			f, fok := ToNumber(val)
			return !fok || f != n.rv.num
		case kindString:
			return !ok || val != n.rv.str
		case kindNil:
			return ok
		}
		return true
	case opGt, opGe, opLt, opLe:
		if !ok || !n.rv.numOK {
			return false
		}
		f, fok := ToNumber(val)
		if !fok {
			return false
		}
		switch n.op {
		case opGt:
			return f > n.rv.num
		case opGe:
			return f >= n.rv.num
		case opLt:
			return f < n.rv.num
		}
		return f <= n.rv.num
	case opRegex, opRegexI:
		return ok && n.re.MatchString(val)
	case opIn:
		if !ok {
			return false
		}
		for i := range n.list {
			if n.list[i].matches(val) {
				return true
			}
		}
		return false
	case opHas:
		if !ok {
			return false
		}
		for rest := val; ; {
			el := rest
			i := strings.IndexByte(rest, ',')
			if i >= 0 {
				el, rest = rest[:i], rest[i+1:]
			}
			if n.rv.matches(strings.Trim(el, " \t")) {
				return true
			}
			if i < 0 {
				return false
			}
		}
	case opIPMatch:
		if !ok {
			return false
		}
		a, err := netip.ParseAddr(val)
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range n.prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return false
}

// matches reports whether a list element equals the string s.
func (x *value) matches(s string) bool {
	switch x.kind {
	case kindString:
		return x.str == s
	case kindNumber:
		f, ok := ToNumber(s)
		return ok && f == x.num
	}
	return false
}

// ToNumber converts a string the way LuaJIT's tonumber does for the inputs
// that matter here: surrounding whitespace is ignored, decimal numbers with an
// optional sign, fraction and exponent, and 0x hexadecimal integers. "inf",
// "nan" and anything else return false. It does not allocate.
func ToNumber(s string) (float64, bool) {
	s = strings.Trim(s, " \t\n\v\f\r")
	if s == "" {
		return 0, false
	}
	body := s
	neg := false
	if body[0] == '+' || body[0] == '-' {
		neg = body[0] == '-'
		body = body[1:]
	}
	if len(body) > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X') {
		var f float64
		for i := 2; i < len(body); i++ {
			c := body[i]
			var d byte
			switch {
			case c >= '0' && c <= '9':
				d = c - '0'
			case c >= 'a' && c <= 'f':
				d = c - 'a' + 10
			case c >= 'A' && c <= 'F':
				d = c - 'A' + 10
			default:
				return 0, false
			}
			f = f*16 + float64(d)
		}
		if neg {
			f = -f
		}
		return f, true
	}
	// Validate the decimal grammar first: strconv's error values allocate.
	i, digits := 0, 0
	for i < len(body) && body[i] >= '0' && body[i] <= '9' {
		i++
		digits++
	}
	if i < len(body) && body[i] == '.' {
		i++
		for i < len(body) && body[i] >= '0' && body[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(body) && (body[i] == 'e' || body[i] == 'E') {
		i++
		if i < len(body) && (body[i] == '+' || body[i] == '-') {
			i++
		}
		expDigits := 0
		for i < len(body) && body[i] >= '0' && body[i] <= '9' {
			i++
			expDigits++
		}
		if expDigits == 0 {
			return 0, false
		}
	}
	if i != len(body) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	return f, true
}
