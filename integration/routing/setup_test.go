// Package routing holds the integration tests of routing and placement: real
// redis-server, real livekit-server nodes and real server-sdk-go clients that
// connect through Caddy with the livekit_lb plugin.
package routing

import (
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// cluster is one test's Redis, LiveKit nodes and Caddy in front of them.
type cluster struct {
	*harness.Stack
	proxy *harness.Proxy
}

// startCluster starts Redis, n nodes and Caddy with the livekit_lb site of
// these tests. extra lines go into the livekit_lb block (redis_timeout, ...).
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	s := harness.StartStack(t, n, harness.NodeOptions{})
	// all nodes share one host, so sysload ties; rooms makes the spread visible
	lb := harness.LB{Options: append([]string{"load_measure rooms"}, extra...)}
	return &cluster{Stack: s, proxy: s.StartProxy(t, lb)}
}

// waitNodeRooms waits until every node's stats in Redis show at least
// want[nodeID] rooms, and returns the last counts read.
func (c *cluster) waitNodeRooms(want map[string]int32, timeout time.Duration) (map[string]int32, bool) {
	return harness.PollValue(timeout, 200*time.Millisecond, func() (map[string]int32, bool) {
		got := map[string]int32{}
		nodes, err := c.RedisNodes()
		ok := err == nil
		for id, n := range nodes {
			got[id] = n.GetStats().GetNumRooms()
		}
		for id, w := range want {
			if got[id] < w {
				ok = false
			}
		}
		return got, ok
	})
}
