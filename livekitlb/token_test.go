package livekitlb

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/livekit/protocol/auth"
)

const (
	testKey    = "devkey"
	testSecret = "0123456789abcdef0123456789abcdef"
)

func mint(t testing.TB, key, secret, room string, validFor time.Duration) string {
	t.Helper()
	at := auth.NewAccessToken(key, secret).SetIdentity("alice").SetValidFor(validFor).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room})
	tok, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The token is read as LiveKit reads it: the header wins over the query,
// and a header that is not "Bearer ..." is refused, not skipped.
func TestTokenFromRequest(t *testing.T) {
	for _, c := range []struct {
		query, header, want string
		refused             bool
	}{
		{query: "access_token=abc&auto_subscribe=1", want: "abc"},
		{header: "Bearer xyz", want: "xyz"},
		{query: "access_token=abc", header: "Bearer xyz", want: "xyz"},
		{query: "access_token=abc", header: "Bearer garbage", want: "garbage"},
		{query: "access_token=abc", header: "Basic xyz", refused: true},
		{query: "access_token=abc", header: "bearer xyz", refused: true}, // LiveKit's prefix is case-sensitive
		{query: "access%5Ftoken=abc", want: "abc"},
	} {
		r := httptest.NewRequest("GET", "/rtc?"+c.query, nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		got, err := tokenFromRequest(r)
		if (err != nil) != c.refused || got != c.want {
			t.Errorf("query %q header %q: got %q, %v", c.query, c.header, got, err)
		}
	}
}

func TestRoomFromToken(t *testing.T) {
	tok := mint(t, testKey, testSecret, "standup", time.Hour)
	room, err := roomFromToken(tok)
	if err != nil || room != "standup" {
		t.Fatalf("got %q, %v", room, err)
	}
	// unverified parsing still reads a token signed with another secret
	room, err = roomFromToken(mint(t, "other", "another-secret-of-32-characters!", "x", time.Hour))
	if err != nil || room != "x" {
		t.Fatalf("foreign token: %q, %v", room, err)
	}
	// a token with no video grant names no room
	noGrant, _ := auth.NewAccessToken(testKey, testSecret).SetIdentity("svc").ToJWT()
	if room, err := roomFromToken(noGrant); err != nil || room != "" {
		t.Fatalf("no grant: %q, %v", room, err)
	}
	for _, bad := range []string{"", "not-a-jwt", "a.b.c", "a..c", "a.b.", ".b.c", "a.e30", "a.!!!.c", "a.bm90IGpzb24.c"} {
		if _, err := roomFromToken(bad); !errors.Is(err, errBadToken) {
			t.Errorf("roomFromToken(%q) err = %v, want errBadToken", bad, err)
		}
	}
}

func TestVerifyToken(t *testing.T) {
	good := mint(t, testKey, testSecret, "standup", time.Hour)
	if g, err := verifyToken(good, testKey, testSecret); err != nil || roomOf(g) != "standup" {
		t.Fatalf("good token: %q, %v", roomOf(g), err)
	}
	cases := map[string]string{
		"wrong secret": mint(t, testKey, "another-secret-of-32-characters!", "r", time.Hour),
		"foreign key":  mint(t, "otherkey", testSecret, "r", time.Hour),
		"expired":      expired(t),
		"malformed":    "eyJhbGciOiJIUzI1NiJ9.garbage.sig",
	}
	for name, tok := range cases {
		_, err := verifyToken(tok, testKey, testSecret)
		if !errors.Is(err, errBadToken) {
			t.Errorf("%s: err = %v, want errBadToken", name, err)
		}
		if err != nil && len(tok) > 20 && strings.Contains(err.Error(), tok) {
			t.Errorf("%s: error text contains the token", name)
		}
		if err != nil && strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: error text contains the secret", name)
		}
	}
}

// expired mints a correctly signed token that expired two minutes ago
// (beyond LiveKit's one-minute leeway).
func expired(t *testing.T) string {
	past := time.Now().Add(-2 * time.Minute)
	c := struct {
		jwt.RegisteredClaims
		auth.ClaimGrants
	}{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: testKey, Subject: "alice",
			NotBefore: jwt.NewNumericDate(past.Add(-time.Hour)), ExpiresAt: jwt.NewNumericDate(past)},
		ClaimGrants: auth.ClaimGrants{Video: &auth.VideoGrant{RoomJoin: true, Room: "r"}},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestQueryParam(t *testing.T) {
	for raw, want := range map[string]string{
		"access_token=abc":                       "abc",
		"auto_subscribe=1&access_token=a.b.c":    "a.b.c",
		"x_access_token=no&access_token=yes":     "yes",
		"access_token=a%2Eb":                     "a.b",
		"sdk=go&version=2":                       "",
		"":                                       "",
		"access_token":                           "",
		"access_token=first&access_token=second": "first",
		"access%5Ftoken=k":                       "k",
		"access_token=a;b&access_token=c":        "c",
		"access_token=%zz&access_token=d":        "d",
		"access_token=a+b":                       "a b",
	} {
		if got := queryParam(raw, "access_token"); got != want {
			t.Errorf("queryParam(%q) = %q, want %q", raw, got, want)
		}
		if q, _ := url.ParseQuery(raw); q.Get("access_token") != want {
			t.Errorf("url.ParseQuery(%q) reads %q, the test wants %q", raw, q.Get("access_token"), want)
		}
	}
}

// The JS SDK's query token goes to the node as a bearer header and leaves
// the URI of the upstream request, which reverse_proxy logs at debug level
// (Caddy's own request logs keep a copy taken before any handler: see
// README, Security).
func TestTokenMovedOutOfURI(t *testing.T) {
	_, r := twoNodes(t)
	tok := mint(t, testKey, testSecret, "standup", time.Hour)
	req := httptest.NewRequest("GET", "/rtc?access_token="+tok+"&auto_subscribe=1", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		w.WriteHeader(http.StatusSwitchingProtocols)
		return nil
	})
	if err := testHandler(t, r, true).ServeHTTP(httptest.NewRecorder(), req, next); err != nil || seen == nil {
		t.Fatalf("not proxied: %v", err)
	}
	if seen.URL.RawQuery != "auto_subscribe=1" || seen.RequestURI != "/rtc?auto_subscribe=1" || seen.Header.Get("Authorization") != "Bearer "+tok {
		t.Fatalf("query %q, URI %q, header %q", seen.URL.RawQuery, seen.RequestURI, seen.Header.Get("Authorization"))
	}
}
