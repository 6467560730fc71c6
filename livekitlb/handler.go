package livekitlb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler reads the room from a request's LiveKit access token, chooses the
// node (see Registry.Route) and leaves the decision for the `livekit`
// upstream source and selection policy of the reverse_proxy that follows it.
// It answers bad tokens and undecidable requests itself, with a JSON error.
type Handler struct {
	Cluster

	// With both set, tokens are verified (signature, issuer, nbf/exp) and a
	// bad one is refused with 401 before any node sees it. Otherwise the
	// proxy only reads the room and LiveKit verifies.
	APIKey    string `json:"api_key,omitempty"`
	APISecret string `json:"api_secret,omitempty"`

	apiKey, apiSecret string
	registry          *Registry
	poolKey           string
	logger            *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.livekit_lb",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision joins the shared registry for this cluster.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	h.apiKey = repl.ReplaceAll(h.APIKey, "")
	h.apiSecret = repl.ReplaceAll(h.APISecret, "")
	if err := RegisterMetrics(ctx); err != nil {
		return err
	}
	var err error
	h.registry, h.poolKey, err = h.Cluster.provision(ctx)
	return err
}

// Validate checks the token settings.
func (h *Handler) Validate() error {
	if (h.apiKey == "") != (h.apiSecret == "") {
		return errors.New("livekit_lb: api_key and api_secret go together (an {env.*} placeholder may be empty)")
	}
	return nil
}

// Cleanup releases the shared registry.
func (h *Handler) Cleanup() error { return release(h.poolKey) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	room, err := h.room(r)
	if err != nil {
		countRoute(outcomeBadToken)
		h.logger.Info("refused access token", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path), zap.Error(err))
		return WriteJSONError(w, http.StatusUnauthorized, err.Error())
	}
	if !h.registry.Loaded() { // only in the first moments after start
		ctx, cancel := context.WithTimeout(r.Context(), h.registry.settings.redisTimeout)
		h.registry.WaitLoaded(ctx)
		cancel()
	}
	// Route bounds its own Redis wait by redis_timeout
	node, outcome, err := h.registry.Route(r.Context(), room)
	if err != nil {
		msg, o := ErrNoNode.Error(), outcomeNoNode
		if errors.Is(err, ErrRedis) || errors.Is(err, context.DeadlineExceeded) {
			msg, o = "cannot route: "+ErrRedis.Error(), outcomeRedisError
		}
		countRoute(o)
		if c := h.logger.Check(zapcore.DebugLevel, "no route"); c != nil {
			c.Write(zap.String("room", room), zap.Error(err))
		}
		w.Header().Set("Retry-After", "1")
		return WriteJSONError(w, http.StatusServiceUnavailable, msg)
	}
	countRoute(outcome)
	if c := h.logger.Check(zapcore.DebugLevel, "route"); c != nil {
		c.Write(zap.String("room", room), zap.String("node", node.ID), zap.String("dial", node.Dial), zap.String("outcome", string(outcome)))
	}
	setRoute(r, &route{registry: h.registry, room: room, node: node})
	caddyhttp.SetVar(r.Context(), "livekit.node", node.ID)
	caddyhttp.SetVar(r.Context(), "livekit.outcome", string(outcome))
	return next.ServeHTTP(w, r)
}

// room returns the room the request's token names ("" when it has no token).
func (h *Handler) room(r *http.Request) (string, error) {
	raw := tokenFromRequest(r)
	if h.apiKey == "" {
		if raw == "" {
			return "", nil
		}
		return roomFromToken(raw)
	}
	if raw == "" {
		if isSignalPath(r.URL.Path) {
			return "", fmt.Errorf("%w: missing", errBadToken)
		}
		return "", nil
	}
	return verifyToken(raw, h.apiKey, h.apiSecret)
}

// isSignalPath: the paths where LiveKit requires a token (rtcservice.go).
func isSignalPath(p string) bool {
	return p == "/rtc" || strings.HasPrefix(p, "/rtc/")
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
