package livekitlb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/internal/reply"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler reads the room from a request's LiveKit access token, chooses the
// node (see cluster.Cluster.Route) and leaves the decision for the `livekit`
// upstream source and selection policy of the reverse_proxy that follows it.
// It answers bad tokens and undecidable requests itself, with a JSON error.
type Handler struct {
	Cluster

	// Tokens are verified (signature, issuer, nbf/exp) with the cluster's
	// api_key and api_secret, as LiveKit does, and a bad one is refused with
	// 401 before any node sees it. Both are required unless Verify is "off":
	// "off" routes by the room of tokens nobody checked (LiveKit still
	// verifies them): such a token never writes a placement, so a new room's
	// first join may land on a node other than the room's. Default "on".
	Verify string `json:"verify,omitempty"`

	apiKey, apiSecret string
	verifyOff         bool
	cluster           *cluster.Cluster
	logger            *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.livekit_lb",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision joins the shared cluster.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.apiKey, h.apiSecret, _ = h.Keys("livekit_lb") // Validate says what is wrong
	switch v := caddy.NewReplacer().ReplaceAll(h.Verify, ""); v {
	case "", "on":
	case "off":
		h.verifyOff = true
	default:
		return fmt.Errorf("livekit_lb: verify is on or off, not %q", v)
	}
	var err error
	h.cluster, err = h.Join(ctx)
	return err
}

// Validate checks the token settings: verification cannot be switched off
// by an {env.*} placeholder that happens to be empty, only by `verify off`.
func (h *Handler) Validate() error {
	if h.verifyOff {
		return nil
	}
	if _, _, err := h.Keys("livekit_lb"); err != nil {
		return fmt.Errorf("%w; `verify off` routes without verifying", err)
	}
	return nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	room, place, err := h.target(r)
	if err != nil {
		return h.refuse(w, r, err)
	}
	h.cluster.Ready(r.Context()) // waits only in the first moments after start
	tokenToHeader(r)
	header := w.Header().Clone() // as it was before any node's answer
	for resends := 0; ; resends++ {
		s, err := h.route(w, r, room, place)
		if s == nil {
			return err
		}
		sw := &sessionWriter{ResponseWriter: w, s: s}
		err = next.ServeHTTP(sw, r.WithContext(s.Context()))
		if !s.Release() {
			h.undoFailedCreate(r, room, sw.status)
			if err != nil && !s.Committed() {
				// answer here: Caddy's own error log line would carry the
				// request's original URI, access_token and all
				return h.proxyFailed(w, r, room, err)
			}
			return err
		}
		// the node died before it answered: nothing reached the client yet
		clear(w.Header())
		maps.Copy(w.Header(), header)
		if !resendable(r) || resends == maxResends || r.Context().Err() != nil {
			metrics.sessionsEnded.WithLabelValues("failed").Inc()
			return reply.Error(w, http.StatusBadGateway, "the LiveKit node died before it answered")
		}
		metrics.sessionsEnded.WithLabelValues("resent").Inc()
		if c := h.logger.Check(zapcore.DebugLevel, "node died before answering; sending the request again"); c != nil {
			c.Write(cluster.Field("room", room), cluster.Field("path", r.URL.Path))
		}
	}
}

// undoFailedCreate removes the placement a server API CreateRoom made when
// the node did not create the room (LiveKit refused the name, the node
// failed): nothing else would ever remove it.
func (h *Handler) undoFailedCreate(r *http.Request, room string, status int) {
	rt := routeFrom(r)
	if rt == nil || !rt.create || rt.node == nil || status >= 200 && status < 300 ||
		rt.outcome != cluster.OutcomePlaced && rt.outcome != cluster.OutcomeReplaced {
		return
	}
	err := h.cluster.Unplace(context.WithoutCancel(r.Context()), room, rt.node.ID)
	h.logger.Info("CreateRoom failed on its node; placement undone", cluster.Field("room", room),
		zap.String("node", rt.node.ID), zap.Int("status", status), zap.NamedError("unplace", err))
}

// proxyFailed answers a request no node could take with a JSON error and
// logs one line.
func (h *Handler) proxyFailed(w http.ResponseWriter, r *http.Request, room string, err error) error {
	status := http.StatusBadGateway
	var herr caddyhttp.HandlerError
	if errors.As(err, &herr) && herr.StatusCode != 0 {
		status = herr.StatusCode
	}
	h.logger.Warn("no LiveKit node answered", cluster.Field("room", room), cluster.Field("path", r.URL.Path),
		zap.Int("status", status), zap.Error(err))
	w.Header().Set("Retry-After", "1")
	return reply.Error(w, status, "no LiveKit node answered")
}

// maxResends bounds how often one request follows its room to a new node.
const maxResends = 2

// route chooses the node for the request and binds a new session to it, or
// answers the client itself (503) and returns a nil session.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, room string, place bool) (*cluster.Session, error) {
	// Route bounds its own Redis wait by redis_timeout
	find := h.cluster.Route
	if !place {
		find = h.cluster.RouteUnverified
	}
	// where the client is: looked up (geoip_db) only if the room is placed, and then once
	near := sync.OnceValue(func() string { return h.Near(r) })
	node, outcome, err := find(cluster.NearBy(r.Context(), near), room)
	if err != nil {
		msg := refusal(err)
		if c := h.logger.Check(zapcore.DebugLevel, "no route"); c != nil {
			c.Write(cluster.Field("room", room), zap.Error(err))
		}
		w.Header().Set("Retry-After", "1")
		return nil, reply.Error(w, http.StatusServiceUnavailable, msg)
	}
	if c := h.logger.Check(zapcore.DebugLevel, "route"); c != nil {
		c.Write(cluster.Field("room", room), zap.String("node", node.ID), zap.String("dial", node.Dial), zap.String("outcome", string(outcome)))
	}
	s := cluster.NewSession(r.Context())
	rt := &route{cluster: h.cluster, room: room, near: near, session: s, place: place, create: place && isCreateRoom(r)}
	setRoute(r, rt)
	rt.use(r, node, outcome)
	return s, nil
}

// refusal counts a request no node can take and says why: the cluster's
// errors are ErrRedis or ErrNoNode (see cluster.Cluster.Route).
func refusal(err error) string {
	if errors.Is(err, cluster.ErrRedis) {
		countRoute(cluster.OutcomeRedisError)
		return "cannot route: " + cluster.ErrRedis.Error()
	}
	if errors.Is(err, cluster.ErrFull) {
		countRoute(cluster.OutcomeFull)
		return cluster.ErrFull.Error()
	}
	countRoute(cluster.OutcomeNoNode)
	return cluster.ErrNoNode.Error()
}

// resendable: a request that may go to a second node after the first died
// without answering. A signal WebSocket's upgrade is a GET without a body;
// a POST (WHIP, the server API) may have been acted on.
func resendable(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
