// Package routing holds the integration tests of routing and placement: real
// redis-server, real livekit-server nodes and real server-sdk-go clients that
// connect through Caddy with the livekit_lb plugin.
package routing

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/auth"
)

func TestMain(m *testing.M) { harness.Main(m) }

// cluster is one test's Redis, LiveKit nodes and Caddy in front of them.
type cluster struct {
	t     *testing.T
	redis *harness.Redis
	nodes []*harness.Node
	caddy *harness.Caddy
	addr  string // Caddy's site, "127.0.0.1:PORT"
}

// startCluster starts Redis, n nodes and Caddy with the livekit_lb site of
// these tests. extra lines go into the livekit_lb block (api_key, redis_timeout, ...).
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	c.redis = harness.StartRedis(t)
	c.nodes = harness.StartNodes(t, c.redis.Addr(), n, harness.NodeOptions{})
	c.addr = harness.FreeAddr(t)
	c.caddy = harness.StartCaddy(t, caddyfile(c.addr, c.redis.Addr(), extra...))
	return c
}

func caddyfile(addr, redisAddr string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "http://%s {\n", addr)
	fmt.Fprintf(&b, "\tlivekit_lb %s {\n", redisAddr)
	b.WriteString("\t\tload_measure rooms # all nodes share one host, so sysload ties; rooms makes the spread visible\n")
	b.WriteString("\t\tallow_networks 127.0.0.0/8\n")
	for _, l := range harness.LBKeys {
		fmt.Fprintf(&b, "\t\t%s\n", l)
	}
	for _, l := range extra {
		fmt.Fprintf(&b, "\t\t%s\n", l)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// wsURL is the URL clients join through.
func (c *cluster) wsURL() string { return "ws://" + c.addr }

// httpURL is the base URL for plain HTTP requests through Caddy.
func (c *cluster) httpURL() string { return "http://" + c.addr }

// roomNode returns room_node_map[room] ("" if unset).
func (c *cluster) roomNode(room string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return harness.RoomNode(ctx, c.redis.Client(), room)
}

// place writes room_node_map[room] = nodeID, as a node or another proxy would.
func (c *cluster) place(room, nodeID string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.redis.Client().HSet(ctx, harness.RoomNodeMapKey, room, nodeID).Err(); err != nil {
		c.t.Fatalf("HSET room_node_map %s %s: %v", room, nodeID, err)
	}
}

// signalNode returns the node ID whose log shows identity's signal WebSocket.
func (c *cluster) signalNode(identity string) string {
	c.t.Helper()
	id, ok := harness.SignalNodeOf(c.nodes, identity)
	if !ok {
		c.t.Fatalf("no node logged the signal WebSocket of %s", identity)
	}
	return id
}

// name describes a node ID for messages: "node2(127.0.0.3)/ND_xxx".
func (c *cluster) name(id string) string {
	for i, n := range c.nodes {
		if n.ID() == id {
			return fmt.Sprintf("node%d(%s)/%s", i+1, n.IP(), id)
		}
	}
	if id == "" {
		return `""`
	}
	return "unknown/" + id
}

// nodeByID returns the node whose current ID is id, or nil.
func (c *cluster) nodeByID(id string) *harness.Node {
	for _, n := range c.nodes {
		if n.ID() == id {
			return n
		}
	}
	return nil
}

// waitNodeRooms waits until every node's stats in Redis show at least
// want[nodeID] rooms, and returns the last counts read.
func (c *cluster) waitNodeRooms(want map[string]int32, timeout time.Duration) (map[string]int32, bool) {
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]int32{}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		nodes, err := harness.RedisNodes(ctx, c.redis.Client())
		cancel()
		ok := err == nil
		for id, n := range nodes {
			got[id] = n.GetStats().GetNumRooms()
		}
		for id, w := range want {
			if got[id] < w {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) {
			return got, ok
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tokenWith is an access token for identity in room signed with key/secret.
func tokenWith(key, secret, room, identity string) string {
	at := auth.NewAccessToken(key, secret).
		SetIdentity(identity).
		SetValidFor(time.Hour).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room})
	jwt, err := at.ToJWT()
	if err != nil {
		panic(err)
	}
	return jwt
}

// distribution formats counts per node ID in node order.
func (c *cluster) distribution(count map[string]int) string {
	var parts []string
	for _, n := range c.nodes {
		parts = append(parts, fmt.Sprintf("%s: %d", c.name(n.ID()), count[n.ID()]))
	}
	var other []string
	for id, k := range count {
		if c.nodeByID(id) == nil {
			other = append(other, fmt.Sprintf("%s: %d", c.name(id), k))
		}
	}
	sort.Strings(other)
	return strings.Join(append(parts, other...), ", ")
}
