package harness

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
)

// Stack is one test's Redis and LiveKit nodes, with the reads that tests of
// the proxies in front of them share. Redis is nil where the nodes use
// another Redis (a sentinel set).
type Stack struct {
	Redis *Redis
	Nodes []*Node
}

// StartStack starts Redis and n LiveKit nodes (see StartNodes).
func StartStack(t testing.TB, n int, opts NodeOptions) *Stack {
	t.Helper()
	s := &Stack{Redis: StartRedis(t)}
	s.Nodes = StartNodes(t, s.Redis.Addr(), n, opts)
	return s
}

// Proxy is a Caddy whose site at Addr serves livekit_lb (or another
// handler a test put there).
type Proxy struct {
	*Caddy
	Addr string // "127.0.0.1:PORT"
}

// WS is the URL clients join through, ws://ADDR.
func (p *Proxy) WS() string { return "ws://" + p.Addr }

// HTTP is the base URL of plain requests through the proxy, http://ADDR.
func (p *Proxy) HTTP() string { return "http://" + p.Addr }

// StartProxy starts Caddy with one livekit_lb site (LBSite: pre are lines of
// the site before it) on a free port, reading the stack's Redis unless lb
// says where Redis is.
func (s *Stack) StartProxy(t testing.TB, lb LB, pre ...string) *Proxy {
	t.Helper()
	return s.StartProxyWith(t, "", lb, pre...)
}

// StartProxyWith is StartProxy with global options lines (debug ...).
func (s *Stack) StartProxyWith(t testing.TB, global string, lb LB, pre ...string) *Proxy {
	t.Helper()
	if lb.Redis == "" && len(lb.RedisBlock) == 0 {
		lb.Redis = s.Redis.Addr()
	}
	if global != "" {
		global = Global(global)
	}
	return StartSite(t, func(addr string) string { return global + LBSite(addr, lb, pre...) })
}

// StartSite starts Caddy with the Caddyfile that site makes for a free
// address (LBSite, TokenSite ...).
func StartSite(t testing.TB, site func(addr string) string) *Proxy {
	t.Helper()
	p := &Proxy{Addr: FreeAddr(t)}
	p.Caddy = StartCaddy(t, site(p.Addr))
	return p
}

// RoomNode returns room_node_map[room] ("" if unset).
func (s *Stack) RoomNode(room string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return RoomNode(ctx, s.Redis.Client(), room)
}

// Place writes room_node_map[room] = nodeID, as a node or another proxy would.
func (s *Stack) Place(t testing.TB, room, nodeID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Redis.Client().HSet(ctx, RoomNodeMapKey, room, nodeID).Err(); err != nil {
		t.Fatalf("HSET room_node_map %s %s: %v", room, nodeID, err)
	}
}

// SignalNode returns the node ID whose log shows identity's signal
// WebSocket, or "" (after SignalNodeOf's wait) if none does.
func (s *Stack) SignalNode(identity string) string {
	id, _ := SignalNodeOf(s.Nodes, identity)
	return id
}

// MustSignalNode is SignalNode that fails the test if no node logged it.
func (s *Stack) MustSignalNode(t testing.TB, identity string) string {
	t.Helper()
	id, ok := SignalNodeOf(s.Nodes, identity)
	if !ok {
		t.Fatalf("no node logged the signal WebSocket of %s", identity)
	}
	return id
}

// NodeByID returns the node whose current incarnation has id, or nil.
func (s *Stack) NodeByID(id string) *Node {
	for _, n := range s.Nodes {
		if n.ID() == id {
			return n
		}
	}
	return nil
}

// Other returns a node of the stack other than n.
func (s *Stack) Other(n *Node) *Node {
	for _, o := range s.Nodes {
		if o != n {
			return o
		}
	}
	return nil
}

// Name describes a node ID for messages: "node2(127.0.0.3)/ND_xxx".
func (s *Stack) Name(id string) string {
	for i, n := range s.Nodes {
		if n.ID() == id {
			return fmt.Sprintf("node%d(%s)/%s", i+1, n.IP(), id)
		}
	}
	if id == "" {
		return `""`
	}
	return "unknown/" + id
}

// Distribution formats counts per node ID, in node order, then the IDs
// that are no node of the stack.
func (s *Stack) Distribution(count map[string]int) string {
	var parts, other []string
	for _, n := range s.Nodes {
		parts = append(parts, fmt.Sprintf("%s: %d", s.Name(n.ID()), count[n.ID()]))
	}
	for id, k := range count {
		if s.NodeByID(id) == nil {
			other = append(other, fmt.Sprintf("%s: %d", s.Name(id), k))
		}
	}
	sort.Strings(other)
	return strings.Join(append(parts, other...), ", ")
}

// Spread formats how many of rooms room_node_map puts on each node.
func (s *Stack) Spread(rooms []string) string {
	count := map[string]int{}
	for _, r := range rooms {
		count[s.RoomNode(r)]++
	}
	return s.Distribution(count)
}

// RedisNodes reads Redis `nodes` (see RedisNodes).
func (s *Stack) RedisNodes() (map[string]*livekit.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return RedisNodes(ctx, s.Redis.Client())
}

// NodeState returns the state Redis `nodes` holds for id, and whether the
// node is there.
func (s *Stack) NodeState(id string) (livekit.NodeState, bool) {
	nodes, err := s.RedisNodes()
	if err != nil || nodes[id] == nil {
		return 0, false
	}
	return nodes[id].GetState(), true
}

// Livekit runs `caddy livekit ARGS` (status, drain NODE, ...) of the Caddy
// under test against the stack's Redis, and returns its combined output.
func (s *Stack) Livekit(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(CaddyBinary(t), append([]string{"livekit", "--redis", s.Redis.Addr(), "--allow-networks", "127.0.0.0/8"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
