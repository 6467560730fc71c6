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
	addr := harness.FreeAddr(t)
	harness.StartCaddy(t, lbSite(addr, c.redis.Addr()))
	url := "ws://" + addr

	const room = "paused"
	mustConnect(t, url, room, "paused-a")
	mustConnect(t, url, room, "paused-b")
	host := c.roomNode(room)
	frozen := c.nodeByID(host)
	if frozen == nil {
		t.Fatalf("room_node_map[%s] = %s, not a running node", room, c.name(host))
	}

	paused := time.Now()
	frozen.Pause()
	t.Cleanup(frozen.Resume) // runs before the harness kills the nodes

	var joined *client
	var attempts []string
	for joined == nil {
		identity := fmt.Sprintf("paused-new%d", len(attempts)+1)
		start := time.Since(paused)
		cl, err := connect(url, room, identity, 5*time.Second) // the SDK's default connect timeout
		if err != nil {
			attempts = append(attempts, fmt.Sprintf("%v..%v: %v", start.Round(time.Millisecond), time.Since(paused).Round(time.Millisecond), err))
			if time.Since(paused) > time.Minute {
				t.Fatalf("no join of %s succeeded within a minute of pausing %s; attempts:\n%v", room, c.name(host), attempts)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Cleanup(cl.lk.Disconnect)
		joined = cl
		attempts = append(attempts, fmt.Sprintf("%v..%v: joined", start.Round(time.Millisecond), time.Since(paused).Round(time.Millisecond)))
	}
	elapsed := time.Since(paused)
	t.Logf("pause of %s -> first successful join of %s: %v; attempts (time since the pause):", c.name(host), room, elapsed.Round(time.Millisecond))
	for _, a := range attempts {
		t.Logf("  %s", a)
	}

	now := c.roomNode(room)
	switch {
	case now == host:
		t.Errorf("room_node_map[%s] still names the paused %s after a successful join", room, c.name(host))
	case c.nodeByID(now) == nil:
		t.Errorf("room_node_map[%s] = %s, not a running node", room, c.name(now))
	}
	if sig := c.signalNode(joined.identity); sig != now || sig == host {
		t.Errorf("%s signalled through %s; room_node_map[%s] = %s, paused %s", joined.identity, c.name(sig), room, c.name(now), c.name(host))
	}
	if got := joined.lk.ServerInfo().GetNodeId(); got != now {
		t.Errorf("%s's JoinResponse names %s; room_node_map[%s] = %s", joined.identity, c.name(got), room, c.name(now))
	}

	// new rooms, created after the pause: never on the paused node
	for i := range 6 {
		r := fmt.Sprintf("after-pause-%d", i+1)
		cl := mustConnect(t, url, r, r+"-p")
		at := c.roomNode(r)
		if at == host || c.nodeByID(at) == nil {
			t.Errorf("new room %s placed on %s (paused: %s)", r, c.name(at), c.name(host))
		}
		if sig := c.signalNode(cl.identity); sig != at {
			t.Errorf("%s signalled through %s; room_node_map[%s] = %s", cl.identity, c.name(sig), r, c.name(at))
		}
	}
	if st, ok := c.nodeState(host); ok {
		t.Logf("the paused node is still in Redis nodes (state %v) with stale stats", st)
	}
}
