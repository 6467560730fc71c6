// Package clustertest has what tests of the cluster and of the modules
// share: an in-memory Redis for cluster.New.
package clustertest

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// Store is an in-memory `nodes` hash and room_node_map with the atomicity
// of Redis (one mutex stands for Redis' single thread); it satisfies
// cluster.Store. Tests set the exported fields before the cluster reads
// them, or under Lock.
type Store struct {
	sync.Mutex
	Registered map[string]*livekit.Node // the `nodes` hash, by node id
	Junk       map[string]string        // other `nodes` entries, raw
	Placements map[string]string        // room_node_map
	Drain      map[string]string
	Err        error // returned by every call while set
	Lookups    int   // RoomNode calls
	Writes     int   // PlaceRoom + ReplaceRoom calls
}

// ErrDown is a Redis that does not answer.
var ErrDown = errors.New("connection refused")

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{Registered: map[string]*livekit.Node{}, Junk: map[string]string{}, Placements: map[string]string{},
		Drain: map[string]string{}}
}

// Node builds a node registered now with the given load.
func Node(id, ip string, state livekit.NodeState, sysload float32, rooms int32) *livekit.Node {
	return &livekit.Node{Id: id, Ip: ip, State: state, Stats: &livekit.NodeStats{
		UpdatedAt: time.Now().Unix(), NumCpus: 1, LoadAvgLast1Min: sysload, NumRooms: rooms,
	}}
}

// SetNode registers n (or writes its entry again).
func (f *Store) SetNode(n *livekit.Node) {
	f.Lock()
	f.Registered[n.Id] = n
	f.Unlock()
}

// Room returns room's placement.
func (f *Store) Room(name string) string {
	f.Lock()
	defer f.Unlock()
	return f.Placements[name]
}

// SetErr makes every call fail with err (nil: answer again).
func (f *Store) SetErr(err error) {
	f.Lock()
	f.Err = err
	f.Unlock()
}

func (f *Store) Nodes(context.Context) (map[string]string, error) {
	f.Lock()
	defer f.Unlock()
	if f.Err != nil {
		return nil, f.Err
	}
	out := maps.Clone(f.Junk)
	if out == nil {
		out = map[string]string{}
	}
	for id, n := range f.Registered {
		b, err := proto.Marshal(n)
		if err != nil {
			return nil, err
		}
		out[id] = string(b)
	}
	return out, nil
}

func (f *Store) RoomNode(_ context.Context, room string) (string, error) {
	f.Lock()
	defer f.Unlock()
	f.Lookups++
	return f.Placements[room], f.Err
}

func (f *Store) PlaceRoom(_ context.Context, room, id string) (string, error) {
	f.Lock()
	defer f.Unlock()
	f.Writes++
	if f.Err != nil {
		return "", f.Err
	}
	if cur := f.Placements[room]; cur != "" { // "" names no node, as in placeScript
		return cur, nil
	}
	f.Placements[room] = id
	return id, nil
}

func (f *Store) ReplaceRoom(_ context.Context, room, old, id string) (string, error) {
	f.Lock()
	defer f.Unlock()
	f.Writes++
	if f.Err != nil {
		return "", f.Err
	}
	cur, ok := f.Placements[room]
	if !ok || cur == old {
		f.Placements[room] = id
		return id, nil
	}
	return cur, nil
}

func (f *Store) UnplaceRoom(_ context.Context, room, id string) error {
	f.Lock()
	defer f.Unlock()
	if f.Err != nil {
		return f.Err
	}
	if f.Placements[room] == id {
		delete(f.Placements, room)
	}
	return nil
}

func (f *Store) ScanRooms(context.Context, uint64, int64) (map[string]string, uint64, error) {
	f.Lock()
	defer f.Unlock()
	if f.Err != nil {
		return nil, 0, f.Err
	}
	return maps.Clone(f.Placements), 0, nil
}

func (f *Store) Drained(context.Context) (map[string]string, error) {
	f.Lock()
	defer f.Unlock()
	return maps.Clone(f.Drain), f.Err
}

func (f *Store) SetDrained(_ context.Context, node string, on bool) error {
	f.Lock()
	defer f.Unlock()
	if on {
		f.Drain[node] = "now"
	} else {
		delete(f.Drain, node)
	}
	return f.Err
}

func (f *Store) ConfigGet(context.Context, string) (string, error) { return "", f.Err }

func (f *Store) Ping(context.Context) error { return f.Err }

func (f *Store) Close() error { return nil }
