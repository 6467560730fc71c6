package cluster

import (
	"context"
	"fmt"
	"testing"

	"github.com/livekit/protocol/livekit"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

// BenchmarkRouteKnownRoom: the routing decision for a room already placed,
// with 100,000 placed rooms and 100 nodes. It must cost no Redis round trip
// and no allocation.
func BenchmarkRouteKnownRoom(b *testing.B) {
	f := clustertest.NewStore()
	for i := range 100 {
		f.SetNode(lkNode(fmt.Sprintf("ND_%03d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), livekit.NodeState_SERVING, 0.1, 0))
	}
	s := testConfig()
	s.PlacementCache = 1 << 62 // the whole run inside one cache period
	r := newTestCluster(b, f, s)
	rooms := make([]string, 100_000)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%06d", i)
		f.Placements[rooms[i]] = fmt.Sprintf("ND_%03d", i%100)
		if _, _, err := r.Route(context.Background(), rooms[i]); err != nil {
			b.Fatal(err)
		}
	}
	lookups := f.Lookups
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		n, _, err := r.Route(ctx, rooms[i%len(rooms)])
		if err != nil || n == nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if f.Lookups != lookups {
		b.Fatalf("%d Redis lookups during the benchmark, want 0", f.Lookups-lookups)
	}
}
