package failover

import (
	"encoding/json"
	"fmt"
	"strings"
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
	const sdkRooms, concurrency = 10, 10 // rooms in flight at once
	c := startCluster(t, 3)
	addr1, addr2 := harness.FreeAddr(t), harness.FreeAddr(t)
	// debug: the handler logs each request's route and outcome
	caddy1 := harness.StartCaddy(t, "{\n\tdebug\n}\n"+lbSite(addr1, c.redis.Addr()))
	caddy2 := harness.StartCaddy(t, "{\n\tdebug\n}\n"+lbSite(addr2, c.redis.Addr()))
	proxies := []string{"ws://" + addr1, "ws://" + addr2}

	type join struct {
		room, identity string
		proxy          int
		node           string // from the JoinResponse
		err            error
	}
	var (
		mu    sync.Mutex
		joins []join
	)
	record := func(j join) {
		mu.Lock()
		joins = append(joins, j)
		mu.Unlock()
	}
	// both joins of a room start together, after a barrier
	run := func(room string, do func(room, identity string, proxy int) join) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for p := range proxies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				record(do(room, fmt.Sprintf("%s-via%d", room, p+1), p))
			}()
		}
		close(start)
		wg.Wait()
	}

	begin := time.Now()
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range rooms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			run(fmt.Sprintf("dual-%03d", i+1), func(room, identity string, p int) join {
				node, err := rawJoin(proxies[p], room, identity)
				return join{room, identity, p, node, err}
			})
		}()
	}
	wg.Wait()
	rawTime := time.Since(begin)

	begin = time.Now()
	for i := range sdkRooms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			run(fmt.Sprintf("dual-sdk-%02d", i+1), func(room, identity string, p int) join {
				cl, err := connect(proxies[p], room, identity, 15*time.Second)
				if err != nil {
					return join{room, identity, p, "", err}
				}
				t.Cleanup(cl.lk.Disconnect)
				return join{room, identity, p, cl.lk.ServerInfo().GetNodeId(), nil}
			})
		}()
	}
	wg.Wait()
	t.Logf("%d rooms x 2 raw signal joins (one per proxy, concurrently): %v; %d rooms x 2 SDK joins: %v",
		rooms, rawTime.Round(time.Millisecond), sdkRooms, time.Since(begin).Round(time.Millisecond))

	placed := map[string]string{}
	failed, split := 0, 0
	for _, j := range joins {
		if j.err != nil {
			failed++
			t.Errorf("join of %s as %s through proxy %d: %v", j.room, j.identity, j.proxy+1, j.err)
			continue
		}
		at, ok := placed[j.room]
		if !ok {
			at = c.roomNode(j.room)
			placed[j.room] = at
			if c.nodeByID(at) == nil {
				t.Errorf("room_node_map[%s] = %s, not a running node", j.room, c.name(at))
			}
		}
		sig := c.signalNode(j.identity)
		if sig != at || j.node != at {
			split++
			t.Errorf("%s (room %s, proxy %d): signal WebSocket on %s, JoinResponse names %s; room_node_map[%s] = %s",
				j.identity, j.room, j.proxy+1, c.name(sig), c.name(j.node), j.room, c.name(at))
		}
	}
	if want := rooms + sdkRooms; len(placed) != want {
		t.Errorf("%d rooms joined, want %d", len(placed), want)
	}
	var names []string
	for r := range placed {
		names = append(names, r)
	}
	t.Logf("%d joins, %d failed, %d not on their room's node; rooms per node: %s", len(joins), failed, split, c.spread(names))
	t.Logf("routing outcomes: proxy 1 %v, proxy 2 %v (followed: the other proxy placed the room first)",
		outcomes(caddy1.Logs()), outcomes(caddy2.Logs()))
}

// outcomes counts the livekit_lb handler's "route" debug lines (one per
// routed request) by outcome: placed, followed, found, cached, ...
func outcomes(logs string) map[string]int {
	count := map[string]int{}
	for _, line := range strings.Split(logs, "\n") {
		var e struct{ Msg, Outcome string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "route" && e.Outcome != "" {
			count[e.Outcome]++
		}
	}
	return count
}
