package failover

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestTwoProxiesOneNodePerRoom: two Caddy processes with livekit_lb over one
// Redis and the same 3 nodes. For each of 100 new rooms, one join through
// each proxy at the same moment: both proxies place the room (HSETNX), and
// the one that loses must follow the winner. Afterwards every room is in
// room_node_map, on a running node, and both of its participants' signal
// WebSockets and JoinResponses are on that node: no room is split.
//
// The 200 joins of the 100 rooms are raw signal WebSockets with valid tokens
// (upgrade, LiveKit's JoinResponse, leave): the placement happens at the
// proxy before the upgrade, and LiveKit creates the room on its node, so
// they test the same thing without 200 WebRTC stacks. 10 more rooms get
// real SDK clients, one through each proxy.
func TestTwoProxiesOneNodePerRoom(t *testing.T) {
	rooms := envInt(t, "LKLB_DUAL_ROOMS", 100)
	const sdkRooms = 10
	c := startCluster(t, 3)
	// debug: the handler logs each request's route and outcome
	r := &dualRun{proxies: []*harness.Proxy{c.StartProxyWith(t, "debug", harness.LB{}), c.StartProxyWith(t, "debug", harness.LB{})}}

	begin := time.Now()
	r.joinRooms(rooms, "dual-%03d", func(room, identity string, p int) dualJoin {
		node, err := harness.SignalJoin(r.proxies[p].WS(), room, identity, 20*time.Second)
		return dualJoin{room, identity, p, node, err}
	})
	rawTime := time.Since(begin)
	begin = time.Now()
	r.joinRooms(sdkRooms, "dual-sdk-%02d", func(room, identity string, p int) dualJoin {
		cl, err := harness.Connect(r.proxies[p].WS(), room, identity, 15*time.Second)
		if err != nil {
			return dualJoin{room, identity, p, "", err}
		}
		t.Cleanup(cl.LK.Disconnect)
		return dualJoin{room, identity, p, cl.LK.ServerInfo().GetNodeId(), nil}
	})
	t.Logf("%d rooms x 2 raw signal joins (one per proxy, concurrently): %v; %d rooms x 2 SDK joins: %v",
		rooms, rawTime.Round(time.Millisecond), sdkRooms, time.Since(begin).Round(time.Millisecond))

	r.check(t, c, rooms+sdkRooms)
	t.Logf("routing outcomes: proxy 1 %v, proxy 2 %v (followed: the other proxy placed the room first)",
		outcomes(r.proxies[0].Caddy), outcomes(r.proxies[1].Caddy))
}

// dualRun is the joins of TestTwoProxiesOneNodePerRoom.
type dualRun struct {
	proxies []*harness.Proxy
	mu      sync.Mutex
	joins   []dualJoin
}

// dualJoin is one join of a room through one proxy.
type dualJoin struct {
	room, identity string
	proxy          int
	node           string // from the JoinResponse
	err            error
}

// joinRooms joins n rooms (named by format and the room's number), 10 rooms
// in flight at once; both joins of a room, one through each proxy, start
// together, after a barrier.
func (r *dualRun) joinRooms(n int, format string, do func(room, identity string, proxy int) dualJoin) {
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.joinBoth(fmt.Sprintf(format, i+1), do)
		}()
	}
	wg.Wait()
}

func (r *dualRun) joinBoth(room string, do func(room, identity string, proxy int) dualJoin) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for p := range r.proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			j := do(room, fmt.Sprintf("%s-via%d", room, p+1), p)
			r.mu.Lock()
			r.joins = append(r.joins, j)
			r.mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
}

// check: every join succeeded, every room is in room_node_map on a running
// node, and both of its participants' signal WebSockets and JoinResponses
// are on that node.
func (r *dualRun) check(t *testing.T, c *harness.Stack, want int) {
	placed := map[string]string{}
	failed, split := 0, 0
	for _, j := range r.joins {
		if j.err != nil {
			failed++
			t.Errorf("join of %s as %s through proxy %d: %v", j.room, j.identity, j.proxy+1, j.err)
			continue
		}
		at, ok := placed[j.room]
		if !ok {
			at = c.RoomNode(j.room)
			placed[j.room] = at
			if c.NodeByID(at) == nil {
				t.Errorf("room_node_map[%s] = %s, not a running node", j.room, c.Name(at))
			}
		}
		sig := c.SignalNode(j.identity)
		if sig != at || j.node != at {
			split++
			t.Errorf("%s (room %s, proxy %d): signal WebSocket on %s, JoinResponse names %s; room_node_map[%s] = %s",
				j.identity, j.room, j.proxy+1, c.Name(sig), c.Name(j.node), j.room, c.Name(at))
		}
	}
	if len(placed) != want {
		t.Errorf("%d rooms joined, want %d", len(placed), want)
	}
	var names []string
	for room := range placed {
		names = append(names, room)
	}
	t.Logf("%d joins, %d failed, %d not on their room's node; rooms per node: %s", len(r.joins), failed, split, c.Spread(names))
}

// outcomes counts the livekit_lb handler's "route" debug lines (one per
// routed request) by outcome: placed, followed, found, cached, ...
func outcomes(caddy *harness.Caddy) map[string]int {
	count := map[string]int{}
	for _, e := range caddy.Logged("route") {
		if o, _ := e.Fields["outcome"].(string); o != "" {
			count[o]++
		}
	}
	return count
}
