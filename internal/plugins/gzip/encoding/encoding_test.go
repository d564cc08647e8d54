package encoding

import (
	"encoding/json"
	"testing"

	"github.com/sluice-gw/sluice/internal/engine"
)

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"gzip", true},
		{"GZIP", true},
		{"gzip, deflate, br", true},
		{"deflate, gzip", true},
		{"deflate,gzip;q=0.5", true},
		{"gzip;q=0", false},
		{"gzip;q=0.000", false},
		{"gzip;q=1.0", true},
		{"gzip; q=0.001", true},
		{"gzip;q=2", false},
		{"x-gzip", false},
		{"*", false},
		{"br", false},
		{"", false},
		{"gzipx", false},
		{"identity", false},
	} {
		t.Run(tc.v, func(t *testing.T) {
			if got := AcceptsGzip([]string{tc.v}); got != tc.want {
				t.Fatalf("AcceptsGzip(%q) = %v", tc.v, got)
			}
		})
	}
}

func TestAcceptsBrotli(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"br", true},
		{"*", true},
		{"gzip, deflate, br", true},
		{"br;q=0", false},
		{"br;q=0.5", true},
		{"gzip;q=0, *", true},
		{"BR", false},
		{"gzip", false},
		{"", false},
	} {
		t.Run(tc.v, func(t *testing.T) {
			if got := AcceptsBrotli([]string{tc.v}); got != tc.want {
				t.Fatalf("AcceptsBrotli(%q) = %v", tc.v, got)
			}
		})
	}
}

func TestTypes(t *testing.T) {
	m, err := ParseTypes(json.RawMessage(`["text/html","application/json"]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for ct, want := range map[string]bool{"text/html": true, "text/html; charset=utf-8": true, "application/json": true, "text/plain": false, "": false, "Text/HTML": false} {
		if m.Match(ct) != want {
			t.Errorf("Match(%q) != %v", ct, want)
		}
	}
	all, _ := ParseTypes(json.RawMessage(`"*"`), nil)
	if !all.Match("x/y") || all.Match("") {
		t.Fatal("star")
	}
	if _, err := ParseTypes(json.RawMessage(`"text/html"`), nil); err == nil {
		t.Fatal("accepted a string other than *")
	}
}

func TestWeakenETag(t *testing.T) {
	for in, want := range map[string]string{`"a"`: `W/"a"`, `W/"a"`: `W/"a"`, `a`: "", `"a"b"`: ""} {
		h := engine.Header{"Etag": {in}}
		WeakenETag(h)
		if h.Get("Etag") != want {
			t.Errorf("%s -> %q, want %q", in, h.Get("Etag"), want)
		}
	}
}

func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0", "br;q=0.5, *", "deflate,gzip; q=1.000", ";q=", "gzip;q"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		AcceptsGzip([]string{s})
		AcceptsBrotli([]string{s})
		qValue(s)
	})
}
