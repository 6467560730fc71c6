package cluster

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

// The regions of LiveKit's own regionaware_test.go.
var testRegions = []Region{
	{Name: "us-west", Lat: 37.64046607830567, Lon: -120.88026233189062},
	{Name: "us-east", Lat: 40.68914362140307, Lon: -74.04445748616385},
	{Name: "seoul", Lat: 37.5665, Lon: 126.9780},
}

func regionNode(id, ip, region string, sysload float32, rooms int32) *livekit.Node {
	n := lkNode(id, ip, serving, sysload, rooms)
	n.Region = region
	return n
}

func regionCluster(t *testing.T, own string, limits Limits, nodes ...*livekit.Node) (*clustertest.Store, *Cluster) {
	t.Helper()
	f := clustertest.NewStore()
	for _, n := range nodes {
		f.SetNode(n)
	}
	cfg := testConfig()
	cfg.Regions, cfg.Region, cfg.Limits = testRegions, own, limits
	return f, newTestCluster(t, f, cfg)
}

// A new room goes to the proxy's own region, or to the client's when known
// (a region name or its lat,lon), on the least loaded node there; a region
// without a node under the limits spills over to the nearest with one.
func TestRegionPlacement(t *testing.T) {
	_, c := regionCluster(t, "us-west", Limits{SysloadLimit: 0.8},
		regionNode("ND_w1", "10.0.0.1", "us-west", 0.5, 0), regionNode("ND_w2", "10.0.0.2", "us-west", 0.2, 0),
		regionNode("ND_e1", "10.0.0.3", "us-east", 0.0, 0),
		regionNode("ND_s1", "10.0.0.4", "seoul", 0.9, 0)) // over sysload_limit
	for _, tc := range []struct{ room, near, want string }{
		{"own", "", "ND_w2"},             // the proxy's region, least loaded there (not the idle ND_e1)
		{"east", "us-east", "ND_e1"},     // the client's region
		{"nyc", "40.7,-74.0", "ND_e1"},   // the client's coordinates
		{"seoul", "seoul", "ND_w2"},      // seoul is full: nearest is us-west
		{"tokyo", "35.7,139.7", "ND_w2"}, // near seoul, which is full
		{"bogus", "atlantis", "ND_w2"},   // unknown: the proxy's own
		{"bad", "91,0", "ND_w2"},         // not a place
		{"paris", "48.86,2.35", "ND_e1"}, // nearer to us-east than to us-west
	} {
		n, o, err := c.Route(Near(context.Background(), tc.near), tc.room)
		if err != nil || n.ID != tc.want || o != OutcomePlaced {
			t.Errorf("room %s near %q: %v %s %v, want %s", tc.room, tc.near, n, o, err, tc.want)
		}
	}
	// a known room stays where it is, wherever its next client is
	if n, _, _ := c.Route(Near(context.Background(), "seoul"), "east"); n == nil || n.ID != "ND_e1" {
		t.Errorf("known room east moved to %v", n)
	}
}

// NearBy's lookup runs only when a room is placed: a known room's request
// (from the cache or from Redis) never pays it.
func TestNearByOnlyWhenPlacing(t *testing.T) {
	f, c := regionCluster(t, "us-west", Limits{},
		regionNode("ND_w1", "10.0.0.1", "us-west", 0.1, 0), regionNode("ND_s1", "10.0.0.4", "seoul", 0.5, 0))
	calls := 0
	seoul := func() string { calls++; return "seoul" }
	n, o, err := c.Route(NearBy(context.Background(), seoul), "r1")
	if err != nil || n.ID != "ND_s1" || o != OutcomePlaced || calls != 1 {
		t.Fatalf("new room: %v %s %v after %d lookups, want ND_s1 placed after 1", n, o, err, calls)
	}
	for _, c := range []*Cluster{c, newTestCluster(t, f, c.cfg)} { // cached; then a proxy that must read Redis
		if n, _, err := c.Route(NearBy(context.Background(), seoul), "r1"); err != nil || n.ID != "ND_s1" || calls != 1 {
			t.Errorf("known room: %v %v, %d lookups in all, want ND_s1 and still 1", n, err, calls)
		}
	}
}

// Nodes of a region not listed are used only when no listed region has one
// (as LiveKit); without regions, placement is by load alone.
func TestRegionUnlisted(t *testing.T) {
	_, c := regionCluster(t, "seoul", Limits{},
		regionNode("ND_x", "10.0.0.1", "mars", 0.0, 0), regionNode("ND_e", "10.0.0.2", "us-east", 0.9, 0))
	if n, _ := mustRoute(t, c, "r1"); n.ID != "ND_e" {
		t.Errorf("placed on %s, want the listed region's ND_e", n.ID)
	}
	_, c = regionCluster(t, "seoul", Limits{}, regionNode("ND_x", "10.0.0.1", "mars", 0.0, 0))
	if n, _ := mustRoute(t, c, "r1"); n.ID != "ND_x" {
		t.Errorf("placed on %s, want ND_x, the only node", n.ID)
	}
}

// A node at a limit takes no new room but keeps its rooms; with every node
// at one, a new room is refused with ErrFull (an ErrNoNode).
func TestCapacityLimits(t *testing.T) {
	f, c := regionCluster(t, "", Limits{MaxRooms: 2},
		lkNode("ND_a", "10.0.0.1", serving, 0.5, 1), lkNode("ND_b", "10.0.0.2", serving, 0.0, 2))
	n, _ := mustRoute(t, c, "r1") // ND_b is the least loaded, and has max_rooms
	if n.ID != "ND_a" {
		t.Fatalf("r1 on %s, want ND_a", n.ID)
	}
	if _, err := f.PlaceRoom(context.Background(), "old", "ND_b"); err != nil {
		t.Fatal(err)
	}
	if n, _ := mustRoute(t, c, "old"); n.ID != "ND_b" {
		t.Errorf("a room of the full ND_b went to %s", n.ID)
	}
	// ND_a has 1 room and r1 pending: full too
	if _, _, err := c.Route(context.Background(), "r2"); !errors.Is(err, ErrFull) || !errors.Is(err, ErrNoNode) {
		t.Errorf("every node full: %v, want ErrFull", err)
	}
	for _, l := range []Limits{{SysloadLimit: 0.5}, {MaxClients: 3}} {
		n := &Node{Sysload: 0.5, Clients: 3, health: &nodeHealth{}}
		if !l.full(n, time.Now(), 0) {
			t.Errorf("%+v: a node at the limit is not full", l)
		}
		n.Sysload, n.Clients = 0.49, 2
		if l.full(n, time.Now(), 0) {
			t.Errorf("%+v: a node under the limit is full", l)
		}
	}
}

func TestRegionsConfig(t *testing.T) {
	for _, bad := range []struct {
		list []Region
		own  string
	}{
		{[]Region{{Name: "a", Lat: 91}}, ""},
		{[]Region{{Name: "a"}, {Name: "a"}}, ""},
		{[]Region{{Lat: 1}}, ""},
		{testRegions, "atlantis"},
		{nil, "us-west"},
		{[]Region{{Name: "a", Lon: math.NaN()}}, ""},
	} {
		if _, err := newRegions(bad.list, bad.own); err == nil {
			t.Errorf("regions %v, own %q accepted", bad.list, bad.own)
		}
	}
}
