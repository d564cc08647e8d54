package router

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/a/b", "/a/b", true},
		{"/a/b/", "/a/b/", true},
		{"/a;x=1/", "/a;x=1/", true},
		{"/public/..;/admin", "/public/..;/admin", true},
		{"/a/./b", "/a/b", true},
		{"/a/.", "/a/", true},
		{"/a/b/..", "/a/", true},
		{"/a/b/../c", "/a/c", true},
		{"/public/../admin/x", "/admin/x", true},                       // F1
		{"/public/%2e%2e/admin/x", "/admin/x", true},                   // F2
		{"/public/%2E%2e/admin/x", "/admin/x", true},                   // F2
		{"/public/.%2e/admin/x", "/admin/x", true},                     // F2
		{"/public%2f..%2fadmin/x", "/public%2F..%2Fadmin/x", true},     // F3: opaque
		{"/public%5c..%5cadmin", "/public%5C..%5Cadmin", true},         // F3: opaque
		{"/public/%252e%252e/admin", "/public/%252e%252e/admin", true}, // F4: never decoded twice
		{"/a%2Fb%25c", "/a%2Fb%25c", true},
		{"/a%41", "/aA", true},
		{"//admin/x", "/admin/x", true},       // F6
		{"/public//../admin", "/admin", true}, // F6: "//" merged first, as nginx
		{"/a///b//", "/a/b/", true},
		{"/public\\..\\admin", "", false}, // F7
		{"/admin%00.json", "", false},     // F8
		{"/admin%20", "/admin ", true},
		{"/admin.", "/admin.", true},
		{"/a#b", "", false},           // F9
		{"/%c0%ae%c0%ae/", "", false}, // F9 overlong
		{"/caf%C3%A9", "/café", true},
		{"/café", "/café", true},
		{"/\xff", "", false},
		{"/..", "", false},
		{"/a/../..", "", false},
		{"/../a", "", false},
		{"/%2e%2e/a", "", false},
		{"/a%", "", false},
		{"/a%4", "", false},
		{"/a%zz", "", false},
		{"/a%0d%0aX: y", "", false},
		{"/a\r", "", false},
		{"a/b", "", false},
		{"", "", false},
		{"/..a/.b/a..", "/..a/.b/a..", true},
		{"/a%3Fb", "/a?b", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := NormalizePath(tt.in)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("NormalizePath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNormalizePathNoAllocWhenClean(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { NormalizePath("/api/v1/users/42;x/caf\u00e9/a%2Fb") }); n != 0 {
		t.Fatalf("clean path allocates %v times", n)
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/", "//a//b/./c/..", "/a%2fb", "/%252F", "/%2", "/caf%C3%A9", "/a/b/", "/.%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := NormalizePath(in)
		if !ok {
			return
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || !utf8.ValidString(out) {
			t.Fatalf("%q -> %q: not canonical", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment left", in, out)
			}
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("%q -> %q: forbidden byte %#x", in, out, c)
			}
		}
		// Every '%' left starts an opaque escape.
		for i := 0; i < len(out); i++ {
			if out[i] == '%' && !isOpaqueEscape(out[i+1:]) {
				t.Fatalf("%q -> %q: bare %%", in, out)
			}
		}
		// A canonical path is a fixed point once '#' (a decoded "%23") is
		// escaped again, which is what the forwarder does: routing and
		// forwarding agree.
		again, ok := NormalizePath(strings.ReplaceAll(out, "#", "%23"))
		if !ok || again != out {
			t.Fatalf("%q -> %q -> %q, %v: not stable", in, out, again, ok)
		}
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("/user/:id/*", "/user/42/x")
	f.Add("/a/*x/*y/b", "/a/1/2/3/b")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if pattern == "" {
			return
		}
		for _, kind := range allKinds {
			tbl, err := New(kind, []Route{{ID: "r", URIs: []string{pattern}}})
			if err != nil {
				t.Fatal(err)
			}
			var p Params
			if tbl.Match(&Request{Path: path, Method: "GET"}, &p) != nil {
				for i := 0; i < p.Len(); i++ {
					p.At(i)
				}
			}
		}
	})
}
