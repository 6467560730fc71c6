package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

func TestRouteKnownRoomGoesToItsNode(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["standup"] = "ND_b" // the busier node: placement beats load

	n, o := mustRoute(t, r, "standup")
	if n.ID != "ND_b" || o != OutcomeFound || n.Dial != "10.0.0.2:7880" {
		t.Fatalf("got %s %s %s, want ND_b found 10.0.0.2:7880", n.ID, o, n.Dial)
	}
	n, o = mustRoute(t, r, "standup")
	if n.ID != "ND_b" || o != OutcomeCached {
		t.Fatalf("second request: got %s %s, want ND_b cached", n.ID, o)
	}
	if f.Lookups != 1 {
		t.Fatalf("Redis lookups = %d, want 1 (second from cache)", f.Lookups)
	}
}

// routesTo routes room and checks the node chosen, the outcome, and that
// room_node_map names that node afterwards.
func routesTo(t *testing.T, f *clustertest.Store, r *Cluster, room, want string, outcome Outcome) {
	t.Helper()
	n, o := mustRoute(t, r, room)
	if n.ID != want || o != outcome {
		t.Fatalf("%s: got %s %s, want %s %s", room, n.ID, o, want, outcome)
	}
	if got := f.Room(room); got != want {
		t.Fatalf("room_node_map[%s] = %q, want %s", room, got, want)
	}
}

func TestRouteNewRoomPlacedOnLeastLoaded(t *testing.T) {
	f, r := twoNodes(t)
	routesTo(t, f, r, "new", "ND_a", OutcomePlaced)
}

func TestRouteFollowsWinnerOfPlacementRace(t *testing.T) {
	f, r := twoNodes(t)
	// another writer places the room between our lookup and our write
	racer := &racingStore{Store: f, room: "contested", winner: "ND_b"}
	r.place.store = racer
	routesTo(t, f, r, "contested", "ND_b", OutcomeFollowed) // the winner's
}

// racingStore lets another writer place room right after our lookup.
type racingStore struct {
	*clustertest.Store
	room, winner string
	once         sync.Once
}

func (s *racingStore) RoomNode(ctx context.Context, room string) (string, error) {
	id, err := s.Store.RoomNode(ctx, room)
	s.once.Do(func() { _, _ = s.Store.PlaceRoom(ctx, s.room, s.winner) })
	return id, err
}

func TestRouteReplacesRoomOfDeadNode(t *testing.T) {
	f, r := twoNodes(t)
	dead := lkNode("ND_dead", "10.0.0.3", serving, 0, 0)
	dead.Stats.UpdatedAt = time.Now().Add(-time.Minute).Unix()
	f.SetNode(dead)
	f.Placements["orphan"] = "ND_dead"
	r.Refresh(context.Background())
	routesTo(t, f, r, "orphan", "ND_a", OutcomeReplaced)
}

func TestRouteReplacesRoomOfUnknownNode(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["gone"] = "ND_never_registered"
	n, o := mustRoute(t, r, "gone")
	if o != OutcomeReplaced || f.Room("gone") != n.ID {
		t.Fatalf("got %s %s, map %q", n.ID, o, f.Room("gone"))
	}
}

func TestRouteAfterProxyFailureReplacesRoom(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["r1"] = "ND_a"
	n, _ := mustRoute(t, r, "r1")
	r.Failed(n, "r1")

	n2, o := mustRoute(t, r, "r1")
	if n2.ID != "ND_b" || o != OutcomeReplaced || f.Room("r1") != "ND_b" {
		t.Fatalf("after failure got %s %s map %q, want ND_b replaced", n2.ID, o, f.Room("r1"))
	}
	// and new rooms avoid the failed node
	n3, _ := mustRoute(t, r, "fresh")
	if n3.ID != "ND_b" {
		t.Fatalf("new room placed on %s, want ND_b while ND_a is out", n3.ID)
	}
}

func TestDrainingNodeKeepsRoomsTakesNoNewOnes(t *testing.T) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_drain", "10.0.0.1", draining, 0, 0))
	f.SetNode(lkNode("ND_busy", "10.0.0.2", serving, 2, 50))
	f.Placements["old"] = "ND_drain"
	r := newTestCluster(t, f, testConfig())

	if n, o := mustRoute(t, r, "old"); n.ID != "ND_drain" || o != OutcomeFound {
		t.Fatalf("existing room: got %s %s, want ND_drain found", n.ID, o)
	}
	for i := range 10 {
		if n, _ := mustRoute(t, r, fmt.Sprint("new", i)); n.ID != "ND_busy" {
			t.Fatalf("new room on %s, want ND_busy (the other is draining)", n.ID)
		}
	}
}

func TestStartingNodeIsNotRouted(t *testing.T) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_start", "10.0.0.1", livekit.NodeState_STARTING_UP, 0, 0))
	r := newTestCluster(t, f, testConfig())
	if _, _, err := r.Route(context.Background(), "x"); !errors.Is(err, ErrNoNode) {
		t.Fatalf("err = %v, want ErrNoNode", err)
	}
	if f.Room("x") != "" {
		t.Fatalf("a placement was written with no node to take it")
	}
}

func TestNodeOutsideAllowListIsNeverDialled(t *testing.T) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_pub", "203.0.113.7", serving, 0, 0))
	f.SetNode(lkNode("ND_priv", "10.0.0.2", serving, 1, 10))
	f.Placements["on-public"] = "ND_pub"
	r := newTestCluster(t, f, testConfig())

	for _, n := range r.Nodes() {
		if n.ID == "ND_pub" && n.Dial != "" {
			t.Fatalf("public node dial = %q, want none", n.Dial)
		}
	}
	// its room stays where LiveKit has it; another node relays
	n, o := mustRoute(t, r, "on-public")
	if n.ID != "ND_priv" || o != OutcomeRelayed || f.Room("on-public") != "ND_pub" {
		t.Fatalf("got %s %s map %q, want ND_priv relayed, map unchanged", n.ID, o, f.Room("on-public"))
	}
	// new rooms never land on it
	if n, _ := mustRoute(t, r, "new"); n.ID != "ND_priv" {
		t.Fatalf("new room on %s", n.ID)
	}
}

func TestNoRoomGoesToAnyServingNode(t *testing.T) {
	_, r := twoNodes(t)
	n, o := mustRoute(t, r, "")
	if o != OutcomeNoRoom || n.ID != "ND_a" {
		t.Fatalf("got %s %s, want ND_a no_room", n.ID, o)
	}
}

func TestRedisDownKnownRoomsKeepRouting(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["known"] = "ND_b"
	mustRoute(t, r, "known")
	f.SetErr(errDown)
	r.Refresh(context.Background()) // fails: last snapshot stays

	if n, o := mustRoute(t, r, "known"); n.ID != "ND_b" || o != OutcomeCached {
		t.Fatalf("known room during outage: %s %s", n.ID, o)
	}
	if _, _, err := r.Route(context.Background(), "unknown"); !errors.Is(err, ErrRedis) {
		t.Fatalf("unknown room during outage: err = %v, want ErrRedis", err)
	}
	if len(r.Nodes()) != 2 {
		t.Fatalf("snapshot lost during outage")
	}
}

func TestConcurrentLookupsCollapse(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["busy"] = "ND_a"
	slow := &slowStore{Store: f, delay: 50 * time.Millisecond}
	r.place.store = slow
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustRoute(t, r, "busy")
		}()
	}
	wg.Wait()
	if f.Lookups != 1 {
		t.Fatalf("Redis lookups = %d for 20 concurrent requests, want 1", f.Lookups)
	}
}

type slowStore struct {
	*clustertest.Store
	delay time.Duration
}

func (s *slowStore) RoomNode(ctx context.Context, room string) (string, error) {
	time.Sleep(s.delay)
	return s.Store.RoomNode(ctx, room)
}

// Two proxies (two registries over one store) place the same rooms at once:
// every room ends on exactly one node and both proxies agree on it.
func TestTwoProxiesNeverSplitARoom(t *testing.T) {
	f := clustertest.NewStore()
	for i := range 3 {
		f.SetNode(lkNode(fmt.Sprint("ND_", i), fmt.Sprint("10.0.0.", i+1), serving, 0, 0))
	}
	a := newTestCluster(t, f, testConfig())
	b := newTestCluster(t, f, testConfig())
	var mu sync.Mutex
	seen := map[string]map[string]bool{}
	var wg sync.WaitGroup
	for _, r := range []*Cluster{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				room := fmt.Sprint("room-", i)
				n, _ := mustRoute(t, r, room)
				mu.Lock()
				if seen[room] == nil {
					seen[room] = map[string]bool{}
				}
				seen[room][n.ID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for room, nodes := range seen {
		if len(nodes) != 1 {
			t.Errorf("room %s routed to %d nodes: %v", room, len(nodes), nodes)
		}
		for id := range nodes {
			if f.Room(room) != id {
				t.Errorf("room %s routed to %s but mapped to %s", room, id, f.Room(room))
			}
		}
	}
}

// While Redis is unreachable no node can write stats; when it returns the
// nodes must not look stale for the outage's length.
func TestRedisOutageDoesNotAgeNodes(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["known"] = "ND_a"
	mustRoute(t, r, "known")
	f.SetErr(errDown)
	r.Refresh(context.Background())
	r.view.outageStart = time.Now().Add(-time.Minute) // a minute-long outage
	for _, n := range f.Registered {
		n.Stats.UpdatedAt = time.Now().Add(-61 * time.Second).Unix() // last written as it began
	}
	// during the outage: known rooms route from the cache, however old
	r.place.cache = newPlacementCache(time.Nanosecond)
	r.place.cache.put("known", "ND_a", time.Now())
	if n, o := mustRoute(t, r, "known"); n.ID != "ND_a" || o != OutcomeCached {
		t.Fatalf("known room during outage: %s %s", n.ID, o)
	}
	f.SetErr(nil)
	r.Refresh(context.Background())
	if n, o := mustRoute(t, r, "fresh-room"); o != OutcomePlaced {
		t.Fatalf("after Redis returned: %v %s, nodes looked stale", n, o)
	}
}

func TestProbesTakeNodeOutAndBack(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["r"] = "ND_a"
	r.probes.interval = time.Hour // as if probing
	a := r.view.current().byID["ND_a"]
	r.probes.probed(a, errDown)
	if !a.Routable(time.Now()) {
		t.Fatal("one failed probe took the node out")
	}
	r.probes.probed(a, errDown)
	if a.Routable(time.Now()) {
		t.Fatal("two failed probes left the node in")
	}
	if n, o := mustRoute(t, r, "r"); n.ID != "ND_b" || o != OutcomeReplaced {
		t.Fatalf("room of a dead node: %s %s", n.ID, o)
	}
	r.probes.probed(a, nil)
	if a.Routable(time.Now()) {
		t.Fatal("one answer brought the node back")
	}
	r.probes.probed(a, nil)
	if !a.Routable(time.Now()) {
		t.Fatal("two answers did not bring the node back")
	}
	// a passive failure takes it out until the probes see it again
	r.Failed(a, "")
	if a.Routable(time.Now()) {
		t.Fatal("passive failure ignored")
	}
	r.probes.probed(a, nil)
	r.probes.probed(a, nil)
	if !a.Routable(time.Now()) {
		t.Fatal("probes did not bring it back after a passive failure")
	}
}

func TestOperatorDrain(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["kept"] = "ND_a"
	if err := r.Drain(context.Background(), "10.0.0.1", true); err != nil { // by IP
		t.Fatal(err)
	}
	if n, _ := mustRoute(t, r, "kept"); n.ID != "ND_a" {
		t.Fatalf("drained node lost its room to %s", n.ID)
	}
	for i := range 5 {
		if n, _ := mustRoute(t, r, fmt.Sprint("new-", i)); n.ID != "ND_b" {
			t.Fatalf("new room on drained node %s", n.ID)
		}
	}
	if err := r.Drain(context.Background(), "10.0.0.1", false); err != nil {
		t.Fatal(err)
	}
	if n, _ := mustRoute(t, r, "after"); n.ID != "ND_a" {
		t.Fatalf("undrained node (less loaded) not chosen: %s", n.ID)
	}
}

// Redis restarted empty: room_node_map is gone and LiveKit never rewrites it
// for a running room, so the proxy puts the room back where it knew it was,
// not where load would place it.
func TestRoomsRememberedAcrossEmptyRedis(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["running"] = "ND_b" // the busier node
	mustRoute(t, r, "running")
	f.SetErr(errDown)
	r.Refresh(context.Background())
	f.Lock()
	f.Placements = map[string]string{} // comes back empty
	f.Unlock()
	f.SetErr(nil)
	r.Refresh(context.Background())
	r.place.cache.drop("running") // even once the cache has moved on
	if n, o := mustRoute(t, r, "running"); n.ID != "ND_b" || f.Room("running") != "ND_b" {
		t.Fatalf("after an empty Redis: %s %s, map %q; want ND_b", n.ID, o, f.Room("running"))
	}
	if n, _ := mustRoute(t, r, "brand-new"); n.ID != "ND_a" {
		t.Fatalf("a new room after the outage went to %s, want the less loaded ND_a", n.ID)
	}
}

// Placements of different rooms at the same moment still spread: choosing a
// node and counting it pending are one step.
func TestConcurrentNewRoomsSpread(t *testing.T) {
	f := clustertest.NewStore()
	for i := range 3 {
		f.SetNode(lkNode(fmt.Sprint("ND_", i), fmt.Sprint("10.0.0.", i+1), serving, 0, 0))
	}
	s := testConfig()
	s.LoadMeasure = MeasureRooms
	r := newTestCluster(t, f, s)
	r.place.store = &slowStore{Store: f, delay: 20 * time.Millisecond}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustRoute(t, r, fmt.Sprint("burst-", i))
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for i := range 30 {
		count[f.Room(fmt.Sprint("burst-", i))]++
	}
	for id, n := range count {
		if n != 10 {
			t.Fatalf("30 concurrent new rooms placed %v; %s got %d, want 10 each", count, id, n)
		}
	}
}

// Nodes register again one by one after an empty Redis: a room waits for
// its own node (503, retry) instead of being placed on the first one back.
func TestRememberedNodeIsWaitedFor(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["running"] = "ND_b"
	mustRoute(t, r, "running")
	f.SetErr(errDown)
	r.Refresh(context.Background())
	f.Lock()
	f.Placements = map[string]string{}
	delete(f.Registered, "ND_b") // not registered again yet
	f.Unlock()
	f.SetErr(nil)
	r.Refresh(context.Background())
	r.place.cache.drop("running")
	if _, _, err := r.Route(context.Background(), "running"); !errors.Is(err, ErrNoNode) || f.Room("running") != "" {
		t.Fatalf("room placed (%q, %v) before its node registered again", f.Room("running"), err)
	}
	f.SetNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	r.Refresh(context.Background())
	if n, _ := mustRoute(t, r, "running"); n.ID != "ND_b" {
		t.Fatalf("room went to %s, want its node ND_b", n.ID)
	}
}
