package livekitlb

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
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
	Drained  bool    `json:"drained,omitempty"`
	StatsAge float64 `json:"stats_age_seconds"`
	Sysload  float64 `json:"sysload"`
	CPULoad  float64 `json:"cpu_load"`
	Rooms    int     `json:"rooms"`
	Clients  int     `json:"clients"`
	// The proxy's own view: routable now, and whether it failed to reach it.
	Routable    bool `json:"routable"`
	Unreachable bool `json:"unreachable"`
	// Requests this proxy is passing to the node now (open WebSockets among them).
	Sessions int `json:"sessions"`
}

// Status describes every node of the current snapshot.
func (r *Registry) Status() []NodeStatus {
	now := time.Now()
	nodes := r.snap.Load().nodes
	out := make([]NodeStatus, 0, len(nodes))
	for _, n := range nodes {
		s := NodeStatus{
			ID: n.ID, IP: n.IP, Dial: n.Dial, Region: n.Region, State: n.State.String(), Drained: n.Drained,
			Sysload: n.Sysload, CPULoad: n.CPULoad, Rooms: n.Rooms, Clients: n.Clients,
			Routable: n.routable(now), Unreachable: n.down(now), Sessions: n.health.sessions.count(),
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

// IsDrained reports whether node (an id or IP) is in the operator's drain list.
func (r *Registry) IsDrained(node string) bool {
	_, ok := r.snap.Load().drained[node]
	return ok
}

// RedisReachable reports whether the last refresh could read Redis.
func (r *Registry) RedisReachable() bool { return r.redisOK.Load() }

// Drain sets a node id or IP aside from new rooms on every proxy of the
// cluster (or gives it back with on=false). Its rooms stay where they are.
func (r *Registry) Drain(ctx context.Context, node string, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, r.settings.redisTimeout)
	defer cancel()
	if err := r.store.SetDrained(ctx, node, on); err != nil {
		return fmt.Errorf("%w: %v", ErrRedis, err)
	}
	r.refresh(ctx)
	return nil
}

// Connect opens a cluster for a one-off look (the `caddy livekit` commands):
// a registry of its own, loaded, with one round of probes done. Close it
// with Destruct.
func Connect(ctx context.Context, c Cluster, log *zap.Logger) (*Registry, error) {
	rc, err := c.resolved()
	if err != nil {
		return nil, err
	}
	book, err := newAddressBook(rc.NodePort, rc.NodeAddresses, rc.AllowNetworks)
	if err != nil {
		return nil, err
	}
	s := settings{
		refresh: time.Hour, staleAfter: time.Duration(rc.StaleAfter), cacheTTL: time.Duration(rc.PlacementCache),
		redisTimeout: time.Duration(rc.RedisTimeout), failDuration: time.Duration(rc.FailDuration),
		measure: rc.LoadMeasure, probeTimeout: time.Duration(rc.ProbeTimeout),
	}
	st := redisStore{rc: rc.Redis.client(s.redisTimeout)}
	r := newRegistry(s, st, book, log)
	r.WaitLoaded(ctx)
	if err := r.Ping(ctx); err != nil {
		_ = r.Destruct()
		return nil, err
	}
	p := newProber(time.Hour, s.probeTimeout)
	r.probeAll(ctx, p)
	r.probeAll(ctx, p) // twice: a node is out after two failures
	return r, nil
}

// Ping checks that Redis answers within the Redis timeout.
func (r *Registry) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.settings.redisTimeout)
	defer cancel()
	if err := r.store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrRedis, err)
	}
	return nil
}

// RedisSetting reads a Redis server setting; managed Redis may refuse.
func (r *Registry) RedisSetting(ctx context.Context, param string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.settings.redisTimeout)
	defer cancel()
	return r.store.ConfigGet(ctx, param)
}

// RedisClient opens a client for the cluster's Redis with placeholders
// resolved, for operator tools (backup, restore). The caller closes it.
func (c Cluster) RedisClient() (redis.UniversalClient, error) {
	rc, err := c.resolved()
	if err != nil {
		return nil, err
	}
	return rc.Redis.client(5 * time.Second), nil
}
