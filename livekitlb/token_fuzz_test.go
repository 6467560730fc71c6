package livekitlb

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// queryParam must read the query exactly as url.ParseQuery (LiveKit's
// r.FormValue) does, whatever a client sends.
func FuzzQueryParam(f *testing.F) {
	for _, s := range []string{
		"access_token=abc", "a=1&access_token=x.y.z", "access%5Ftoken=k", "access_token=a;b&access_token=c",
		"access_token=%zz&access_token=d", "access_token=a+b%20c", "&&access_token&access_token=", "access_token=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		if got, want := queryParam(raw, "access_token"), q.Get("access_token"); got != want {
			t.Fatalf("queryParam(%q) = %q; url.ParseQuery reads %q", raw, got, want)
		}
	})
}

// roomFromToken reads any string without panicking, and reads the room of
// a real token as verifying it does.
func FuzzRoomFromToken(f *testing.F) {
	f.Add(mint(f, testKey, testSecret, "standup", time.Hour))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJ2aWRlbyI6eyJyb29tIjoxfX0.x")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		room, err := roomFromToken(raw)
		if g, verr := verifyToken(raw, testKey, testSecret); verr == nil && (err != nil || room != roomOf(g)) {
			t.Fatalf("verified token names %q; unverified read gives %q, %v", roomOf(g), room, err)
		}
	})
}

// Whatever the query, tokenToHeader leaves no access_token in the URI and
// hands LiveKit the token it would have read from the query.
func FuzzTokenToHeader(f *testing.F) {
	for _, s := range []string{"access_token=abc&auto_subscribe=1", "a=1&access%5Ftoken=x&access_token=y", "access_token=a;b", "token=1", "x=%zz&access_token=k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/rtc", nil)
		r.URL.RawQuery = raw
		r.RequestURI = r.URL.RequestURI()
		want := queryParam(raw, "access_token")
		tokenToHeader(r)
		for _, kv := range strings.Split(r.URL.RawQuery, "&") {
			k, _, _ := strings.Cut(kv, "=")
			if uk, err := url.QueryUnescape(k); err == nil && uk == "access_token" {
				t.Fatalf("%q: an access_token is left in %q", raw, r.URL.RawQuery)
			}
		}
		if r.RequestURI != r.URL.RequestURI() {
			t.Fatalf("%q: RequestURI %q, URL %q", raw, r.RequestURI, r.URL.RequestURI())
		}
		if got, _ := tokenFromRequest(r); got != want {
			t.Fatalf("%q: LiveKit would read %q after the move, %q before", raw, got, want)
		}
	})
}
