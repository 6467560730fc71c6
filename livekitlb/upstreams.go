package livekitlb

import (
	"context"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(Upstreams{})
}

// route is the livekit_lb handler's decision for one request, kept in the
// request's vars for the upstream source and the selection policy.
type route struct {
	registry *Registry
	room     string
	node     *Node // nil once every node failed
	session  *session
	// unverified: the room comes from a token nobody checked (verify off)
	unverified bool
}

const routeVar = "livekit.route"

func setRoute(r *http.Request, rt *route) { caddyhttp.SetVar(r.Context(), routeVar, rt) }

func routeFrom(r *http.Request) *route {
	rt, _ := caddyhttp.GetVar(r.Context(), routeVar).(*route)
	return rt
}

// Upstreams is a dynamic upstream source that yields the node the
// livekit_lb handler chose for the request. On a retry (the node could not
// be reached) it reports the failure and asks the registry again, which
// takes the node out of rotation and re-places the room.
type Upstreams struct{}

// CaddyModule returns the Caddy module information.
func (Upstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.livekit",
		New: func() caddy.Module { return new(Upstreams) },
	}
}

var errNoRoute = errors.New("livekit upstreams: no routing decision; the livekit_lb handler must run before reverse_proxy")

// GetUpstreams returns a fresh Upstream for the chosen node (Caddy fills it
// with per-request state, so it must not be shared between requests).
func (Upstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	rt := routeFrom(r)
	if rt == nil {
		return nil, errNoRoute
	}
	if rt.node == nil {
		return []*reverseproxy.Upstream{}, nil
	}
	return []*reverseproxy.Upstream{{Dial: rt.node.Dial}}, nil
}

// ResetCache is called by reverse_proxy before a retry: the node chosen for
// this request failed, so report it and route again.
func (Upstreams) ResetCache(r *http.Request) error {
	rt := routeFrom(r)
	if rt == nil {
		return errNoRoute
	}
	// the request moves: the failed node's end must not cancel it
	rt.session.unbind()
	rt.registry.ReportFailure(rt.node, rt.room)
	ctx, cancel := context.WithTimeout(r.Context(), rt.registry.settings.redisTimeout)
	defer cancel()
	find := rt.registry.Route
	if rt.unverified {
		find = rt.registry.RouteUnverified
	}
	node, outcome, err := find(ctx, rt.room)
	rt.node = node
	if err != nil {
		rt.node = nil
		countRoute(outcomeNoNode)
		return nil // nothing left: the policy selects nothing and Caddy answers 503
	}
	countRoute(outcome)
	rt.session.bind(node)
	caddyhttp.SetVar(r.Context(), "livekit.node", node.ID)
	caddyhttp.SetVar(r.Context(), "livekit.outcome", string(outcome))
	return nil
}

// Interface guards
var (
	_ reverseproxy.UpstreamSource        = (*Upstreams)(nil)
	_ reverseproxy.CachingUpstreamSource = (*Upstreams)(nil)
)
