package routing

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// The regions of these tests are those of LiveKit's own regionaware_test.go.
// Nodes 1 and 2 are in us-west, nodes 3 and 4 in seoul (LiveKit's `region:`),
// us-east has none; a proxy in each of us-west and seoul.
const (
	usWest = "us-west"
	usEast = "us-east"
	seoul  = "seoul"

	// regionHeader carries the client's region (or lat,lon); the proxies
	// honour it only from trustedIP, Caddy's trusted_proxies, where the
	// edge in front of them would be.
	regionHeader = "X-Client-Region"
	trustedIP    = "127.0.0.100"

	regionJoinTimeout = 20 * time.Second // an SDK join, WebRTC included
)

var regionsBlock = []string{
	"regions {",
	"\tus-west 37.64046607830567 -120.88026233189062",
	"\tus-east 40.68914362140307 -74.04445748616385",
	"\tseoul 37.5665 126.9780",
	"}",
}

// nodeRegions is LiveKit's `region:` of node i.
var nodeRegions = []string{usWest, usWest, seoul, seoul}

// regional is one test's nodes in two regions and a proxy in each.
type regional struct {
	*harness.Stack
	proxy map[string]*harness.Proxy // by its own `region`
}

// startRegional starts Redis, the nodes of nodeRegions and a proxy in
// us-west and one in seoul, with the same regions, region_header and extra
// lines in their livekit_lb block; both trust trustedIP as a proxy.
func startRegional(t *testing.T, extra ...string) *regional {
	t.Helper()
	s := harness.StartStack(t, len(nodeRegions), harness.NodeOptions{
		Configure: func(i int, cfg map[string]any) { cfg["region"] = nodeRegions[i] },
	})
	r := &regional{Stack: s, proxy: map[string]*harness.Proxy{}}
	for i, n := range s.Nodes {
		if got := r.region(n.ID()); got != nodeRegions[i] {
			t.Fatalf("Redis `nodes` gives %s the region %q; its livekit.yaml says %q", r.Name(n.ID()), got, nodeRegions[i])
		}
	}
	global := "servers {\n\t\ttrusted_proxies static " + trustedIP + "/32\n\t}"
	for _, region := range []string{usWest, seoul} {
		opts := append([]string{"load_measure rooms", "region " + region, "region_header " + regionHeader}, regionsBlock...)
		r.proxy[region] = s.StartProxyWith(t, global, harness.LB{Options: append(opts, extra...)})
	}
	return r
}

// region is node id's region as LiveKit registered it in Redis `nodes`.
func (r *regional) region(id string) string {
	nodes, err := r.RedisNodes()
	if err != nil || nodes[id] == nil {
		return ""
	}
	return nodes[id].GetRegion()
}

// nodesIn are the nodes of region.
func (r *regional) nodesIn(region string) []*harness.Node {
	var out []*harness.Node
	for i, n := range r.Nodes {
		if nodeRegions[i] == region {
			out = append(out, n)
		}
	}
	return out
}

// join connects identities to room through url, one after another, with
// server-sdk-go; they stay until the test ends.
func (r *regional) join(t *testing.T, url, room string, identities ...string) []*harness.Client {
	t.Helper()
	var clients []*harness.Client
	for _, id := range identities {
		c := harness.MustConnect(t, url, room, id, regionJoinTimeout)
		c.Via = url
		clients = append(clients, c)
	}
	return clients
}

// landed checks that room_node_map puts room on a node of region want,
// that every client signalled through that node and its JoinResponse names
// it, and that the clients see each other. It returns the room's node.
func (r *regional) landed(t *testing.T, room, want string, clients []*harness.Client) string {
	t.Helper()
	host := r.RoomNode(room)
	if got := r.region(host); r.NodeByID(host) == nil || got != want {
		t.Errorf("room %s is on %s, region %q; want region %s", room, r.Name(host), got, want)
	}
	for _, c := range clients {
		if got := r.MustSignalNode(t, c.Identity); got != host {
			t.Errorf("%s (room %s) signalled through %s; the room is on %s", c.Identity, room, r.Name(got), r.Name(host))
		}
		if got := c.LK.ServerInfo().GetNodeId(); got != host {
			t.Errorf("%s's JoinResponse names %s; room_node_map[%s] = %s", c.Identity, r.Name(got), room, r.Name(host))
		}
	}
	if !harness.Poll(15*time.Second, func() bool { return harness.AllSeeEachOther(clients) }) {
		t.Errorf("in room %s the participants do not all see each other: %v", room, clients)
	}
	return host
}

// waitViews waits until both proxies' views (GET /livekit/nodes) of every
// node satisfy ok.
func (r *regional) waitViews(t *testing.T, what string, ok func(harness.NodeView) bool) {
	t.Helper()
	var last harness.NodesView
	seen := harness.Poll(15*time.Second, func() bool {
		for _, p := range r.proxy {
			v, err := p.Nodes()
			if err != nil || len(v.Nodes) != len(r.Nodes) {
				return false
			}
			last = v
			for _, n := range v.Nodes {
				if !ok(n) {
					return false
				}
			}
		}
		return true
	})
	if !seen {
		t.Fatalf("the proxies never saw %s; last view %+v", what, last.Nodes)
	}
}

// startEdge starts a Caddy in front of p that sets the client's region
// hint, as a CDN or the operator's edge would; it connects to p from the
// address from (local_address; "" leaves it to the system: 127.0.0.1).
func startEdge(t *testing.T, p *harness.Proxy, hint, from string) *harness.Proxy {
	t.Helper()
	opts := []string{"header_up " + regionHeader + " " + hint}
	if from != "" {
		opts = append(opts, "transport http {", "\tlocal_address "+from, "}")
	}
	return harness.StartSite(t, func(addr string) string { return harness.StockSite(addr, []string{p.Addr}, opts...) })
}

// TestRegionsNewRoomsInTheProxyRegion: with no hint, a new room goes to
// the proxy's own region, and within it by load; the two proxies share
// one Redis and one set of nodes.
func TestRegionsNewRoomsInTheProxyRegion(t *testing.T) {
	r := startRegional(t)
	for _, region := range []string{usWest, seoul} {
		count := map[string]int{}
		for i := range 3 {
			room := fmt.Sprintf("%s-%d", region, i+1)
			clients := r.join(t, r.proxy[region].WS(), room, room+"-a", room+"-b")
			count[r.landed(t, room, region, clients)]++
		}
		t.Logf("3 rooms through the %s proxy: %s", region, r.Distribution(count))
		for _, n := range r.nodesIn(region) {
			if count[n.ID()] == 0 {
				t.Errorf("%s got none of the rooms through the %s proxy (%s)", r.Name(n.ID()), region, r.Distribution(count))
			}
		}
	}
}

// TestRegionHintOnlyFromTrustedProxies: region_header places a new room
// only on a request from Caddy's trusted_proxies (an edge on trustedIP):
// a client or an edge elsewhere that names a region is ignored. A trusted
// hint may name a region, or lat,lon; a region without nodes spills over to
// the nearest one with nodes, a name that is no region leaves the proxy's
// own. A known room stays on its node whatever the hint.
func TestRegionHintOnlyFromTrustedProxies(t *testing.T) {
	r := startRegional(t)
	west := r.proxy[usWest]

	// real SDK participants behind edges that say "seoul"
	untrusted := startEdge(t, west, seoul, "")
	ue := r.join(t, untrusted.WS(), "untrusted-edge", "ue-a", "ue-b")
	r.landed(t, "untrusted-edge", usWest, ue)

	trusted := startEdge(t, west, seoul, trustedIP)
	te := r.join(t, trusted.WS(), "trusted-edge", "te-a", "te-b")
	r.landed(t, "trusted-edge", seoul, te)

	// the room of the untrusted edge is known: a join with the trusted
	// hint "seoul" follows it to us-west
	ue = append(ue, r.join(t, trusted.WS(), "untrusted-edge", "ue-c")...)
	r.landed(t, "untrusted-edge", usWest, ue)

	// raw signal joins with the header, from the trusted address or not
	for i, tc := range []struct {
		proxy, from, hint, want string
	}{
		{usWest, "", seoul, usWest},                 // a client that names its region itself
		{usWest, "127.0.0.1", "37.5,127.0", usWest}, // the same, with coordinates
		{usWest, trustedIP, seoul, seoul},
		{seoul, trustedIP, usWest, usWest},
		{seoul, trustedIP, usEast, usWest},                 // no node in us-east: us-west is nearest
		{usWest, trustedIP, "35.68,139.69", seoul},         // Tokyo
		{seoul, trustedIP, "40.71,-74.01", usWest},         // New York: nearest to us-east, which has no node
		{usWest, trustedIP, "atlantis", usWest},            // no region: the proxy's own
		{seoul, trustedIP, "91,0", seoul},                  // not a place
		{seoul, trustedIP, strings.Repeat("x", 65), seoul}, // longer than a hint may be
	} {
		room, identity := fmt.Sprintf("hinted-%d", i+1), fmt.Sprintf("raw-%d", i+1)
		header := http.Header{regionHeader: {tc.hint}}
		res, err := harness.RawJoinFrom(context.Background(), tc.from, header, r.proxy[tc.proxy].WS(),
			harness.Token(room, identity), harness.SDKQuery, regionJoinTimeout)
		if err != nil {
			t.Errorf("raw join of %s from %q through the %s proxy, %s %q: %v", room, tc.from, tc.proxy, regionHeader, tc.hint, err)
			continue
		}
		host := r.RoomNode(room)
		if got := r.region(host); res.NodeID != host || got != tc.want {
			t.Errorf("from %q through the %s proxy, %s %q: room %s on %s (JoinResponse: %s), region %q; want region %s",
				tc.from, tc.proxy, regionHeader, tc.hint, room, r.Name(host), r.Name(res.NodeID), got, tc.want)
		}
	}
}

// TestRegionSpillOver: while no node of a proxy's region takes new rooms
// (drained with `caddy livekit drain`, then killed), its new rooms go to
// the other region; rooms already on a drained node stay there.
func TestRegionSpillOver(t *testing.T) {
	r := startRegional(t)
	west := r.proxy[usWest]

	before := r.join(t, west.WS(), "before-drain", "bd-a")
	host := r.landed(t, "before-drain", usWest, before)

	for _, n := range r.nodesIn(usWest) {
		if out, err := r.Livekit(t, "drain", n.IP()); err != nil {
			t.Fatalf("caddy livekit drain %s: %v\n%s", n.IP(), err, out)
		}
	}
	r.waitViews(t, "us-west drained", func(v harness.NodeView) bool { return v.Drained == (v.Region == usWest) })
	drained := r.join(t, west.WS(), "west-drained", "wd-a", "wd-b")
	r.landed(t, "west-drained", seoul, drained)
	before = append(before, r.join(t, west.WS(), "before-drain", "bd-b")...)
	if got := r.landed(t, "before-drain", usWest, before); got != host {
		t.Errorf("before-drain moved from %s to %s when its node was drained", r.Name(host), r.Name(got))
	}

	for _, n := range r.nodesIn(usWest) {
		if out, err := r.Livekit(t, "undrain", n.IP()); err != nil {
			t.Fatalf("caddy livekit undrain %s: %v\n%s", n.IP(), err, out)
		}
	}
	r.waitViews(t, "us-west undrained", func(v harness.NodeView) bool { return !v.Drained })
	for _, c := range drained { // their node dies next: no reconnections in the way
		c.LK.Disconnect()
	}
	for _, n := range r.nodesIn(seoul) {
		n.Kill()
	}
	r.waitViews(t, "seoul's nodes dead", func(v harness.NodeView) bool { return v.Routable == (v.Region == usWest) })
	clients := r.join(t, r.proxy[seoul].WS(), "seoul-dead", "sd-a", "sd-b")
	r.landed(t, "seoul-dead", usWest, clients)
}

// TestRegionsFullAnswers503: with max_rooms 1, the rooms of one proxy fill
// its region's nodes, then the other region's; with every node full a new
// room is refused by both proxies with 503 and a JSON error, while the
// rooms there keep taking participants.
func TestRegionsFullAnswers503(t *testing.T) {
	r := startRegional(t, "max_rooms 1")
	west := r.proxy[usWest]

	rooms := map[string][]*harness.Client{}
	used := map[string]string{}
	for i, want := range []string{usWest, usWest, seoul, seoul} {
		room := fmt.Sprintf("full-%d", i+1)
		rooms[room] = r.join(t, west.WS(), room, room+"-a")
		host := r.landed(t, room, want, rooms[room])
		if other, ok := used[host]; ok {
			t.Errorf("%s is on %s with %s, beyond max_rooms 1", room, r.Name(host), other)
		}
		used[host] = room
		// both proxies see the room in the node's stats: what follows does
		// not lean on the proxy's count of its own recent placements
		r.waitViews(t, room+" in "+r.Name(host)+"'s stats", func(v harness.NodeView) bool { return v.ID != host || v.Rooms >= 1 })
	}
	r.waitViews(t, "every node full", func(v harness.NodeView) bool { return v.Full && !v.NewRooms })

	for _, region := range []string{usWest, seoul} {
		p := r.proxy[region]
		resp, err := httpClient.Get(p.HTTP() + "/rtc?access_token=" + url.QueryEscape(harness.Token("full-5", "raw-"+region)))
		if err != nil {
			t.Fatalf("GET /rtc of a new room through the %s proxy: %v", region, err)
		}
		msg := jsonError(t, "new room through the "+region+" proxy, every node full", resp, http.StatusServiceUnavailable)
		t.Logf("new room through the %s proxy: 503 %q", region, msg)
		if !strings.Contains(msg, "capacity limit") {
			t.Errorf("503 message %q does not say that the nodes are at their capacity limit", msg)
		}
		if lk, err := harness.TryJoin(p.WS(), "full-5", "sdk-"+region); err == nil {
			lk.Disconnect()
			t.Errorf("an SDK join of a new room through the %s proxy succeeded with every node full", region)
		}
	}
	if host := r.RoomNode("full-5"); host != "" {
		t.Errorf("room_node_map[full-5] = %s; a refused room must not be placed", r.Name(host))
	}

	more := r.join(t, r.proxy[seoul].WS(), "full-1", "full-1-b")
	r.landed(t, "full-1", usWest, append(rooms["full-1"], more...))
}

// TestRegionsNeverSplitARoom: first joins of the same new room arrive
// together at the proxies of both regions; each proxy would place it in its
// own region, but one placement wins and every participant lands on its
// node.
func TestRegionsNeverSplitARoom(t *testing.T) {
	r := startRegional(t)
	regionCount := map[string]int{}

	// SDK participants: two through each proxy, all at once
	for i := range 2 {
		room := fmt.Sprintf("contested-%d", i+1)
		var ids []string
		var urls []string
		for j, region := range []string{usWest, seoul, usWest, seoul} {
			ids = append(ids, fmt.Sprintf("%s-%s-%d", room, region, j))
			urls = append(urls, r.proxy[region].WS())
		}
		clients := make([]*harness.Client, len(ids))
		errs := make([]error, len(ids))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for j := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				clients[j], errs[j] = harness.Connect(urls[j], room, ids[j], regionJoinTimeout)
			}()
		}
		close(start)
		wg.Wait()
		for j, c := range clients {
			if c != nil {
				c.Via = urls[j]
				t.Cleanup(c.LK.Disconnect)
			}
		}
		for j, err := range errs {
			if err != nil {
				t.Fatalf("join %s as %s via %s: %v", room, ids[j], urls[j], err)
			}
		}
		host := r.RoomNode(room)
		regionCount[r.region(host)]++
		r.landed(t, room, r.region(host), clients)
	}

	// raw signal joins: three through each proxy for each room, all at
	// once; each JoinResponse names the node that hosts the room
	const rawRooms, perProxy = 12, 3
	type result struct {
		identity, via, node string
		err                 error
	}
	results := map[string][]*result{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range rawRooms {
		room := fmt.Sprintf("raced-%02d", i+1)
		for j := range 2 * perProxy {
			res := &result{identity: fmt.Sprintf("%s-%d", room, j), via: []string{usWest, seoul}[j%2]}
			results[room] = append(results[room], res)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var joined harness.SignalJoined
				joined, res.err = harness.RawJoin(context.Background(), r.proxy[res.via].WS(),
					harness.Token(room, res.identity), harness.SDKQuery, regionJoinTimeout)
				res.node = joined.NodeID
			}()
		}
	}
	close(start)
	wg.Wait()
	for room, joins := range results {
		var host, first string
		for _, res := range joins {
			if res.err == nil && host == "" {
				host, first = res.node, res.identity
			}
		}
		for _, res := range joins {
			switch {
			case res.err != nil:
				t.Errorf("raw join of %s as %s through the %s proxy: %v", room, res.identity, res.via, res.err)
			case r.NodeByID(res.node) == nil || res.node != host:
				t.Errorf("room %s is split: %s through the %s proxy joined on %s, %s on %s",
					room, res.identity, res.via, r.Name(res.node), first, r.Name(host))
			}
		}
		// the raw joins have left: LiveKit may close the room (and drop
		// its placement) once departure_timeout passes
		if at := r.RoomNode(room); at != "" && at != host {
			t.Errorf("room_node_map[%s] = %s; its participants joined on %s", room, r.Name(at), r.Name(host))
		}
		regionCount[r.region(host)]++
	}
	t.Logf("contested rooms per region: %v", regionCount)
}
