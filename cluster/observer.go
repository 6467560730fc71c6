package cluster

import (
	"context"
	"errors"
	"time"
)

// Observer is told what the cluster sees, for metrics; the core keeps no
// metric of its own. Calls come from several goroutines.
type Observer interface {
	// NodesRead: the nodes this proxy has seen fresh, after a refresh, and
	// the ids of those that left `nodes`.
	NodesRead(now time.Time, nodes []*Node, gone []string)
	// NodeTransition: a node went out of rotation (up false) or came back.
	NodeTransition(up bool)
	// RedisCall: one Redis operation and how it went.
	RedisCall(op string, took time.Duration, err error)
	// PlacementConflict: a placement write lost to another writer.
	PlacementConflict()
	// SessionsClosed: open sessions of a node declared dead were closed.
	SessionsClosed(n int)
}

// NopObserver observes nothing.
type NopObserver struct{}

func (NopObserver) NodesRead(time.Time, []*Node, []string) {}
func (NopObserver) NodeTransition(bool)                    {}
func (NopObserver) RedisCall(string, time.Duration, error) {}
func (NopObserver) PlacementConflict()                     {}
func (NopObserver) SessionsClosed(int)                     {}

// timedStore reports the routing operations of the store it wraps.
type timedStore struct {
	Store
	obs Observer
}

func (s timedStore) observe(op string, start time.Time, err error) {
	if errors.Is(err, context.Canceled) {
		err = nil // the caller gave up; Redis did not fail
	}
	s.obs.RedisCall(op, time.Since(start), err)
}

func (s timedStore) Nodes(ctx context.Context) (raw map[string]string, err error) {
	defer func(t time.Time) { s.observe("nodes", t, err) }(time.Now())
	return s.Store.Nodes(ctx)
}

func (s timedStore) RoomNode(ctx context.Context, room string) (id string, err error) {
	defer func(t time.Time) { s.observe("room_node", t, err) }(time.Now())
	return s.Store.RoomNode(ctx, room)
}

func (s timedStore) PlaceRoom(ctx context.Context, room, nodeID string) (w string, err error) {
	defer func(t time.Time) { s.observe("place_room", t, err) }(time.Now())
	return s.Store.PlaceRoom(ctx, room, nodeID)
}

func (s timedStore) ReplaceRoom(ctx context.Context, room, oldID, newID string) (w string, err error) {
	defer func(t time.Time) { s.observe("replace_room", t, err) }(time.Now())
	return s.Store.ReplaceRoom(ctx, room, oldID, newID)
}
