package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestStreamProxy(t *testing.T) {
	const mode = "apisix:\n  proxy_mode: http&stream\n  stream_proxy:\n"
	good := []struct {
		name     string
		yaml     string
		tcp, udp []StreamListen
	}{
		{"ports", mode + "    tcp: [9100]\n    udp: [9200]\n",
			[]StreamListen{{Port: 9100}}, []StreamListen{{Port: 9200}}},
		{"strings", mode + "    tcp: [\"127.0.0.1:9101\", \"9102\", \"[::1]:9103\", \"*:9104\"]\n    udp: [\"127.0.0.1:9201\"]\n",
			[]StreamListen{{IP: "127.0.0.1", Port: 9101}, {Port: 9102}, {IP: "::1", Port: 9103}, {Port: 9104}},
			[]StreamListen{{IP: "127.0.0.1", Port: 9201}}},
		{"maps", mode + "    tcp:\n      - addr: 9100\n        tls: true\n      - addr: \"127.0.0.1:9101\"\n",
			[]StreamListen{{Port: 9100, TLS: true}, {IP: "127.0.0.1", Port: 9101}}, nil},
		{"ranges", mode + "    tcp: [\"2000-2002\", {addr: \"127.0.0.1:4000-4001\", tls: true}]\n    udp: [\"9300-9301\"]\n",
			[]StreamListen{{Port: 2000}, {Port: 2001}, {Port: 2002}, {IP: "127.0.0.1", Port: 4000, TLS: true}, {IP: "127.0.0.1", Port: 4001, TLS: true}},
			[]StreamListen{{Port: 9300}, {Port: 9301}}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			cfg, warns, err := Parse([]byte(c.yaml), "config.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 {
				t.Fatalf("warnings: %v", warns)
			}
			if !reflect.DeepEqual(cfg.Apisix.StreamProxy.TCP, c.tcp) || !reflect.DeepEqual(cfg.Apisix.StreamProxy.UDP, c.udp) {
				t.Fatalf("tcp %+v udp %+v, want %+v %+v", cfg.Apisix.StreamProxy.TCP, cfg.Apisix.StreamProxy.UDP, c.tcp, c.udp)
			}
		})
	}

	bad := []struct {
		name, yaml, want string
	}{
		{"not a list", mode + "    tcp: 9100\n", `config.yaml:4: apisix.stream_proxy.tcp: expected a non-empty list, got "9100"`},
		{"empty list", mode + "    udp: []\n", `apisix.stream_proxy.udp: expected a non-empty list, got a list`},
		{"udp map", mode + "    udp: [{addr: 9200}]\n", `apisix.stream_proxy.udp[0]: expected a port, an "ip:port" string or a port range, got a map`},
		{"bool", mode + "    tcp: [true]\n", `apisix.stream_proxy.tcp[0]: expected a port, an "ip:port" string or a port range or an {addr, tls} map, got "true"`},
		{"map without addr", mode + "    tcp: [{tls: true}]\n", `apisix.stream_proxy.tcp[0]: addr is required`},
		{"garbage", mode + "    tcp: [\"abc\"]\n", `apisix.stream_proxy.tcp[0]: "abc": expected a port`},
		{"bare v6", mode + "    tcp: [\"::1:9100\"]\n", `write IPv6 addresses as [ipv6]:port`},
		{"reversed range", mode + "    tcp: [\"9102-9100\"]\n", `port range ends before it starts`},
		{"huge range", mode + "    tcp: [\"1-65535\"]\n", `a port range may hold at most 1024 ports`},
		{"port range check", mode + "    tcp: [70000]\n", `config.yaml:4: apisix.stream_proxy.tcp[0]: port 70000 is out of range 1-65535`},
		{"bad ip", mode + "    udp: [\"localhost:9200\"]\n", `apisix.stream_proxy.udp[0]: ip "localhost" is not an IP address`},
		{"conflict with node_listen", mode + "    tcp: [9080]\n", `apisix.stream_proxy.tcp[0]: port 9080 conflicts with apisix.node_listen[0]`},
		{"udp duplicate", mode + "    udp: [9200, \"127.0.0.1:9200\"]\n", `apisix.stream_proxy.udp[1]: port 9200 conflicts with apisix.stream_proxy.udp[0]`},
		{"proxy_protocol", mode + "    tcp: [{addr: 9100, proxy_protocol: true}]\n", `proxy_protocol and proxy_protocol_to_upstream are not supported by Sluice yet`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(c.yaml), "config.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}

	t.Run("udp and tcp may share a port", func(t *testing.T) {
		cfg, _, err := Parse([]byte(mode+"    tcp: [9100]\n    udp: [9100]\n"), "config.yaml")
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ignored outside the stream modes", func(t *testing.T) {
		cfg, warns, err := Parse([]byte("apisix:\n  stream_proxy:\n    tcp: [9080]\n"), "config.yaml")
		if err == nil {
			err = cfg.Validate() // no conflict check: the listener never starts
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0].String(), `config.yaml:2: apisix.stream_proxy is ignored: apisix.proxy_mode is "http"`) {
			t.Fatalf("warnings %v", warns)
		}
	})
}

func TestStreamListenAddr(t *testing.T) {
	for _, c := range []struct {
		l    StreamListen
		want string
	}{
		{StreamListen{Port: 9100}, ":9100"},
		{StreamListen{IP: "127.0.0.1", Port: 9100}, "127.0.0.1:9100"},
		{StreamListen{IP: "::1", Port: 9100}, "[::1]:9100"},
	} {
		if got := c.l.Addr(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.l, got, c.want)
		}
	}
}

func FuzzParseStreamAddr(f *testing.F) {
	for _, s := range []string{"9100", "127.0.0.1:9100", "[::1]:9100", "9100-9102", "127.0.0.1:1-2", "[::1]:", "::1:80", "*:1", "-1", "+5", "1-+2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, lo, hi, err := parseStreamAddr(s)
		if err != nil {
			return
		}
		if lo < 0 || hi < lo || hi-lo >= maxStreamRange {
			t.Fatalf("%q: bad range %d-%d", s, lo, hi)
		}
		if strings.ContainsAny(ip, "[]") {
			t.Fatalf("%q: ip %q keeps brackets", s, ip)
		}
	})
}
