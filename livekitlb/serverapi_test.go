package livekitlb

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// serverToken is a server SDK's token with the given grant.
func serverToken(t testing.TB, g *auth.VideoGrant) string {
	t.Helper()
	tok, err := auth.NewAccessToken(testKey, testSecret).SetVideoGrant(g).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// apiCall sends a RoomService call through h; the node (next) records the
// body it got. It returns the response, the node chosen (nil if none) and
// that body.
func apiCall(t *testing.T, h *Handler, method, contentType string, body []byte, tok string) (*httptest.ResponseRecorder, *route, []byte) {
	return apiCallAnswered(t, h, method, contentType, body, tok, http.StatusOK)
}

// apiCallAnswered is apiCall where the node answers status.
func apiCallAnswered(t *testing.T, h *Handler, method, contentType string, body []byte, tok string, status int) (*httptest.ResponseRecorder, *route, []byte) {
	t.Helper()
	req := httptest.NewRequest("POST", roomServicePrefix+method, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	var rt *route
	var got []byte
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		rt = routeFrom(r)
		got, _ = io.ReadAll(r.Body)
		if r.ContentLength != int64(len(got)) {
			t.Errorf("ContentLength %d for a body of %d bytes", r.ContentLength, len(got))
		}
		w.WriteHeader(status)
		return nil
	})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, req, next); err != nil {
		t.Fatal(err)
	}
	return w, rt, got
}

// CreateRoom is placed by the proxy (least loaded: ND_a) before it reaches
// the node, whose body is the client's, JSON or protobuf alike.
func TestCreateRoomPlacedByTheProxy(t *testing.T) {
	f, r := twoNodes(t)
	h := testHandler(t, r, true)
	tok := serverToken(t, &auth.VideoGrant{RoomCreate: true})
	pb, _ := proto.Marshal(&livekit.CreateRoomRequest{Name: "pb-room", EmptyTimeout: 30})
	for room, c := range map[string]struct {
		ct   string
		body []byte
	}{
		"json-room": {"application/json", []byte(`{"name":"json-room","empty_timeout":30}`)},
		"pb-room":   {"application/protobuf", pb},
	} {
		w, rt, got := apiCall(t, h, "CreateRoom", c.ct, c.body, tok)
		if rt == nil || rt.node.ID != "ND_a" || !rt.place || f.Room(room) != "ND_a" {
			t.Fatalf("%s: status %d, route %+v, room_node_map %q", room, w.Code, rt, f.Room(room))
		}
		if !bytes.Equal(got, c.body) {
			t.Fatalf("%s: the node got %q, not the client's body", room, got)
		}
	}
	// a room that exists goes to its node
	f.Placements["busy"] = "ND_b"
	if _, rt, _ := apiCall(t, h, "CreateRoom", "application/json", []byte(`{"name":"busy"}`), tok); rt.node.ID != "ND_b" {
		t.Fatalf("CreateRoom of a placed room went to %s", rt.node.ID)
	}
	// LiveKit refused the room (a name over its limit): the placement goes;
	// one that was there before stays
	for room, want := range map[string]string{"refused": "", "busy": "ND_b"} {
		apiCallAnswered(t, h, "CreateRoom", "application/json", []byte(`{"name":"`+room+`"}`), tok, http.StatusBadRequest)
		if got := f.Room(room); got != want {
			t.Fatalf("after a refused CreateRoom of %s, room_node_map %q, want %q", room, got, want)
		}
	}
}

// twirpError checks a refusal of a server API call is a Twirp error, which
// server SDKs report as such.
func twirpError(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	var e struct{ Code, Msg string }
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" || e.Msg == "" {
		t.Fatalf("body %q is not a Twirp error: %v", w.Body, err)
	}
}

// The calls about a room go to its node and never place it; the rest go to
// any node; grants are checked as LiveKit checks them.
func TestRoomCallsFollowTheRoom(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["standup"] = "ND_b"
	h := testHandler(t, r, true)
	admin := serverToken(t, &auth.VideoGrant{RoomAdmin: true, Room: "standup"})
	for method, body := range map[string]string{
		"ListParticipants":   `{"room":"standup"}`,
		"RemoveParticipant":  `{"room":"standup","identity":"bob"}`,
		"MutePublishedTrack": `{"room":"standup","identity":"bob","track_sid":"TR_x","muted":true}`,
		"SendData":           `{"room":"standup","data":"aGk="}`,
		"UpdateRoomMetadata": `{"room":"standup","metadata":"m"}`,
	} {
		if w, rt, _ := apiCall(t, h, method, "application/json", []byte(body), admin); rt == nil || rt.node.ID != "ND_b" || rt.place {
			t.Errorf("%s: status %d, route %+v", method, w.Code, rt)
		}
	}
	other := serverToken(t, &auth.VideoGrant{RoomAdmin: true, Room: "elsewhere"})
	if _, rt, _ := apiCall(t, h, "ListParticipants", "application/json", []byte(`{"room":"unknown"}`), serverToken(t, &auth.VideoGrant{RoomAdmin: true, Room: "unknown"})); rt == nil || f.Room("unknown") != "" {
		t.Fatal("a call about an unknown room placed it")
	}
	lister := serverToken(t, &auth.VideoGrant{RoomList: true})
	if _, rt, _ := apiCall(t, h, "ListRooms", "application/json", []byte(`{}`), lister); rt == nil {
		t.Fatal("ListRooms was not routed")
	}
	for name, c := range map[string]struct{ method, body, tok string }{
		"admin of another room": {"ListParticipants", `{"room":"standup"}`, other},
		"create without grant":  {"CreateRoom", `{"name":"new"}`, admin},
		"delete without grant":  {"DeleteRoom", `{"room":"standup"}`, admin},
		"list without grant":    {"ListRooms", `{}`, admin},
		"join token":            {"CreateRoom", `{"name":"new"}`, mint(t, testKey, testSecret, "new", 3600e9)},
		"no token":              {"CreateRoom", `{"name":"new"}`, ""},
	} {
		w, rt, _ := apiCall(t, h, c.method, "application/json", []byte(c.body), c.tok)
		if w.Code != http.StatusUnauthorized || rt != nil || f.Room("new") != "" {
			t.Errorf("%s: status %d, routed %v", name, w.Code, rt != nil)
		}
		twirpError(t, w)
	}
}

// A body the proxy cannot read is refused with a clear error and not sent on.
func TestBadServerAPIBodies(t *testing.T) {
	_, r := twoNodes(t)
	h := testHandler(t, r, true)
	tok := serverToken(t, &auth.VideoGrant{RoomCreate: true})
	for name, c := range map[string]struct {
		ct     string
		body   []byte
		status int
	}{
		"not JSON":       {"application/json", []byte(`{"name":`), http.StatusBadRequest},
		"no name":        {"application/json", []byte(`{}`), http.StatusBadRequest},
		"not protobuf":   {"application/protobuf", []byte{0xff, 0xff, 0xff}, http.StatusBadRequest},
		"form":           {"application/x-www-form-urlencoded", []byte(`name=x`), http.StatusUnsupportedMediaType},
		"over the limit": {"application/json", []byte(`{"name":"` + strings.Repeat("r", maxAPIBody) + `"}`), http.StatusRequestEntityTooLarge},
	} {
		w, rt, _ := apiCall(t, h, "CreateRoom", c.ct, c.body, tok)
		if w.Code != c.status || rt != nil {
			t.Errorf("%s: status %d (want %d), sent on %v", name, w.Code, c.status, rt != nil)
		}
		twirpError(t, w)
	}
}

// The calls read from LiveKit's descriptor include those the proxy must
// route by room, and not those that name none.
func TestRoomRequestsFromDescriptor(t *testing.T) {
	for _, m := range []string{"CreateRoom", "DeleteRoom", "ListParticipants", "GetParticipant", "RemoveParticipant",
		"MutePublishedTrack", "UpdateParticipant", "UpdateSubscriptions", "SendData", "UpdateRoomMetadata"} {
		if _, ok := roomRequests[m]; !ok {
			t.Errorf("%s is not routed by its room", m)
		}
	}
	if _, ok := roomRequests["ListRooms"]; ok {
		t.Error("ListRooms names no room")
	}
}

// apiRoom never panics, puts back exactly the body it read, and names a
// room only when the body does.
func FuzzAPIRoom(f *testing.F) {
	pb, _ := proto.Marshal(&livekit.RoomParticipantIdentity{Room: "r", Identity: "i"})
	f.Add("CreateRoom", "application/json", []byte(`{"name":"r"}`))
	f.Add("RemoveParticipant", "application/protobuf", pb)
	f.Add("ListRooms", "application/json", []byte(`{}`))
	f.Add("SendData", "application/json; charset=utf-8", []byte(`{"room":"r","data":"!"}`))
	f.Fuzz(func(t *testing.T, method, ct string, body []byte) {
		req := httptest.NewRequest("POST", "/x", bytes.NewReader(body))
		req.URL.Path = roomServicePrefix + method
		req.Header.Set("Content-Type", ct)
		room, err := apiRoom(req, method)
		_, names := roomRequests[method]
		if err == nil && names && room == "" {
			t.Fatal("a room call with no room and no error")
		}
		if err != nil && room != "" {
			t.Fatal("an error and a room")
		}
		if names && len(body) <= maxAPIBody {
			if got, _ := io.ReadAll(req.Body); !bytes.Equal(got, body) {
				t.Fatalf("body %q put back as %q", body, got)
			}
		}
	})
}

// Only joins place a room: a verified token with a room on another path
// (an agent dispatch, anything else), or a /rtc token without roomJoin,
// follows the room's placement and writes none.
func TestOnlyJoinsPlace(t *testing.T) {
	f, r := twoNodes(t)
	h := testHandler(t, r, true)
	admin := serverToken(t, &auth.VideoGrant{RoomAdmin: true, Room: "dispatched"})
	for _, req := range []*http.Request{
		httptest.NewRequest("POST", "/twirp/livekit.AgentDispatchService/CreateDispatch", strings.NewReader(`{"room":"dispatched"}`)),
		httptest.NewRequest("GET", "/anything?access_token="+admin, nil),
		httptest.NewRequest("GET", "/rtc?access_token="+admin, nil),
	} {
		req.Header.Set("Authorization", "Bearer "+admin)
		if _, rt := serve(t, h, req); rt == nil || rt.place || f.Room("dispatched") != "" {
			t.Fatalf("%s %s placed the room (route %+v)", req.Method, req.URL.Path, rt)
		}
	}
	if _, rt := serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "dispatched", 3600e9), nil)); rt == nil || !rt.place || f.Room("dispatched") == "" {
		t.Fatal("a join did not place its room")
	}
}
