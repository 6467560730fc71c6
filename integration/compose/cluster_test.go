package compose

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster: rooms spread over the three nodes, every participant's WebSocket lands on its room's
// node; then the node hosting a room is killed and a client rejoins through the same URL.
func TestCluster(t *testing.T) {
	s := newStack(t, 3)
	s.mustDeploySh("deploy")
	nodes := []string{"livekit1", "livekit2", "livekit3"}
	s.in(t, "spread", func(t *testing.T) { clusterSpread(t, s, nodes) })
	s.in(t, "failover", func(t *testing.T) { clusterFailover(t, s, nodes) })
}

// clusterSpread: half the rooms through each proxy (both share the
// placement in Redis) spread over the three nodes, and every participant's
// WebSocket lands on its room's node.
func clusterSpread(t *testing.T, s *stack, nodes []string) {
	a := s.startClient("caddy1", "rooms", "-rooms", "3", "-per-room", "2", "-prefix", "spread-a")
	b := s.startClient("caddy2", "rooms", "-rooms", "3", "-per-room", "2", "-prefix", "spread-b")
	var identities []string
	for _, c := range []*client{a, b} {
		for {
			m := c.next(120 * time.Second)
			if m["event"] == "holding" {
				break
			}
			identities = append(identities, fmt.Sprint(m["identity"]))
		}
	}
	roomNode := s.redisHash("room_node_map")
	ids := s.nodeIDs("caddy1")
	ws := s.wsConnected(nodes...)
	a.wait(30 * time.Second)
	b.wait(30 * time.Second)

	used := map[string]int{}
	for _, id := range identities {
		room := id[:strings.LastIndex(id, "-p")]
		want, ok := ids[roomNode[room]]
		if !ok {
			t.Errorf("room %s: room_node_map says %q, not a node of this stack (%v)", room, roomNode[room], ids)
			continue
		}
		used[want]++
		got := ws[id]
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s in room %s (hosted by %s): WebSocket connected on %v", id, room, want, got)
		}
	}
	t.Logf("participants per node: %v", used)
	if len(used) != 3 {
		t.Errorf("12 participants in 6 rooms used %d node(s), want all 3: %v", len(used), used)
	}
}

// clusterFailover: the node hosting a room is killed and a client rejoins
// through the same URL, on another node; then verify names the problems.
func clusterFailover(t *testing.T, s *stack, nodes []string) {
	c := s.startClient("caddy1", "failover", "-room", "failover-room", "-n", "2")
	c.next(90 * time.Second) // joined
	host := s.nodeIDs("caddy1")[s.redisHash("room_node_map")["failover-room"]]
	if host == "" {
		t.Fatal("failover-room has no node in room_node_map")
	}
	id := s.container(host)
	// The client starts rejoining once docker kill has returned (so no attempt can reach the
	// node before it is dead); the time counts from before the kill.
	killed := time.Now()
	if out, err := exec.Command("docker", "kill", id).CombinedOutput(); err != nil {
		t.Fatalf("docker kill %s: %v %s", host, err, out)
	}
	killTook := time.Since(killed)
	c.send("kill")
	r := c.next(90 * time.Second)
	hostMs := int64(r["rejoined_unix_ms"].(float64)) - killed.UnixMilli()
	t.Logf("killed %s (host of failover-room); first successful rejoin through caddy1 %d ms after the kill "+
		"(docker kill took %d ms; %v ms from its return, %v attempt(s), errors before: %v)", host, hostMs,
		killTook.Milliseconds(), r["ms"], r["attempts"], r["errors"])
	// The earlier participants' events, in ms from the kill too (the client counts from the line).
	offset := int64(r["kill_line_unix_ms"].(float64)) - killed.UnixMilli()
	earlier := c.next(60 * time.Second)
	for _, p := range earlier["participants"].([]any) {
		p := p.(map[string]any)
		ms := func(k string) string {
			if v, ok := p[k].(float64); ok {
				return fmt.Sprintf("%d ms", int64(v)+offset)
			}
			return "never"
		}
		t.Logf("%s joined before the kill: reconnecting %s, reconnected %s, disconnected %s after the kill; state %v",
			p["identity"], ms("reconnecting_ms"), ms("reconnected_ms"), ms("disconnected_ms"), p["state"])
	}
	c.wait(30 * time.Second)
	ws := s.wsConnected(nodes...)
	landed := ws["failover-room-rejoiner"]
	if len(landed) == 0 || landed[len(landed)-1] == host {
		t.Errorf("the rejoin landed on %v; the killed node was %s", landed, host)
	}
	deadIP := strings.Split(s.vars["NODES"], ",")[int(host[len(host)-1]-'1')]
	s.in(t, "verify-problems", func(t *testing.T) { verifyProblems(t, s, deadIP) })
}

// verifyProblems: deploy.sh verify fails, one line per problem, after the failover (a dead node) and
// with an eviction policy set on Redis behind its back.
func verifyProblems(t *testing.T, s *stack, deadNode string) {
	s.dockerExec("redis", "redis-cli", "config", "set", "maxmemory-policy", "allkeys-lru")
	out, err := s.deploySh("verify")
	t.Logf("deploy.sh verify with a dead node and allkeys-lru:\n%s", out)
	if err == nil {
		t.Fatal("deploy.sh verify passed")
	}
	if strings.Contains(out, `"level"`) {
		t.Errorf("Caddy's logs in deploy.sh verify's output")
	}
	for _, want := range []string{"PROBLEM: Redis maxmemory-policy is allkeys-lru", "PROBLEM: node " + deadNode} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy.sh verify output lacks %q", want)
		}
	}
}
