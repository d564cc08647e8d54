package keyauth

import (
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/plugin"
)

func TestKeyEqual(t *testing.T) {
	cred := &plugin.Credential{Data: &credential{key: "auth-one"}}
	tests := []struct {
		key  string
		want bool
	}{{"auth-one", true}, {"auth-onf", false}, {"auth-on", false}, {"", false}, {strings.Repeat("a", 10<<10), false}}
	for _, tc := range tests {
		if got := keyEqual(cred, tc.key); got != tc.want {
			t.Errorf("keyEqual(%q) = %v", tc.key, got)
		}
	}
	if keyEqual(&plugin.Credential{Data: "wrong type"}, "auth-one") {
		t.Error("foreign credential data accepted")
	}
}

func TestQueryArg(t *testing.T) {
	tests := []struct {
		q, name string
		val     string
		isNil   bool
		n       int
		removed string
	}{
		{"apikey=k", "apikey", "k", false, 1, ""},
		{"a=1&apikey=k&b=2", "apikey", "k", false, 1, "a=1&b=2"},
		{"apikey=a%2Db+c", "apikey", "a-b c", false, 1, ""},
		{"api%6Bey=k", "apikey", "k", false, 1, ""},
		{"apikey", "apikey", "", true, 1, ""},
		{"apikey=", "apikey", "", false, 1, ""},
		{"apikey=1&apikey=2", "apikey", "1", false, 2, ""},
		{"APIKEY=k", "apikey", "", true, 0, "APIKEY=k"},
		{"x=%zz&&apikey=%", "apikey", "%", false, 1, "x=%zz&"},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			v, n := queryArg(tc.q, tc.name)
			if n != tc.n || (v == nil) != tc.isNil || v != nil && *v != tc.val {
				t.Fatalf("queryArg = %v %d", v, n)
			}
			got, _ := removeQueryArg(tc.q, tc.name)
			if got != tc.removed {
				t.Fatalf("removeQueryArg = %q, want %q", got, tc.removed)
			}
		})
	}
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{"apikey=k", "a=1&apikey=%41&b", "&&apikey", "api%6bey=x&apikey=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, changed := removeQueryArg(q, "apikey")
		if _, n := queryArg(out, "apikey"); n != 0 {
			t.Fatalf("%q -> %q still has the argument", q, out)
		}
		if _, n := queryArg(q, "apikey"); (n > 0) != changed {
			t.Fatalf("%q: changed=%v but count %d", q, changed, n)
		}
	})
}
