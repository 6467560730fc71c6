package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

// Drain, from an admin or command goroutine, while the refresh goroutine
// runs through Redis outages: the view's state (health, outage times) has
// one writer, which -race checks.
func TestDrainDuringRefreshes(t *testing.T) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	cfg := testConfig()
	cfg.RefreshInterval = time.Millisecond
	c := newTestCluster(t, f, cfg)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // Redis goes and comes back
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				f.SetErr(nil)
				return
			case <-time.After(time.Millisecond):
			}
			if i%2 == 0 {
				f.SetErr(clustertest.ErrDown)
			} else {
				f.SetErr(nil)
			}
		}
	}()
	for i := range 200 {
		_ = c.Drain(context.Background(), "10.0.0.1", i%2 == 0)
	}
	close(stop)
	wg.Wait()
	if err := c.Drain(context.Background(), "10.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	if !c.IsDrained("10.0.0.1") || c.Nodes()[0].Placeable(time.Now()) {
		t.Fatal("the drain is not in force when Drain returns")
	}
}
