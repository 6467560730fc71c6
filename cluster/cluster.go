package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Cluster is the proxy's picture of one LiveKit cluster and the calls the
// modules make on it. Each piece of state has one owner: the view (the
// nodes, written by its refresh goroutine), the prober (each node's
// liveness), the placer (room placements and their cache) and the store
// (Redis).
type Cluster struct {
	cfg    Config
	store  Store
	ops    OpsStore // nil when the store has no operator calls (tests)
	view   *view
	probes *prober
	place  *placer
	log    *zap.Logger
	obs    Observer

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open connects to the cluster's Redis and starts reading it (and probing
// its nodes, unless cfg turns the probes off). Close it when done.
func Open(cfg Config, log *zap.Logger, obs Observer) (*Cluster, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	scopeRedisLog(log)
	st := redisStore{rc: cfg.Redis.client(cfg.RedisTimeout), cluster: len(cfg.Redis.ClusterAddresses) > 0}
	return New(cfg, st, log, obs)
}

// New is Open with a store of the caller's (a fake in tests).
func New(cfg Config, st Store, log *zap.Logger, obs Observer) (*Cluster, error) {
	cfg = cfg.WithDefaults()
	book, err := newAddressBook(cfg.NodePort, cfg.NodeAddresses, cfg.AllowNetworks)
	if err != nil {
		return nil, err
	}
	regions, err := newRegions(cfg.Regions, cfg.Region)
	if err != nil {
		return nil, err
	}
	if obs == nil {
		obs = NopObserver{}
	}
	c := &Cluster{cfg: cfg, log: log, obs: obs, done: make(chan struct{})}
	c.ops, _ = st.(OpsStore)
	c.store = timedStore{Store: st, obs: obs}
	c.view = newView(cfg, c.store, book, log, obs)
	c.view.stopped = c.done
	c.probes = newProber(cfg, c.view.current, log, obs)
	c.place = &placer{
		store: c.store, nodes: c.view.current, redisOK: c.view.redisOK.Load, measure: cfg.LoadMeasure,
		limits: cfg.Limits, regions: regions,
		staleAfter: cfg.StaleAfter, redisTimeout: cfg.RedisTimeout, log: log, obs: obs,
		cache: newPlacementCache(cfg.PlacementCache),
	}
	c.view.redisBack = c.place.redisBack
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go c.run(ctx)
	return c, nil
}

func (c *Cluster) run(ctx context.Context) {
	defer close(c.done)
	if c.probes.active() {
		probing := make(chan struct{})
		go func() {
			defer close(probing)
			c.probes.run(ctx)
		}()
		defer func() { <-probing }()
	}
	c.view.run(ctx)
}

// Close stops reading and probing, drops the nodes' metric series and
// closes the Redis client.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.done
		var ids []string
		for _, n := range c.view.current().nodes {
			ids = append(ids, n.ID)
		}
		c.obs.NodesRead(time.Now(), nil, ids)
		c.closeErr = c.store.Close()
	})
	return c.closeErr
}

// Config is the cluster's configuration, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// Ready waits, at most redis_timeout, for the first read of the nodes, so
// that a request right after start-up does not see an empty cluster.
func (c *Cluster) Ready(ctx context.Context) {
	select {
	case <-c.view.loaded:
		return // the request path: no timer
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	c.view.wait(ctx)
}

// Route chooses the node for a request to room ("" for requests that name
// no room), placing a new room with an atomic write. A known room costs two
// map lookups and no allocation; an unknown one is looked up once in Redis
// however many requests ask at the same time. Errors wrap ErrNoNode or
// ErrRedis.
func (c *Cluster) Route(ctx context.Context, room string) (*Node, Outcome, error) {
	return c.place.route(ctx, room, true)
}

// RouteUnverified is Route for a room read from a token nobody verified: it
// follows an existing placement but never writes one, so that made-up rooms
// cannot fill room_node_map or move real ones.
func (c *Cluster) RouteUnverified(ctx context.Context, room string) (*Node, Outcome, error) {
	return c.place.route(ctx, room, false)
}

// Reroute reports that the proxy could not reach failed for room's request
// (the node leaves rotation, the room's cached placement is dropped) and
// routes again, within redis_timeout: the room moves to another node (with
// place unset, as RouteUnverified).
func (c *Cluster) Reroute(ctx context.Context, room string, failed *Node, place bool) (*Node, Outcome, error) {
	c.Failed(failed, room)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	return c.place.route(ctx, room, place)
}

// Failed records that the proxy could not reach n for room's request, so
// the next Route avoids it (and re-places the room).
func (c *Cluster) Failed(n *Node, room string) {
	if n == nil {
		return
	}
	c.probes.markDown(n, time.Now())
	if room != "" {
		c.place.cache.drop(room)
	}
}

// Unplace undoes a placement this proxy made (OutcomePlaced or
// OutcomeReplaced) when the room could not be created after all, unless
// someone has moved it since.
func (c *Cluster) Unplace(ctx context.Context, room, nodeID string) error {
	return c.place.unplace(ctx, room, nodeID)
}

// ProbeNow probes every node twice (a node is out after two failures), for
// one-off looks such as `caddy livekit status`.
func (c *Cluster) ProbeNow(ctx context.Context) {
	c.probes.probeAll(ctx)
	c.probes.probeAll(ctx)
}

// redisErr wraps a Redis failure as ErrRedis.
func redisErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrRedis, err)
}
