package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// httpClient bounds every plain request of these tests: a proxy that hangs
// fails the test instead of stalling it.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// jsonError checks that resp is status with a JSON body {"error": "..."} and
// returns the message.
func jsonError(t *testing.T, what string, resp *http.Response, status int) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Errorf("%s: reading body: %v", what, err)
		return ""
	}
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d; body %q", what, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json; body %q", what, ct, body)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("%s: body %q is not JSON: %v", what, body, err)
		return ""
	}
	msg, _ := e["error"].(string)
	if msg == "" {
		t.Errorf(`%s: body %s has no "error" message`, what, body)
	}
	return msg
}

// TestBadTokenRefusedWithJSON: with api_key/api_secret set, the proxy itself
// refuses tokens that LiveKit would refuse, with 401 and a JSON error, and
// lets good ones through.
func TestBadTokenRefusedWithJSON(t *testing.T) {
	c := startCluster(t, 2) // every livekit_lb of the tests verifies

	otherSecret := harness.TokenWith(harness.APIKey, "another-secret-of-at-least-32-characters", "vip", "mallory")
	otherKey := harness.TokenWith("otherkey", harness.APISecret, "vip", "mallory")
	cases := []struct {
		name   string
		path   string
		bearer string
	}{
		{name: "garbage", path: "/rtc?access_token=garbage"},
		{name: "signed with another secret", path: "/rtc?access_token=" + url.QueryEscape(otherSecret)},
		{name: "another secret, as bearer", path: "/rtc", bearer: otherSecret},
		{name: "issued for another key", path: "/rtc?access_token=" + url.QueryEscape(otherKey)},
		{name: "no token", path: "/rtc"},
		{name: "validate, another secret", path: "/rtc/validate?access_token=" + url.QueryEscape(otherSecret)},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(http.MethodGet, c.proxy.HTTP()+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+tc.bearer)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		msg := jsonError(t, tc.name, resp, http.StatusUnauthorized)
		t.Logf("%s: 401 %q", tc.name, msg)
	}

	// an SDK client with a token from another secret does not get in
	if lk, err := harness.TryJoinWithToken(c.proxy.WS(), otherSecret); err == nil {
		lk.Disconnect()
		t.Error("a client with a token signed with another secret joined through Caddy")
	}
	for _, n := range c.Nodes {
		if n.AcceptedSignal("mallory") {
			t.Errorf("%s accepted mallory's signal WebSocket", c.Name(n.ID()))
		}
	}

	lk := harness.Join(t, c.proxy.WS(), "vip", "alice")
	host := c.RoomNode("vip")
	if got := c.MustSignalNode(t, "alice"); got != host || c.NodeByID(host) == nil {
		t.Errorf("alice signalled through %s; room_node_map[vip] = %s", c.Name(got), c.Name(host))
	}
	if got := lk.ServerInfo().GetNodeId(); got != host {
		t.Errorf("alice's JoinResponse names %s; room_node_map[vip] = %s", c.Name(got), c.Name(host))
	}
}

// TestRequestsWithoutRoomReachANode: requests whose token names no room
// (RoomService API) or that carry no token go to some live node.
func TestRequestsWithoutRoomReachANode(t *testing.T) {
	c := startCluster(t, 2)
	harness.Join(t, c.proxy.WS(), "listed", "lister")

	rs := lksdk.NewRoomServiceClient(c.proxy.HTTP(), harness.APIKey, harness.APISecret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := rs.ListRooms(ctx, &livekit.ListRoomsRequest{})
	if err != nil {
		t.Fatalf("RoomService.ListRooms through Caddy: %v", err)
	}
	var names []string
	for _, r := range res.GetRooms() {
		names = append(names, r.GetName())
	}
	t.Logf("ListRooms through Caddy: %v", names)
	if !slices.Contains(names, "listed") {
		t.Errorf("ListRooms through Caddy = %v, want it to include the room joined through Caddy", names)
	}

	// a request without any token: LiveKit's own readiness answer from a node
	resp, err := httpClient.Get(c.proxy.HTTP() + "/")
	if err != nil {
		t.Fatalf("GET / through Caddy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET / through Caddy: %d %q, want 200 from a node", resp.StatusCode, body)
	}
}

// TestRedisDownGivesJSON503: while Redis is down, a join of a new room gets a
// prompt 503 with a JSON error instead of hanging, and Caddy stays up.
func TestRedisDownGivesJSON503(t *testing.T) {
	c := startCluster(t, 2, "redis_timeout 500ms")
	harness.Join(t, c.proxy.WS(), "before", "before-outage") // the proxy is loaded and routing

	c.Redis.Kill()
	start := time.Now()
	if lk, err := harness.TryJoin(c.proxy.WS(), "new-room-1", "during-outage"); err == nil {
		lk.Disconnect()
		t.Error("a join of a new room succeeded through Caddy while Redis was down")
	} else {
		t.Logf("SDK join during the outage failed after %v: %v", time.Since(start), err)
	}

	start = time.Now()
	resp, err := httpClient.Get(c.proxy.HTTP() + "/rtc?access_token=" + url.QueryEscape(harness.Token("new-room-2", "raw-client")))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("GET /rtc through Caddy with Redis down (after %v): %v", elapsed, err)
	}
	retryAfter := resp.Header.Get("Retry-After")
	msg := jsonError(t, "GET /rtc with Redis down", resp, http.StatusServiceUnavailable)
	t.Logf("GET /rtc with Redis down: 503 %q (Retry-After %q) in %v", msg, retryAfter, elapsed)
	if !strings.Contains(strings.ToLower(msg), "redis") {
		t.Errorf("503 message %q does not say that Redis is the problem", msg)
	}

	// Caddy is still up and answers
	resp, err = httpClient.Get(c.proxy.HTTP() + "/")
	if err != nil {
		t.Fatalf("GET / through Caddy after the Redis outage began: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("GET / with Redis down: %d %q", resp.StatusCode, strings.TrimSpace(string(body)))
}

// TestVerifyOffNeverPlaces: with `verify off`, tokens nobody checked (here
// signed with a secret LiveKit does not know, for made-up 10 KB room names)
// are passed to LiveKit, which refuses them, and leave nothing in
// room_node_map; a real token still joins, and LiveKit places its room.
func TestVerifyOffNeverPlaces(t *testing.T) {
	c := startCluster(t, 2, "verify off")
	forged := "another-secret-of-at-least-32-characters"
	for i := range 200 {
		room := fmt.Sprintf("made-up-%d-%s", i, strings.Repeat("x", 10<<10))
		req, _ := http.NewRequest(http.MethodGet, c.proxy.HTTP()+"/rtc/validate", nil)
		req.Header.Set("Authorization", "Bearer "+harness.TokenWith(harness.APIKey, forged, room, "mallory"))
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged token: LiveKit answered %d", resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := c.Redis.Client().HLen(ctx, harness.RoomNodeMapKey).Result(); err != nil || n != 0 {
		t.Fatalf("room_node_map holds %d entries after 200 unverified tokens (%v)", n, err)
	}
	harness.Join(t, c.proxy.WS(), "real", "alice")
	if c.NodeByID(c.RoomNode("real")) == nil {
		t.Fatalf("real room placed on %s", c.Name(c.RoomNode("real")))
	}
}
