package failover

import (
	"fmt"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestPausedNode: the node hosting a room is frozen (SIGSTOP): it still
// accepts TCP connections but answers nothing. A new participant keeps
// trying to join the room through livekit_lb; the time from the pause to
// the first successful join is measured. Asserted: the join succeeds on
// another node, which room_node_map now names, and new rooms created after
// the pause are not placed on the paused node.
func TestPausedNode(t *testing.T) {
	c := startCluster(t, 3)
	url := c.StartProxy(t, harness.LB{}).WS()

	const room = "paused"
	harness.MustConnect(t, url, room, "paused-a", connectTimeout)
	harness.MustConnect(t, url, room, "paused-b", connectTimeout)
	host := c.RoomNode(room)
	frozen := c.NodeByID(host)
	if frozen == nil {
		t.Fatalf("room_node_map[%s] = %s, not a running node", room, c.Name(host))
	}

	paused := time.Now()
	frozen.Pause()
	t.Cleanup(frozen.Resume) // runs before the harness kills the nodes

	var attempts []string
	joined, ok := harness.PollValue(time.Until(paused.Add(time.Minute)), harness.PollInterval, func() (*harness.Client, bool) {
		identity := fmt.Sprintf("paused-new%d", len(attempts)+1)
		start := time.Since(paused)
		cl, err := harness.Connect(url, room, identity, 5*time.Second) // the SDK's default connect timeout
		if err != nil {
			attempts = append(attempts, fmt.Sprintf("%v..%v: %v", start.Round(time.Millisecond), time.Since(paused).Round(time.Millisecond), err))
			return nil, false
		}
		attempts = append(attempts, fmt.Sprintf("%v..%v: joined", start.Round(time.Millisecond), time.Since(paused).Round(time.Millisecond)))
		return cl, true
	})
	if !ok {
		t.Fatalf("no join of %s succeeded within a minute of pausing %s; attempts:\n%v", room, c.Name(host), attempts)
	}
	t.Cleanup(joined.LK.Disconnect)
	elapsed := time.Since(paused)
	t.Logf("pause of %s -> first successful join of %s: %v; attempts (time since the pause):", c.Name(host), room, elapsed.Round(time.Millisecond))
	for _, a := range attempts {
		t.Logf("  %s", a)
	}

	now := c.RoomNode(room)
	switch {
	case now == host:
		t.Errorf("room_node_map[%s] still names the paused %s after a successful join", room, c.Name(host))
	case c.NodeByID(now) == nil:
		t.Errorf("room_node_map[%s] = %s, not a running node", room, c.Name(now))
	}
	if sig := c.SignalNode(joined.Identity); sig != now || sig == host {
		t.Errorf("%s signalled through %s; room_node_map[%s] = %s, paused %s", joined.Identity, c.Name(sig), room, c.Name(now), c.Name(host))
	}
	if got := joined.LK.ServerInfo().GetNodeId(); got != now {
		t.Errorf("%s's JoinResponse names %s; room_node_map[%s] = %s", joined.Identity, c.Name(got), room, c.Name(now))
	}

	// new rooms, created after the pause: never on the paused node
	for i := range 6 {
		r := fmt.Sprintf("after-pause-%d", i+1)
		cl := harness.MustConnect(t, url, r, r+"-p", connectTimeout)
		at := c.RoomNode(r)
		if at == host || c.NodeByID(at) == nil {
			t.Errorf("new room %s placed on %s (paused: %s)", r, c.Name(at), c.Name(host))
		}
		if sig := c.SignalNode(cl.Identity); sig != at {
			t.Errorf("%s signalled through %s; room_node_map[%s] = %s", cl.Identity, c.Name(sig), r, c.Name(at))
		}
	}
	if st, ok := c.NodeState(host); ok {
		t.Logf("the paused node is still in Redis nodes (state %v) with stale stats", st)
	}
}
