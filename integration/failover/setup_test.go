// Package failover holds the integration tests of node failure (issue 5):
// a node killed, paused or draining, a config reload under load, and two
// proxies placing the same rooms, plus a burst of new rooms (a placement bug
// found on the way). Real redis-server, real livekit-server
// nodes and real server-sdk-go clients (plus raw signal WebSockets where
// hundreds of joins are needed) connect through Caddy with the livekit_lb
// plugin, and for comparison through stock reverse_proxy.
//
// Nothing asserts timing: the tests log what they measure (run with -v) and
// assert only where connections land and that they stay up. See the
// "Failover" section of BENCHMARKS.md for the command and the figures.
//
// Environment:
//
//	LKLB_FAILOVER_TRIALS=N   kill trials per proxy in TestKillRejoin (default 10)
//	LKLB_RELOAD_CLIENTS=N    SDK clients of TestReloadUnderLoad (default 200)
//	LKLB_DUAL_ROOMS=N        rooms of TestTwoProxiesOneNodePerRoom (default 100)
package failover

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// connectTimeout bounds the SDK joins of these tests that are not retried.
const connectTimeout = 10 * time.Second

// startCluster starts Redis and n LiveKit nodes; the tests put one or more
// Caddy processes in front of them.
func startCluster(t testing.TB, n int) *harness.Stack {
	t.Helper()
	return harness.StartStack(t, n, harness.NodeOptions{})
}

// startLBAndStock starts one Caddy with two sites over c's nodes: livekit_lb
// with its defaults, and stock reverse_proxy (round robin, passive health),
// what a generic proxy in front of LiveKit looks like. It returns their
// ws:// URLs.
func startLBAndStock(t testing.TB, c *harness.Stack) (lb, stock string) {
	t.Helper()
	lbAddr, stockAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	harness.StartCaddy(t, harness.LBSite(lbAddr, harness.LB{Redis: c.Redis.Addr()})+
		harness.StockSite(stockAddr, harness.Upstreams(c.Nodes), "lb_policy round_robin", "lb_try_duration 5s", "fail_duration 10s"))
	return "ws://" + lbAddr, "ws://" + stockAddr
}

// envInt is the integer in environment variable name, or def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// summary is "median M, max X (n=N)" of ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %v, max %v, min %v (n=%d)", med.Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), s[0].Round(time.Millisecond), len(s))
}
