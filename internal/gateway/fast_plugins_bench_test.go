package gateway

import (
	"fmt"
	"testing"
)

// BenchmarkServeFastPlugins is BenchmarkServeFast with the plugins of
// bench/run.sh's profiles on the route: b (APISIX's own benchmark route:
// limit-count + prometheus) and c (the seed's gateway route: key-auth +
// limit-count by consumer + proxy-rewrite regex_uri). Set against
// BenchmarkServeFast (profile a) it shows what the plugins cost per
// request; allocs/op are theirs, the plain path allocates nothing.
func BenchmarkServeFastPlugins(b *testing.B) {
	for _, tc := range []struct {
		name, plugins, req string
	}{
		{"b", `{"limit-count":{"count":1000000000,"time_window":60,"rejected_code":503,"key":"remote_addr"},"prometheus":{}}`,
			"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:9080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"},
		{"c", `{"key-auth":{},"limit-count":{"count":1000000000,"time_window":60,"key_type":"var","key":"consumer_name"},"proxy-rewrite":{"regex_uri":["^/api/v1/orders/(.*)","/orders/$1"]}}`,
			"GET /api/v1/orders/42 HTTP/1.1\r\nHost: 127.0.0.1:9080\r\nUser-Agent: wrk\r\napikey: jack-key\r\nAccept: */*\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			origin := benchOrigin(b)
			dp := benchPlaneOf(b, func(s *Snapshot) {
				decodeInto(b, s, "consumers", "jack", `{"username":"jack","plugins":{"key-auth":{"key":"jack-key"}}}`)
				decodeInto(b, s, "upstreams", "1", fmt.Sprintf(`{"type":"roundrobin","nodes":{"%s":1}}`, origin))
				decodeInto(b, s, "routes", "r", `{"uri":"/*","upstream_id":"1","plugins":`+tc.plugins+`}`)
			})
			dp.realIP = newRealIP("X-Real-IP", []string{"127.0.0.1"}, "off")
			benchKeepAliveReq(b, startFast(b, dp), tc.req)
		})
	}
}
