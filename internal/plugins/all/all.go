// Package all lists every built-in plugin. Registration lives here, in one
// place, so main builds the registry from this list and nothing registers
// itself through package init.
package all

import (
	"github.com/sluice-gw/sluice/internal/plugin"
	basicauth "github.com/sluice-gw/sluice/internal/plugins/basic-auth"
	"github.com/sluice-gw/sluice/internal/plugins/cors"
	"github.com/sluice-gw/sluice/internal/plugins/csrf"
	faultinjection "github.com/sluice-gw/sluice/internal/plugins/fault-injection"
	keyauth "github.com/sluice-gw/sluice/internal/plugins/key-auth"
	limitcount "github.com/sluice-gw/sluice/internal/plugins/limit-count"
	limitreq "github.com/sluice-gw/sluice/internal/plugins/limit-req"
	proxyrewrite "github.com/sluice-gw/sluice/internal/plugins/proxy-rewrite"
	"github.com/sluice-gw/sluice/internal/plugins/redirect"
	requestvalidation "github.com/sluice-gw/sluice/internal/plugins/request-validation"
	trafficsplit "github.com/sluice-gw/sluice/internal/plugins/traffic-split"
)

// Defs returns the definitions of all built-in plugins.
func Defs() []*plugin.Def {
	return []*plugin.Def{
		basicauth.Def(),
		cors.Def(),
		csrf.Def(),
		faultinjection.Def(),
		keyauth.Def(),
		limitcount.Def(),
		limitreq.Def(),
		proxyrewrite.Def(),
		redirect.Def(),
		requestvalidation.Def(),
		trafficsplit.Def(),
	}
}
