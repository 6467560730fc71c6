package livekitlb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Outcome says how a request's node was chosen; it is logged and counted.
type Outcome string

const (
	OutcomeCached   Outcome = "cached"   // known room, placement from the cache
	OutcomeFound    Outcome = "found"    // placement read from room_node_map
	OutcomePlaced   Outcome = "placed"   // new room, this proxy placed it
	OutcomeFollowed Outcome = "followed" // another proxy or node placed it first
	OutcomeReplaced Outcome = "replaced" // its node was gone; moved by compare-and-set
	OutcomeRelayed  Outcome = "relayed"  // its node is alive but not dialable; LiveKit relays
	OutcomeNoRoom   Outcome = "no_room"  // request names no room: any routable node
	// an unverified token (verify off) names a room with no live placement:
	// any routable node, and LiveKit places the room (the proxy writes
	// nothing for a token it cannot check)
	OutcomeUnplaced Outcome = "unplaced"

	// refusals, counted but never returned by Route
	outcomeNoNode     Outcome = "no_node"
	outcomeRedisError Outcome = "redis_error"
	outcomeBadToken   Outcome = "bad_token"
)

var (
	// ErrNoNode: no LiveKit node can take the request.
	ErrNoNode = errors.New("no routable LiveKit node")
	// ErrRedis: the placement could not be read or written in time.
	ErrRedis = errors.New("LiveKit's Redis is unreachable")
)

// maxPlacementRounds bounds the loop of reading, choosing and writing a
// placement when other proxies keep winning with dead nodes.
const maxPlacementRounds = 3

// Route chooses the node for a request to room ("" for requests that name no
// room). A known room costs two map lookups and no allocation; an unknown
// one is looked up once in Redis however many requests ask at the same time.
func (r *Registry) Route(ctx context.Context, room string) (*Node, Outcome, error) {
	return r.route(ctx, room, true)
}

// RouteUnverified is Route for a room read from a token nobody verified: it
// follows an existing placement but never writes one, so that made-up rooms
// cannot fill room_node_map or move real ones.
func (r *Registry) RouteUnverified(ctx context.Context, room string) (*Node, Outcome, error) {
	return r.route(ctx, room, false)
}

func (r *Registry) route(ctx context.Context, room string, place bool) (*Node, Outcome, error) {
	now := time.Now()
	snap := r.snap.Load()
	if room == "" {
		if n := r.anyNode(snap, now); n != nil {
			return n, OutcomeNoRoom, nil
		}
		return nil, OutcomeNoRoom, ErrNoNode
	}
	id, fresh, cached := r.cache.get(room, now)
	if cached {
		if n := snap.byID[id]; n != nil && n.routable(now) && (fresh || !r.redisOK.Load()) {
			return n, OutcomeCached, nil
		}
	}
	if !r.redisOK.Load() {
		// fail fast: the refresh loop retries Redis every refresh_interval
		return nil, "", ErrRedis
	}
	key := room
	if !place {
		key = "\x00" + room // never shares a lookup that may place
	}
	ch := r.lookups.DoChan(key, func() (any, error) {
		// not the caller's context: a caller that gives up must not fail the others
		lctx, cancel := context.WithTimeout(context.Background(), r.settings.redisTimeout)
		defer cancel()
		return r.resolve(lctx, room, place)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, "", res.Err
		}
		d := res.Val.(decision)
		return d.node, d.outcome, nil
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

type decision struct {
	node    *Node
	outcome Outcome
}

// resolve reads room_node_map and, when the room has no live node, places it
// with an atomic write so that no two writers can split a room (with place
// unset, it leaves that to LiveKit).
func (r *Registry) resolve(ctx context.Context, room string, place bool) (decision, error) {
	cur, err := r.store.RoomNode(ctx, room)
	if err != nil {
		// Redis failed before the refresh loop noticed: an expired
		// placement still beats no answer
		if id, _, ok := r.cache.get(room, time.Now()); ok {
			if n := r.snap.Load().byID[id]; n != nil && n.routable(time.Now()) {
				return decision{n, OutcomeCached}, nil
			}
		}
		return decision{}, fmt.Errorf("%w: %v", ErrRedis, err)
	}
	outcome := OutcomeFound
	for round := 0; round < maxPlacementRounds; round++ {
		now := time.Now()
		snap := r.snap.Load()
		if cur != "" {
			if n := snap.byID[cur]; n != nil {
				if n.routable(now) {
					r.cache.put(room, n.ID, now)
					return decision{n, outcome}, nil
				}
				if n.Dial == "" && n.alive() {
					// alive but outside the allow-list: moving the room would
					// split it, so let any node relay to it
					if a := r.anyNode(snap, now); a != nil {
						return decision{a, OutcomeRelayed}, nil
					}
					return decision{}, ErrNoNode
				}
			}
		}
		if !place {
			if a := r.anyNode(snap, now); a != nil {
				return decision{a, OutcomeUnplaced}, nil
			}
			return decision{}, ErrNoNode
		}
		target := r.choose(snap, room, cur, now)
		if target == nil {
			return decision{}, ErrNoNode
		}
		var winner string
		if cur == "" {
			winner, err = r.store.PlaceRoom(ctx, room, target.ID)
		} else {
			winner, err = r.store.ReplaceRoom(ctx, room, cur, target.ID)
		}
		if err != nil {
			target.health.unmarkPlaced(now)
			return decision{}, fmt.Errorf("%w: %v", ErrRedis, err)
		}
		if winner == target.ID {
			r.cache.put(room, target.ID, now)
			if cur == "" {
				outcome = OutcomePlaced
			} else {
				outcome = OutcomeReplaced
				r.log.Info("room re-placed", logged("room", room), logged("from", cur), zap.String("to", target.ID))
			}
			return decision{target, outcome}, nil
		}
		target.health.unmarkPlaced(now)
		metrics.conflicts.Inc()
		cur, outcome = winner, OutcomeFollowed
	}
	return decision{}, fmt.Errorf("%w: placement of room kept changing", ErrNoNode)
}

// choose picks the node for a new placement of room and counts it as
// pending at once: placements of different rooms run concurrently, and each
// must see the ones before it, or a burst lands on one node.
func (r *Registry) choose(snap *snapshot, room, cur string, now time.Time) *Node {
	r.placeMu.Lock()
	defer r.placeMu.Unlock()
	var target *Node
	if cur == "" {
		// a Redis that came back empty forgot a running room: put it back
		// where its participants are, not where load says; nodes re-register
		// one by one, so wait a little for that one rather than split the room
		id, waiting := r.rememberedNode(room, now)
		if n := snap.byID[id]; n != nil && n.routable(now) {
			target = n
		} else if n == nil && waiting {
			return nil
		}
	}
	if target == nil {
		target = leastLoaded(snap.nodes, r.settings.measure, now, r.settings.staleAfter, func(n *Node) bool {
			return n.placeable(now)
		})
	}
	if target != nil {
		target.health.markPlaced(now)
	}
	return target
}

// anyNode chooses a node for a request that names no room: the least loaded
// serving node, or a draining one when nothing else is left.
func (r *Registry) anyNode(snap *snapshot, now time.Time) *Node {
	if n := leastLoadedNow(snap.nodes, r.settings.measure, now, func(n *Node) bool { return n.placeable(now) }); n != nil {
		return n
	}
	return leastLoadedNow(snap.nodes, r.settings.measure, now, func(n *Node) bool { return n.routable(now) })
}

// leastLoadedNow is leastLoaded without the pending placements, for requests
// that create no room.
func leastLoadedNow(nodes []*Node, measure string, now time.Time, ok func(*Node) bool) *Node {
	return leastLoaded(nodes, measure, now, 0, ok)
}

// ReportFailure records that the proxy could not reach n for room's request,
// so the next Route avoids it (and re-places the room).
func (r *Registry) ReportFailure(n *Node, room string) {
	if n == nil {
		return
	}
	r.markDown(n, time.Now())
	if room != "" {
		r.cache.drop(room)
	}
}

// Unplace undoes a placement this proxy made (OutcomePlaced) when the room
// could not be created after all, unless someone has moved it since.
func (r *Registry) Unplace(ctx context.Context, room, nodeID string) error {
	r.cache.drop(room)
	ctx, cancel := context.WithTimeout(ctx, r.settings.redisTimeout)
	defer cancel()
	if err := r.store.UnplaceRoom(ctx, room, nodeID); err != nil {
		return fmt.Errorf("%w: %v", ErrRedis, err)
	}
	return nil
}

// RedisTimeout is the bound on any Redis operation a request waits for.
func (r *Registry) RedisTimeout() time.Duration { return r.settings.redisTimeout }
