package livekitlb

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"
)

// fakeStore is an in-memory room_node_map and nodes hash with the same
// atomicity as Redis (one mutex stands for Redis' single thread).
type fakeStore struct {
	mu      sync.Mutex
	drained map[string]string
	nodes   map[string]*livekit.Node
	bad     []BadNode // entries Nodes reports as ignored
	rooms   map[string]string
	err     error // returned by every call while set
	lookups int   // RoomNode calls
	writes  int   // PlaceRoom + ReplaceRoom calls
}

func newFakeStore() *fakeStore {
	return &fakeStore{nodes: map[string]*livekit.Node{}, rooms: map[string]string{}}
}

func (f *fakeStore) Nodes(context.Context) ([]*livekit.Node, []BadNode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, nil, f.err
	}
	out := make([]*livekit.Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	return out, f.bad, nil
}

func (f *fakeStore) RoomNode(_ context.Context, room string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return f.rooms[room], f.err
}

func (f *fakeStore) PlaceRoom(_ context.Context, room, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.err != nil {
		return "", f.err
	}
	if cur := f.rooms[room]; cur != "" { // "" names no node, as in placeScript
		return cur, nil
	}
	f.rooms[room] = id
	return id, nil
}

func (f *fakeStore) ReplaceRoom(_ context.Context, room, old, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.err != nil {
		return "", f.err
	}
	cur, ok := f.rooms[room]
	if !ok || cur == old {
		f.rooms[room] = id
		return id, nil
	}
	return cur, nil
}

func (f *fakeStore) UnplaceRoom(_ context.Context, room, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if f.rooms[room] == id {
		delete(f.rooms, room)
	}
	return nil
}

func (f *fakeStore) ScanRooms(_ context.Context, cursor uint64, count int64) (map[string]string, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, 0, f.err
	}
	out := map[string]string{}
	for k, v := range f.rooms {
		out[k] = v
	}
	return out, 0, nil
}

func (f *fakeStore) Drained(context.Context) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.drained {
		out[k] = v
	}
	return out, f.err
}

func (f *fakeStore) SetDrained(_ context.Context, node string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drained == nil {
		f.drained = map[string]string{}
	}
	if on {
		f.drained[node] = "now"
	} else {
		delete(f.drained, node)
	}
	return f.err
}

func (f *fakeStore) ConfigGet(context.Context, string) (string, error) { return "", f.err }

func (f *fakeStore) Ping(context.Context) error { return f.err }
func (f *fakeStore) Close() error               { return nil }

func (f *fakeStore) setNode(n *livekit.Node) {
	f.mu.Lock()
	f.nodes[n.Id] = n
	f.mu.Unlock()
}

func (f *fakeStore) room(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rooms[name]
}

func (f *fakeStore) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

var errDown = errors.New("connection refused")

// lkNode builds a node registered now with the given load.
func lkNode(id, ip string, state livekit.NodeState, sysload float32, rooms int32) *livekit.Node {
	return &livekit.Node{Id: id, Ip: ip, State: state, Stats: &livekit.NodeStats{
		UpdatedAt: time.Now().Unix(), NumCpus: 1, LoadAvgLast1Min: sysload, NumRooms: rooms,
	}}
}

func testSettings() settings {
	return settings{
		refresh: time.Hour, staleAfter: 5 * time.Second, cacheTTL: 5 * time.Second,
		redisTimeout: time.Second, failDuration: 5 * time.Second, measure: MeasureSysload,
	}
}

// newTestRegistry starts a registry over f that refreshes only when told.
func newTestRegistry(t testing.TB, f *fakeStore, s settings) *Registry {
	t.Helper()
	book, err := newAddressBook(7880, nil, defaultAllowNetworks)
	if err != nil {
		t.Fatal(err)
	}
	r := newRegistry(s, f, book, zap.NewNop())
	t.Cleanup(func() { _ = r.Destruct() })
	r.WaitLoaded(context.Background())
	return r
}
