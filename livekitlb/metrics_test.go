package livekitlb

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

func TestMetricsFollowRouting(t *testing.T) {
	_, r := twoNodes(t)
	routes := func(o cluster.Outcome) float64 { return testutil.ToFloat64(metrics.routes.WithLabelValues(string(o))) }
	placed, cached := routes(cluster.OutcomePlaced), routes(cluster.OutcomeCached)
	lookups := testutil.CollectAndCount(metrics.redisLatency)

	h := testHandler(t, r, true)
	for range 3 {
		serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "m1", time.Hour), nil))
	}
	if d := routes(cluster.OutcomePlaced) - placed; d != 1 {
		t.Errorf("placed += %v, want 1", d)
	}
	if d := routes(cluster.OutcomeCached) - cached; d != 2 {
		t.Errorf("cached += %v, want 2", d)
	}
	if testutil.CollectAndCount(metrics.redisLatency) < lookups || testutil.ToFloat64(metrics.nodeRoutable.WithLabelValues("ND_a")) != 1 {
		t.Errorf("redis latency or node gauges not recorded")
	}
	bad := routes(cluster.OutcomeBadToken)
	serve(t, h, httptest.NewRequest("GET", "/rtc?access_token=garbage", nil))
	if routes(cluster.OutcomeBadToken)-bad != 1 {
		t.Error("bad token not counted")
	}

	down := testutil.ToFloat64(metrics.transitions.WithLabelValues("down"))
	r.Failed(node(r, "ND_a"), "")
	if testutil.ToFloat64(metrics.transitions.WithLabelValues("down"))-down != 1 {
		t.Error("down transition not counted")
	}
	r.Refresh(context.Background())
	if testutil.ToFloat64(metrics.nodeRoutable.WithLabelValues("ND_a")) != 0 {
		t.Error("node_routable still 1 for a node the proxy failed to reach")
	}
}

func TestAdminAPI(t *testing.T) {
	f, r := twoNodes(t)
	for i := range 5 {
		f.Placements[string(rune('a'+i))] = []string{"ND_a", "ND_b"}[i%2]
	}
	// the admin API lists the clusters in the pool
	key := "admin-test"
	if _, _, err := clusters.LoadOrNew(key, func() (caddy.Destructor, error) { return pooled{r}, nil }); err != nil {
		t.Fatal(err)
	}
	defer clusters.Delete(key)

	rec := httptest.NewRecorder()
	if err := (AdminAPI{}).nodes(rec, httptest.NewRequest("GET", "/livekit/nodes", nil)); err != nil {
		t.Fatal(err)
	}
	var nodes NodesView
	if err := json.Unmarshal(rec.Body.Bytes(), &nodes); err != nil || len(nodes.Nodes) != 2 || !nodes.RedisReachable {
		t.Fatalf("nodes view %s %v", rec.Body, err)
	}
	if n := nodes.Nodes[0]; n.ID != "ND_a" || n.Dial != "10.0.0.1:7880" || n.State != "SERVING" || !n.Routable || n.StatsAge > 5 {
		t.Fatalf("node %+v", n)
	}

	rec = httptest.NewRecorder()
	if err := (AdminAPI{}).rooms(rec, httptest.NewRequest("GET", "/livekit/rooms?node=ND_b&count=10", nil)); err != nil {
		t.Fatal(err)
	}
	var rooms RoomsView
	if err := json.Unmarshal(rec.Body.Bytes(), &rooms); err != nil || len(rooms.Rooms) != 2 || rooms.Rooms[0] != (RoomPlacement{"b", "ND_b"}) {
		t.Fatalf("rooms view %s %v", rec.Body, err)
	}
	for _, bad := range []string{"?count=0", "?count=5000", "?cursor=x"} {
		if err := (AdminAPI{}).rooms(httptest.NewRecorder(), httptest.NewRequest("GET", "/livekit/rooms"+bad, nil)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
