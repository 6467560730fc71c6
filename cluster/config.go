// Package cluster is the proxy's picture of a LiveKit cluster, with nothing
// of Caddy in it: the nodes LiveKit registers in Redis (view.go), probes of
// their HTTP port (probe.go), where each room lives and where a new one goes
// (placer.go, measure.go, cache.go), the requests passed to each node
// (sessions.go), and the one door to Redis (store.go, ops.go). The Caddy
// modules in livekitlb and tokenhandler, and `caddy livekit`, use it
// through Cluster (cluster.go).
package cluster

import (
	"fmt"
	"time"
)

// Config is a cluster's settings, placeholders already resolved.
type Config struct {
	Redis RedisConfig
	// Port of the nodes' HTTP/WebSocket listener (LiveKit's `port`).
	NodePort int
	// Dial address for a node's advertised IP (nodes behind NAT).
	NodeAddresses map[string]string
	// Networks inside which addresses read from Redis may be dialled.
	AllowNetworks []string

	RefreshInterval time.Duration // how often `nodes` is read
	StaleAfter      time.Duration // stats older than this: the node is out (LiveKit's rule)
	PlacementCache  time.Duration // how long a placement is trusted without Redis
	RedisTimeout    time.Duration // bound on every Redis call a request waits for
	FailDuration    time.Duration // a node the proxy failed to reach is out this long (no probes)
	ProbeInterval   time.Duration // <= 0: no probes
	ProbeTimeout    time.Duration
	LoadMeasure     string // sysload, cpuload, rooms or clients

	// Limits: a node at one gets no new rooms.
	Limits Limits
	// Regions (node_selector.regions' shape) and the proxy's own Region: a
	// new room goes to the nearest region with a node under its limits.
	Regions []Region
	Region  string
}

// WithDefaults fills what c leaves out.
func (c Config) WithDefaults() Config {
	if c.NodePort == 0 {
		c.NodePort = 7880
	}
	if c.AllowNetworks == nil {
		c.AllowNetworks = defaultAllowNetworks
	}
	if c.LoadMeasure == "" {
		c.LoadMeasure = MeasureSysload
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RefreshInterval, time.Second)
	def(&c.StaleAfter, 5*time.Second)
	def(&c.PlacementCache, 30*time.Second)
	def(&c.RedisTimeout, time.Second)
	def(&c.FailDuration, 5*time.Second)
	def(&c.ProbeInterval, 100*time.Millisecond)
	def(&c.ProbeTimeout, 350*time.Millisecond)
	return c
}

// Validate checks a Config after WithDefaults.
func (c Config) Validate() error {
	if err := c.Redis.Validate(); err != nil {
		return err
	}
	if c.NodePort < 1 || c.NodePort > 65535 {
		return fmt.Errorf("node_port %d out of range", c.NodePort)
	}
	if err := ValidMeasure(c.LoadMeasure); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"refresh_interval", c.RefreshInterval}, {"stale_after", c.StaleAfter}, {"placement_cache", c.PlacementCache},
		{"redis_timeout", c.RedisTimeout}, {"fail_duration", c.FailDuration}, {"probe_timeout", c.ProbeTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative", d.name)
		}
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if _, err := newRegions(c.Regions, c.Region); err != nil {
		return err
	}
	_, err := newAddressBook(c.NodePort, c.NodeAddresses, c.AllowNetworks)
	return err
}

// MinSecret is LiveKit's own minimum length of an API secret.
const MinSecret = 32

// CheckSecret refuses a secret LiveKit itself would refuse.
func CheckSecret(what, secret string) error {
	if len(secret) < MinSecret {
		return fmt.Errorf("%s has %d characters; LiveKit needs at least %d", what, len(secret), MinSecret)
	}
	return nil
}
