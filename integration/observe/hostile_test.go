package observe

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// TestHostileNodesEntries: anyone on the network may write to LiveKit's
// Redis. With junk in `nodes` (a value that is not a node, a copy of a
// healthy node's id at an unreachable address under another field, a fresh
// entry with no id, 20,000 long-dead entries) and a room placed on "", the
// proxy keeps routing to the real nodes, keeps the healthy node in, puts the
// empty-placed room on a real node, and `caddy livekit status`/`verify`
// name the junk. The commands refuse a typo.
func TestHostileNodesEntries(t *testing.T) {
	s := start(t)
	writeJunk(t, s)
	time.Sleep(3 * time.Second) // a few refreshes and probe rounds

	t.Run("admin view", func(t *testing.T) { checkJunkView(t, s) })
	t.Run("routing", func(t *testing.T) { checkRoutingPastJunk(t, s) })
	t.Run("commands", func(t *testing.T) { checkCommandsNameJunk(t, s) })
}

// writeJunk puts into `nodes` a value that is not a node, a copy of a
// healthy node's id at an unreachable address under another field, a fresh
// entry with no id and 20,000 long-dead entries, and places a room on "".
func writeJunk(t *testing.T, s *stack) {
	rc := s.Redis.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	real, err := harness.RedisNodes(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	healthy := real[s.Nodes[0].ID()]
	forged := proto.Clone(healthy).(*livekit.Node)
	forged.Ip = "127.0.0.99"
	forgedRaw, _ := proto.Marshal(forged)
	noID := proto.Clone(healthy).(*livekit.Node)
	noID.Id, noID.Ip = "", "127.0.0.98"
	noIDRaw, _ := proto.Marshal(noID)
	pipe := rc.Pipeline()
	pipe.HSet(ctx, harness.NodesKey, "junk", "this is not a protobuf \xff\xff")
	pipe.HSet(ctx, harness.NodesKey, "ND_forged", forgedRaw)
	pipe.HSet(ctx, harness.NodesKey, "ND_noid", noIDRaw)
	for i := range 20000 {
		dead := &livekit.Node{Id: fmt.Sprintf("ND_dead%05d", i), Ip: fmt.Sprintf("10.9.%d.%d", i/250, i%250+1), State: livekit.NodeState_SERVING,
			Stats: &livekit.NodeStats{UpdatedAt: time.Now().Add(-24 * time.Hour).Unix(), NumCpus: 1}}
		b, _ := proto.Marshal(dead)
		pipe.HSet(ctx, harness.NodesKey, dead.Id, b)
	}
	pipe.HSet(ctx, harness.RoomNodeMapKey, "empty-placed", "")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkJunkView: the admin API keeps the real nodes routable and lists the
// three junk entries.
func checkJunkView(t *testing.T, s *stack) {
	var view harness.NodesView
	s.admin(t, "/livekit/nodes", &view)
	routable := map[string]bool{}
	for _, n := range view.Nodes {
		routable[n.ID] = n.Routable
	}
	for _, n := range s.Nodes {
		if !routable[n.ID()] {
			t.Errorf("%s not routable with junk in nodes", n.ID())
		}
	}
	if len(view.Ignored) != 3 {
		t.Errorf("admin view lists %d ignored entries, want 3: %+v", len(view.Ignored), view.Ignored)
	}
}

// checkRoutingPastJunk: new rooms, and the room placed on "", go to the
// real nodes.
func checkRoutingPastJunk(t *testing.T, s *stack) {
	for i := range 6 {
		room := fmt.Sprint("hostile-", i)
		harness.Join(t, s.proxy.WS(), room, fmt.Sprint("h", i))
		if at := s.RoomNode(room); at != s.Nodes[0].ID() && at != s.Nodes[1].ID() {
			t.Fatalf("%s placed on %q", room, at)
		}
	}
	harness.Join(t, s.proxy.WS(), "empty-placed", "e1")
	if at := s.RoomNode("empty-placed"); at != s.Nodes[0].ID() && at != s.Nodes[1].ID() {
		t.Fatalf("the room placed on \"\" is now on %q", at)
	}
}

// checkCommandsNameJunk: `caddy livekit status` and `verify` name the junk,
// Caddy logged each junk entry once, its memory stays in proportion to the
// entries, and the commands refuse a typo.
func checkCommandsNameJunk(t *testing.T, s *stack) {
	out, err := s.Livekit(t, "status")
	if err != nil || !strings.Contains(out, `PROBLEM: nodes entry "junk" ignored`) || !strings.Contains(out, `"ND_forged"`) {
		t.Errorf("status does not name the junk entries (%v):\n%s", err, out)
	}
	out, err = s.Livekit(t, "verify", "--nodes", s.Nodes[0].IP()+","+s.Nodes[1].IP())
	if err == nil || !strings.Contains(out, `"ND_noid"`) {
		t.Errorf("verify passes with junk in nodes (%v):\n%s", err, out)
	}
	if logs := s.proxy.Logs(); strings.Count(logs, "ignoring an entry of LiveKit's nodes hash") != 3 {
		t.Errorf("%d log lines about the 3 junk entries, want 3", strings.Count(logs, "ignoring an entry of LiveKit's nodes hash"))
	}

	// memory stays in proportion to the entries (a few KB each), far from
	// the 780 MB that probing every entry once cost
	var vars struct{ Memstats runtime.MemStats }
	s.admin(t, "/debug/vars", &vars)
	if heap := vars.Memstats.HeapInuse >> 20; heap > 150 {
		t.Errorf("Caddy's heap is %d MiB with 20,000 entries in nodes", heap)
	} else {
		t.Logf("Caddy's heap with 20,000 entries in nodes: %d MiB", heap)
	}
	for _, args := range [][]string{{"bogus"}, {"drain", "ND_typo"}, {"drain", ""}, {}} {
		if out, err := s.Livekit(t, args...); err == nil {
			t.Errorf("caddy livekit %q exited 0:\n%s", args, out)
		}
	}
}
