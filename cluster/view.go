package cluster

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"
)

// view is the proxy's picture of the `nodes` hash: one goroutine (run)
// reads it on an interval and is the only writer of everything here; the
// request path reads the snapshot without locks.
type view struct {
	store        Store
	book         *addressBook
	every        time.Duration
	staleAfter   time.Duration
	redisTimeout time.Duration
	limits       Limits
	log          *zap.Logger
	obs          Observer
	// redisBack is called (from run) when Redis answers after an outage
	redisBack func(now time.Time)

	snap    atomic.Pointer[snapshot]
	redisOK atomic.Bool
	loaded  chan struct{} // closed after the first refresh attempt
	kicks   chan chan struct{}
	stopped <-chan struct{} // closed when run has returned

	// run's own: each node's health outlives the snapshots, and the last
	// Redis outage (no node can write stats during one, so its length does
	// not count towards their age)
	health                 map[string]*nodeHealth
	outageStart, outageEnd time.Time
}

// outageRefresh is the refresh pace while Redis is unreachable.
const outageRefresh = 200 * time.Millisecond

// snapshot is an immutable view of the `nodes` hash.
type snapshot struct {
	byID    map[string]*Node
	nodes   []*Node           // sorted by id, for stable iteration
	drained map[string]string // node ids and IPs drained by the operator
	bad     []BadNode         // entries of `nodes` ignored (see decodeNode)
}

var emptySnapshot = &snapshot{byID: map[string]*Node{}}

func newView(cfg Config, st Store, book *addressBook, log *zap.Logger, obs Observer) *view {
	v := &view{
		store: st, book: book, every: cfg.RefreshInterval, staleAfter: cfg.StaleAfter, redisTimeout: cfg.RedisTimeout, limits: cfg.Limits,
		log: log, obs: obs, redisBack: func(time.Time) {},
		loaded: make(chan struct{}), kicks: make(chan chan struct{}), health: map[string]*nodeHealth{},
	}
	v.snap.Store(emptySnapshot)
	v.redisOK.Store(true)
	return v
}

func (v *view) current() *snapshot { return v.snap.Load() }

// run refreshes until ctx ends; a refresh asked for by refreshNow runs here
// too, so that nothing else ever writes the view's state.
func (v *view) run(ctx context.Context) {
	v.refresh(ctx)
	close(v.loaded)
	for {
		// while Redis is unreachable, look more often: routing is whole again
		// as soon as it answers
		wait := v.every
		if !v.redisOK.Load() {
			wait = min(wait, outageRefresh)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			v.refresh(ctx)
		case done := <-v.kicks:
			t.Stop()
			v.refresh(ctx)
			close(done)
		}
	}
}

// refreshNow has run read Redis again (after a drain) and waits for it, or
// for ctx, or for run to have stopped.
func (v *view) refreshNow(ctx context.Context) {
	done := make(chan struct{})
	select {
	case v.kicks <- done:
	case <-ctx.Done():
		return
	case <-v.stopped:
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// wait blocks until the first refresh has been tried, or ctx ends.
func (v *view) wait(ctx context.Context) {
	select {
	case <-v.loaded:
	case <-ctx.Done():
	}
}

// refresh reads the `nodes` hash into a new snapshot. On a Redis error the
// last snapshot stays in force: known rooms keep routing.
func (v *view) refresh(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, v.redisTimeout)
	defer cancel()
	readAt := time.Now()
	entries, err := v.store.Nodes(rctx)
	if err != nil {
		if ctx.Err() == nil { // not shutting down
			v.redisState(false, err)
		}
		return
	}
	v.redisState(true, nil)
	raw, bad := decodeNodes(entries)
	old := v.snap.Load()
	drained, err := v.store.Drained(rctx)
	if err != nil {
		drained = old.drained // keep the last list
	}
	next := &snapshot{byID: make(map[string]*Node, len(raw)), nodes: make([]*Node, 0, len(raw)), drained: drained, bad: bad}
	v.logBad(old.bad, bad)
	var gauged []*Node // nodes with metric series
	for _, ln := range raw {
		n := v.node(ln, drained, readAt, old.byID[ln.Id])
		if n.health.seenFresh {
			gauged = append(gauged, n)
		}
		next.byID[n.ID] = n
		next.nodes = append(next.nodes, n)
	}
	var gone []string // node ids whose series go
	for id, h := range v.health {
		if _, ok := next.byID[id]; !ok {
			delete(v.health, id)
			if h.seenFresh {
				gone = append(gone, id)
				v.log.Info("livekit node removed", zap.String("node", id))
			}
		}
	}
	v.obs.NodesRead(readAt, gauged, gone)
	slices.SortFunc(next.nodes, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	v.snap.Store(next)
}

// node builds the view of one entry, keeping its health, and logs a change.
func (v *view) node(ln *livekit.Node, drained map[string]string, readAt time.Time, prev *Node) *Node {
	h := v.health[ln.Id]
	if h == nil {
		h = &nodeHealth{}
		v.health[ln.Id] = h
	}
	dial, derr := v.book.dial(ln.Ip)
	n := newNode(ln, dial, derr, h, v.statsClock(ln, readAt), v.staleAfter)
	_, byID := drained[n.ID]
	_, byIP := drained[n.IP]
	n.Drained = byID || byIP
	n.Full = v.limits.full(n, readAt, 0)
	// entries of nodes long dead stay in `nodes` (and anyone may add some):
	// only a node this proxy has seen with fresh stats gets metric series
	// and log lines
	first := n.Fresh && !h.seenFresh
	h.seenFresh = h.seenFresh || n.Fresh
	if h.seenFresh && (first || prev == nil || prev.State != n.State || prev.Dial != n.Dial || prev.Drained != n.Drained) {
		fields := []zap.Field{zap.String("node", n.ID), zap.String("ip", Quote(n.IP)), zap.String("dial", n.Dial),
			zap.String("state", n.State.String()), zap.Bool("drained", n.Drained)}
		if derr != nil {
			// a node clients can use and the proxy cannot reach: the operator must act
			v.log.Warn("livekit node", append(fields, zap.NamedError("not_dialled", derr))...)
		} else {
			v.log.Info("livekit node", fields...)
		}
	}
	return n
}

// maxBadLogged bounds the lines one refresh logs about ignored entries:
// anyone who can write to Redis can add thousands.
const maxBadLogged = 5

// logBad logs the ignored entries of `nodes` that the last refresh did not
// have, each once.
func (v *view) logBad(before, now []BadNode) {
	if len(now) == 0 {
		return
	}
	seen := make(map[string]bool, len(before))
	for _, b := range before {
		seen[b.Field] = true
	}
	fresh := 0
	for _, b := range now {
		if seen[b.Field] {
			continue
		}
		if fresh++; fresh <= maxBadLogged {
			v.log.Warn("ignoring an entry of LiveKit's nodes hash", zap.String("field", b.Field), zap.String("reason", b.Reason))
		}
	}
	if fresh > maxBadLogged {
		v.log.Warn("ignoring more entries of LiveKit's nodes hash", zap.Int("more", fresh-maxBadLogged), zap.Int("ignored", len(now)))
	}
}

// statsClock is the time at which a node's stats age is judged: readAt,
// less the part of the last Redis outage that came after the node's update.
func (v *view) statsClock(n *livekit.Node, readAt time.Time) time.Time {
	if v.outageEnd.IsZero() || n.Stats == nil {
		return readAt
	}
	updated := time.Unix(n.Stats.UpdatedAt, 0)
	if !v.outageEnd.After(updated) {
		return readAt
	}
	from := v.outageStart
	if updated.After(from) {
		from = updated
	}
	return readAt.Add(-v.outageEnd.Sub(from))
}

// redisState logs a change of Redis reachability once, not per request.
func (v *view) redisState(ok bool, err error) {
	if v.redisOK.Swap(ok) == ok {
		return
	}
	now := time.Now()
	if ok {
		v.outageEnd = now
		v.redisBack(now)
		v.log.Info("redis reachable again")
	} else {
		v.outageStart, v.outageEnd = now, time.Time{}
		v.log.Error("redis unreachable; routing from the last known nodes", zap.Error(err))
	}
}
