// Package all lists every built-in plugin. Registration lives here, in one
// place, so main builds the registry from this list and nothing registers
// itself through package init.
package all

import (
	"github.com/sluice-gw/sluice/internal/plugin"
	apibreaker "github.com/sluice-gw/sluice/internal/plugins/api-breaker"
	basicauth "github.com/sluice-gw/sluice/internal/plugins/basic-auth"
	"github.com/sluice-gw/sluice/internal/plugins/brotli"
	consumerrestriction "github.com/sluice-gw/sluice/internal/plugins/consumer-restriction"
	"github.com/sluice-gw/sluice/internal/plugins/cors"
	"github.com/sluice-gw/sluice/internal/plugins/csrf"
	"github.com/sluice-gw/sluice/internal/plugins/echo"
	faultinjection "github.com/sluice-gw/sluice/internal/plugins/fault-injection"
	forwardauth "github.com/sluice-gw/sluice/internal/plugins/forward-auth"
	"github.com/sluice-gw/sluice/internal/plugins/gzip"
	hmacauth "github.com/sluice-gw/sluice/internal/plugins/hmac-auth"
	iprestriction "github.com/sluice-gw/sluice/internal/plugins/ip-restriction"
	jwtauth "github.com/sluice-gw/sluice/internal/plugins/jwt-auth"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	limitconn "github.com/sluice-gw/sluice/internal/plugins/limit-conn"
	limitcount "github.com/sluice-gw/sluice/internal/plugins/limit-count"
	limitreq "github.com/sluice-gw/sluice/internal/plugins/limit-req"
	"github.com/sluice-gw/sluice/internal/plugins/mocking"
	multiauth "github.com/sluice-gw/sluice/internal/plugins/multi-auth"
	"github.com/sluice-gw/sluice/internal/plugins/prometheus"
	proxycache "github.com/sluice-gw/sluice/internal/plugins/proxy-cache"
	proxymirror "github.com/sluice-gw/sluice/internal/plugins/proxy-mirror"
	proxyrewrite "github.com/sluice-gw/sluice/internal/plugins/proxy-rewrite"
	realip "github.com/sluice-gw/sluice/internal/plugins/real-ip"
	"github.com/sluice-gw/sluice/internal/plugins/redirect"
	refererrestriction "github.com/sluice-gw/sluice/internal/plugins/referer-restriction"
	requestid "github.com/sluice-gw/sluice/internal/plugins/request-id"
	requestvalidation "github.com/sluice-gw/sluice/internal/plugins/request-validation"
	responserewrite "github.com/sluice-gw/sluice/internal/plugins/response-rewrite"
	trafficsplit "github.com/sluice-gw/sluice/internal/plugins/traffic-split"
	uarestriction "github.com/sluice-gw/sluice/internal/plugins/ua-restriction"
	uriblocker "github.com/sluice-gw/sluice/internal/plugins/uri-blocker"
)

// Defs returns the definitions of all built-in plugins.
func Defs() []*plugin.Def {
	var defs []*plugin.Def
	defs = []*plugin.Def{
		apibreaker.Def(),
		basicauth.Def(),
		brotli.Def(),
		consumerrestriction.Def(),
		cors.Def(),
		csrf.Def(),
		echo.Def(),
		faultinjection.Def(),
		forwardauth.Def(),
		gzip.Def(),
		hmacauth.Def(),
		iprestriction.Def(),
		jwtauth.Def(),
		keyauth.Def(),
		limitconn.Def(),
		limitcount.Def(),
		limitreq.Def(),
		mocking.Def(),
		multiauth.Def(lookupIn(&defs)),
		prometheus.Def(),
		proxycache.Def(),
		proxymirror.Def(),
		proxyrewrite.Def(),
		realip.Def(),
		redirect.Def(),
		refererrestriction.Def(),
		requestid.Def(),
		requestvalidation.Def(),
		responserewrite.Def(),
		trafficsplit.Def(),
		uarestriction.Def(),
		uriblocker.Def(),
	}
	return defs
}

// lookupIn finds a def by name in *defs when called, i.e. after Defs has
// filled the list, so multi-auth can build its sub-plugins without
// importing them.
func lookupIn(defs *[]*plugin.Def) func(string) (*plugin.Def, bool) {
	return func(name string) (*plugin.Def, bool) {
		for _, d := range *defs {
			if d.Name == name {
				return d, true
			}
		}
		return nil, false
	}
}
