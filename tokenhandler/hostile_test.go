package tokenhandler

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/livekit/protocol/auth"

	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

// JSON keys are matched exactly and once: encoding/json alone would take
// ROOM_NAME for room_name and let a second copy win.
func TestBodyKeysExactAndOnce(t *testing.T) {
	f := newFixture(t)
	for name, body := range map[string]string{
		"other case": `{"ROOM_NAME":"a","user_name":"u"}`,
		"twice":      `{"room_name":"a","room_name":"b","user_name":"u"}`,
		"unknown":    `{"room_name":"a","user_name":"u","admin":true}`,
		"not object": `["room_name"]`,
		"trailing":   `{"room_name":"a","user_name":"u"} {}`,
		"wrong type": `{"room_name":1,"user_name":"u"}`,
		"empty":      ``,
	} {
		w := f.do(t, "POST", body, nil)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d", name, w.Code)
			continue
		}
		if msg := errorOf(t, w); strings.Contains(msg, `"b"`) {
			t.Errorf("%s: error echoes the body: %s", name, msg)
		}
	}
	if len(f.node.calls) != 0 {
		t.Fatalf("refused bodies created rooms: %v", f.node.calls)
	}
}

// A ttl that overflows a Duration must not wrap into a valid or an
// expired token; metadata is bounded so that every token fits a URL.
func TestOutOfRangeValuesRefused(t *testing.T) {
	f := newFixture(t)
	f.h.AllowCallerMetadata = true
	for name, body := range map[string]string{
		"ttl 9223372037":   `{"room_name":"a","user_name":"u","ttl":9223372037}`,
		"ttl 18446744074":  `{"room_name":"a","user_name":"u","ttl":18446744074}`,
		"ttl over max":     `{"room_name":"a","user_name":"u","ttl":86401}`,
		"negative ttl":     `{"room_name":"a","user_name":"u","ttl":-5}`,
		"60 KB metadata":   `{"room_name":"a","user_name":"u","metadata":"` + strings.Repeat("x", 60<<10) + `"}`,
		"4097 B metadata":  `{"room_name":"a","user_name":"u","metadata":"` + strings.Repeat("x", maxMetadata+1) + `"}`,
		"float ttl":        `{"room_name":"a","user_name":"u","ttl":1.5}`,
		"huge integer ttl": `{"room_name":"a","user_name":"u","ttl":1e30}`,
	} {
		if w := f.do(t, "POST", body, nil); w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d", name, w.Code)
		}
	}
	// the largest accepted token still fits an 8 KiB request line
	long := strings.Repeat("名", maxRoomName/3)
	w := f.do(t, "POST", `{"room_name":"`+long+`","user_name":"`+long+`","metadata":"`+strings.Repeat("x", maxMetadata)+`","ttl":86400}`, nil)
	if w.Code != 200 {
		t.Fatalf("largest request: %d %s", w.Code, w.Body)
	}
	var got createResponse
	_ = json.Unmarshal(w.Body.Bytes(), &got)
	if n := len("GET /rtc?access_token=" + got.Token + "&auto_subscribe=1&sdk=js&version=2.9.0&protocol=16 HTTP/1.1"); n > 8<<10 {
		t.Fatalf("largest token makes a %d-byte request line", n)
	}
}

// The authenticated user decides the identity; a caller may choose the
// identity or metadata only where the config allows it.
func TestIdentityIsTheAuthenticatedUsers(t *testing.T) {
	f := newFixture(t)
	f.h.IdentityHeader = "Remote-User"
	identity := func(w interface{ Result() *http.Response }, body []byte) string {
		var got createResponse
		if err := json.Unmarshal(body, &got); err != nil || got.Token == "" {
			t.Fatalf("no token: %s", body)
		}
		v, _ := auth.ParseAPIToken(got.Token)
		return v.Identity()
	}
	w := f.do(t, "POST", `{"room_name":"a","user_name":"Alice"}`, func(r *http.Request) {
		r.Header.Del("Authorization")
		r.Header.Set("Remote-User", "alice@example.com")
	})
	if id := identity(w, w.Body.Bytes()); id != "alice@example.com" {
		t.Fatalf("identity %q, want the authenticated user", id)
	}
	for name, body := range map[string]string{
		"identity": `{"room_name":"a","user_name":"Alice","identity":"ceo"}`,
		"metadata": `{"room_name":"a","user_name":"Alice","metadata":"{\"role\":\"admin\"}"}`,
	} {
		w := f.do(t, "POST", body, func(r *http.Request) { r.Header.Set("Remote-User", "alice@example.com") })
		if w.Code != http.StatusBadRequest {
			t.Errorf("caller-chosen %s without allow_caller_%s: status %d", name, name, w.Code)
		}
	}
	f.h.AllowCallerIdentity = true
	w = f.do(t, "POST", `{"room_name":"a","user_name":"Bot","identity":"recorder-1"}`, nil)
	if id := identity(w, w.Body.Bytes()); id != "recorder-1" {
		t.Fatalf("allowed caller identity: %q", id)
	}
	// a bad user name from the auth layer is refused, not minted
	w = f.do(t, "POST", `{"room_name":"a","user_name":"A"}`, func(r *http.Request) {
		r.Header.Del("Authorization")
		r.Header.Set("Remote-User", " padded ")
	})
	if w.Code != http.StatusBadRequest {
		t.Fatalf("padded user name: %d", w.Code)
	}
}

// Left out, ttl takes the default or max_ttl, whichever is lower.
func TestDefaultTTLFitsMaxTTL(t *testing.T) {
	h := Handler{Cluster: livekitlb.Cluster{APIKey: key, APISecret: secret}, apiKey: key, apiSecret: secret, MaxTTL: caddy.Duration(time.Hour)}
	h.setDefaults()
	if h.TTL != caddy.Duration(time.Hour) {
		t.Fatalf("ttl %v with max_ttl 1h", time.Duration(h.TTL))
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("max_ttl 1h alone: %v", err)
	}
}

// Whatever the body, parseRequest never panics, and what it accepts means
// the same to encoding/json.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"room_name":"a","user_name":"u"}`, `{"ROOM_NAME":"a"}`, `{"room_name":"a","room_name":"b"}`,
		`{"room_name":"a","user_name":"u","ttl":9223372037,"metadata":"m","identity":"i"}`, `{}`, `[]`, `{"ttl":null}`,
		`{"room_name":"\u00e9"}`, `{"a":{"b":[1,2]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, herr := parseRequest(body)
		if herr != nil {
			if herr.status != http.StatusBadRequest {
				t.Fatalf("status %d", herr.status)
			}
			return
		}
		var std createRequest
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		if std != *req {
			t.Fatalf("parsed %+v; encoding/json reads %+v", *req, std)
		}
	})
}
