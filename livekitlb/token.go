package livekitlb

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/livekit/protocol/auth"
)

// tokenFromRequest returns the access token as LiveKit reads it: the
// access_token query parameter (JS SDK) or an Authorization bearer
// (server-sdk-go v2.19).
func tokenFromRequest(r *http.Request) string {
	if t := queryParam(r.URL.RawQuery, "access_token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// errBadToken wraps every reason a token is refused; its text is safe to
// show to the client (it never contains the token).
var errBadToken = errors.New("invalid access token")

// roomFromToken returns video.room from raw without checking the signature:
// LiveKit verifies every token again, and routing needs only the room. It
// decodes just the payload's room, a tenth of the cost of a full JWT parse.
func roomFromToken(raw string) (string, error) {
	first := strings.IndexByte(raw, '.')
	last := strings.LastIndexByte(raw, '.')
	if first <= 0 || last <= first+1 || last == len(raw)-1 {
		return "", fmt.Errorf("%w: not a JWT", errBadToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(raw[first+1:last], "="))
	if err != nil {
		return "", fmt.Errorf("%w: payload is not base64url", errBadToken)
	}
	var c struct {
		Video *struct {
			Room string `json:"room"`
		} `json:"video"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("%w: payload is not JSON", errBadToken)
	}
	if c.Video == nil {
		return "", nil
	}
	return c.Video.Room, nil
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

// queryParam finds one parameter without building the whole query map
// (url.Values) on every request.
func queryParam(raw, name string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
		}
		return v
	}
	return ""
}
