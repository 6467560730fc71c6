package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
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

	// refusals, counted by the modules but never returned by Route
	OutcomeNoNode     Outcome = "no_node"
	OutcomeFull       Outcome = "full" // every node that could take a new room is at a limit
	OutcomeRedisError Outcome = "redis_error"
	OutcomeBadToken   Outcome = "bad_token"
	OutcomeBadRequest Outcome = "bad_request" // a server API call whose body names no room
)

// Every error of Route and Reroute is one of these (or the caller's
// context.Canceled): the modules answer by errors.Is alone.
var (
	// ErrNoNode: no LiveKit node can take the request.
	ErrNoNode = errors.New("no routable LiveKit node")
	// ErrRedis: the placement could not be read or written in time.
	ErrRedis = errors.New("LiveKit's Redis is unreachable")
)

// placer decides where each room lives: it reads room_node_map through a
// short cache, and places new rooms with an atomic write.
type placer struct {
	store        Store
	nodes        func() *snapshot
	redisOK      func() bool
	measure      string
	limits       Limits
	regions      regions
	staleAfter   time.Duration
	redisTimeout time.Duration
	log          *zap.Logger
	obs          Observer

	cache   *placementCache
	lookups singleflight.Group
	placeMu sync.Mutex // choosing a node and counting it pending are one step
	// remembered: the placements the proxy knew when Redis came back from
	// an outage; a Redis that returns empty has lost room_node_map, and
	// LiveKit never rewrites it for a running room
	remembered atomic.Pointer[rememberedPlacements]
}

// afterOutage is how long the proxy trusts its memory of placements for
// rooms that Redis no longer knows after an outage.
const afterOutage = 10 * time.Minute

type rememberedPlacements struct {
	rooms map[string]string
	until time.Time // trusted until then
	wait  time.Time // until then a remembered node not yet registered again is waited for
}

// redisBack: Redis answers again, and may have come back empty. Every room
// is checked with it again (the cache would send joins to a node that finds
// no placement and lets LiveKit's own selector place the room elsewhere),
// and the remembered placement is written back where it is missing.
func (p *placer) redisBack(now time.Time) {
	p.remembered.Store(&rememberedPlacements{rooms: p.cache.clear(), until: now.Add(afterOutage),
		wait: now.Add(2 * p.staleAfter)})
}

// rememberedNode returns the node room was on before the last Redis outage,
// within afterOutage of its end, and whether a node that has not registered
// again yet is still worth waiting for.
func (p *placer) rememberedNode(room string, now time.Time) (string, bool) {
	m := p.remembered.Load()
	if m == nil || now.After(m.until) {
		return "", false
	}
	id := m.rooms[room]
	return id, id != "" && now.Before(m.wait)
}

// maxPlacementRounds bounds the loop of reading, choosing and writing a
// placement when other proxies keep winning with dead nodes.
const maxPlacementRounds = 3

// route chooses the node for room; with place unset it never writes a
// placement (see Cluster.Route).
func (r *placer) route(ctx context.Context, room string, place bool) (*Node, Outcome, error) {
	now := time.Now()
	snap := r.nodes()
	if room == "" {
		if n := r.anyNode(snap, now); n != nil {
			return n, OutcomeNoRoom, nil
		}
		return nil, OutcomeNoRoom, ErrNoNode
	}
	id, fresh, cached := r.cache.get(room, now)
	if cached {
		if n := snap.byID[id]; n != nil && n.Routable(now) && (fresh || !r.redisOK()) {
			return n, OutcomeCached, nil
		}
	}
	if !r.redisOK() {
		// fail fast: the refresh loop retries Redis every refresh_interval
		return nil, "", ErrRedis
	}
	key := room
	if !place {
		key = "\x00" + room // never shares a lookup that may place
	}
	near := nearFrom(ctx) // the first of concurrent joins of a new room says where it goes
	ch := r.lookups.DoChan(key, func() (any, error) {
		// not the caller's context: a caller that gives up must not fail the others
		lctx, cancel := context.WithTimeout(context.Background(), r.redisTimeout)
		defer cancel()
		return r.resolve(lctx, room, place, near)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, "", res.Err
		}
		d := res.Val.(decision)
		return d.node, d.outcome, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, "", fmt.Errorf("%w: %v", ErrRedis, ctx.Err())
		}
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
func (r *placer) resolve(ctx context.Context, room string, place bool, near func() string) (decision, error) {
	cur, err := r.store.RoomNode(ctx, room)
	if err != nil {
		// Redis failed before the refresh loop noticed: an expired
		// placement still beats no answer
		if id, _, ok := r.cache.get(room, time.Now()); ok {
			if n := r.nodes().byID[id]; n != nil && n.Routable(time.Now()) {
				return decision{n, OutcomeCached}, nil
			}
		}
		return decision{}, fmt.Errorf("%w: %v", ErrRedis, err)
	}
	outcome := OutcomeFound
	for round := 0; round < maxPlacementRounds; round++ {
		now := time.Now()
		snap := r.nodes()
		if cur != "" {
			if n := snap.byID[cur]; n != nil {
				if n.Routable(now) {
					r.cache.put(room, n.ID, now)
					return decision{n, outcome}, nil
				}
				if n.Dial == "" && n.Alive() {
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
		target, full := r.choose(snap, room, cur, near, now)
		if target == nil {
			if full {
				return decision{}, ErrFull
			}
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
				r.log.Info("room re-placed", Field("room", room), Field("from", cur), zap.String("to", target.ID))
			}
			return decision{target, outcome}, nil
		}
		target.health.unmarkPlaced(now)
		r.obs.PlacementConflict()
		cur, outcome = winner, OutcomeFollowed
	}
	return decision{}, fmt.Errorf("%w: placement of room kept changing", ErrNoNode)
}

// choose picks the node for a new placement of room and counts it as
// pending at once: placements of different rooms run concurrently, and each
// must see the ones before it, or a burst lands on one node. A new room goes
// to the region nearest to near with a node under the limits; full says
// that nodes were there but all at a limit.
func (r *placer) choose(snap *snapshot, room, cur string, near func() string, now time.Time) (target *Node, full bool) {
	r.placeMu.Lock()
	defer r.placeMu.Unlock()
	if cur == "" {
		// a Redis that came back empty forgot a running room: put it back
		// where its participants are, not where load says; nodes re-register
		// one by one, so wait a little for that one rather than split the room
		id, waiting := r.rememberedNode(room, now)
		if n := snap.byID[id]; n != nil && n.Routable(now) {
			target = n
		} else if n == nil && waiting {
			return nil, false
		}
	}
	if target == nil {
		open := func(n *Node) bool { return n.Placeable(now) && !r.limits.full(n, now, r.staleAfter) }
		target = leastLoaded(snap.nodes, r.measure, now, r.staleAfter, r.regions.nearest(snap.nodes, near(), open))
		if target == nil {
			for _, n := range snap.nodes {
				full = full || n.Placeable(now)
			}
		}
	}
	if target != nil {
		target.health.markPlaced(now)
	}
	return target, full
}

// anyNode chooses a node for a request that names no room: the least loaded
// serving node, or a draining one when nothing else is left.
func (r *placer) anyNode(snap *snapshot, now time.Time) *Node {
	if n := leastLoadedNow(snap.nodes, r.measure, now, func(n *Node) bool { return n.Placeable(now) }); n != nil {
		return n
	}
	return leastLoadedNow(snap.nodes, r.measure, now, func(n *Node) bool { return n.Routable(now) })
}

// leastLoadedNow is leastLoaded without the pending placements, for requests
// that create no room.
func leastLoadedNow(nodes []*Node, measure string, now time.Time, ok func(*Node) bool) *Node {
	return leastLoaded(nodes, measure, now, 0, ok)
}

// unplace undoes a placement this proxy made, unless someone has moved it.
func (r *placer) unplace(ctx context.Context, room, nodeID string) error {
	r.cache.drop(room)
	ctx, cancel := context.WithTimeout(ctx, r.redisTimeout)
	defer cancel()
	if err := r.store.UnplaceRoom(ctx, room, nodeID); err != nil {
		return fmt.Errorf("%w: %v", ErrRedis, err)
	}
	return nil
}
