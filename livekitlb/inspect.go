package livekitlb

import (
	"context"
	"fmt"
	"time"
)

// Registries returns every registry the running config uses, for the admin
// API and the `caddy livekit` commands.
func Registries() []*Registry {
	var out []*Registry
	registries.Range(func(_, v any) bool {
		out = append(out, v.(*Registry))
		return true
	})
	return out
}

// NodeStatus is a node as the admin view shows it.
type NodeStatus struct {
	ID       string  `json:"id"`
	IP       string  `json:"ip"`
	Dial     string  `json:"dial,omitempty"`
	Region   string  `json:"region,omitempty"`
	State    string  `json:"state"`
	StatsAge float64 `json:"stats_age_seconds"`
	Sysload  float64 `json:"sysload"`
	CPULoad  float64 `json:"cpu_load"`
	Rooms    int     `json:"rooms"`
	Clients  int     `json:"clients"`
	// The proxy's own view: routable now, and whether it failed to reach it.
	Routable    bool `json:"routable"`
	Unreachable bool `json:"unreachable"`
}

// Status describes every node of the current snapshot.
func (r *Registry) Status() []NodeStatus {
	now := time.Now()
	nodes := r.snap.Load().nodes
	out := make([]NodeStatus, 0, len(nodes))
	for _, n := range nodes {
		s := NodeStatus{
			ID: n.ID, IP: n.IP, Dial: n.Dial, Region: n.Region, State: n.State.String(),
			Sysload: n.Sysload, CPULoad: n.CPULoad, Rooms: n.Rooms, Clients: n.Clients,
			Routable: n.routable(now), Unreachable: n.down(now),
		}
		if n.HasStats {
			s.StatsAge = now.Sub(n.UpdatedAt).Seconds()
		}
		out = append(out, s)
	}
	return out
}

// Rooms returns one page of room_node_map: room -> node id, and the cursor
// of the next page (0 when done). It reads Redis; it is for operators, not
// for the request path.
func (r *Registry) Rooms(ctx context.Context, cursor uint64, count int64) (map[string]string, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*r.settings.redisTimeout)
	defer cancel()
	rooms, next, err := r.store.ScanRooms(ctx, cursor, count)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrRedis, err)
	}
	return rooms, next, nil
}

// RedisReachable reports whether the last refresh could read Redis.
func (r *Registry) RedisReachable() bool { return r.redisOK.Load() }
