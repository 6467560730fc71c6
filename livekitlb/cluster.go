package livekitlb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Cluster says where a LiveKit cluster's Redis is and how the proxy treats
// its nodes. Modules that embed the same Cluster share one Registry.
type Cluster struct {
	Redis RedisConfig `json:"redis,omitempty"`

	// Port of the nodes' HTTP/WebSocket listener (LiveKit's `port`). Default 7880.
	NodePort int `json:"node_port,omitempty"`
	// Dial address for a node's advertised IP, for nodes behind NAT or
	// whose media IP is not the one the proxy should use.
	NodeAddresses map[string]string `json:"node_addresses,omitempty"`
	// Networks (CIDR or IP) inside which addresses read from Redis may be
	// dialled; "private" stands for the default: loopback and private ranges.
	// An entry may hold several, separated by spaces or commas, so that one
	// placeholder ({env.ALLOW_NETWORKS}) can carry the list.
	AllowNetworks []string `json:"allow_networks,omitempty"`

	// How often the `nodes` hash is read. Default 1s.
	RefreshInterval caddy.Duration `json:"refresh_interval,omitempty"`
	// Stats older than this make a node unavailable (LiveKit's rule). Default 5s.
	StaleAfter caddy.Duration `json:"stale_after,omitempty"`
	// How long a room's placement is trusted without asking Redis. Default
	// 30s: a stale entry is safe, since LiveKit relays to the node
	// room_node_map names, and a dead node is caught by the probes.
	PlacementCache caddy.Duration `json:"placement_cache,omitempty"`
	// Bound on every Redis operation a request may wait for. Default 1s.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`
	// How long a node the proxy failed to reach stays out of rotation. Default 5s.
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`
	// How often each node's HTTP port is probed; a negative value turns the
	// probes off (then a node the proxy failed to reach stays out for
	// fail_duration). Default 100ms: a frozen node is found within one
	// interval plus two timeouts.
	ProbeInterval caddy.Duration `json:"probe_interval,omitempty"`
	// How long a probe may take before it counts as failed; two failures in
	// a row declare the node dead and end its sessions. Default 350ms: a node
	// silent for ~0.7s is dead, a shorter pause (GC, a busy CPU) is not.
	ProbeTimeout caddy.Duration `json:"probe_timeout,omitempty"`
	// Load measure for placing new rooms: sysload (default), cpuload, rooms, clients.
	LoadMeasure string `json:"load_measure,omitempty"`
}

// registries holds one Registry per distinct resolved Cluster; it outlives
// config reloads, so a reload reuses the Redis client and the node picture.
var registries = caddy.NewUsagePool()

// resolved applies placeholders and defaults, and checks the result.
func (c Cluster) resolved() (Cluster, error) {
	repl := caddy.NewReplacer()
	c.Redis = c.Redis.replaced(repl)
	c.AllowNetworks = expandNetworks(replaceAll(repl, c.AllowNetworks))
	c.LoadMeasure = repl.ReplaceAll(c.LoadMeasure, "")
	if c.NodePort == 0 {
		c.NodePort = 7880
	}
	if c.AllowNetworks == nil {
		c.AllowNetworks = defaultAllowNetworks
	}
	if c.LoadMeasure == "" {
		c.LoadMeasure = MeasureSysload
	}
	def := func(d *caddy.Duration, v time.Duration) {
		if *d == 0 {
			*d = caddy.Duration(v)
		}
	}
	def(&c.RefreshInterval, time.Second)
	def(&c.StaleAfter, 5*time.Second)
	def(&c.PlacementCache, 30*time.Second)
	def(&c.RedisTimeout, time.Second)
	def(&c.FailDuration, 5*time.Second)
	def(&c.ProbeInterval, 100*time.Millisecond)
	def(&c.ProbeTimeout, 350*time.Millisecond)

	if err := c.Redis.validate(); err != nil {
		return c, err
	}
	if c.NodePort < 1 || c.NodePort > 65535 {
		return c, fmt.Errorf("node_port %d out of range", c.NodePort)
	}
	if err := validMeasure(c.LoadMeasure); err != nil {
		return c, err
	}
	for name, d := range map[string]caddy.Duration{
		"refresh_interval": c.RefreshInterval, "stale_after": c.StaleAfter, "placement_cache": c.PlacementCache,
		"redis_timeout": c.RedisTimeout, "fail_duration": c.FailDuration, "probe_timeout": c.ProbeTimeout,
	} {
		if d < 0 {
			return c, fmt.Errorf("%s must not be negative", name)
		}
	}
	return c, nil
}

// key identifies a resolved Cluster in the pool; hashed so that the
// password is not kept in a readable key.
func (c Cluster) key() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Provision returns the shared Registry for this cluster and a release
// function for the module's Cleanup. Modules of other packages (the token
// handler) use it to share placement with livekit_lb.
func (c Cluster) Provision(ctx caddy.Context) (*Registry, func() error, error) {
	r, key, err := c.provision(ctx)
	return r, func() error { return release(key) }, err
}

func (c Cluster) provision(ctx caddy.Context) (*Registry, string, error) {
	rc, err := c.resolved()
	if err != nil {
		return nil, "", err
	}
	book, err := newAddressBook(rc.NodePort, rc.NodeAddresses, rc.AllowNetworks)
	if err != nil {
		return nil, "", err
	}
	key := rc.key()
	val, _, err := registries.LoadOrNew(key, func() (caddy.Destructor, error) {
		s := settings{
			refresh:       time.Duration(rc.RefreshInterval),
			staleAfter:    time.Duration(rc.StaleAfter),
			cacheTTL:      time.Duration(rc.PlacementCache),
			redisTimeout:  time.Duration(rc.RedisTimeout),
			failDuration:  time.Duration(rc.FailDuration),
			measure:       rc.LoadMeasure,
			probeInterval: time.Duration(rc.ProbeInterval),
			probeTimeout:  time.Duration(rc.ProbeTimeout),
		}
		st := timedStore{redisStore{rc: rc.Redis.client(s.redisTimeout)}}
		return newRegistry(s, st, book, ctx.Logger().Named("registry")), nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*Registry), key, nil
}

// release gives up this module's use of the shared Registry.
func release(key string) error {
	if key == "" {
		return nil
	}
	_, err := registries.Delete(key)
	return err
}
