package livekitlb

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

// tokenFromRequest returns the access token as LiveKit reads it: the
// access_token query parameter (JS SDK) or an Authorization bearer
// (server-sdk-go v2.19).
func tokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// tokenClaims mirrors LiveKit's own claims layout (auth/verifier.go).
type tokenClaims struct {
	jwt.RegisteredClaims
	auth.ClaimGrants
}

var unverified = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))

// errBadToken wraps every reason a token is refused; its text is safe to
// show to the client (it never contains the token).
var errBadToken = errors.New("invalid access token")

// roomFromToken returns video.room from raw without checking the signature:
// LiveKit verifies every token again, and routing needs only the room.
func roomFromToken(raw string) (string, error) {
	var c tokenClaims
	if _, _, err := unverified.ParseUnverified(raw, &c); err != nil {
		return "", fmt.Errorf("%w: %v", errBadToken, err)
	}
	return roomOf(&c.ClaimGrants), nil
}

// verifyToken checks signature, issuer (the API key), nbf and exp the way
// LiveKit does, and returns the room.
func verifyToken(raw, apiKey, apiSecret string) (string, error) {
	v, err := auth.ParseAPIToken(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errBadToken, err)
	}
	if v.APIKey() != apiKey {
		return "", fmt.Errorf("%w: issued for another API key", errBadToken)
	}
	_, grants, err := v.Verify(apiSecret)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errBadToken, err)
	}
	return roomOf(grants), nil
}

func roomOf(g *auth.ClaimGrants) string {
	if g == nil || g.Video == nil {
		return ""
	}
	return g.Video.Room
}
