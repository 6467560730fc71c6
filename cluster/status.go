package cluster

import (
	"context"
	"slices"
	"strings"
	"time"
)

// NodeStatus is a node as the admin API and `caddy livekit status` show it.
type NodeStatus struct {
	ID   string `json:"id"`
	IP   string `json:"ip"`
	Dial string `json:"dial,omitempty"`
	// NotDialled: why Dial is empty (an address outside allow_networks,
	// e.g. a public one without a node_addresses mapping)
	NotDialled string `json:"not_dialled,omitempty"`
	Region     string `json:"region,omitempty"`
	State      string `json:"state"`
	Drained    bool   `json:"drained,omitempty"`
	// Full: at a capacity limit (sysload_limit, max_rooms, max_clients),
	// counting the rooms this proxy placed since its stats: no new rooms.
	Full     bool    `json:"full,omitempty"`
	StatsAge float64 `json:"stats_age_seconds"`
	// Stale: stats older than stale_after, so LiveKit itself counts the
	// node out (a crashed node's entry stays until a node restarts).
	Stale   bool    `json:"stale,omitempty"`
	Sysload float64 `json:"sysload"`
	CPULoad float64 `json:"cpu_load"`
	Rooms   int     `json:"rooms"`
	Clients int     `json:"clients"`
	// The proxy's own view: routable now, and whether it failed to reach it.
	Routable    bool `json:"routable"`
	Unreachable bool `json:"unreachable"`
	// Requests this proxy is passing to the node now (open WebSockets among them).
	Sessions int `json:"sessions"`
	// NewRooms: the node takes new rooms (serving, routable, not drained, not full).
	NewRooms bool `json:"new_rooms"`
}

// RegionStatus sums up one region's nodes (Region "": nodes without one).
type RegionStatus struct {
	Region   string `json:"region"`
	Nodes    int    `json:"nodes"`     // routable
	NewRooms int    `json:"new_rooms"` // of which take new rooms
	Rooms    int    `json:"rooms"`
	Clients  int    `json:"clients"`
}

// Regions sums nodes up by region, sorted by name; nil when no node has a
// region.
func Regions(nodes []NodeStatus) []RegionStatus {
	by := map[string]*RegionStatus{}
	named := false
	for _, n := range nodes {
		if !n.Routable {
			continue
		}
		named = named || n.Region != ""
		r := by[n.Region]
		if r == nil {
			r = &RegionStatus{Region: n.Region}
			by[n.Region] = r
		}
		r.Nodes++
		if n.NewRooms {
			r.NewRooms++
		}
		r.Rooms += n.Rooms
		r.Clients += n.Clients
	}
	if !named {
		return nil
	}
	out := make([]RegionStatus, 0, len(by))
	for _, r := range by {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b RegionStatus) int { return strings.Compare(a.Region, b.Region) })
	return out
}

// Status describes every node of the current snapshot.
func (c *Cluster) Status() []NodeStatus {
	now := time.Now()
	nodes := c.view.current().nodes
	out := make([]NodeStatus, 0, len(nodes))
	for _, n := range nodes {
		s := NodeStatus{
			ID: n.ID, IP: n.IP, Dial: n.Dial, NotDialled: n.NotDialled, Region: n.Region, State: n.State.String(), Drained: n.Drained,
			Stale: !n.Fresh, Sysload: n.Sysload, CPULoad: n.CPULoad, Rooms: n.Rooms, Clients: n.Clients,
			Routable: n.Routable(now), Unreachable: n.Down(now), Sessions: n.health.sessions.count(),
			Full: c.place.limits.full(n, now, c.cfg.StaleAfter),
		}
		s.NewRooms = n.Placeable(now) && !s.Full
		if n.HasStats {
			s.StatsAge = now.Sub(n.UpdatedAt).Seconds()
		}
		out = append(out, s)
	}
	return out
}

// Nodes returns the current snapshot's nodes (read-only).
func (c *Cluster) Nodes() []*Node { return c.view.current().nodes }

// BadNodes returns the entries of `nodes` the last refresh ignored.
func (c *Cluster) BadNodes() []BadNode { return c.view.current().bad }

// IsDrained reports whether node (an id or IP) is in the operator's drain list.
func (c *Cluster) IsDrained(node string) bool {
	_, ok := c.view.current().drained[node]
	return ok
}

// RedisReachable reports whether the last refresh could read Redis.
func (c *Cluster) RedisReachable() bool { return c.view.redisOK.Load() }

// Rooms returns one page of room_node_map: room -> node id, and the cursor
// of the next page (0 when done). It reads Redis; it is for operators, not
// for the request path.
func (c *Cluster) Rooms(ctx context.Context, cursor uint64, count int64) (map[string]string, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*c.cfg.RedisTimeout)
	defer cancel()
	rooms, next, err := c.store.ScanRooms(ctx, cursor, count)
	return rooms, next, redisErr(err)
}

// Drain sets a node id or IP aside from new rooms on every proxy of the
// cluster (or gives it back with on=false), and waits up to redis_timeout
// for this proxy to read the list again (the others do at their next
// refresh). Its rooms stay where they are.
func (c *Cluster) Drain(ctx context.Context, node string, on bool) error {
	wctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	if err := c.store.SetDrained(wctx, node, on); err != nil {
		return redisErr(err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	c.view.refreshNow(rctx)
	return nil
}

// Ping checks that Redis answers within the Redis timeout.
func (c *Cluster) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	return redisErr(c.store.Ping(ctx))
}

// RedisSetting reads a Redis server setting; managed Redis may refuse.
func (c *Cluster) RedisSetting(ctx context.Context, param string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	return c.store.ConfigGet(ctx, param)
}

// Refresh reads the nodes again now and returns when the new picture is in
// force (or ctx ends).
func (c *Cluster) Refresh(ctx context.Context) { c.view.refreshNow(ctx) }
