package httpvar

import "testing"

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
			v, n := QueryArg(tc.q, tc.name)
			if n != tc.n || (v == nil) != tc.isNil || v != nil && *v != tc.val {
				t.Fatalf("QueryArg = %v %d", v, n)
			}
			got, _ := RemoveQueryArg(tc.q, tc.name)
			if got != tc.removed {
				t.Fatalf("RemoveQueryArg = %q, want %q", got, tc.removed)
			}
		})
	}
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{"apikey=k", "a=1&apikey=%41&b", "&&apikey", "api%6bey=x&apikey=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, changed := RemoveQueryArg(q, "apikey")
		if _, n := QueryArg(out, "apikey"); n != 0 {
			t.Fatalf("%q -> %q still has the argument", q, out)
		}
		if _, n := QueryArg(q, "apikey"); (n > 0) != changed {
			t.Fatalf("%q: changed=%v but count %d", q, changed, n)
		}
	})
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a+b", "a b"},
		{"%41%62", "Ab"},
		{"%zz%4", "%zz%4"},
		{"100%", "100%"},
	}
	for _, tc := range tests {
		if got := Unescape(tc.in); got != tc.want {
			t.Errorf("Unescape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
