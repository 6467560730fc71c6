package livekitlb

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(Policy{})
}

// Policy selects the upstream whose address is the node the livekit_lb
// handler chose, provided Caddy's own health checks still consider it
// available; otherwise it selects nothing, so that reverse_proxy retries and
// the upstream source routes again. Requests that livekit_lb did not see go
// to the available upstream with the fewest active requests: signal
// connections are long-lived, so that is the fair spread.
type Policy struct{}

// CaddyModule returns the Caddy module information.
func (Policy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.livekit",
		New: func() caddy.Module { return new(Policy) },
	}
}

// Select implements reverseproxy.Selector.
func (Policy) Select(pool reverseproxy.UpstreamPool, r *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if rt := routeFrom(r); rt != nil {
		if rt.node == nil {
			return nil
		}
		for _, up := range pool {
			if up.Dial == rt.node.Dial {
				if up.Available() {
					return up
				}
				return nil
			}
		}
		return nil
	}
	var best *reverseproxy.Upstream
	for _, up := range pool {
		if up.Available() && (best == nil || up.Host.NumRequests() < best.Host.NumRequests()) {
			best = up
		}
	}
	return best
}

// Interface guards
var _ reverseproxy.Selector = (*Policy)(nil)
