package harness_test

import (
	"context"
	"testing"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// TestDirectJoin checks the harness without Caddy: a client that connects to
// node 1 directly is found in node 1's log, and Redis names the room's node.
func TestDirectJoin(t *testing.T) {
	redis := harness.StartRedis(t)
	nodes := harness.StartNodes(t, redis.Addr(), 2, harness.NodeOptions{})
	if nodes[0].ID() == nodes[1].ID() || nodes[0].IP() != "127.0.0.2" || nodes[1].HTTPAddr() != "127.0.0.3:7880" {
		t.Fatalf("nodes: %s@%s, %s@%s", nodes[0].ID(), nodes[0].IP(), nodes[1].ID(), nodes[1].HTTPAddr())
	}

	room := harness.Join(t, "ws://127.0.0.2:7880", "harness-room", "alice")
	if room.Name() != "harness-room" {
		t.Errorf("joined room %q", room.Name())
	}

	host := harness.RoomNode(context.Background(), redis.Client(), "harness-room")
	if host != nodes[0].ID() && host != nodes[1].ID() {
		t.Errorf("room_node_map[harness-room] = %q, want one of %s, %s", host, nodes[0].ID(), nodes[1].ID())
	}
	got, ok := harness.SignalNodeOf(nodes, "alice")
	if !ok || got != nodes[0].ID() {
		t.Errorf("SignalNodeOf(alice) = %q, %v; want node 1 %s", got, ok, nodes[0].ID())
	}
	if nodes[1].AcceptedSignal("alice") || nodes[0].AcceptedSignal("bob") {
		t.Error("AcceptedSignal: a node logged a WebSocket it did not accept")
	}
}
