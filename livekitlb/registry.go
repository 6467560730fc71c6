package livekitlb

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Registry is the proxy's picture of one LiveKit cluster: the nodes from the
// `nodes` hash, refreshed on an interval, and a short cache of room
// placements. One Registry serves every module configured for the same
// cluster, across config reloads (see registries in cluster.go).
type Registry struct {
	settings settings
	store    store
	book     *addressBook
	prober   *prober // nil: active probes off
	log      *zap.Logger

	snap    atomic.Pointer[snapshot]
	cache   *placementCache
	lookups singleflight.Group
	placeMu sync.Mutex // choosing a node and counting it pending are one step

	healthMu sync.Mutex
	health   map[string]*nodeHealth

	redisOK atomic.Bool
	// remembered: the placements the proxy knew when Redis came back from
	// an outage; a Redis that returns empty has lost room_node_map, and
	// LiveKit never rewrites it for a running room
	remembered atomic.Pointer[rememberedPlacements]
	// the last Redis outage (refresh goroutine only): no node can write
	// stats during one, so its length does not count towards their age
	outageStart, outageEnd time.Time
	loaded                 chan struct{} // closed after the first refresh attempt
	loadOnce               sync.Once
	stop                   context.CancelFunc
	done                   chan struct{}
}

// settings are the resolved timing and placement options of a Cluster.
type settings struct {
	refresh      time.Duration
	staleAfter   time.Duration
	cacheTTL     time.Duration
	redisTimeout time.Duration
	failDuration time.Duration
	measure      string
	// probeInterval <= 0 turns the active probes off.
	probeInterval time.Duration
	probeTimeout  time.Duration
}

// outageRefresh is the refresh pace while Redis is unreachable.
const outageRefresh = 200 * time.Millisecond

// afterOutage is how long the proxy trusts its memory of placements for
// rooms that Redis no longer knows after an outage.
const afterOutage = 10 * time.Minute

// snapshot is an immutable view of the `nodes` hash.
type snapshot struct {
	byID    map[string]*Node
	nodes   []*Node           // sorted by id, for stable iteration
	drained map[string]string // node ids and IPs drained by the operator
	bad     []BadNode         // entries of `nodes` ignored (see decodeNode)
}

var emptySnapshot = &snapshot{byID: map[string]*Node{}}

func newRegistry(s settings, st store, book *addressBook, log *zap.Logger) *Registry {
	initMetrics()
	quietRedisLog(log)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		settings: s,
		store:    st,
		book:     book,
		log:      log,
		cache:    newPlacementCache(s.cacheTTL),
		health:   map[string]*nodeHealth{},
		loaded:   make(chan struct{}),
		stop:     cancel,
		done:     make(chan struct{}),
	}
	r.snap.Store(emptySnapshot)
	r.redisOK.Store(true)
	if s.probeInterval > 0 {
		r.prober = newProber(s.probeInterval, s.probeTimeout)
	}
	go r.run(ctx)
	return r
}

// Destruct stops the refresh loop; called when the last config using this
// registry is unloaded.
func (r *Registry) Destruct() error {
	r.stop()
	<-r.done
	var ids []string
	for _, n := range r.snap.Load().nodes {
		ids = append(ids, n.ID)
	}
	nodeGauges(time.Now(), nil, ids)
	return r.store.Close()
}

// Loaded reports whether the first refresh has been tried.
func (r *Registry) Loaded() bool {
	select {
	case <-r.loaded:
		return true
	default:
		return false
	}
}

// WaitLoaded blocks until the first refresh has been tried, so the first
// request after start-up does not see an empty cluster.
func (r *Registry) WaitLoaded(ctx context.Context) {
	select {
	case <-r.loaded:
	case <-ctx.Done():
	}
}

func (r *Registry) run(ctx context.Context) {
	defer close(r.done)
	if r.prober != nil {
		probing := make(chan struct{})
		go func() {
			defer close(probing)
			r.probeLoop(ctx)
		}()
		defer func() { <-probing }()
	}
	for {
		r.refresh(ctx)
		// while Redis is unreachable, look more often: routing is whole again
		// as soon as it answers
		wait := r.settings.refresh
		if !r.redisOK.Load() {
			wait = min(wait, outageRefresh)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh reads the `nodes` hash into a new snapshot. On a Redis error the
// last snapshot stays in force: known rooms keep routing.
func (r *Registry) refresh(ctx context.Context) {
	defer r.loadOnce.Do(func() { close(r.loaded) })
	rctx, cancel := context.WithTimeout(ctx, r.settings.redisTimeout)
	defer cancel()
	readAt := time.Now()
	raw, bad, err := r.store.Nodes(rctx)
	if err != nil {
		if ctx.Err() == nil { // not shutting down
			r.redisState(false, err)
		}
		return
	}
	r.redisState(true, nil)
	drained, err := r.store.Drained(rctx)
	if err != nil {
		drained = r.snap.Load().drained // keep the last list
	}

	old := r.snap.Load()
	next := &snapshot{byID: make(map[string]*Node, len(raw)), nodes: make([]*Node, 0, len(raw)), drained: drained, bad: bad}
	r.logBad(old.bad, bad)
	var gauged []*Node // nodes with metric series
	var gone []string  // node ids whose series go
	r.healthMu.Lock()
	for _, ln := range raw {
		h := r.health[ln.Id]
		if h == nil {
			h = &nodeHealth{}
			r.health[ln.Id] = h
		}
		dial, derr := r.book.dial(ln.Ip)
		n := newNode(ln, dial, h, r.statsClock(ln, readAt), r.settings.staleAfter)
		_, byID := drained[n.ID]
		_, byIP := drained[n.IP]
		n.Drained = byID || byIP
		// entries of nodes long dead stay in `nodes` (and anyone may add
		// some): only a node this proxy has seen with fresh stats gets metric
		// series and log lines
		first := n.Fresh && !h.seenFresh
		h.seenFresh = h.seenFresh || n.Fresh
		if h.seenFresh {
			gauged = append(gauged, n)
		}
		if prev := old.byID[n.ID]; h.seenFresh && (first || prev == nil || prev.State != n.State || prev.Dial != n.Dial || prev.Drained != n.Drained) {
			fields := []zap.Field{zap.String("node", n.ID), zap.String("ip", shown(n.IP)), zap.String("dial", n.Dial),
				zap.String("state", n.State.String()), zap.Bool("drained", n.Drained)}
			if derr != nil {
				fields = append(fields, zap.NamedError("not_dialled", derr))
			}
			r.log.Info("livekit node", fields...)
		}
		next.byID[n.ID] = n
		next.nodes = append(next.nodes, n)
	}
	for id, h := range r.health {
		if _, ok := next.byID[id]; !ok {
			delete(r.health, id)
			if h.seenFresh {
				gone = append(gone, id)
				r.log.Info("livekit node removed", zap.String("node", id))
			}
		}
	}
	r.healthMu.Unlock()
	nodeGauges(readAt, gauged, gone)
	slices.SortFunc(next.nodes, func(a, b *Node) int { return strings.Compare(a.ID, b.ID) })
	r.snap.Store(next)
}

// maxBadLogged bounds the lines one refresh logs about ignored entries:
// anyone who can write to Redis can add thousands.
const maxBadLogged = 5

// logBad logs the ignored entries of `nodes` that the last refresh did not
// have, each once.
func (r *Registry) logBad(before, now []BadNode) {
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
			r.log.Warn("ignoring an entry of LiveKit's nodes hash", zap.String("field", b.Field), zap.String("reason", b.Reason))
		}
	}
	if fresh > maxBadLogged {
		r.log.Warn("ignoring more entries of LiveKit's nodes hash", zap.Int("more", fresh-maxBadLogged), zap.Int("ignored", len(now)))
	}
}

// BadNodes returns the entries of `nodes` the last refresh ignored.
func (r *Registry) BadNodes() []BadNode { return r.snap.Load().bad }

// statsClock is the time at which a node's stats age is judged: readAt,
// less the part of the last Redis outage that came after the node's update.
func (r *Registry) statsClock(n *livekit.Node, readAt time.Time) time.Time {
	if r.outageEnd.IsZero() || n.Stats == nil {
		return readAt
	}
	updated := time.Unix(n.Stats.UpdatedAt, 0)
	if !r.outageEnd.After(updated) {
		return readAt
	}
	from := r.outageStart
	if updated.After(from) {
		from = updated
	}
	return readAt.Add(-r.outageEnd.Sub(from))
}

// redisState logs a change of Redis reachability once, not per request.
func (r *Registry) redisState(ok bool, err error) {
	if r.redisOK.Swap(ok) == ok {
		return
	}
	if ok {
		r.outageEnd = time.Now()
		// Redis may have come back empty: check every room with it again
		// (the cache would send joins to a node that finds no placement and
		// lets LiveKit's own selector place the room elsewhere), and write
		// back the remembered placement where it is missing
		r.remembered.Store(&rememberedPlacements{rooms: r.cache.clear(), until: time.Now().Add(afterOutage),
			wait: time.Now().Add(2 * r.settings.staleAfter)})
	} else {
		r.outageStart, r.outageEnd = time.Now(), time.Time{}
	}
	if ok {
		r.log.Info("redis reachable again")
	} else {
		r.log.Error("redis unreachable; routing from the last known nodes", zap.Error(err))
	}
}

// Nodes returns the current snapshot's nodes (read-only).
func (r *Registry) Nodes() []*Node { return r.snap.Load().nodes }

// markDown takes a node out of rotation after the proxy failed to reach it:
// until the probes see it answer again, or for failDuration without probes.
func (r *Registry) markDown(n *Node, now time.Time) {
	until := now.Add(r.settings.failDuration).UnixNano()
	wasDown := n.down(now)
	n.health.downUntil.Store(until)
	if r.prober != nil {
		n.health.oks.Store(0)
		n.health.failed.Store(true)
	}
	if !wasDown {
		metrics.transitions.WithLabelValues("down").Inc()
		r.log.Warn("livekit node unreachable; out of rotation",
			zap.String("node", n.ID), zap.String("dial", n.Dial), zap.Duration("for", r.settings.failDuration))
		if r.prober == nil { // no probes to confirm the death: the failed dial decides
			r.endSessions(n)
		}
	}
}

// endSessions ends the sessions of a node just declared dead (see session):
// its participants reconnect now, through the proxy, to the room's new node.
func (r *Registry) endSessions(n *Node) {
	closed, abandoned := n.health.sessions.endAll()
	if closed+abandoned == 0 {
		return
	}
	metrics.sessionsEnded.WithLabelValues("closed").Add(float64(closed))
	r.log.Warn("ended the sessions of a dead livekit node", zap.String("node", n.ID), zap.String("dial", n.Dial),
		zap.Int("closed", closed), zap.Int("in_flight", abandoned))
}

type rememberedPlacements struct {
	rooms map[string]string
	until time.Time // trusted until then
	wait  time.Time // until then a remembered node not yet registered again is waited for
}

// rememberedNode returns the node room was on before the last Redis outage,
// within afterOutage of its end, and whether a node that has not registered
// again yet is still worth waiting for.
func (r *Registry) rememberedNode(room string, now time.Time) (string, bool) {
	m := r.remembered.Load()
	if m == nil || now.After(m.until) {
		return "", false
	}
	id := m.rooms[room]
	return id, id != "" && now.Before(m.wait)
}
