package livekitlb

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/livekit/protocol/livekit"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are process-wide, as Caddy's own: every config registers the same
// collectors on its registry, so counts survive reloads. No label carries a
// room name; node labels are bounded by the cluster's nodes and deleted
// when a node leaves.
var metrics = struct {
	once         sync.Once
	routes       *prometheus.CounterVec
	nodeState    *prometheus.GaugeVec
	nodeRoutable *prometheus.GaugeVec
	nodeSysload  *prometheus.GaugeVec
	nodeRooms    *prometheus.GaugeVec
	nodeClients  *prometheus.GaugeVec
	transitions  *prometheus.CounterVec
	redisLatency *prometheus.HistogramVec
	redisErrors  *prometheus.CounterVec
	conflicts    prometheus.Counter
	CreateRoom   *prometheus.CounterVec
	// sessionsEnded: requests a dead node was holding, by what became of them
	sessionsEnded *prometheus.CounterVec
}{}

func initMetrics() {
	metrics.once.Do(func() {
		const ns, sub = "caddy", "livekit"
		node := []string{"node"}
		gauge := func(name, help string) *prometheus.GaugeVec {
			return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, node)
		}
		metrics.routes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "routes_total",
			Help: "Routing decisions by outcome: cached, found, placed, followed, replaced, relayed, no_room, unplaced, no_node, redis_error, bad_token."}, []string{"outcome"})
		metrics.nodeState = gauge("node_state", "LiveKit state of each node: 0 starting, 1 serving, 2 shutting down, 3 suspended.")
		metrics.nodeRoutable = gauge("node_routable", "1 while the proxy routes to the node (alive, fresh stats, answering, dialable).")
		metrics.nodeSysload = gauge("node_sysload", "Node's 1-minute load average per CPU, as LiveKit's selector.")
		metrics.nodeRooms = gauge("node_rooms", "Rooms on the node, from its stats.")
		metrics.nodeClients = gauge("node_clients", "Clients on the node, from its stats.")
		metrics.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "node_transitions_total",
			Help: "Changes of the proxy's liveness view of a node: down (unreachable) or up (answering again)."}, []string{"direction"})
		metrics.redisLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "redis_duration_seconds",
			Help: "Round-trip time of the proxy's Redis operations.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}}, []string{"op"})
		metrics.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "redis_errors_total",
			Help: "Failed Redis operations."}, []string{"op"})
		metrics.conflicts = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "placement_conflicts_total",
			Help: "Placement writes lost to another proxy or node (the proxy then follows the winner)."})
		metrics.sessionsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sessions_ended_total",
			Help: "Requests to a node declared dead: closed (the WebSocket was open; the client reconnects), resent (still waiting for the node; sent to the room's new node), failed (could not be resent; 502)."}, []string{"outcome"})
		metrics.CreateRoom = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "create_room_total",
			Help: "Create-room calls by HTTP status."}, []string{"status"})
	})
}

// RegisterMetrics puts the collectors on the config's registry (Caddy's
// /metrics); a second registration of the same collector is fine.
func RegisterMetrics(ctx caddy.Context) error {
	initMetrics()
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.routes, metrics.nodeState, metrics.nodeRoutable, metrics.nodeSysload,
		metrics.nodeRooms, metrics.nodeClients, metrics.transitions, metrics.redisLatency, metrics.redisErrors,
		metrics.conflicts, metrics.CreateRoom, metrics.sessionsEnded} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// CountCreateRoom counts one create-room call by status (token handler).
func CountCreateRoom(status string) {
	initMetrics()
	metrics.CreateRoom.WithLabelValues(status).Inc()
}

// routeCounters holds one counter per outcome, so that counting a request
// is an atomic add, not a label lookup.
var routeCounters sync.Map // Outcome -> prometheus.Counter

func countRoute(o Outcome) {
	c, ok := routeCounters.Load(o)
	if !ok {
		c, _ = routeCounters.LoadOrStore(o, metrics.routes.WithLabelValues(string(o)))
	}
	c.(prometheus.Counter).Inc()
}

// nodeGauges publishes a snapshot's nodes and drops the series of gone ones.
func nodeGauges(now time.Time, nodes []*Node, gone []string) {
	for _, n := range nodes {
		metrics.nodeState.WithLabelValues(n.ID).Set(float64(n.State))
		routable := 0.0
		if n.routable(now) {
			routable = 1
		}
		metrics.nodeRoutable.WithLabelValues(n.ID).Set(routable)
		metrics.nodeSysload.WithLabelValues(n.ID).Set(n.Sysload)
		metrics.nodeRooms.WithLabelValues(n.ID).Set(float64(n.Rooms))
		metrics.nodeClients.WithLabelValues(n.ID).Set(float64(n.Clients))
	}
	for _, id := range gone {
		for _, g := range []*prometheus.GaugeVec{metrics.nodeState, metrics.nodeRoutable, metrics.nodeSysload, metrics.nodeRooms, metrics.nodeClients} {
			g.DeleteLabelValues(id)
		}
	}
}

// timedStore measures every Redis operation of the store it wraps.
type timedStore struct{ store }

func observe(op string, start time.Time, err error) {
	metrics.redisLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, context.Canceled) {
		metrics.redisErrors.WithLabelValues(op).Inc()
	}
}

func (s timedStore) Nodes(ctx context.Context) (n []*livekit.Node, bad []BadNode, err error) {
	defer func(t time.Time) { observe("nodes", t, err) }(time.Now())
	return s.store.Nodes(ctx)
}

func (s timedStore) RoomNode(ctx context.Context, room string) (id string, err error) {
	defer func(t time.Time) { observe("room_node", t, err) }(time.Now())
	return s.store.RoomNode(ctx, room)
}

func (s timedStore) PlaceRoom(ctx context.Context, room, nodeID string) (w string, err error) {
	defer func(t time.Time) { observe("place_room", t, err) }(time.Now())
	return s.store.PlaceRoom(ctx, room, nodeID)
}

func (s timedStore) ReplaceRoom(ctx context.Context, room, oldID, newID string) (w string, err error) {
	defer func(t time.Time) { observe("replace_room", t, err) }(time.Now())
	return s.store.ReplaceRoom(ctx, room, oldID, newID)
}
