package livekitlb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
)

const (
	serving  = livekit.NodeState_SERVING
	draining = livekit.NodeState_SHUTTING_DOWN
)

func twoNodes(t *testing.T) (*fakeStore, *Registry) {
	f := newFakeStore()
	f.setNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	f.setNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	return f, newTestRegistry(t, f, testSettings())
}

func mustRoute(t *testing.T, r *Registry, room string) (*Node, Outcome) {
	t.Helper()
	n, o, err := r.Route(context.Background(), room)
	if err != nil {
		t.Fatalf("Route(%q): %v", room, err)
	}
	return n, o
}

func TestRouteKnownRoomGoesToItsNode(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["standup"] = "ND_b" // the busier node: placement beats load

	n, o := mustRoute(t, r, "standup")
	if n.ID != "ND_b" || o != OutcomeFound || n.Dial != "10.0.0.2:7880" {
		t.Fatalf("got %s %s %s, want ND_b found 10.0.0.2:7880", n.ID, o, n.Dial)
	}
	n, o = mustRoute(t, r, "standup")
	if n.ID != "ND_b" || o != OutcomeCached {
		t.Fatalf("second request: got %s %s, want ND_b cached", n.ID, o)
	}
	if f.lookups != 1 {
		t.Fatalf("Redis lookups = %d, want 1 (second from cache)", f.lookups)
	}
}

func TestRouteNewRoomPlacedOnLeastLoaded(t *testing.T) {
	f, r := twoNodes(t)
	n, o := mustRoute(t, r, "new")
	if n.ID != "ND_a" || o != OutcomePlaced {
		t.Fatalf("got %s %s, want ND_a placed", n.ID, o)
	}
	if got := f.room("new"); got != "ND_a" {
		t.Fatalf("room_node_map[new] = %q, want ND_a", got)
	}
}

func TestRouteFollowsWinnerOfPlacementRace(t *testing.T) {
	f, r := twoNodes(t)
	// another writer places the room between our lookup and our write
	racer := &racingStore{fakeStore: f, room: "contested", winner: "ND_b"}
	r.store = racer
	n, o := mustRoute(t, r, "contested")
	if n.ID != "ND_b" || o != OutcomeFollowed {
		t.Fatalf("got %s %s, want ND_b followed", n.ID, o)
	}
	if got := f.room("contested"); got != "ND_b" {
		t.Fatalf("room_node_map[contested] = %q, want the winner ND_b", got)
	}
}

// racingStore lets another writer place room right after our lookup.
type racingStore struct {
	*fakeStore
	room, winner string
	once         sync.Once
}

func (s *racingStore) RoomNode(ctx context.Context, room string) (string, error) {
	id, err := s.fakeStore.RoomNode(ctx, room)
	s.once.Do(func() { _, _ = s.fakeStore.PlaceRoom(ctx, s.room, s.winner) })
	return id, err
}

func TestRouteReplacesRoomOfDeadNode(t *testing.T) {
	f, r := twoNodes(t)
	dead := lkNode("ND_dead", "10.0.0.3", serving, 0, 0)
	dead.Stats.UpdatedAt = time.Now().Add(-time.Minute).Unix()
	f.setNode(dead)
	f.rooms["orphan"] = "ND_dead"
	r.refresh(context.Background())

	n, o := mustRoute(t, r, "orphan")
	if n.ID != "ND_a" || o != OutcomeReplaced {
		t.Fatalf("got %s %s, want ND_a replaced", n.ID, o)
	}
	if got := f.room("orphan"); got != "ND_a" {
		t.Fatalf("room_node_map[orphan] = %q, want ND_a", got)
	}
}

func TestRouteReplacesRoomOfUnknownNode(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["gone"] = "ND_never_registered"
	n, o := mustRoute(t, r, "gone")
	if o != OutcomeReplaced || f.room("gone") != n.ID {
		t.Fatalf("got %s %s, map %q", n.ID, o, f.room("gone"))
	}
}

func TestRouteAfterProxyFailureReplacesRoom(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["r1"] = "ND_a"
	n, _ := mustRoute(t, r, "r1")
	r.ReportFailure(n, "r1")

	n2, o := mustRoute(t, r, "r1")
	if n2.ID != "ND_b" || o != OutcomeReplaced || f.room("r1") != "ND_b" {
		t.Fatalf("after failure got %s %s map %q, want ND_b replaced", n2.ID, o, f.room("r1"))
	}
	// and new rooms avoid the failed node
	n3, _ := mustRoute(t, r, "fresh")
	if n3.ID != "ND_b" {
		t.Fatalf("new room placed on %s, want ND_b while ND_a is out", n3.ID)
	}
}

func TestDrainingNodeKeepsRoomsTakesNoNewOnes(t *testing.T) {
	f := newFakeStore()
	f.setNode(lkNode("ND_drain", "10.0.0.1", draining, 0, 0))
	f.setNode(lkNode("ND_busy", "10.0.0.2", serving, 2, 50))
	f.rooms["old"] = "ND_drain"
	r := newTestRegistry(t, f, testSettings())

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
	f := newFakeStore()
	f.setNode(lkNode("ND_start", "10.0.0.1", livekit.NodeState_STARTING_UP, 0, 0))
	r := newTestRegistry(t, f, testSettings())
	if _, _, err := r.Route(context.Background(), "x"); !errors.Is(err, ErrNoNode) {
		t.Fatalf("err = %v, want ErrNoNode", err)
	}
	if f.room("x") != "" {
		t.Fatalf("a placement was written with no node to take it")
	}
}

func TestNodeOutsideAllowListIsNeverDialled(t *testing.T) {
	f := newFakeStore()
	f.setNode(lkNode("ND_pub", "203.0.113.7", serving, 0, 0))
	f.setNode(lkNode("ND_priv", "10.0.0.2", serving, 1, 10))
	f.rooms["on-public"] = "ND_pub"
	r := newTestRegistry(t, f, testSettings())

	for _, n := range r.Nodes() {
		if n.ID == "ND_pub" && n.Dial != "" {
			t.Fatalf("public node dial = %q, want none", n.Dial)
		}
	}
	// its room stays where LiveKit has it; another node relays
	n, o := mustRoute(t, r, "on-public")
	if n.ID != "ND_priv" || o != OutcomeRelayed || f.room("on-public") != "ND_pub" {
		t.Fatalf("got %s %s map %q, want ND_priv relayed, map unchanged", n.ID, o, f.room("on-public"))
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
	f.rooms["known"] = "ND_b"
	mustRoute(t, r, "known")
	f.setErr(errDown)
	r.refresh(context.Background()) // fails: last snapshot stays

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
	f.rooms["busy"] = "ND_a"
	slow := &slowStore{fakeStore: f, delay: 50 * time.Millisecond}
	r.store = slow
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustRoute(t, r, "busy")
		}()
	}
	wg.Wait()
	if f.lookups != 1 {
		t.Fatalf("Redis lookups = %d for 20 concurrent requests, want 1", f.lookups)
	}
}

type slowStore struct {
	*fakeStore
	delay time.Duration
}

func (s *slowStore) RoomNode(ctx context.Context, room string) (string, error) {
	time.Sleep(s.delay)
	return s.fakeStore.RoomNode(ctx, room)
}

// Two proxies (two registries over one store) place the same rooms at once:
// every room ends on exactly one node and both proxies agree on it.
func TestTwoProxiesNeverSplitARoom(t *testing.T) {
	f := newFakeStore()
	for i := range 3 {
		f.setNode(lkNode(fmt.Sprint("ND_", i), fmt.Sprint("10.0.0.", i+1), serving, 0, 0))
	}
	a := newTestRegistry(t, f, testSettings())
	b := newTestRegistry(t, f, testSettings())
	var mu sync.Mutex
	seen := map[string]map[string]bool{}
	var wg sync.WaitGroup
	for _, r := range []*Registry{a, b, a, b} {
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
			if f.room(room) != id {
				t.Errorf("room %s routed to %s but mapped to %s", room, id, f.room(room))
			}
		}
	}
}

// While Redis is unreachable no node can write stats; when it returns the
// nodes must not look stale for the outage's length.
func TestRedisOutageDoesNotAgeNodes(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["known"] = "ND_a"
	mustRoute(t, r, "known")
	f.setErr(errDown)
	r.refresh(context.Background())
	r.outageStart = time.Now().Add(-time.Minute) // a minute-long outage
	for _, n := range f.nodes {
		n.Stats.UpdatedAt = time.Now().Add(-61 * time.Second).Unix() // last written as it began
	}
	// during the outage: known rooms route from the cache, however old
	r.cache = newPlacementCache(time.Nanosecond)
	r.cache.put("known", "ND_a", time.Now())
	if n, o := mustRoute(t, r, "known"); n.ID != "ND_a" || o != OutcomeCached {
		t.Fatalf("known room during outage: %s %s", n.ID, o)
	}
	f.setErr(nil)
	r.refresh(context.Background())
	if n, o := mustRoute(t, r, "fresh-room"); o != OutcomePlaced {
		t.Fatalf("after Redis returned: %v %s, nodes looked stale", n, o)
	}
}

func TestProbesTakeNodeOutAndBack(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["r"] = "ND_a"
	r.prober = newProber(time.Hour, time.Second)
	a := r.snap.Load().byID["ND_a"]
	r.probed(a, errDown)
	if !a.routable(time.Now()) {
		t.Fatal("one failed probe took the node out")
	}
	r.probed(a, errDown)
	if a.routable(time.Now()) {
		t.Fatal("two failed probes left the node in")
	}
	if n, o := mustRoute(t, r, "r"); n.ID != "ND_b" || o != OutcomeReplaced {
		t.Fatalf("room of a dead node: %s %s", n.ID, o)
	}
	r.probed(a, nil)
	if a.routable(time.Now()) {
		t.Fatal("one answer brought the node back")
	}
	r.probed(a, nil)
	if !a.routable(time.Now()) {
		t.Fatal("two answers did not bring the node back")
	}
	// a passive failure takes it out until the probes see it again
	r.ReportFailure(a, "")
	if a.routable(time.Now()) {
		t.Fatal("passive failure ignored")
	}
	r.probed(a, nil)
	r.probed(a, nil)
	if !a.routable(time.Now()) {
		t.Fatal("probes did not bring it back after a passive failure")
	}
}

func TestOperatorDrain(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["kept"] = "ND_a"
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
	f.rooms["running"] = "ND_b" // the busier node
	mustRoute(t, r, "running")
	f.setErr(errDown)
	r.refresh(context.Background())
	f.mu.Lock()
	f.rooms = map[string]string{} // comes back empty
	f.mu.Unlock()
	f.setErr(nil)
	r.refresh(context.Background())
	r.cache.drop("running") // even once the cache has moved on
	if n, o := mustRoute(t, r, "running"); n.ID != "ND_b" || f.room("running") != "ND_b" {
		t.Fatalf("after an empty Redis: %s %s, map %q; want ND_b", n.ID, o, f.room("running"))
	}
	if n, _ := mustRoute(t, r, "brand-new"); n.ID != "ND_a" {
		t.Fatalf("a new room after the outage went to %s, want the less loaded ND_a", n.ID)
	}
}

// Placements of different rooms at the same moment still spread: choosing a
// node and counting it pending are one step.
func TestConcurrentNewRoomsSpread(t *testing.T) {
	f := newFakeStore()
	for i := range 3 {
		f.setNode(lkNode(fmt.Sprint("ND_", i), fmt.Sprint("10.0.0.", i+1), serving, 0, 0))
	}
	s := testSettings()
	s.measure = MeasureRooms
	r := newTestRegistry(t, f, s)
	r.store = &slowStore{fakeStore: f, delay: 20 * time.Millisecond}
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
		count[f.room(fmt.Sprint("burst-", i))]++
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
	f.rooms["running"] = "ND_b"
	mustRoute(t, r, "running")
	f.setErr(errDown)
	r.refresh(context.Background())
	f.mu.Lock()
	f.rooms = map[string]string{}
	delete(f.nodes, "ND_b") // not registered again yet
	f.mu.Unlock()
	f.setErr(nil)
	r.refresh(context.Background())
	r.cache.drop("running")
	if _, _, err := r.Route(context.Background(), "running"); !errors.Is(err, ErrNoNode) || f.room("running") != "" {
		t.Fatalf("room placed (%q, %v) before its node registered again", f.room("running"), err)
	}
	f.setNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	r.refresh(context.Background())
	if n, _ := mustRoute(t, r, "running"); n.ID != "ND_b" {
		t.Fatalf("room went to %s, want its node ND_b", n.ID)
	}
}
