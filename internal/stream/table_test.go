package stream

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestMatch(t *testing.T) {
	pfx := netip.MustParsePrefix
	ip := netip.MustParseAddr
	routes := []*Route{
		{ID: "1-port", ServerPort: 9101},
		{ID: "2-addr", ServerAddr: ip("127.0.0.2")},
		{ID: "3-cidr", RemoteAddr: pfx("10.1.0.0/16"), ServerPort: 9100},
		{ID: "4-ip", RemoteAddr: pfx("10.2.3.4/32"), ServerPort: 9100},
		{ID: "5-v6", RemoteAddr: pfx("fd00::/8")},
		{ID: "6-any-9100", ServerPort: 9100},
		{ID: "7-later-9100", ServerPort: 9100},
		{ID: "8-sni", SNI: "a.example.com"},
		{ID: "9-sni-wild", SNI: "*.example.com"},
		{ID: "10-sni-deep", SNI: "*.b.example.com"},
		{ID: "11-sni-port", SNI: "c.example.com", ServerPort: 9200},
	}
	tbl := NewTable(routes)
	cases := []struct {
		name   string
		local  string
		remote string
		sni    string
		want   string
	}{
		{"server_port", "127.0.0.1:9101", "127.0.0.1", "", "1-port"},
		{"server_addr", "127.0.0.2:9999", "127.0.0.1", "", "2-addr"},
		{"server_addr mapped", "[::ffff:127.0.0.2]:9999", "127.0.0.1", "", "2-addr"},
		{"remote cidr", "127.0.0.1:9100", "10.1.200.7", "", "3-cidr"},
		{"remote ip", "127.0.0.1:9100", "10.2.3.4", "", "4-ip"},
		{"remote mapped", "127.0.0.1:9100", "::ffff:10.1.0.9", "", "3-cidr"},
		{"remote v6", "[::1]:1234", "fd12::1", "", "5-v6"},
		{"cidr miss falls through in order", "127.0.0.1:9100", "10.3.0.1", "", "6-any-9100"},
		{"no match", "127.0.0.1:9300", "10.3.0.1", "", ""},
		{"sni exact", "127.0.0.1:9300", "10.3.0.1", "a.example.com", "8-sni"},
		{"sni case", "127.0.0.1:9300", "10.3.0.1", "A.Example.COM", "8-sni"},
		{"sni wildcard", "127.0.0.1:9300", "10.3.0.1", "x.example.com", "9-sni-wild"},
		{"sni longest wildcard", "127.0.0.1:9300", "10.3.0.1", "x.b.example.com", "10-sni-deep"},
		{"sni bare domain", "127.0.0.1:9300", "10.3.0.1", "example.com", ""},
		{"sni addr miss falls to wildcard", "127.0.0.1:9300", "10.3.0.1", "c.example.com", "9-sni-wild"},
		{"sni addr hit", "127.0.0.1:9200", "10.3.0.1", "c.example.com", "11-sni-port"},
		{"sni unknown falls to plain routes", "127.0.0.1:9101", "10.3.0.1", "other.org", "1-port"},
		{"plain listener never matches sni routes", "127.0.0.1:9300", "10.3.0.1", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := tbl.Match(netip.MustParseAddrPort(c.local), ip(c.remote), c.sni)
			got := ""
			if r != nil {
				got = r.ID
			}
			if got != c.want {
				t.Fatalf("matched %q, want %q", got, c.want)
			}
		})
	}
	t.Run("nil table", func(t *testing.T) {
		var nt *Table
		if nt.Match(netip.MustParseAddrPort("127.0.0.1:1"), ip("127.0.0.1"), "") != nil || nt.Len() != 0 {
			t.Fatal("nil table matched")
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	var routes []*Route
	for i := range 1000 {
		routes = append(routes, &Route{ID: fmt.Sprint(i), ServerPort: 10000 + i, RemoteAddr: netip.MustParsePrefix("10.0.0.0/8")})
	}
	tbl := NewTable(routes)
	local, remote := netip.MustParseAddrPort("127.0.0.1:10999"), netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Match(local, remote, "") == nil {
			b.Fatal("no match")
		}
	}
}
