package failover

import (
	"fmt"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
)

// TestDrainingNode: node A, hosting room R with a connected participant, gets
// SIGTERM. LiveKit then drains (pkg/service/server.go Stop: the node turns
// SHUTTING_DOWN in Redis and stays up, checking every 5 s, while it has
// participants). Meanwhile new rooms through livekit_lb all go to node B,
// and a new participant of R still joins R on A. Once R's participants
// leave, A exits and the next join of R lands on B.
func TestDrainingNode(t *testing.T) {
	c := startCluster(t, 2)
	caddy := c.StartProxy(t, harness.LB{})
	url := caddy.WS()

	const room = "draining"
	first := harness.MustConnect(t, url, room, "draining-first", connectTimeout)
	a := c.NodeByID(c.RoomNode(room))
	if a == nil {
		t.Fatalf("room_node_map[%s] = %s, not a running node", room, c.Name(c.RoomNode(room)))
	}
	b := c.Other(a)
	aID, bID := a.ID(), b.ID()

	termAt := time.Now()
	a.Term()
	if !harness.Poll(10*time.Second, func() bool { st, ok := c.NodeState(aID); return ok && st == livekit.NodeState_SHUTTING_DOWN }) {
		t.Fatalf("%s not SHUTTING_DOWN in Redis 10 s after SIGTERM", c.Name(aID))
	}
	if !harness.Poll(10*time.Second, func() bool {
		return len(caddy.Logged("livekit node", "node", aID, "state", livekit.NodeState_SHUTTING_DOWN.String())) > 0
	}) {
		t.Fatalf("Caddy never logged %s as SHUTTING_DOWN", c.Name(aID))
	}
	t.Logf("SIGTERM -> the proxy sees %s draining: %v", c.Name(aID), time.Since(termAt).Round(time.Millisecond))

	for i := range 10 {
		r := fmt.Sprintf("while-draining-%02d", i+1)
		cl := harness.MustConnect(t, url, r, r+"-p", connectTimeout)
		if at := c.RoomNode(r); at != bID {
			t.Errorf("new room %s placed on %s while %s drains; want %s", r, c.Name(at), c.Name(aID), c.Name(bID))
		}
		if sig := c.SignalNode(cl.Identity); sig != bID {
			t.Errorf("%s signalled through %s; want %s", cl.Identity, c.Name(sig), c.Name(bID))
		}
	}

	late := harness.MustConnect(t, url, room, "draining-late", connectTimeout)
	if at := c.RoomNode(room); at != aID {
		t.Errorf("room_node_map[%s] = %s while its node drains; want %s", room, c.Name(at), c.Name(aID))
	}
	if sig := c.SignalNode(late.Identity); sig != aID {
		t.Errorf("%s (room %s) signalled through %s; want the draining %s", late.Identity, room, c.Name(sig), c.Name(aID))
	}
	if got := late.LK.ServerInfo().GetNodeId(); got != aID {
		t.Errorf("%s's JoinResponse names %s; want %s", late.Identity, c.Name(got), c.Name(aID))
	}
	if a.WaitExit(10 * time.Millisecond) {
		t.Fatalf("%s exited while %s had participants", c.Name(aID), room)
	}
	if st, ok := c.NodeState(aID); !ok || st != livekit.NodeState_SHUTTING_DOWN {
		t.Errorf("%s: state %v (in Redis: %v) after the late join; want SHUTTING_DOWN", c.Name(aID), st, ok)
	}

	// the drain ends: R's participants leave, A exits, R moves on
	first.LK.Disconnect()
	late.LK.Disconnect()
	left := time.Now()
	if !a.WaitExit(30 * time.Second) {
		t.Fatalf("%s still running 30 s after %s's last participant left", c.Name(aID), room)
	}
	t.Logf("last participant left -> %s exited: %v (LiveKit checks every 5 s)", c.Name(aID), time.Since(left).Round(time.Millisecond))
	after := harness.MustConnect(t, url, room, "draining-after", connectTimeout)
	if at := c.RoomNode(room); at != bID {
		t.Errorf("room_node_map[%s] = %s after %s exited; want %s", room, c.Name(at), aID, c.Name(bID))
	}
	if sig := c.SignalNode(after.Identity); sig != bID {
		t.Errorf("%s signalled through %s after %s exited; want %s", after.Identity, c.Name(sig), aID, c.Name(bID))
	}
}
