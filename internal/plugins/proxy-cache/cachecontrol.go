package proxycache

import (
	"strconv"
	"strings"
	"time"
)

// directives are the Cache-Control directives proxy-cache acts on, parsed
// as APISIX's parse_directive_header does: comma-separated "name[=value]",
// names case-insensitive, numeric values only (a non-numeric value counts
// as absent for the numeric directives).
type directives struct {
	noStore, noCache, private, onlyIfCached         bool
	maxAge, sMaxAge, maxStale, minFresh             float64
	hasMaxAge, hasSMaxAge, hasMaxStale, hasMinFresh bool
}

func parseDirectives(values []string) directives {
	var d directives
	for _, v := range values {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			name, val, hasVal := strings.Cut(part, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(val), `"`)
			num, err := strconv.ParseFloat(val, 64)
			isNum := hasVal && err == nil
			switch name {
			case "no-store":
				d.noStore = true
			case "no-cache":
				d.noCache = true
			case "private":
				d.private = true
			case "only-if-cached":
				d.onlyIfCached = true
			case "max-age":
				d.maxAge, d.hasMaxAge = num, isNum
			case "s-maxage":
				d.sMaxAge, d.hasSMaxAge = num, isNum
			case "max-stale":
				d.maxStale, d.hasMaxStale = num, isNum
			case "min-fresh":
				d.minFresh, d.hasMinFresh = num, isNum
			}
		}
	}
	return d
}

// resourceTTL is APISIX's parse_resource_ttl: s-maxage, else max-age,
// else the last Expires minus now; never negative.
func resourceTTL(d directives, expires []string, now time.Time) time.Duration {
	var secs float64
	switch {
	case d.hasSMaxAge:
		secs = d.sMaxAge
	case d.hasMaxAge:
		secs = d.maxAge
	case len(expires) > 0:
		t, ok := parseHTTPTime(expires[len(expires)-1])
		if !ok {
			return 0
		}
		return max(t.Sub(now), 0)
	}
	// Clamp before converting: a huge max-age means "very long", and an
	// out-of-range float to Duration conversion is undefined.
	secs = min(max(secs, 0), 1e9)
	return time.Duration(secs * float64(time.Second))
}

// parseHTTPTime accepts the three HTTP date formats, as ngx.parse_http_time.
func parseHTTPTime(s string) (time.Time, bool) {
	for _, layout := range [...]string{time.RFC1123, "Monday, 02-Jan-06 15:04:05 MST", time.ANSIC} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
