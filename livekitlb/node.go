package livekitlb

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
	// outside the allow-list and must not be dialled.
	Dial string

	HasStats  bool
	UpdatedAt time.Time
	Sysload   float64 // load_avg_last1min / num_cpus, as LiveKit's selector
	CPULoad   float64
	Rooms     int
	Clients   int

	health *nodeHealth
}

// nodeHealth is what the proxy itself learned about a node: it outlives the
// snapshots so that a failure is not forgotten at the next refresh.
type nodeHealth struct {
	downUntil atomic.Int64 // unix nanos; the proxy failed to reach the node

	mu     sync.Mutex
	placed []int64 // unix nanos of placements not yet visible in stats
}

func newNode(n *livekit.Node, dial string, h *nodeHealth) *Node {
	v := &Node{ID: n.Id, IP: n.Ip, Region: n.Region, State: n.State, Dial: dial, health: h}
	if s := n.Stats; s != nil {
		v.HasStats = true
		v.UpdatedAt = time.Unix(s.UpdatedAt, 0)
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

// fresh is LiveKit's availability rule: stats younger than staleAfter (or
// no stats yet, as selector.IsAvailable).
func (n *Node) fresh(now time.Time, staleAfter time.Duration) bool {
	return !n.HasStats || now.Sub(n.UpdatedAt) < staleAfter
}

// down reports whether the proxy recently failed to reach the node.
func (n *Node) down(now time.Time) bool {
	return now.UnixNano() < n.health.downUntil.Load()
}

// alive is LiveKit's view: the node can host its rooms (serving or draining).
func (n *Node) alive(now time.Time, staleAfter time.Duration) bool {
	return (n.State == livekit.NodeState_SERVING || n.State == livekit.NodeState_SHUTTING_DOWN) &&
		n.fresh(now, staleAfter)
}

// routable: the proxy may send a room's connections to this node.
func (n *Node) routable(now time.Time, staleAfter time.Duration) bool {
	return n.Dial != "" && n.alive(now, staleAfter) && !n.down(now)
}

// placeable: the node may receive a new room (draining nodes may not).
func (n *Node) placeable(now time.Time, staleAfter time.Duration) bool {
	return n.State == livekit.NodeState_SERVING && n.routable(now, staleAfter)
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
