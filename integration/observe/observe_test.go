// Package observe tests what an operator sees: the metrics, the admin API
// and the `caddy livekit` commands, against real redis-server, livekit-server
// nodes and clients joining through our Caddy.
package observe

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// stack is one test's Redis, two LiveKit nodes and Caddy in front of them.
type stack struct {
	*harness.Stack
	proxy *harness.Proxy
}

func start(t *testing.T) *stack {
	s := harness.StartStack(t, 2, harness.NodeOptions{})
	return &stack{Stack: s, proxy: s.StartProxy(t, harness.LB{Options: []string{"load_measure rooms"}})}
}

// admin reads path from Caddy's admin API (into: decoded JSON) and fails
// the test if it cannot.
func (s *stack) admin(t *testing.T, path string, into any) string {
	t.Helper()
	body, err := s.proxy.Admin(path, into)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// metric reads one sample from Caddy's /metrics (0 when absent).
func (s *stack) metric(t *testing.T, name string) float64 {
	t.Helper()
	body := s.admin(t, "/metrics", nil)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestMetricsAndAdminAPI(t *testing.T) {
	s := start(t)
	placed := `caddy_livekit_routes_total{outcome="placed"}`
	before := s.metric(t, placed)
	for i := range 3 {
		harness.Join(t, s.proxy.WS(), fmt.Sprint("room-", i), fmt.Sprint("user-", i))
	}
	if d := s.metric(t, placed) - before; d != 3 {
		t.Fatalf("%s rose by %v for 3 new rooms", placed, d)
	}
	for _, n := range s.Nodes {
		if v := s.metric(t, fmt.Sprintf(`caddy_livekit_node_routable{node=%q}`, n.ID())); v != 1 {
			t.Errorf("node_routable of %s = %v", n.ID(), v)
		}
	}
	if s.metric(t, `caddy_livekit_redis_duration_seconds_count{op="place_room"}`) < 3 {
		t.Error("Redis round trips not measured")
	}

	var nodes harness.NodesView
	s.admin(t, "/livekit/nodes", &nodes)
	if !nodes.RedisReachable || len(nodes.Nodes) != 2 {
		t.Fatalf("/livekit/nodes: %+v", nodes)
	}
	for _, n := range nodes.Nodes {
		if !n.Routable || n.State != "SERVING" || !strings.HasSuffix(n.Dial, ":7880") {
			t.Errorf("node %+v", n)
		}
	}

	// page through the rooms one at a time
	seen := map[string]string{}
	cursor := "0"
	for range 20 {
		var page struct {
			Rooms []struct{ Room, Node string }
			Next  uint64 `json:"next_cursor"`
		}
		s.admin(t, "/livekit/rooms?count=1&cursor="+cursor, &page)
		for _, r := range page.Rooms {
			seen[r.Room] = r.Node
		}
		if page.Next == 0 {
			break
		}
		cursor = strconv.FormatUint(page.Next, 10)
	}
	for i := range 3 {
		room := fmt.Sprint("room-", i)
		if seen[room] == "" || seen[room] != s.RoomNode(room) {
			t.Errorf("/livekit/rooms: %s on %q, room_node_map %q", room, seen[room], s.RoomNode(room))
		}
	}

	// a node going away shows in the metrics
	downs := s.metric(t, `caddy_livekit_node_transitions_total{direction="down"}`)
	s.Nodes[1].Kill()
	counted := harness.PollEvery(5*time.Second, 100*time.Millisecond, func() bool {
		return s.metric(t, `caddy_livekit_node_transitions_total{direction="down"}`) != downs
	})
	if !counted {
		t.Error("killed node never counted as down")
	}
}

func TestCommands(t *testing.T) {
	s := start(t)
	harness.Join(t, s.proxy.WS(), "standup", "alice")

	out, err := s.Livekit(t, "status")
	t.Logf("caddy livekit status:\n%s", out)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, n := range s.Nodes {
		if !regexp.MustCompile(regexp.QuoteMeta(n.ID()) + `\s+` + regexp.QuoteMeta(n.HTTPAddr()) + `\s+SERVING\s+yes`).MatchString(out) {
			t.Errorf("status lacks a serving, routable line for %s", n.ID())
		}
	}

	out, err = s.Livekit(t, "rooms", "--json")
	var rooms struct{ Rooms []struct{ Room, Node string } }
	if err != nil || json.Unmarshal([]byte(out), &rooms) != nil || len(rooms.Rooms) != 1 ||
		rooms.Rooms[0].Room != "standup" || rooms.Rooms[0].Node != s.RoomNode("standup") {
		t.Fatalf("rooms --json: %v %s", err, out)
	}

	ips := s.Nodes[0].IP() + "," + s.Nodes[1].IP()
	if out, err := s.Livekit(t, "verify", "--nodes", ips); err != nil || !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify on a healthy cluster: %v\n%s", err, out)
	}

	// drain node 1 by IP: new rooms through the proxy go to node 2 only
	if out, err := s.Livekit(t, "drain", s.Nodes[0].IP()); err != nil {
		t.Fatalf("drain: %v %s", err, out)
	}
	time.Sleep(1500 * time.Millisecond) // one refresh of the proxy
	for i := range 4 {
		room := fmt.Sprint("after-drain-", i)
		harness.Join(t, s.proxy.WS(), room, fmt.Sprint("d", i))
		if got := s.RoomNode(room); got != s.Nodes[1].ID() {
			t.Fatalf("%s placed on %s while node 1 is drained", room, got)
		}
	}
	if out, _ := s.Livekit(t, "status"); !strings.Contains(out, "(drained)") {
		t.Errorf("status does not show the drain:\n%s", out)
	}
	if out, err := s.Livekit(t, "undrain", s.Nodes[0].IP()); err != nil {
		t.Fatalf("undrain: %v %s", err, out)
	}

	s.Nodes[1].Kill()
	out, err = s.Livekit(t, "verify", "--nodes", ips)
	t.Logf("caddy livekit verify with a killed node:\n%s", out)
	if err == nil || !strings.Contains(out, "PROBLEM: node") || !strings.Contains(out, s.Nodes[1].IP()) {
		t.Fatalf("verify with a killed node: %v\n%s", err, out)
	}
}
