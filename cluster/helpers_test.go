package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

const (
	serving  = livekit.NodeState_SERVING
	draining = livekit.NodeState_SHUTTING_DOWN
)

var (
	lkNode  = clustertest.Node
	errDown = clustertest.ErrDown
)

// testConfig refreshes only when a test says so, and probes nothing.
func testConfig() Config {
	return Config{RefreshInterval: time.Hour, StaleAfter: 5 * time.Second, PlacementCache: 5 * time.Second,
		ProbeInterval: -1, LoadMeasure: MeasureSysload}
}

// newTestCluster starts a cluster over f, loaded.
func newTestCluster(t testing.TB, f *clustertest.Store, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg, f, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	c.Ready(context.Background())
	return c
}

func twoNodes(t *testing.T) (*clustertest.Store, *Cluster) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	f.SetNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	return f, newTestCluster(t, f, testConfig())
}

func mustRoute(t *testing.T, c *Cluster, room string) (*Node, Outcome) {
	t.Helper()
	n, o, err := c.Route(context.Background(), room)
	if err != nil {
		t.Fatalf("Route(%q): %v", room, err)
	}
	return n, o
}
