package schema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Ranks of the checks inside one schema, in the order lua-resty-jsonschema's
// generated code runs them (type, object keywords, array keywords, string
// keywords, number keywords, enum, combinators, format/const/contains).
// Among several errors we report the one with the smallest rank path.
const (
	rankType = iota
	rankRequired
	rankProperty // followed by the property index, then 0 (value) or 1 (dependency)
	rankOtherDependency
	rankAdditional
	rankPropCount
	rankItemCount
	rankItem // followed by the item index
	rankUnique
	rankMinLength
	rankMaxLength
	rankPattern
	rankMinimum
	rankExclusiveMinimum
	rankMaximum
	rankExclusiveMaximum
	rankMultipleOf
	rankEnum
	rankAllOf // followed by the subschema index
	rankAnyOf
	rankOneOf
	rankIfThen
	rankNot
	rankFormat
	rankConst
	rankContains
	rankOther
)

type candidate struct {
	key []int
	msg string
}

// translate turns the library's error tree into the one message the Lua
// validator would have returned first.
func (s *Schema) translate(verr *jsonschema.ValidationError, root any) string {
	var cands []candidate
	s.collect(verr, nil, 0, nil, "", root, &cands)
	if len(cands) == 0 {
		return ""
	}
	sort.SliceStable(cands, func(i, j int) bool { return lessKey(cands[i].key, cands[j].key) })
	return cands[0].msg
}

func lessKey(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// fragTokens splits the fragment of a schema location into JSON pointer
// tokens (unescaped).
func fragTokens(loc string) []string {
	i := strings.IndexByte(loc, '#')
	if i < 0 {
		return nil
	}
	frag := loc[i+1:]
	if frag == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(frag, "/"), "/")
	for j, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
		p = strings.ReplaceAll(p, "~1", "/")
		parts[j] = strings.ReplaceAll(p, "~0", "~")
	}
	return parts
}

func ptrOf(tokens []string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(escapeToken(t))
	}
	return sb.String()
}

// lookup resolves pointer tokens in the schema document.
func (s *Schema) lookup(tokens []string) any {
	v := s.doc
	for _, t := range tokens {
		switch x := v.(type) {
		case map[string]any:
			v = x[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func instanceAt(root any, loc []string) any {
	v := root
	for _, t := range loc {
		switch x := v.(type) {
		case map[string]any:
			v = x[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func (s *Schema) propIndex(schemaTokens []string, name string) int {
	for i, n := range s.order[ptrOf(schemaTokens)] {
		if n == name {
			return i
		}
	}
	return 1 << 20
}

// collect walks e relative to the schema location base (pointer tokens)
// and the instance location consumed so far, and appends the candidate
// messages it yields.
func (s *Schema) collect(e *jsonschema.ValidationError, base []string, instUsed int, key []int, prefix string, root any, out *[]candidate) {
	ptr := fragTokens(e.SchemaURL)
	rel := ptr
	if len(ptr) >= len(base) && ptrOf(ptr[:len(base)]) == ptrOf(base) {
		rel = ptr[len(base):]
	} else {
		// Not below base (should not happen outside $ref); treat the
		// error's schema as the new base.
		base, rel = ptr, nil
	}
	cur := append([]string(nil), base...)
	key = append([]int(nil), key...)
	inst := e.InstanceLocation
	nextInst := func() string {
		if instUsed < len(inst) {
			instUsed++
			return inst[instUsed-1]
		}
		return ""
	}
	for i := 0; i < len(rel); i++ {
		t := rel[i]
		arg := ""
		if i+1 < len(rel) {
			arg = rel[i+1]
		}
		switch t {
		case "properties":
			idx := s.propIndex(cur, arg)
			nextInst()
			key = append(key, rankProperty, idx, 0)
			prefix += `property "` + arg + `" validation failed: `
			cur = append(cur, t, arg)
			i++
		case "patternProperties":
			k := nextInst()
			key = append(key, rankAdditional)
			prefix += "failed to validate " + k + ` (matching "` + arg + `"): `
			cur = append(cur, t, arg)
			i++
		case "additionalProperties":
			k := nextInst()
			key = append(key, rankAdditional)
			prefix += "failed to validate additional property " + k + ": "
			cur = append(cur, t)
		case "items", "additionalItems":
			_, tuple := s.lookup(append(cur, "items")).([]any)
			it := nextInst()
			n, _ := strconv.Atoi(it)
			key = append(key, rankItem, n)
			if t == "additionalItems" {
				prefix += fmt.Sprintf("failed to validate additional item %d: ", n+1)
				cur = append(cur, t)
			} else {
				prefix += fmt.Sprintf("failed to validate item %d: ", n+1)
				cur = append(cur, t)
				if tuple {
					cur = append(cur, arg)
					i++
				}
			}
		case "allOf":
			n, _ := strconv.Atoi(arg)
			key = append(key, rankAllOf, n)
			prefix += fmt.Sprintf("allOf %d failed: ", n+1)
			cur = append(cur, t, arg)
			i++
		case "dependencies":
			key = append(key, rankProperty, s.propIndex(cur, arg), 1)
			prefix += `failed to validate dependent schema for "` + arg + `": `
			cur = append(cur, t, arg)
			i++
		case "then", "else":
			*out = append(*out, candidate{append(key, rankIfThen), prefix + t + " clause did not match"})
			return
		case "not":
			*out = append(*out, candidate{append(key, rankNot), prefix + "value wasn't supposed to match schema"})
			return
		case "anyOf", "oneOf", "if":
			// Errors below these are reported by their own kinds; reaching
			// here means the library attached them directly. Report at
			// this level like the Lua code does.
			*out = append(*out, candidate{append(key, rankAnyOf), prefix + "object matches none of the required"})
			return
		default:
			cur = append(cur, t)
		}
	}

	switch k := e.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.AllOf:
		for _, c := range e.Causes {
			s.collect(c, cur, instUsed, key, prefix, root, out)
		}
		return
	case *kind.Reference:
		for _, c := range e.Causes {
			s.collect(c, fragTokens(k.URL), instUsed, key, prefix, root, out)
		}
		return
	}
	if s.skipped(e, cur, root) {
		return
	}
	rank, msg := s.leaf(e, cur, root)
	*out = append(*out, candidate{append(key, rank...), prefix + msg})
}

// skipped reports whether APISIX's skip_validation hook
// (apisix/secret.lua is_secret_ref) would have skipped the schema that
// produced e: a "$secret://" or "$env://" string checked against a schema
// whose type is absent or "string" always passes.
func (s *Schema) skipped(e *jsonschema.ValidationError, cur []string, root any) bool {
	str, ok := instanceAt(root, e.InstanceLocation).(string)
	if !ok || !IsSecretRef(str) {
		return false
	}
	t := s.lookup(append(cur, "type"))
	return t == nil || t == "string"
}

// IsSecretRef reports whether s is a secret reference ("$secret://..." or,
// case-insensitively, "$env://...").
func IsSecretRef(s string) bool {
	if len(s) == 0 || s[0] != '$' {
		return false
	}
	return strings.HasPrefix(s, "$secret://") || strings.HasPrefix(strings.ToUpper(s), "$ENV://")
}

// leaf returns the rank path and the Lua message of a terminal error.
func (s *Schema) leaf(e *jsonschema.ValidationError, cur []string, root any) ([]int, string) {
	val := instanceAt(root, e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		want := s.lookup(append(cur, "type"))
		if list, ok := want.([]any); ok {
			names := make([]string, 0, len(list))
			for _, n := range list {
				names = append(names, fmt.Sprint(n))
			}
			return []int{rankType}, "wrong type: expected one of " + strings.Join(names, ", ") + ", got " + LuaType(val)
		}
		w := fmt.Sprint(want)
		if want == nil && len(k.Want) > 0 {
			w = k.Want[0]
		}
		return []int{rankType}, "wrong type: expected " + w + ", got " + LuaType(val)
	case *kind.Required:
		return []int{rankRequired}, `property "` + k.Missing[0] + `" is required`
	case *kind.Dependency:
		return []int{rankProperty, s.propIndex(cur, k.Prop), 1}, `property "` + k.Missing[0] + `" is required when "` + k.Prop + `" is set`
	case *kind.DependentRequired:
		return []int{rankProperty, s.propIndex(cur, k.Prop), 1}, `property "` + k.Missing[0] + `" is required when "` + k.Prop + `" is set`
	case *kind.AdditionalProperties:
		props := append([]string(nil), k.Properties...)
		sort.Strings(props)
		return []int{rankAdditional}, "additional properties forbidden, found " + props[0]
	case *kind.MinProperties:
		return []int{rankPropCount}, fmt.Sprintf("expect object to have at least %d properties", k.Want)
	case *kind.MaxProperties:
		return []int{rankPropCount}, fmt.Sprintf("expect object to have at most %d properties", k.Want)
	case *kind.MinItems:
		return []int{rankItemCount}, fmt.Sprintf("expect array to have at least %d items", k.Want)
	case *kind.MaxItems:
		return []int{rankItemCount}, fmt.Sprintf("expect array to have at most %d items", k.Want)
	case *kind.AdditionalItems:
		return []int{rankItem, 1 << 20}, "found unexpected extra items in array"
	case *kind.UniqueItems:
		return []int{rankUnique}, fmt.Sprintf("expected unique items but items %d and %d are equal", k.Duplicates[0]+1, k.Duplicates[1]+1)
	case *kind.MinLength:
		return []int{rankMinLength}, fmt.Sprintf("string too short, expected at least %d, got %d", k.Want, k.Got)
	case *kind.MaxLength:
		return []int{rankMaxLength}, fmt.Sprintf("string too long, expected at most %d, got %d", k.Want, k.Got)
	case *kind.Pattern:
		return []int{rankPattern}, "failed to match pattern " + LuaQuote(k.Want) + " with " + LuaQuote(k.Got)
	case *kind.Minimum:
		return []int{rankMinimum}, "expected " + luaNum(val, k.Got) + " to be at least " + ratNum(k.Want)
	case *kind.ExclusiveMinimum:
		return []int{rankExclusiveMinimum}, "expected " + luaNum(val, k.Got) + " to be greater than " + ratNum(k.Want)
	case *kind.Maximum:
		return []int{rankMaximum}, "expected " + luaNum(val, k.Got) + " to be at most " + ratNum(k.Want)
	case *kind.ExclusiveMaximum:
		return []int{rankExclusiveMaximum}, "expected " + luaNum(val, k.Got) + " to be smaller than " + ratNum(k.Want)
	case *kind.MultipleOf:
		return []int{rankMultipleOf}, "expected " + luaNum(val, k.Got) + " to be a multiple of " + ratNum(k.Want)
	case *kind.Enum:
		return []int{rankEnum}, "matches none of the enum values"
	case *kind.Const:
		return []int{rankConst}, "failed to check const value"
	case *kind.AnyOf:
		return []int{rankAnyOf}, "object matches none of the required" + s.requiredLists(append(cur, "anyOf"))
	case *kind.OneOf:
		if len(k.Subschemas) >= 2 {
			return []int{rankOneOf}, fmt.Sprintf("value should match only one schema, but matches both schemas %d and %d", k.Subschemas[0]+1, k.Subschemas[1]+1)
		}
		return []int{rankOneOf}, "value should match only one schema, but matches none"
	case *kind.Not:
		return []int{rankNot}, "value wasn't supposed to match schema"
	case *kind.Format:
		return []int{rankFormat}, "expect valid " + k.Want + " format but got: " + fmt.Sprint(k.Got)
	case *kind.FalseSchema:
		return []int{rankType}, "expect false always"
	case *kind.Contains, *kind.MinContains:
		return []int{rankContains}, "failed to check contains"
	default:
		return []int{rankOther}, e.Error()
	}
}

// requiredLists renders the suffix Lua adds to its anyOf message: the
// JSON-encoded "required" arrays of the alternatives, joined by " or ".
func (s *Schema) requiredLists(anyOfTokens []string) string {
	list, _ := s.lookup(anyOfTokens).([]any)
	var parts []string
	for _, sub := range list {
		m, ok := sub.(map[string]any)
		if !ok {
			continue
		}
		req, ok := m["required"].([]any)
		if !ok {
			continue
		}
		b, err := json.Marshal(req)
		if err != nil {
			continue
		}
		parts = append(parts, strings.ReplaceAll(string(b), "/", `\/`))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, " or ")
}

// LuaType returns the Lua type name of a decoded JSON value as cjson would
// produce it: objects and arrays are "table", null is "userdata".
func LuaType(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		return "table"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "userdata"
	default:
		return "number"
	}
}

// LuaNumber formats a number the way LuaJIT's tostring does ("%.14g").
func LuaNumber(f float64) string {
	if f == float64(int64(f)) && f < 1e15 && f > -1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	s := strconv.FormatFloat(f, 'g', 14, 64)
	switch s {
	case "+Inf":
		return "inf"
	case "-Inf":
		return "-inf"
	case "NaN":
		return "nan"
	}
	return s
}

func luaNum(val any, r *big.Rat) string {
	switch n := val.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(n), 64); err == nil {
			return LuaNumber(f)
		}
	case float64:
		return LuaNumber(n)
	}
	return ratNum(r)
}

func ratNum(r *big.Rat) string {
	if r == nil {
		return "nil"
	}
	f, _ := r.Float64()
	return LuaNumber(f)
}

// LuaQuote quotes s like Lua's string.format("%q"): backslash and double
// quote are escaped, a newline becomes backslash-newline, carriage return
// becomes \r and other control bytes become decimal escapes.
func LuaQuote(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c == '\n':
			sb.WriteString("\\\n")
		case c == '\r':
			sb.WriteString(`\r`)
		case c == 0:
			if i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
				sb.WriteString(`\000`)
			} else {
				sb.WriteString(`\0`)
			}
		case c < 32 || c == 127:
			if i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
				fmt.Fprintf(&sb, `\%03d`, c)
			} else {
				fmt.Fprintf(&sb, `\%d`, c)
			}
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
