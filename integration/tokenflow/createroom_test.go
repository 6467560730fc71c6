// Package tokenflow tests the create-room endpoint end to end: our Caddy with
// livekit_token and livekit_lb, real redis-server, real livekit-server nodes
// and a server-sdk-go client that joins with what the endpoint returned.
package tokenflow

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const frontendKey = "frontend-key-for-the-integration-tests"

// stack is one test's Redis, LiveKit nodes and Caddy with the create-room
// endpoint and livekit_lb.
type stack struct {
	*harness.Stack
	proxy *harness.Proxy
}

func start(t *testing.T, nodes int) *stack {
	s := harness.StartStack(t, nodes, harness.NodeOptions{})
	lb := harness.LB{Redis: s.Redis.Addr(), Options: []string{"load_measure rooms"}}
	return &stack{Stack: s, proxy: harness.StartSite(t, func(addr string) string {
		return harness.TokenSite(addr, lb, "auth_key "+frontendKey, "empty_timeout 2m", "max_participants 7")
	})}
}

type created struct {
	RoomName  string `json:"room_name"`
	Token     string `json:"token"`
	URL       string `json:"url"`
	ServerURL string `json:"server_url"`
	Error     string `json:"error"`
}

func (s *stack) createRoom(t *testing.T, key, body string) (int, created) {
	t.Helper()
	status, raw, err := harness.CreateRoom(s.proxy.HTTP(), key, body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var c created
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("status %d, body %q is not JSON", status, raw)
	}
	return status, c
}

// Create-room through Caddy, then join with the returned url and token: the
// room exists before the join, on the node room_node_map names, and the
// client's signal WebSocket lands on that node.
func TestCreateRoomThenJoin(t *testing.T) {
	s := start(t, 2)
	rooms := []string{"alpha", "beta", "gamma", "delta"}
	hosts := map[string]int{}
	for _, room := range rooms {
		status, c := s.createRoom(t, frontendKey, fmt.Sprintf(`{"room_name":%q,"user_name":"Alice"}`, room))
		if status != 200 {
			t.Fatalf("create %s: %d %s", room, status, c.Error)
		}
		if c.RoomName != room || c.URL != s.proxy.WS() || c.ServerURL != c.URL {
			t.Fatalf("response %+v, want the proxy's URL %s", c, s.proxy.WS())
		}
		node := s.RoomNode(room)
		if node == "" {
			t.Fatalf("room %s not placed in room_node_map", room)
		}
		hosts[node]++

		// the room exists, with our settings, before anyone joins
		rs := lksdk.NewRoomServiceClient(s.proxy.HTTP(), harness.APIKey, harness.APISecret)
		list, err := rs.ListRooms(context.Background(), &livekit.ListRoomsRequest{Names: []string{room}})
		if err != nil || len(list.Rooms) != 1 {
			t.Fatalf("ListRooms %s: %v %v", room, list, err)
		}
		if r := list.Rooms[0]; r.MaxParticipants != 7 || r.EmptyTimeout != 120 {
			t.Fatalf("room %s created with max_participants %d empty_timeout %d, want 7 and 120", room, r.MaxParticipants, r.EmptyTimeout)
		}

		harness.JoinWithToken(t, c.URL, c.Token)
		v, _ := auth.ParseAPIToken(c.Token)
		got, ok := harness.SignalNodeOf(s.Nodes, v.Identity())
		if !ok || got != node {
			t.Fatalf("%s of room %s connected on %q, room_node_map says %q", v.Identity(), room, got, node)
		}
		if s.RoomNode(room) != node {
			t.Fatalf("room %s moved after the join", room)
		}
	}
	if len(hosts) != 2 {
		t.Fatalf("4 new rooms all placed on one node: %v", hosts)
	}
	t.Logf("rooms per node: %v", hosts)
}

func TestCreateRoomRefusals(t *testing.T) {
	s := start(t, 1)
	if status, c := s.createRoom(t, "", `{"room_name":"r","user_name":"u"}`); status != 401 || c.Error == "" {
		t.Fatalf("no key: %d %+v", status, c)
	}
	if status, c := s.createRoom(t, "wrong", `{"room_name":"r","user_name":"u"}`); status != 401 || c.Error == "" {
		t.Fatalf("wrong key: %d %+v", status, c)
	}
	if status, c := s.createRoom(t, frontendKey, `{"room_name":"r"`); status != 400 || c.Error == "" {
		t.Fatalf("malformed: %d %+v", status, c)
	}
	if status, c := s.createRoom(t, frontendKey, `{"room_name":"bad\u0000name","user_name":"u"}`); status != 400 || c.Error == "" {
		t.Fatalf("bad name: %d %+v", status, c)
	}
	if s.RoomNode("r") != "" || s.RoomNode("bad\x00name") != "" {
		t.Fatal("a refused request placed a room")
	}
}

// With every node gone, create-room answers a JSON error and leaves no
// placement behind.
func TestCreateRoomNodesGone(t *testing.T) {
	s := start(t, 2)
	for _, n := range s.Nodes {
		n.Kill()
	}
	status, c := s.createRoom(t, frontendKey, `{"room_name":"orphan","user_name":"u"}`)
	if status != 502 && status != 503 {
		t.Fatalf("status %d %+v, want 502 or 503", status, c)
	}
	if c.Error == "" || c.Token != "" {
		t.Fatalf("response %+v", c)
	}
	if n := s.RoomNode("orphan"); n != "" {
		t.Fatalf("room_node_map[orphan] = %s after a failed create-room", n)
	}
}
