package livekitlb

import (
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// metrics are process-wide, as Caddy's own: every config registers the same
// collectors on its registry, so counts survive reloads. No label carries a
// room name; node labels are bounded by the cluster's nodes and deleted
// when a node leaves.
var metrics = struct {
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
	// sessionsEnded: requests a dead node was holding, by what became of them
	sessionsEnded *prometheus.CounterVec
	nodeFull      *prometheus.GaugeVec
	// by region ("" for nodes without one): routable nodes, those taking new rooms
	regionNodes    *prometheus.GaugeVec
	regionNewRooms *prometheus.GaugeVec
}{}

func init() {
	const ns, sub = "caddy", "livekit"
	node := []string{"node"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, node)
	}
	metrics.routes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "routes_total",
		Help: "Routing decisions by outcome: cached, found, placed, followed, replaced, relayed, no_room, unplaced, no_node, full, redis_error, bad_token, bad_request."}, []string{"outcome"})
	metrics.nodeFull = gauge("node_full", "1 while the node is at a capacity limit (sysload_limit, max_rooms, max_clients) and gets no new rooms.")
	metrics.regionNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "region_routable_nodes",
		Help: "Routable nodes per region (LiveKit's `region:`; empty for nodes without one)."}, []string{"region"})
	metrics.regionNewRooms = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "region_new_room_nodes",
		Help: "Nodes per region that take new rooms (serving, routable, not drained, under the limits)."}, []string{"region"})
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
}

// RegisterMetrics puts the collectors on the config's registry (Caddy's
// /metrics); a second registration of the same collector is fine.
func RegisterMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.routes, metrics.nodeState, metrics.nodeRoutable, metrics.nodeSysload,
		metrics.nodeRooms, metrics.nodeClients, metrics.transitions, metrics.redisLatency, metrics.redisErrors,
		metrics.conflicts, metrics.sessionsEnded, metrics.nodeFull, metrics.regionNodes, metrics.regionNewRooms} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// routeCounters holds one counter per outcome, so that counting a request
// is an atomic add, not a label lookup.
var routeCounters sync.Map // cluster.Outcome -> prometheus.Counter

func countRoute(o cluster.Outcome) {
	c, ok := routeCounters.Load(o)
	if !ok {
		c, _ = routeCounters.LoadOrStore(o, metrics.routes.WithLabelValues(string(o)))
	}
	c.(prometheus.Counter).Inc()
}

// metricsObserver feeds the cluster's events into the metrics.
type metricsObserver struct{}

// NodesRead publishes the nodes' gauges and drops the series of gone ones.
func (metricsObserver) NodesRead(now time.Time, nodes []*cluster.Node, gone []string) {
	// regions are rebuilt each time: a region's series goes with its last node
	metrics.regionNodes.Reset()
	metrics.regionNewRooms.Reset()
	for _, n := range nodes {
		full := 0.0
		if n.Full {
			full = 1
		}
		metrics.nodeFull.WithLabelValues(n.ID).Set(full)
		if n.Routable(now) {
			metrics.regionNodes.WithLabelValues(n.Region).Inc()
			newRooms := metrics.regionNewRooms.WithLabelValues(n.Region)
			if n.Placeable(now) && !n.Full {
				newRooms.Inc()
			}
		}
		metrics.nodeState.WithLabelValues(n.ID).Set(float64(n.State))
		routable := 0.0
		if n.Routable(now) {
			routable = 1
		}
		metrics.nodeRoutable.WithLabelValues(n.ID).Set(routable)
		metrics.nodeSysload.WithLabelValues(n.ID).Set(n.Sysload)
		metrics.nodeRooms.WithLabelValues(n.ID).Set(float64(n.Rooms))
		metrics.nodeClients.WithLabelValues(n.ID).Set(float64(n.Clients))
	}
	for _, id := range gone {
		for _, g := range []*prometheus.GaugeVec{metrics.nodeState, metrics.nodeRoutable, metrics.nodeSysload, metrics.nodeRooms, metrics.nodeClients, metrics.nodeFull} {
			g.DeleteLabelValues(id)
		}
	}
}

func (metricsObserver) NodeTransition(up bool) {
	dir := "down"
	if up {
		dir = "up"
	}
	metrics.transitions.WithLabelValues(dir).Inc()
}

func (metricsObserver) RedisCall(op string, took time.Duration, err error) {
	metrics.redisLatency.WithLabelValues(op).Observe(took.Seconds())
	if err != nil {
		metrics.redisErrors.WithLabelValues(op).Inc()
	}
}

func (metricsObserver) PlacementConflict() { metrics.conflicts.Inc() }

func (metricsObserver) SessionsClosed(n int) {
	metrics.sessionsEnded.WithLabelValues("closed").Add(float64(n))
}

var _ cluster.Observer = metricsObserver{}
