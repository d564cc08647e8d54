package expr

import (
	"encoding/json"
	"strings"
	"testing"
)

type mapVars map[string]string

func (m mapVars) Var(name string) (string, bool) {
	v, ok := m[name]
	return v, ok
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, rule, err string
	}{
		{"unknown operator", `[["arg_k","=","v"]]`, "invalid operator '='"},
		{"unknown operator upper", `[["arg_k","LIKE","v"]]`, "invalid operator 'like'"},
		{"not wrapped", `["arg_k","==","v"]`, "rule should be wrapped inside brackets"},
		{"logic too short", `["AND",["a","==","b"]]`, "rule too short"},
		{"empty nested", `[[]]`, "rule too short"},
		{"bad not", `[["a","?","==","b"]]`, "bad 'not' expression"},
		{"single element", `[["a"]]`, "invalid expression"},
		{"null", `null`, "missing argument rule"},
		{"object", `{}`, "rule should be an array"},
		{"bad regex", `[["a","~~","("]]`, "invalid regex"},
		{"ipmatch empty", `[["remote_addr","ipmatch",""]]`, "invalid ip address"},
		{"ipmatch empty list", `[["remote_addr","ipmatch",[]]]`, "invalid ip address"},
		{"ipmatch bad", `[["remote_addr","ipmatch",["300.1.1.1"]]]`, "invalid ip address: 300.1.1.1"},
		{"op not string", `[["a",true,"b"]]`, "invalid expression"},
		{"mixed", `[["a","==","b"],"x"]`, "invalid expression"},
		{"bad json", `[["a"`, "invalid json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(json.RawMessage(tt.rule))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Compile(%s) error = %v, want %q", tt.rule, err, tt.err)
			}
		})
	}
}

func TestEval(t *testing.T) {
	vars := mapVars{
		"arg_name":    "json",
		"arg_age":     "18",
		"http_token":  "Bearer abc",
		"host":        "api.example.com",
		"remote_addr": "10.1.2.3",
		"v6":          "::ffff:192.168.0.7",
		"fields":      "owner, repo,stars",
		"hex":         "0x10",
		"empty":       "",
	}
	tests := []struct {
		name, rule string
		want       bool
	}{
		{"empty rule", `[]`, true},
		{"eq string", `[["arg_name","==","json"]]`, true},
		{"eq string miss", `[["arg_name","==","xml"]]`, false},
		{"eq number", `[["arg_age","==",18]]`, true},
		{"eq number float", `[["arg_age","==",18.0]]`, true},
		{"eq number string var non numeric", `[["arg_name","==",18]]`, false},
		{"eq string vs number text", `[["arg_age","==","18.0"]]`, false},
		{"eq hex number", `[["hex","==",16]]`, true},
		{"two element", `[["arg_name","json"]]`, true},
		{"two element lowercases", `[["arg_name","JSON"]]`, true},
		{"two element number", `[["arg_age",18]]`, true},
		{"ne", `[["arg_name","~=","xml"]]`, true},
		{"ne missing", `[["nope","~=","xml"]]`, true},
		{"ne number non numeric", `[["arg_name","~=",1]]`, true},
		{"ne number equal", `[["arg_age","~=",18]]`, false},
		{"eq null missing", `[["nope","==",null]]`, true},
		{"eq null present", `[["arg_name","==",null]]`, false},
		{"ne null present", `[["arg_name","~=",null]]`, true},
		{"eq missing", `[["nope","==","x"]]`, false},
		{"eq empty string", `[["empty","==",""]]`, true},
		{"eq bool", `[["arg_name","==",true]]`, false},
		{"ne bool", `[["arg_name","~=",true]]`, true},
		{"gt", `[["arg_age",">",17]]`, true},
		{"gt string rhs", `[["arg_age",">","17"]]`, true},
		{"gt false", `[["arg_age",">",18]]`, false},
		{"ge", `[["arg_age",">=",18]]`, true},
		{"lt", `[["arg_age","<",19]]`, true},
		{"le", `[["arg_age","<=",17]]`, false},
		{"gt non number", `[["arg_name",">",1]]`, false},
		{"gt missing", `[["nope",">",1]]`, false},
		{"gt rhs non number", `[["arg_age",">","abc"]]`, false},
		{"regex", `[["http_token","~~","^Bearer [a-z]+$"]]`, true},
		{"regex search", `[["http_token","~~","abc"]]`, true},
		{"regex case", `[["http_token","~~","^bearer"]]`, false},
		{"regex icase", `[["http_token","~*","^bearer"]]`, true},
		{"regex missing", `[["nope","~~",".*"]]`, false},
		{"in", `[["arg_name","in",["xml","json"]]]`, true},
		{"in miss", `[["arg_name","in",["xml"]]]`, false},
		{"in number", `[["arg_age","in",[17,18]]]`, true},
		{"in not array", `[["arg_name","in","json"]]`, false},
		{"in missing", `[["nope","in",["x"]]]`, false},
		{"has", `[["fields","has","repo"]]`, true},
		{"has trimmed", `[["fields","has","owner"]]`, true},
		{"has miss", `[["fields","has","forks"]]`, false},
		{"has missing", `[["nope","has","x"]]`, false},
		{"ipmatch cidr", `[["remote_addr","ipmatch",["10.0.0.0/8"]]]`, true},
		{"ipmatch single", `[["remote_addr","ipmatch","10.1.2.3"]]`, true},
		{"ipmatch miss", `[["remote_addr","ipmatch",["192.168.0.0/16","::1"]]]`, false},
		{"ipmatch mapped", `[["v6","ipmatch",["192.168.0.0/16"]]]`, true},
		{"ipmatch not ip", `[["arg_name","ipmatch",["10.0.0.0/8"]]]`, false},
		{"ipmatch upper op", `[["remote_addr","IPMATCH","10.0.0.0/8"]]`, true},
		{"not", `[["arg_name","!","==","xml"]]`, true},
		{"not true", `[["arg_name","!","==","json"]]`, false},
		{"not missing gt", `[["nope","!",">",1]]`, true},
		{"implicit and", `[["arg_name","==","json"],["arg_age","==","18"]]`, true},
		{"implicit and fail", `[["arg_name","==","json"],["arg_age","==","19"]]`, false},
		{"or", `["OR",["arg_name","==","xml"],["arg_age","==","18"]]`, true},
		{"or fail", `["OR",["arg_name","==","xml"],["arg_age","==","19"]]`, false},
		{"and", `["AND",["arg_name","==","json"],["arg_age",">",10]]`, true},
		{"lower and", `["and",["arg_name","==","json"],["arg_age",">",10]]`, true},
		{"not and", `["!AND",["arg_name","==","json"],["arg_age",">",10]]`, false},
		{"not or", `["!OR",["arg_name","==","xml"],["arg_age","==","19"]]`, true},
		{"nested", `["OR",["AND",["arg_name","==","xml"],["arg_age","==","18"]],["!AND",["host","==","x"],["host","==","y"]]]`, true},
		{"nested implicit", `["AND",[["arg_name","==","json"],["arg_age","==","18"]],["host","~~","example"]]`, true},
		{"extra elements ignored", `[["arg_name","==","json","extra","more"]]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Compile(json.RawMessage(tt.rule))
			if err != nil {
				t.Fatalf("Compile(%s): %v", tt.rule, err)
			}
			if got := e.Eval(vars); got != tt.want {
				t.Fatalf("Eval(%s) = %v, want %v", tt.rule, got, tt.want)
			}
		})
	}
}

func TestNilExprAndVars(t *testing.T) {
	var e *Expr
	if !e.Eval(nil) {
		t.Fatal("nil expr must be true")
	}
	e, err := Compile(json.RawMessage(`[["nope","==",null]]`))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Eval(nil) {
		t.Fatal("nil vars: every variable is missing")
	}
}

func TestToNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"18", 18, true}, {" 18 ", 18, true}, {"-1.5", -1.5, true}, {"+2", 2, true},
		{".5", 0.5, true}, {"5.", 5, true}, {"1e3", 1000, true}, {"0x1F", 31, true},
		{"-0x10", -16, true}, {"", 0, false}, {"abc", 0, false}, {"1e", 0, false},
		{"inf", 0, false}, {"nan", 0, false}, {"1_000", 0, false}, {"0x", 0, false},
		{".", 0, false}, {"1.2.3", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ToNumber(tt.in)
			if ok != tt.ok || (ok && got != tt.want) {
				t.Fatalf("ToNumber(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestEvalZeroAlloc(t *testing.T) {
	e, err := Compile(json.RawMessage(`["OR",
		["AND",["arg_name","==","json"],["arg_age",">",10],["arg_age","==",18]],
		["http_token","~~","^Bearer"],["arg_name","in",["a","b",3]],["fields","has","x"],
		["remote_addr","ipmatch",["10.0.0.0/8"]]]`))
	if err != nil {
		t.Fatal(err)
	}
	vars := mapVars{"arg_name": "xml", "arg_age": "18", "http_token": "Basic", "fields": "a,b", "remote_addr": "192.168.1.1"}
	if n := testing.AllocsPerRun(100, func() { e.Eval(vars) }); n != 0 {
		t.Fatalf("Eval allocates %v times", n)
	}
}

func FuzzCompile(f *testing.F) {
	seeds := []string{
		`[]`, `[["a","==","b"]]`, `["OR",["a","==","b"],["c","~~","x"]]`,
		`[["a","!","in",[1,"2"]]]`, `[["remote_addr","ipmatch",["10.0.0.0/8","::1"]]]`,
		`[["a","b"]]`, `["!AND",[["a",">",1]],["b","has","c"]]`, `[["a","~*","(?i)x"]]`,
		`[["a","==",null]]`, `[[[[[]]]]]`, `["and"]`,
	}
	for _, s := range seeds {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, rule, val string) {
		e, err := Compile(json.RawMessage(rule))
		if err != nil {
			if e != nil {
				t.Fatalf("non-nil Expr with error %v", err)
			}
			return
		}
		// Evaluation must never panic, whatever the variables hold.
		vars := mapVars{"a": val, "b": val, "c": val, "remote_addr": val, "arg_name": val}
		e.Eval(vars)
		e.Eval(nil)
	})
}

func BenchmarkEval(b *testing.B) {
	e, err := Compile(json.RawMessage(`[["arg_name","==","json"],["arg_age",">",10],["http_token","~~","^Bearer"]]`))
	if err != nil {
		b.Fatal(err)
	}
	vars := mapVars{"arg_name": "json", "arg_age": "18", "http_token": "Bearer x"}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Eval(vars) {
			b.Fatal("want true")
		}
	}
}
