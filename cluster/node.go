package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
)

// Node is the proxy's view of one livekit-server, rebuilt from Redis on
// every refresh. Only health survives refreshes.
type Node struct {
	ID     string
	IP     string // the media IP the node advertises (rtc.node_ip)
	Region string
	State  livekit.NodeState
	// Dial is the host:port the proxy connects to; "" when the address is
	// outside the allow-list and must not be dialled, and NotDialled says why.
	Dial       string
	NotDialled string

	HasStats  bool
	UpdatedAt time.Time
	// Fresh is LiveKit's availability rule (stats younger than stale_after),
	// judged when the snapshot was read: while Redis is unreachable no node
	// can write stats, so the last verdict stands and the probes decide.
	Fresh bool
	// Drained by the operator (`caddy livekit drain`): keeps its rooms,
	// takes no new ones.
	Drained bool
	// Full: at a capacity limit by its stats (Limits), so it takes no new
	// rooms; the placer also counts the rooms placed since.
	Full    bool
	Sysload float64 // load_avg_last1min / num_cpus, as LiveKit's selector
	CPULoad float64
	Rooms   int
	Clients int

	health *nodeHealth
}

// nodeHealth is what the proxy itself learned about a node: it outlives the
// snapshots so that a failure is not forgotten at the next refresh.
type nodeHealth struct {
	downUntil atomic.Int64 // unix nanos; the proxy failed to reach the node
	// failed: out of rotation until the probes see it answer again.
	failed atomic.Bool
	// silent: the probes declared the node dead, and its sessions were
	// ended; a failed dial alone only sets failed (one slow dial is no
	// reason to drop every participant of a node the probes still reach).
	silent atomic.Bool

	// consecutive probe failures and successes
	fails, oks atomic.Int32

	mu     sync.Mutex
	placed []int64 // unix nanos of placements not yet visible in stats

	sessions sessionSet // requests being proxied to the node

	// seenFresh: this proxy has seen the node's stats fresh; set and read
	// by the view's goroutine only
	seenFresh bool
}

func newNode(n *livekit.Node, dial string, derr error, h *nodeHealth, readAt time.Time, staleAfter time.Duration) *Node {
	v := &Node{ID: n.Id, IP: n.Ip, Region: n.Region, State: n.State, Dial: dial, health: h, Fresh: true}
	if derr != nil {
		v.NotDialled = derr.Error()
	}
	if s := n.Stats; s != nil {
		v.HasStats = true
		v.UpdatedAt = time.Unix(s.UpdatedAt, 0)
		v.Fresh = readAt.Sub(v.UpdatedAt) < staleAfter
		cpus := s.NumCpus
		if cpus == 0 {
			cpus = 1
		}
		v.Sysload = float64(s.LoadAvgLast1Min) / float64(cpus)
		v.CPULoad = float64(s.CpuLoad)
		v.Rooms = int(s.NumRooms)
		v.Clients = int(s.NumClients)
	}
	return v
}

// Down reports whether the proxy failed to reach the node: a probe or a
// dial failed and the probes have not seen it recover, or (without probes)
// fail_duration has not passed.
func (n *Node) Down(now time.Time) bool {
	return n.health.failed.Load() || now.UnixNano() < n.health.downUntil.Load()
}

// Alive is LiveKit's view: the node can host its rooms (serving or draining,
// stats fresh; no stats yet counts as fresh, as selector.IsAvailable).
func (n *Node) Alive() bool {
	return (n.State == livekit.NodeState_SERVING || n.State == livekit.NodeState_SHUTTING_DOWN) && n.Fresh
}

// Routable: the proxy may send a room's connections to this node.
func (n *Node) Routable(now time.Time) bool {
	return n.Dial != "" && n.Alive() && !n.Down(now)
}

// Placeable: the node may receive a new room (draining nodes may not).
func (n *Node) Placeable(now time.Time) bool {
	return n.State == livekit.NodeState_SERVING && !n.Drained && n.Routable(now)
}

func (h *nodeHealth) markPlaced(now time.Time) {
	h.mu.Lock()
	h.placed = append(h.placed, now.UnixNano())
	h.mu.Unlock()
}

// pending counts recent placements on the node, which its stats cannot show
// yet: without them every new room in a burst would go to the same node.
func (h *nodeHealth) pending(now time.Time, window time.Duration) int {
	cut := now.Add(-window).UnixNano()
	h.mu.Lock()
	defer h.mu.Unlock()
	i := 0
	for i < len(h.placed) && h.placed[i] < cut {
		i++
	}
	h.placed = h.placed[i:]
	return len(h.placed)
}

// unmarkPlaced forgets the placement marked at t (the write lost).
func (h *nodeHealth) unmarkPlaced(t time.Time) {
	n := t.UnixNano()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.placed) - 1; i >= 0; i-- {
		if h.placed[i] == n {
			h.placed = append(h.placed[:i], h.placed[i+1:]...)
			return
		}
	}
}
