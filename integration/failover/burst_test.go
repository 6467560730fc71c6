package failover

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestBurstOfNewRoomsIsSpread: 20 new rooms whose first joins reach the proxy
// at the same moment are spread over the 3 nodes by the proxy's pending
// placements (livekitlb/node.go: "without them every new room in a burst
// would go to the same node"), as rooms placed one after another are: with
// load_measure rooms, after each burst the nodes' room counts differ by at
// most 3 (placing each room on the node with the fewest keeps them within 1).
//
// Found while measuring TestReloadUnderLoad: concurrent placements of
// different rooms each choose the least loaded node before any of them has
// recorded its placement (placer.resolve calls leastLoaded, then writes
// room_node_map, and only then markPlaced), so they all see the same counts
// and all choose the same node. The rounds after the first start from
// uneven counts, which makes the pile-up plain.
func TestBurstOfNewRoomsIsSpread(t *testing.T) {
	c := startCluster(t, 3)
	p := c.StartProxy(t, harness.LB{Options: []string{"load_measure rooms"}})
	const rooms, rounds, slack = 20, 3, 3
	var all []string
	for round := range rounds {
		names := make([]string, rooms)
		errs := make([]error, rooms)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range names {
			names[i] = fmt.Sprintf("burst%d-%02d", round, i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = harness.SignalJoin(p.WS(), names[i], names[i]+"-p", 20*time.Second)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("join of %s: %v", names[i], err)
			}
		}
		all = append(all, names...)
		count := map[string]int{}
		for _, r := range all {
			count[c.RoomNode(r)]++
		}
		lo, hi := len(all), 0
		for _, n := range c.Nodes {
			lo, hi = min(lo, count[n.ID()]), max(hi, count[n.ID()])
		}
		t.Logf("round %d: %d new rooms at once: %s; all rooms so far: %s", round+1, rooms, c.Spread(names), c.Spread(all))
		if hi-lo > slack {
			t.Errorf("round %d: the nodes host %d to %d of the %d rooms, want a difference of at most %d (this burst: %s)",
				round+1, lo, hi, len(all), slack, c.Spread(names))
		}
		// past the pending window (stale_after, 5 s): the next round starts
		// from the nodes' own room counts
		time.Sleep(6 * time.Second)
	}
}
