// Package tokenhandler serves the create-room endpoint: it places the room
// with livekit_lb's placement, creates it on that node, and returns a token
// and the proxy's public URL.
package tokenhandler

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/internal/reply"
	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the create-room endpoint, `livekit_token` in a Caddyfile.
type Handler struct {
	livekitlb.Cluster

	// Public address clients connect to, e.g. wss://livekit.example.com.
	// Default: derived from the request (Host, TLS, X-Forwarded-Proto and
	// X-Forwarded-Host from Caddy's trusted_proxies).
	PublicURL string `json:"public_url,omitempty"`

	// Callers must send `Authorization: Bearer <auth_key>`, or be
	// authenticated by Caddy (basic_auth), or carry identity_header (set by
	// forward_auth's copy_headers). allow_anonymous lifts the requirement.
	AuthKey        string `json:"auth_key,omitempty"`
	IdentityHeader string `json:"identity_header,omitempty"`
	AllowAnonymous bool   `json:"allow_anonymous,omitempty"`

	// The participant's identity is the authenticated user's (identity_header
	// or basic_auth), else user_name plus a random suffix. With these, the
	// caller may choose the identity or the metadata in the body instead: for
	// a trusted backend that calls with auth_key on its users' behalf.
	AllowCallerIdentity bool `json:"allow_caller_identity,omitempty"`
	AllowCallerMetadata bool `json:"allow_caller_metadata,omitempty"`

	// Token lifetime when the caller names none (default 6h), and the most
	// a caller may ask for (default 24h).
	TTL    caddy.Duration `json:"ttl,omitempty"`
	MaxTTL caddy.Duration `json:"max_ttl,omitempty"`
	// Grants of the minted tokens; all default to true.
	CanPublish     *bool `json:"can_publish,omitempty"`
	CanSubscribe   *bool `json:"can_subscribe,omitempty"`
	CanPublishData *bool `json:"can_publish_data,omitempty"`

	// Room settings passed to LiveKit's CreateRoom (0: LiveKit's default).
	EmptyTimeout    caddy.Duration `json:"empty_timeout,omitempty"`
	MaxParticipants uint32         `json:"max_participants,omitempty"`

	// Largest accepted request body. Default 64 KiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`

	apiKey, apiSecret, authKey, publicURL string

	placer  placer
	created *createdRooms
	client  *http.Client
	logger  *zap.Logger
}

// placer is the part of cluster.Cluster the handler uses: the same calls
// livekit_lb makes, so a room is placed one way whichever module asks.
type placer interface {
	Ready(context.Context)
	Route(ctx context.Context, room string) (*cluster.Node, cluster.Outcome, error)
	Failed(n *cluster.Node, room string)
	Unplace(ctx context.Context, room, nodeID string) error
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.livekit_token",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets and defaults and joins the shared registry.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	h.apiKey, h.apiSecret, _ = h.Keys("livekit_token") // Validate says what is wrong
	h.authKey = repl.ReplaceAll(h.AuthKey, "")
	h.publicURL = strings.TrimRight(repl.ReplaceAll(h.PublicURL, ""), "/")
	h.setDefaults()
	if h.IdentityHeader != "" {
		h.logger.Warn("identity_header trusts whoever sets the header: put forward_auth with copy_headers "+
			h.IdentityHeader+" before livekit_token (it drops a copy sent by the client); without it any client "+
			"can claim any identity", zap.String("header", h.IdentityHeader))
	}
	h.client = &http.Client{Timeout: 5 * time.Second}
	h.created = new(createdRooms)
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	reg, err := h.Join(ctx)
	if err != nil {
		return err
	}
	h.placer = reg
	return nil
}

// setDefaults fills what the config left out.
func (h *Handler) setDefaults() {
	if h.MaxTTL == 0 {
		h.MaxTTL = caddy.Duration(24 * time.Hour)
	}
	if h.TTL == 0 { // the default fits a lower max_ttl
		h.TTL = min(caddy.Duration(6*time.Hour), h.MaxTTL)
	}
	if h.MaxBodyBytes == 0 {
		h.MaxBodyBytes = 64 << 10
	}
}

// Validate refuses configurations that could not mint a usable token or
// would leave the endpoint open by accident.
func (h *Handler) Validate() error {
	switch {
	case keysErr(h.Cluster) != nil:
		return keysErr(h.Cluster)
	case h.authKey != "" && len(h.authKey) < cluster.MinSecret:
		return errors.New("livekit_token: auth_key must be at least 32 characters (openssl rand -hex 24)")
	case h.MaxTTL < caddy.Duration(time.Second):
		return errors.New("livekit_token: max_ttl must be at least 1s")
	case h.AllowAnonymous && (h.authKey != "" || h.IdentityHeader != ""):
		return errors.New("livekit_token: allow_anonymous contradicts auth_key and identity_header")
	case h.AuthKey != "" && h.authKey == "":
		return errors.New("livekit_token: auth_key is set but empty after placeholders (is the {env.*} variable set?)")
	case h.TTL > h.MaxTTL:
		return errors.New("livekit_token: ttl exceeds max_ttl")
	case h.MaxBodyBytes < 0:
		return errors.New("livekit_token: max_body_bytes must be positive")
	case h.publicURL != "" && !strings.HasPrefix(h.publicURL, "wss://") && !strings.HasPrefix(h.publicURL, "ws://"):
		return errors.New("livekit_token: public_url must start with wss:// or ws://")
	}
	return nil
}

// keysErr: the tokens are signed with the cluster's keys, which must be
// usable.
func keysErr(c livekitlb.Cluster) error {
	_, _, err := c.Keys("livekit_token")
	return err
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.fail(w, r, refuse(http.StatusMethodNotAllowed, "use POST"), "")
	}
	user, ok := h.caller(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="livekit"`)
		return h.fail(w, r, refuse(http.StatusUnauthorized, "authentication required"), "")
	}
	req, herr := decodeRequest(r, h.MaxBodyBytes, time.Duration(h.MaxTTL))
	if herr == nil {
		herr = h.decideIdentity(req, user)
	}
	if herr != nil {
		return h.fail(w, r, herr, "")
	}
	// where the caller is: looked up (geoip_db) only if the room is new
	near := sync.OnceValue(func() string { return h.Near(r) })
	node, herr := h.createRoom(cluster.NearBy(r.Context(), near), req.RoomName)
	if herr != nil {
		return h.fail(w, r, herr, req.RoomName)
	}
	token, err := h.mint(req)
	if err != nil {
		return h.fail(w, r, refuse(http.StatusInternalServerError, "could not sign the token"), req.RoomName)
	}
	url := h.url(r)
	if c := h.logger.Check(zapcore.DebugLevel, "room ready"); c != nil {
		c.Write(zap.String("room", req.RoomName), zap.String("node", node.ID), zap.String("remote", r.RemoteAddr))
	}
	countCreateRoom(http.StatusOK)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(createResponse{RoomName: req.RoomName, Token: token, URL: url, ServerURL: url})
}

// caller authenticates the request and returns the user it names ("" for
// the bearer key or anonymous callers): a user that Caddy's authentication
// handler identified, a forward_auth identity header, or the bearer key
// (compared in constant time).
func (h *Handler) caller(r *http.Request) (user string, ok bool) {
	if repl, found := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); found {
		if id, _ := repl.GetString("http.auth.user.id"); id != "" {
			return id, true
		}
	}
	if h.IdentityHeader != "" {
		if id := r.Header.Get(h.IdentityHeader); id != "" {
			return id, true
		}
	}
	if h.authKey != "" {
		got := r.Header.Get("Authorization")
		if len(got) > 7 && strings.EqualFold(got[:7], "bearer ") &&
			subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got[7:])), []byte(h.authKey)) == 1 {
			return "", true
		}
	}
	return "", h.AllowAnonymous
}

// decideIdentity sets the participant's identity: the authenticated user's,
// the caller's own choice where allowed, else user_name plus a random
// suffix (so two calls with one user_name do not push each other out).
func (h *Handler) decideIdentity(req *createRequest, user string) *httpError {
	if req.Identity != "" && !h.AllowCallerIdentity {
		return refuse(http.StatusBadRequest, "identity is chosen by the server here (allow_caller_identity is off)")
	}
	if req.Metadata != "" && !h.AllowCallerMetadata {
		return refuse(http.StatusBadRequest, "metadata is not accepted here (allow_caller_metadata is off)")
	}
	switch {
	case req.Identity != "":
	case user != "":
		if msg := checkName(user, maxIdentity); msg != "" {
			return refuse(http.StatusBadRequest, "the authenticated user name %s", msg)
		}
		req.Identity = user
	default:
		req.Identity = uniqueIdentity(req.UserName)
	}
	return nil
}

// url is the public address clients must connect to.
func (h *Handler) url(r *http.Request) string {
	if h.publicURL != "" {
		return h.publicURL
	}
	scheme, host := "ws", r.Host
	if r.TLS != nil {
		scheme = "wss"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" {
			scheme = "wss"
		} else if p == "http" {
			scheme = "ws"
		}
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			host = fh
		}
	}
	return scheme + "://" + host
}

// fail answers with a JSON error and logs one line (never the body).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, e *httpError, room string) error {
	lvl := h.logger.Info
	if e.status >= 500 {
		lvl = h.logger.Warn
	}
	countCreateRoom(e.status)
	lvl("create-room refused", zap.Int("status", e.status), zap.String("reason", e.msg),
		zap.String("room", room), zap.String("remote", r.RemoteAddr))
	return reply.Error(w, e.status, e.msg)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
