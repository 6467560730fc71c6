package livekitlb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

const serving = livekit.NodeState_SERVING

var lkNode = clustertest.Node

// testCluster starts a cluster over f that refreshes only when told, with
// the metrics observer.
func testCluster(t testing.TB, f *clustertest.Store, cfg cluster.Config, log *zap.Logger) *cluster.Cluster {
	t.Helper()
	c, err := cluster.New(cfg, f, log, metricsObserver{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	c.Ready(context.Background())
	return c
}

func noProbes() cluster.Config {
	return cluster.Config{RefreshInterval: time.Hour, PlacementCache: 5 * time.Second, ProbeInterval: -1}
}

// twoNodes: ND_a (10.0.0.1, lightly loaded) and ND_b (10.0.0.2), never
// dialled: no probes.
func twoNodes(t *testing.T) (*clustertest.Store, *cluster.Cluster) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	f.SetNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	return f, testCluster(t, f, noProbes(), zap.NewNop())
}

// probedNodes is twoNodes whose HTTP ports are loopback servers the probes
// reach every few milliseconds; kill ends one, and the probes declare its
// node dead.
type probedNodes struct {
	*cluster.Cluster
	servers map[string]*httptest.Server
}

func twoProbedNodes(t *testing.T) (*clustertest.Store, *probedNodes) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	f.SetNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	p := &probedNodes{servers: map[string]*httptest.Server{}}
	cfg := noProbes()
	cfg.ProbeInterval, cfg.ProbeTimeout = 5*time.Millisecond, time.Second
	cfg.NodeAddresses = map[string]string{}
	for id, ip := range map[string]string{"ND_a": "10.0.0.1", "ND_b": "10.0.0.2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		p.servers[id] = srv
		cfg.NodeAddresses[ip] = strings.TrimPrefix(srv.URL, "http://")
	}
	p.Cluster = testCluster(t, f, cfg, zap.NewNop())
	return f, p
}

// kill stops node id's server: the next probe is refused, a death at once.
func (p *probedNodes) kill(t *testing.T, id string) {
	p.servers[id].Close()
	poll(t, id+" declared dead", func() bool { return !node(p.Cluster, id).Routable(time.Now()) })
}

func node(c *cluster.Cluster, id string) *cluster.Node {
	for _, n := range c.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

func sessions(c *cluster.Cluster, id string) int {
	for _, s := range c.Status() {
		if s.ID == id {
			return s.Sessions
		}
	}
	return -1
}

func waitSessions(t *testing.T, c *cluster.Cluster, id string, want int) {
	t.Helper()
	poll(t, "sessions of "+id, func() bool { return sessions(c, id) == want })
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}
