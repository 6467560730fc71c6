package livekitlb

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

func init() {
	caddy.RegisterModule(Upstreams{})
}

// route is the livekit_lb handler's decision for one request, kept in the
// request's vars for the upstream source.
type route struct {
	cluster *cluster.Cluster
	room    string
	near    func() string // where the client is, for a room placed again
	node    *cluster.Node // nil once every node failed
	session *cluster.Session
	// place: the room may be placed by the proxy (see Handler.target)
	place bool
	// create: a server API CreateRoom, whose placement is undone if the
	// node does not create the room (Handler.undoFailedCreate)
	create  bool
	outcome cluster.Outcome
}

const routeVar = "livekit.route"

func setRoute(r *http.Request, rt *route) { caddyhttp.SetVar(r.Context(), routeVar, rt) }

func routeFrom(r *http.Request) *route {
	rt, _ := caddyhttp.GetVar(r.Context(), routeVar).(*route)
	return rt
}

// use makes node the request's node: counted, bound to the session (its
// death ends the request) and shown in the livekit.* vars for logs.
func (rt *route) use(r *http.Request, node *cluster.Node, outcome cluster.Outcome) {
	rt.node, rt.outcome = node, outcome
	countRoute(outcome)
	rt.session.Bind(node)
	caddyhttp.SetVar(r.Context(), "livekit.node", node.ID)
	caddyhttp.SetVar(r.Context(), "livekit.outcome", string(outcome))
}

// Upstreams is a dynamic upstream source that yields the node the
// livekit_lb handler chose for the request. On a retry (the node could not
// be reached) the cluster takes the node out of rotation and routes again.
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

// ResetCache is called by reverse_proxy before a retry: the request's
// decision is stale, since its node could not be reached. It reports the
// failure and takes the cluster's new decision (Cluster.Reroute, where
// placement lives, moves the room); with none left, GetUpstreams yields
// nothing and Caddy answers 503.
func (Upstreams) ResetCache(r *http.Request) error {
	rt := routeFrom(r)
	if rt == nil {
		return errNoRoute
	}
	rt.session.Unbind() // the request moves: the failed node's end must not cancel it
	node, outcome, err := rt.cluster.Reroute(cluster.NearBy(r.Context(), rt.near), rt.room, rt.node, rt.place)
	if err != nil {
		rt.node = nil
		countRoute(cluster.OutcomeNoNode)
		return nil
	}
	rt.use(r, node, outcome)
	return nil
}

// Interface guards
var (
	_ reverseproxy.UpstreamSource        = (*Upstreams)(nil)
	_ reverseproxy.CachingUpstreamSource = (*Upstreams)(nil)
)
