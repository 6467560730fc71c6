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

// tokenFromRequest returns the access token exactly as LiveKit reads it
// (livekit-server pkg/service/auth.go): the Authorization header when there
// is one, which must then start with "Bearer " (case and all), else the
// access_token form value of the query. Reading it any other way would let
// a client route by one token while LiveKit admits it by another.
func tokenFromRequest(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, bearerPrefix)
		if !ok {
			return "", errNotBearer
		}
		return tok, nil
	}
	return queryParam(r.URL.RawQuery, "access_token"), nil
}

const bearerPrefix = "Bearer "

// errNotBearer is LiveKit's refusal of any other Authorization scheme.
var errNotBearer = fmt.Errorf("%w: Authorization header must start with %q", errors.New("invalid authorization header"), bearerPrefix)

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
// LiveKit does, and returns the token's grants (roomOf: its room).
func verifyToken(raw, apiKey, apiSecret string) (*auth.ClaimGrants, error) {
	v, err := auth.ParseAPIToken(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadToken, err)
	}
	if v.APIKey() != apiKey {
		return nil, fmt.Errorf("%w: issued for another API key", errBadToken)
	}
	_, grants, err := v.Verify(apiSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadToken, err)
	}
	return grants, nil
}

func roomOf(g *auth.ClaimGrants) string {
	if g == nil || g.Video == nil {
		return ""
	}
	return g.Video.Room
}

// queryParam returns the first value of name in a raw query, decoded as
// net/url.ParseQuery (LiveKit's r.FormValue) does: pairs with a semicolon
// or a bad escape are skipped, keys are unescaped too (access%5Ftoken is
// access_token). It builds no map: this runs on every request.
func queryParam(raw, name string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" || strings.IndexByte(kv, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = u
		}
		return v
	}
	return ""
}

// tokenToHeader moves an access_token query parameter into the
// Authorization header, which LiveKit reads first, and takes it out of the
// URI: Caddy logs URIs (the access log, reverse_proxy's debug lines) but
// redacts that header. A request that has the header already keeps it;
// LiveKit ignores the query then.
func tokenToHeader(r *http.Request) {
	raw := r.URL.RawQuery
	if !strings.Contains(raw, "token") { // access_token, or access%5Ftoken
		return
	}
	tok := queryParam(raw, "access_token")
	kept := make([]string, 0, 8)
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == "access_token" {
			continue
		}
		kept = append(kept, kv)
	}
	if tok != "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", bearerPrefix+tok)
	}
	r.URL.RawQuery = strings.Join(kept, "&")
	r.RequestURI = r.URL.RequestURI()
}
