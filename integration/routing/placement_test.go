package routing

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// TestParticipantsLandOnTheirRoomsNode: every participant's signal WebSocket
// is accepted by the node that hosts its room, as room_node_map and the
// JoinResponse's server info both say.
func TestParticipantsLandOnTheirRoomsNode(t *testing.T) {
	c := startCluster(t, 3)

	type participant struct {
		room, identity string
		lk             *lksdk.Room
	}
	var all []participant
	for _, room := range []string{"land-a", "land-b", "land-c", "land-d"} {
		// a room's participants arrive together: the proxy must place the
		// room once and send all three to the same node
		joined := make([]participant, 3)
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range joined {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := participant{room: room, identity: fmt.Sprintf("%s-p%d", room, i+1)}
				p.lk, errs[i] = harness.TryJoin(c.proxy.WS(), room, p.identity)
				joined[i] = p
			}()
		}
		wg.Wait()
		for i, p := range joined {
			if errs[i] != nil {
				t.Fatalf("join %s as %s through Caddy: %v", p.room, p.identity, errs[i])
			}
			t.Cleanup(p.lk.Disconnect)
		}
		all = append(all, joined...)
	}

	perNode := map[string]int{}
	seen := map[string]bool{}
	for _, p := range all {
		host := c.RoomNode(p.room)
		if c.NodeByID(host) == nil {
			t.Errorf("room_node_map[%s] = %s, not one of the nodes", p.room, c.Name(host))
			continue
		}
		if !seen[p.room] {
			seen[p.room] = true
			perNode[host]++
		}
		if got := c.MustSignalNode(t, p.identity); got != host {
			t.Errorf("%s (room %s) signalled through %s; the room is on %s", p.identity, p.room, c.Name(got), c.Name(host))
		}
		if got := p.lk.ServerInfo().GetNodeId(); got != host {
			t.Errorf("%s (room %s): JoinResponse server_info.node_id = %s; room_node_map says %s", p.identity, p.room, c.Name(got), c.Name(host))
		}
	}
	t.Logf("rooms per node: %s", c.Distribution(perNode))
}

// TestNewRoomsSpreadByLoad: new rooms created one after another through the
// proxy spread over the nodes by their room counts (stats plus the proxy's
// own pending placements).
func TestNewRoomsSpreadByLoad(t *testing.T) {
	c := startCluster(t, 3)

	const rooms = 20
	name := func(i int) string { return fmt.Sprintf("spread-%02d", i+1) }
	for i := range rooms {
		harness.Join(t, c.proxy.WS(), name(i), "solo-"+name(i)) // stays connected until the test ends
	}

	count := map[string]int{}
	for i := range rooms {
		room := name(i)
		host := c.RoomNode(room)
		count[host]++
		if c.NodeByID(host) == nil {
			t.Errorf("room_node_map[%s] = %s, not one of the nodes", room, c.Name(host))
			continue
		}
		if got := c.MustSignalNode(t, "solo-"+room); got != host {
			t.Errorf("solo-%s signalled through %s; the room is on %s", room, c.Name(got), c.Name(host))
		}
	}
	t.Logf("%d rooms per node: %s", rooms, c.Distribution(count))
	for _, n := range c.Nodes {
		if k := count[n.ID()]; k < 5 || k > 8 {
			t.Errorf("%s hosts %d of %d rooms, want 5..8", c.Name(n.ID()), k, rooms)
		}
	}
}

// TestPlacedRoomWinsOverLoad: a room that room_node_map already assigns to
// a node goes there, even when that node is clearly the more loaded one.
func TestPlacedRoomWinsOverLoad(t *testing.T) {
	c := startCluster(t, 2)
	light, busy := c.Nodes[0], c.Nodes[1]

	const busyRooms = 3
	for i := range busyRooms {
		room := fmt.Sprintf("busy-%d", i+1)
		c.Place(t, room, busy.ID())
		identity := "p-" + room
		harness.Join(t, c.proxy.WS(), room, identity)
		if got := c.MustSignalNode(t, identity); got != busy.ID() {
			t.Fatalf("%s (pre-placed on %s) signalled through %s", identity, c.Name(busy.ID()), c.Name(got))
		}
	}
	stats, ok := c.waitNodeRooms(map[string]int32{busy.ID(): busyRooms}, 15*time.Second)
	if !ok {
		t.Fatalf("node stats in Redis never showed %d rooms on %s: %v", busyRooms, c.Name(busy.ID()), stats)
	}
	if stats[light.ID()] != 0 {
		t.Fatalf("%s has %d rooms, want 0", c.Name(light.ID()), stats[light.ID()])
	}
	time.Sleep(2 * time.Second) // two refresh intervals: the proxy now sees these stats
	t.Logf("rooms in node stats: %s %d, %s %d", c.Name(light.ID()), stats[light.ID()], c.Name(busy.ID()), stats[busy.ID()])

	c.Place(t, "meeting", busy.ID())
	meeting := harness.Join(t, c.proxy.WS(), "meeting", "meeting-host")
	c.checkLanded(t, meeting, "meeting", "meeting-host", busy.ID(), "where meeting was placed")

	// control: without a placement, load decides, so a new room goes to the
	// lightly loaded node; otherwise the assertions above prove nothing
	harness.Join(t, c.proxy.WS(), "control", "control-p")
	if got := c.RoomNode("control"); got != light.ID() {
		t.Errorf("new room control placed on %s, want the less loaded %s", c.Name(got), c.Name(light.ID()))
	}
	if got := c.MustSignalNode(t, "control-p"); got != light.ID() {
		t.Errorf("control-p signalled through %s, want %s", c.Name(got), c.Name(light.ID()))
	}
}

// TestDeadNodesRoomIsReplaced: when the node of a room dies, the next join
// of the room through the proxy re-places the room on a live node (a
// compare-and-set on room_node_map) and lands there, without waiting for
// the dead node's stats to go stale.
func TestDeadNodesRoomIsReplaced(t *testing.T) {
	c := startCluster(t, 2)

	first, err := harness.TryJoin(c.proxy.WS(), "r", "before-crash")
	if err != nil {
		t.Fatalf("first join of r through Caddy: %v", err)
	}
	x := c.MustSignalNode(t, "before-crash")
	if host := c.RoomNode("r"); host != x {
		first.Disconnect()
		t.Fatalf("before-crash signalled through %s; room_node_map[r] = %s", c.Name(x), c.Name(host))
	}
	first.Disconnect()
	dead := c.NodeByID(x)
	other := c.Other(dead)

	killed := time.Now()
	dead.Kill()
	second, err := harness.TryJoin(c.proxy.WS(), "r", "after-crash")
	elapsed := time.Since(killed)
	if err != nil {
		t.Fatalf("join of r through Caddy %v after %s was killed: %v", elapsed, c.Name(x), err)
	}
	t.Cleanup(second.Disconnect)
	t.Logf("kill of %s -> successful join of r: %v", c.Name(x), elapsed)

	c.checkLanded(t, second, "r", "after-crash", other.ID(), "the surviving node")
	if len(c.proxy.Logged("room re-placed", "room", "r", "from", x, "to", other.ID())) == 0 {
		t.Errorf("Caddy did not log the re-placement of r from %s to %s", x, other.ID())
	}
}

// checkLanded: identity's signal WebSocket, room_node_map[room] and the
// JoinResponse of lk all name want (why: what want is, for messages).
func (c *cluster) checkLanded(t *testing.T, lk *lksdk.Room, room, identity, want, why string) {
	t.Helper()
	if got := c.MustSignalNode(t, identity); got != want {
		t.Errorf("%s signalled through %s; want %s, %s", identity, c.Name(got), why, c.Name(want))
	}
	if got := c.RoomNode(room); got != want {
		t.Errorf("room_node_map[%s] = %s after the join; want %s, %s", room, c.Name(got), why, c.Name(want))
	}
	if got := lk.ServerInfo().GetNodeId(); got != want {
		t.Errorf("%s's JoinResponse names %s; want %s, %s", identity, c.Name(got), why, c.Name(want))
	}
}
