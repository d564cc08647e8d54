package vartpl

import (
	"regexp"
	"testing"
)

type vars map[string]string

func (v vars) Var(n string) (string, bool) { s, ok := v[n]; return s, ok }

func TestResolve(t *testing.T) {
	v := vars{"uri": "/a?b", "host": "h", "x.y": "dot", "empty": ""}
	tests := []struct{ tpl, want string }{
		{"plain", "plain"},
		{"$uri", "/a?b"},
		{"${uri}x", "/a?bx"},
		{"${ uri }", "/a?b"},
		{"$missing/x", "/x"},
		{"${missing ?? dflt}", "dflt"},
		{"${host??d}", "h"},
		{"${empty ?? d}", ""},
		{`\$uri`, `\$uri`},
		{"$", "$"},
		{"a$-b", "a$-b"},
		{"${}", "${}"},
		{"${unclosed", "${unclosed"},
		{"$x.y", "dot"},
		{"$host$host", "hh"},
	}
	for _, tc := range tests {
		t.Run(tc.tpl, func(t *testing.T) {
			if got := Resolve(tc.tpl, v); got != tc.want {
				t.Fatalf("Resolve(%q) = %q, want %q", tc.tpl, got, tc.want)
			}
		})
	}
	if got := string(Append(nil, "/$uri/x", v, EscapeQuestion)); got != "//a%3Fb/x" {
		t.Fatalf("escaped = %q", got)
	}
}

func TestSub(t *testing.T) {
	re := regexp.MustCompile(`^/test/(.*)/(.*)`)
	tests := []struct {
		tpl, src, want string
		err            bool
	}{
		{"/$1_$2", "/test/a/b", "/a_b", false},
		{"/${1}1", "/test/a/b", "/a1", false},
		{"$$x$0", "/test/a/b", "$x/test/a/b", false},
		{"$9", "/test/a/b", "", false},
		{"$`1", "", "", true},
		{"$", "", "", true},
		{"${1", "", "", true},
		{"${}", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.tpl, func(t *testing.T) {
			s, err := CompileSub(tc.tpl)
			if tc.err {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Replace(re, tc.src, false); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	s, _ := CompileSub("[$0]")
	if got, n := s.Replace(regexp.MustCompile(`o`), "foo", true); got != "f[o][o]" || n != 2 {
		t.Fatalf("gsub = %q %d", got, n)
	}
}

func TestCaptures(t *testing.T) {
	re := regexp.MustCompile(`^/(a)(x)?`)
	src := "/a"
	m := re.FindStringSubmatchIndex(src)
	if got := string(AppendCaptures(nil, "$1-${1}-$2-$3-\\$1", src, m)); got != "a-a---\\$1" {
		t.Fatalf("got %q", got)
	}
}

func TestURISafe(t *testing.T) {
	if got := string(AppendURISafe(nil, "/a b?#%\r\xff&=")); got != "/a%20b%3F%23%25%0D%FF&=" {
		t.Fatalf("got %q", got)
	}
	if got := string(AppendControlEscaped(nil, "?a=\r\n b")); got != "?a=%0D%0A b" {
		t.Fatalf("got %q", got)
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"$uri", "${a ?? b}", `\$x`, "${", "$$", "${1}"} {
		f.Add(s)
	}
	v := vars{"uri": "/u", "a": "A"}
	f.Fuzz(func(t *testing.T, tpl string) {
		_ = Resolve(tpl, v)
		_ = AppendCaptures(nil, tpl, "/u", []int{0, 2})
		if s, err := CompileSub(tpl); err == nil {
			_, _ = s.Replace(regexp.MustCompile(`u`), "/u/u", true)
		}
	})
}
