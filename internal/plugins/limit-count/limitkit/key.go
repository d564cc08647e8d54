package limitkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/engine"
	"github.com/sluice-gw/sluice/internal/expr"
	"github.com/sluice-gw/sluice/internal/plugin"
)

// Key types of the limit plugins' key_type field.
const (
	KeyVar            = "var"
	KeyVarCombination = "var_combination"
	KeyConstant       = "constant"
)

// Key is a compiled limit key: a variable name, a template of variables
// or a constant.
type Key struct {
	typ  string
	name string
	tpl  *Template
}

// NewKey compiles key for keyType ("var" when empty).
func NewKey(keyType, key string) Key {
	if keyType == "" {
		keyType = KeyVar
	}
	k := Key{typ: keyType, name: key}
	if keyType == KeyVarCombination {
		k.tpl = CompileTemplate(key)
	}
	return k
}

// Resolve returns the key's value for the request. As in APISIX, a var
// that is not set, or a combination in which no variable resolved, falls
// back to the client address. Only var_combination allocates.
func (k *Key) Resolve(c *engine.Ctx) string {
	switch k.typ {
	case KeyConstant:
		return k.name
	case KeyVarCombination:
		if v, n := k.tpl.Resolve(c); n > 0 {
			return v
		}
	default:
		if v, ok := c.Var(k.name); ok {
			return v
		}
	}
	return c.RemoteIP()
}

// maxSafeInt is the largest integer a Lua double holds exactly.
const maxSafeInt = 9007199254740991

// Num is an integer field that may instead be a variable template
// resolved per request (limit-count's count and time_window, limit-conn's
// conn and burst).
type Num struct {
	// Const is the value when the field is a number.
	Const int64
	// Tpl is set when the field is a string.
	Tpl *Template
}

// ParseNum decodes a JSON integer or string.
func ParseNum(raw json.RawMessage) (Num, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return Num{Tpl: CompileTemplate(s)}, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return Num{}, fmt.Errorf("expected integer or string: %w", err)
	}
	if f != math.Trunc(f) {
		return Num{}, errors.New("expected integer")
	}
	return Num{Const: int64(f)}, nil
}

// MarshalJSON writes the field back in its configured form.
func (n Num) MarshalJSON() ([]byte, error) {
	if n.Tpl != nil {
		return json.Marshal(n.Tpl.Raw())
	}
	return strconv.AppendInt(nil, n.Const, 10), nil
}

// IsVar reports whether the value is resolved per request.
func (n Num) IsVar() bool { return n.Tpl != nil }

// Resolve returns the value for this request. Variable values must be
// integers, > 0 (or >= 0 when allowZero) and at most 2^53-1, as APISIX's
// resolve_var checks require; the error says why not.
func (n Num) Resolve(c *engine.Ctx, allowZero bool) (int64, error) {
	if n.Tpl == nil {
		return n.Const, nil
	}
	s, _ := n.Tpl.Resolve(c)
	f, ok := expr.ToNumber(s)
	if !ok {
		return 0, errors.New("resolved value is not a number")
	}
	if allowZero && f < 0 || !allowZero && f <= 0 {
		return 0, errors.New("resolved value must be a positive number")
	}
	if f != math.Floor(f) {
		return 0, errors.New("resolved value must be an integer")
	}
	if f > maxSafeInt {
		return 0, errors.New("resolved value exceeds safe integer range (2^53-1)")
	}
	return int64(f), nil
}

// Scope returns the key prefix that scopes a plugin's counters: the
// object holding the conf plus the conf's hash, as APISIX's
// "<resource key>:<conf version>:" does, so an unrelated change keeps the
// counters and a changed conf starts fresh ones.
func Scope(plugin, parent, confHash string) string {
	return plugin + "\x00" + parent + "\x00" + confHash
}

// Sleep waits d, or less if the client goes away first; then the request
// ends with 499 (nginx's "client closed request") instead of going on to
// the upstream. Delays of limit-req and limit-conn use it.
func Sleep(r *plugin.Request, d time.Duration) {
	if !r.Ctx.Wait(d) {
		r.Exit(499, "")
	}
}
