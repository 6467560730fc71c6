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
	addr := harness.FreeAddr(t)
	caddy := harness.StartCaddy(t, lbSite(addr, c.redis.Addr()))
	url := "ws://" + addr

	const room = "draining"
	first := mustConnect(t, url, room, "draining-first")
	a := c.nodeByID(c.roomNode(room))
	if a == nil {
		t.Fatalf("room_node_map[%s] = %s, not a running node", room, c.name(c.roomNode(room)))
	}
	b := c.nodes[0]
	if b == a {
		b = c.nodes[1]
	}
	aID, bID := a.ID(), b.ID()

	termAt := time.Now()
	a.Term()
	if !harness.Poll(10*time.Second, func() bool { st, ok := c.nodeState(aID); return ok && st == livekit.NodeState_SHUTTING_DOWN }) {
		t.Fatalf("%s not SHUTTING_DOWN in Redis 10 s after SIGTERM", c.name(aID))
	}
	if !harness.Poll(10*time.Second, func() bool { return loggedNodeState(caddy.Logs(), aID, livekit.NodeState_SHUTTING_DOWN) }) {
		t.Fatalf("Caddy never logged %s as SHUTTING_DOWN", c.name(aID))
	}
	t.Logf("SIGTERM -> the proxy sees %s draining: %v", c.name(aID), time.Since(termAt).Round(time.Millisecond))

	for i := range 10 {
		r := fmt.Sprintf("while-draining-%02d", i+1)
		cl := mustConnect(t, url, r, r+"-p")
		if at := c.roomNode(r); at != bID {
			t.Errorf("new room %s placed on %s while %s drains; want %s", r, c.name(at), c.name(aID), c.name(bID))
		}
		if sig := c.signalNode(cl.identity); sig != bID {
			t.Errorf("%s signalled through %s; want %s", cl.identity, c.name(sig), c.name(bID))
		}
	}

	late := mustConnect(t, url, room, "draining-late")
	if at := c.roomNode(room); at != aID {
		t.Errorf("room_node_map[%s] = %s while its node drains; want %s", room, c.name(at), c.name(aID))
	}
	if sig := c.signalNode(late.identity); sig != aID {
		t.Errorf("%s (room %s) signalled through %s; want the draining %s", late.identity, room, c.name(sig), c.name(aID))
	}
	if got := late.lk.ServerInfo().GetNodeId(); got != aID {
		t.Errorf("%s's JoinResponse names %s; want %s", late.identity, c.name(got), c.name(aID))
	}
	if a.WaitExit(10 * time.Millisecond) {
		t.Fatalf("%s exited while %s had participants", c.name(aID), room)
	}
	if st, ok := c.nodeState(aID); !ok || st != livekit.NodeState_SHUTTING_DOWN {
		t.Errorf("%s: state %v (in Redis: %v) after the late join; want SHUTTING_DOWN", c.name(aID), st, ok)
	}

	// the drain ends: R's participants leave, A exits, R moves on
	first.lk.Disconnect()
	late.lk.Disconnect()
	left := time.Now()
	if !a.WaitExit(30 * time.Second) {
		t.Fatalf("%s still running 30 s after %s's last participant left", c.name(aID), room)
	}
	t.Logf("last participant left -> %s exited: %v (LiveKit checks every 5 s)", c.name(aID), time.Since(left).Round(time.Millisecond))
	after := mustConnect(t, url, room, "draining-after")
	if at := c.roomNode(room); at != bID {
		t.Errorf("room_node_map[%s] = %s after %s exited; want %s", room, c.name(at), aID, c.name(bID))
	}
	if sig := c.signalNode(after.identity); sig != bID {
		t.Errorf("%s signalled through %s after %s exited; want %s", after.identity, c.name(sig), aID, c.name(bID))
	}
}
