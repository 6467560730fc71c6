package livekitlb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// Cluster says where a LiveKit cluster's Redis is and how the proxy treats
// its nodes: the JSON and Caddyfile face of cluster.Config. Modules that
// embed the same Cluster share one *cluster.Cluster.
type Cluster struct {
	Redis cluster.RedisConfig `json:"redis,omitempty"`

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

	// A node at one of these limits gets no new rooms (its rooms keep
	// working); with every node at a limit, a new room is refused (503).
	// sysload_limit is LiveKit's node_selector.sysload_limit (load average
	// per CPU); max_rooms and max_clients count the node's own stats. 0: none.
	SysloadLimit float64 `json:"sysload_limit,omitempty"`
	MaxRooms     int     `json:"max_rooms,omitempty"`
	MaxClients   int     `json:"max_clients,omitempty"`

	// Regions in the shape of livekit.yaml's node_selector.regions (nodes
	// carry theirs in `region:`), and this proxy's own. A new room goes to
	// the region nearest its client (RegionHeader, else GeoIPDB) or, unknown,
	// to this proxy's, on a node under the limits; else to the nearest that
	// has one.
	Regions []cluster.Region `json:"regions,omitempty"`
	Region  string           `json:"region,omitempty"`
	// Request header naming the client's region, or its "lat,lon" (a CDN's
	// or the operator's edge sets it); honoured only on requests from
	// Caddy's trusted_proxies, so a client cannot choose for itself.
	RegionHeader string `json:"region_header,omitempty"`
	// A MaxMind database (.mmdb with coordinates: GeoLite2-City,
	// GeoIP2-City) that places a client by its address, Caddy's client_ip
	// (behind trusted_proxies, the address they forward), when no trusted
	// region_header says where it is. Read into memory at provisioning: a
	// replaced file is read at the next config load (`caddy reload --force`
	// when the config itself did not change).
	GeoIPDB string `json:"geoip_db,omitempty"`

	geo    *geoDB // GeoIPDB, loaded by Join
	geoKey string // its entry in geoDBs, given back by Cleanup

	// The cluster's API key and secret (livekit.yaml's `keys`), usually
	// {env.LIVEKIT_API_KEY} and {env.LIVEKIT_API_SECRET}: livekit_lb
	// verifies tokens with them, livekit_token signs its own.
	APIKey    string `json:"api_key,omitempty"`
	APISecret string `json:"api_secret,omitempty"`

	poolKey string // set by Join: this module's share of the pool
}

// maxRegionHint bounds the region header's value: a region name or "lat,lon".
const maxRegionHint = 64

// Near is where the client of r is: region_header's value when the request
// came through one of Caddy's trusted_proxies (so a client cannot pick a
// region for itself) and it names a listed region or a lat,lon; else its
// client_ip's place in geoip_db; else "".
func (c Cluster) Near(r *http.Request) string {
	if c.RegionHeader != "" {
		v := strings.TrimSpace(r.Header.Get(c.RegionHeader))
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted && len(v) <= maxRegionHint && c.place(v) {
			return v
		}
	}
	if c.geo == nil {
		return ""
	}
	// Caddy's client_ip: the peer, or behind trusted_proxies the client they name
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	return c.geo.near(addr)
}

// place: v names a region of Regions, or is a lat,lon on Earth.
func (c Cluster) place(v string) bool {
	for _, g := range c.Regions {
		if g.Name == v {
			return true
		}
	}
	_, _, ok := cluster.ParseLatLon(v)
	return ok
}

// Keys returns the API key and secret, placeholders resolved, or an error
// naming module when either is missing (an {env.*} placeholder may be
// empty) or the secret is shorter than LiveKit allows.
func (c Cluster) Keys(module string) (key, secret string, err error) {
	repl := caddy.NewReplacer()
	key, secret = repl.ReplaceAll(c.APIKey, ""), repl.ReplaceAll(c.APISecret, "")
	if key == "" || secret == "" {
		return key, secret, fmt.Errorf("%s: api_key and api_secret are required (is an {env.*} placeholder empty?)", module)
	}
	return key, secret, cluster.CheckSecret(module+": api_secret", secret)
}

// clusters holds one *cluster.Cluster per distinct resolved Cluster; it
// outlives config reloads, so a reload reuses the Redis client and the
// node picture.
var clusters = caddy.NewUsagePool()

// pooled lets the pool close a cluster when its last module is cleaned up.
type pooled struct{ *cluster.Cluster }

func (p pooled) Destruct() error { return p.Close() }

// Config resolves placeholders ({env.*}) and returns the core's settings,
// defaults filled in and checked.
func (c Cluster) Config() (cluster.Config, error) {
	repl := caddy.NewReplacer()
	resolve := func(s string) string { return repl.ReplaceAll(s, "") }
	cfg := cluster.Config{
		Redis:           c.Redis.Map(resolve),
		NodePort:        c.NodePort,
		NodeAddresses:   c.NodeAddresses,
		AllowNetworks:   cluster.ExpandNetworks(cluster.MapAll(resolve, c.AllowNetworks)),
		RefreshInterval: time.Duration(c.RefreshInterval),
		StaleAfter:      time.Duration(c.StaleAfter),
		PlacementCache:  time.Duration(c.PlacementCache),
		RedisTimeout:    time.Duration(c.RedisTimeout),
		FailDuration:    time.Duration(c.FailDuration),
		ProbeInterval:   time.Duration(c.ProbeInterval),
		ProbeTimeout:    time.Duration(c.ProbeTimeout),
		LoadMeasure:     resolve(c.LoadMeasure),
		Limits:          cluster.Limits{SysloadLimit: c.SysloadLimit, MaxRooms: c.MaxRooms, MaxClients: c.MaxClients},
		Regions:         c.Regions,
		Region:          resolve(c.Region),
	}.WithDefaults()
	return cfg, cfg.Validate()
}

// key identifies a resolved config in the pool; hashed so that the
// password is not kept in a readable key.
func key(cfg cluster.Config) string {
	b, _ := json.Marshal(cfg)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Join returns the shared cluster for this config, for a module's
// Provision; livekit_lb and livekit_token both join, so that they share
// placement. The module's Cleanup (this one, promoted) leaves it.
func (c *Cluster) Join(ctx caddy.Context) (*cluster.Cluster, error) {
	if err := RegisterMetrics(ctx); err != nil {
		return nil, err
	}
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	if path := caddy.NewReplacer().ReplaceAll(c.GeoIPDB, ""); path != "" {
		if c.geo, c.geoKey, err = loadGeoDB(path, ctx.Logger()); err != nil {
			return nil, err
		}
	}
	k := key(cfg)
	val, _, err := clusters.LoadOrNew(k, func() (caddy.Destructor, error) {
		cl, err := cluster.Open(cfg, ctx.Logger().Named("cluster"), metricsObserver{})
		return pooled{cl}, err
	})
	if err != nil {
		return nil, err // Caddy cleans up a module that fails to provision
	}
	c.poolKey = k
	return val.(pooled).Cluster, nil
}

// Cleanup leaves the shared cluster; the last module to leave closes it.
// A request still in flight may keep using the GeoIP copy: it is memory,
// freed once nothing holds it.
func (c *Cluster) Cleanup() error {
	var geoErr error
	if c.geoKey != "" {
		_, geoErr = geoDBs.Delete(c.geoKey)
		c.geoKey = ""
	}
	if c.poolKey == "" {
		return geoErr
	}
	_, err := clusters.Delete(c.poolKey)
	c.poolKey = ""
	return errors.Join(err, geoErr)
}

// Open connects to the cluster for a one-off look (`caddy livekit`): no
// refresh loop or probes of its own; call ProbeNow, and Close when done.
func (c Cluster) Open(log *zap.Logger) (*cluster.Cluster, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, err
	}
	cfg.RefreshInterval, cfg.ProbeInterval = time.Hour, -1
	return cluster.Open(cfg, log, nil)
}

// pooledClusters returns every cluster the running config uses, for the admin API.
func pooledClusters() []*cluster.Cluster {
	var out []*cluster.Cluster
	clusters.Range(func(_, v any) bool {
		out = append(out, v.(pooled).Cluster)
		return true
	})
	return out
}
