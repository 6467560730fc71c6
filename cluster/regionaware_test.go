package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

// regionAwareCase is one case of testdata/regionaware.json, which
// integration/regionaware writes by running LiveKit's own regionaware
// selector (livekit-server's pkg/routing/selector) on random clusters.
type regionAwareCase struct {
	Kind         string           `json:"kind"`
	Regions      []cluster.Region `json:"regions"`
	Origin       string           `json:"origin"`
	SysloadLimit float32          `json:"sysload_limit"`
	Nodes        []struct {
		ID, Region, State string
		Sysload           float32
	} `json:"nodes"`
	Node   string `json:"livekit_node"`
	Region string `json:"livekit_region"`
	Clear  bool   `json:"clear"`
}

// TestRegionAwareLikeLiveKit: for the same regions, nodes (state, stats
// age, sysload, region) and origin region, a new room goes to the region
// whose node LiveKit's regionaware selector picks, and where LiveKit's
// lowest sysload is clear of our load tolerance, to the same node. The
// origin is the proxy's `region` in even cases and the client's hint
// (Near) in odd ones.
//
// Where we differ on purpose, the cases say so: with every available node
// over sysload_limit LiveKit falls back to all of them, we refuse (ErrFull);
// with no available node in a listed region LiveKit keeps only the nodes
// without a region when there are any (its nearestRegion starts as "",
// which they match), we take any node by load.
func TestRegionAwareLikeLiveKit(t *testing.T) {
	raw, err := os.ReadFile("testdata/regionaware.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []regionAwareCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Cases) < 200 {
		t.Fatalf("%d cases in testdata/regionaware.json", len(golden.Cases))
	}
	counts := map[string]int{}
	for i, tc := range golden.Cases {
		name := fmt.Sprintf("case %d (%s, origin %s)", i, tc.Kind, tc.Origin)
		n, err := routeNewRoom(t, tc, i%2 == 1)
		switch tc.Kind {
		case "nearest", "filtered":
			switch {
			case err != nil:
				t.Errorf("%s: %v; LiveKit picks %s in %s", name, err, tc.Node, tc.Region)
			case n.Region != tc.Region:
				t.Errorf("%s: placed on %s in %q; LiveKit picks %s in %q", name, n.ID, n.Region, tc.Node, tc.Region)
			case tc.Clear && n.ID != tc.Node:
				t.Errorf("%s: placed on %s; LiveKit picks %s, clearly the least loaded in %s", name, n.ID, tc.Node, tc.Region)
			}
			if tc.Region != tc.Origin {
				counts["spilled over"]++
			}
		case "all_over_limit":
			if !errors.Is(err, cluster.ErrFull) {
				t.Errorf("%s: every node over sysload_limit: got %v, %v; want ErrFull (LiveKit falls back to %s)", name, n, err, tc.Node)
			}
		case "unlisted_only":
			if err != nil || !open(tc, n.ID) {
				t.Errorf("%s: no listed region has a node: got %v, %v; want any node that takes new rooms", name, n, err)
			} else if n.Region != tc.Region {
				counts["unlisted_only, another region than LiveKit's"]++
			}
		default:
			t.Fatalf("%s: unknown kind", name)
		}
		counts[tc.Kind]++
	}
	t.Logf("cases: %v", counts)
}

// open: node id of tc is serving, fresh and under the limit.
func open(tc regionAwareCase, id string) bool {
	for _, n := range tc.Nodes {
		if n.ID == id {
			return n.State == "" && (tc.SysloadLimit == 0 || n.Sysload < tc.SysloadLimit)
		}
	}
	return false
}

// routeNewRoom places a new room in a cluster of tc's nodes, from tc's
// origin: the proxy's own region, or (hint) the client's.
func routeNewRoom(t *testing.T, tc regionAwareCase, hint bool) (*cluster.Node, error) {
	t.Helper()
	st := clustertest.NewStore()
	now := time.Now().Unix()
	for i, n := range tc.Nodes {
		ln := clustertest.Node(n.ID, fmt.Sprintf("10.0.%d.%d", i/200, i%200+1), livekit.NodeState_SERVING, n.Sysload, 0)
		ln.Region = n.Region
		switch n.State {
		case "shutting_down":
			ln.State = livekit.NodeState_SHUTTING_DOWN
		case "stale":
			ln.Stats.UpdatedAt = now - 60
		}
		st.SetNode(ln)
	}
	cfg := cluster.Config{RefreshInterval: time.Hour, ProbeInterval: -1, LoadMeasure: cluster.MeasureSysload,
		Limits: cluster.Limits{SysloadLimit: float64(tc.SysloadLimit)}, Regions: tc.Regions, Region: tc.Origin}
	ctx := context.Background()
	if hint {
		for _, g := range tc.Regions { // the proxy is elsewhere
			if g.Name != tc.Origin {
				cfg.Region = g.Name
				break
			}
		}
		ctx = cluster.Near(ctx, tc.Origin)
	}
	c, err := cluster.New(cfg, st, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Ready(ctx)
	n, _, err := c.Route(ctx, "room")
	return n, err
}
