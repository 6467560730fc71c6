package livekitlb

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/livekit/protocol/auth"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/internal/reply"
)

// target returns the room a request is for ("" when it names none) and
// whether the proxy may place that room. A join's room is its token's; a
// server API call's is the one its body names (serverapi.go). Only a
// verified token may place: a join (/rtc, a WHIP publish) with roomJoin, or
// a CreateRoom its grants allow; every other request follows the room's
// placement and never writes one.
func (h *Handler) target(r *http.Request) (room string, place bool, err error) {
	raw, err := tokenFromRequest(r)
	if err != nil {
		return "", false, err
	}
	api := strings.HasPrefix(r.URL.Path, roomServicePrefix)
	var grants *auth.ClaimGrants
	verified := false
	switch {
	case raw == "" && !h.verifyOff && (isSignalPath(r.URL.Path) || api):
		return "", false, fmt.Errorf("%w: missing", errBadToken)
	case raw == "":
		verified = !h.verifyOff // nothing to place: no room
	case h.verifyOff:
		if room, err = roomFromToken(raw); err != nil {
			return "", false, err
		}
	default:
		if grants, err = verifyToken(raw, h.apiKey, h.apiSecret); err != nil {
			return "", false, err
		}
		room, verified = roomOf(grants), true
	}
	if !api {
		return room, verified && isJoin(r) && canJoin(grants), nil
	}
	method := strings.TrimPrefix(r.URL.Path, roomServicePrefix)
	if verified && !mayCall(grants, method) {
		return "", false, fmt.Errorf("%w for %s", errPermission, method)
	}
	room, err = apiRoom(r, method)
	if err != nil {
		return "", false, err
	}
	if verified && !permitted(grants, method, room) {
		return "", false, fmt.Errorf("%w for %s", errPermission, method)
	}
	return room, verified && method == "CreateRoom", nil
}

// refuse answers a request target refused: 401 for a token or its grants,
// the body's status for a malformed server API call; one log line.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) error {
	status, outcome := http.StatusUnauthorized, cluster.OutcomeBadToken
	var bad *apiError
	if errors.As(err, &bad) {
		status, outcome = bad.status, cluster.OutcomeBadRequest
	}
	countRoute(outcome)
	h.logger.Info("refused request", zap.String("remote", r.RemoteAddr), cluster.Field("path", r.URL.Path),
		zap.Int("status", status), zap.Error(err))
	if strings.HasPrefix(r.URL.Path, roomServicePrefix) {
		return reply.Twirp(w, status, err.Error())
	}
	return reply.Error(w, status, err.Error())
}

// canJoin: the grants let a participant join (LiveKit's EnsureJoinPermission).
func canJoin(g *auth.ClaimGrants) bool { return g != nil && g.Video != nil && g.Video.RoomJoin }

// isJoin: a request that joins a participant to its token's room.
func isJoin(r *http.Request) bool {
	return isSignalPath(r.URL.Path) || r.Method == http.MethodPost && r.URL.Path == "/whip/v1"
}

// isSignalPath: the paths where LiveKit requires a token (rtcservice.go).
func isSignalPath(p string) bool {
	return p == "/rtc" || strings.HasPrefix(p, "/rtc/")
}
