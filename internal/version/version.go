// Package version holds the build's version strings.
package version

// Version is Sluice's own version, set at build time with
// -ldflags "-X github.com/sluice-gw/sluice/internal/version.Version=...".
var Version = "0.1.0-dev"

// APISIXVersion is the APISIX release whose Admin API and data-plane
// behaviour Sluice reproduces.
const APISIXVersion = "3.18.0"

// Server is the Server header value on every data-plane and Admin API
// response. It names APISIX because clients and scripts written for APISIX
// look for it; `apisix.enable_server_tokens: false` shortens it to "APISIX".
const Server = "APISIX/" + APISIXVersion
