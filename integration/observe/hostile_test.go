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
	rc := s.redis.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	real, err := harness.RedisNodes(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	healthy := real[s.nodes[0].ID()]
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
	time.Sleep(3 * time.Second) // a few refreshes and probe rounds

	var view struct {
		Nodes []struct {
			ID       string `json:"id"`
			Routable bool   `json:"routable"`
		} `json:"nodes"`
		Ignored []struct{ Field, Reason string } `json:"ignored_entries"`
	}
	s.admin(t, "/livekit/nodes", &view)
	routable := map[string]bool{}
	for _, n := range view.Nodes {
		routable[n.ID] = n.Routable
	}
	for _, n := range s.nodes {
		if !routable[n.ID()] {
			t.Errorf("%s not routable with junk in nodes", n.ID())
		}
	}
	if len(view.Ignored) != 3 {
		t.Errorf("admin view lists %d ignored entries, want 3: %+v", len(view.Ignored), view.Ignored)
	}

	for i := range 6 {
		room := fmt.Sprint("hostile-", i)
		harness.Join(t, "ws://"+s.addr, room, fmt.Sprint("h", i))
		if at := s.roomNode(room); at != s.nodes[0].ID() && at != s.nodes[1].ID() {
			t.Fatalf("%s placed on %q", room, at)
		}
	}
	harness.Join(t, "ws://"+s.addr, "empty-placed", "e1")
	if at := s.roomNode("empty-placed"); at != s.nodes[0].ID() && at != s.nodes[1].ID() {
		t.Fatalf("the room placed on \"\" is now on %q", at)
	}

	out, err := s.livekitCmd(t, "status")
	if err != nil || !strings.Contains(out, `PROBLEM: nodes entry "junk" ignored`) || !strings.Contains(out, `"ND_forged"`) {
		t.Errorf("status does not name the junk entries (%v):\n%s", err, out)
	}
	out, err = s.livekitCmd(t, "verify", "--nodes", s.nodes[0].IP()+","+s.nodes[1].IP())
	if err == nil || !strings.Contains(out, `"ND_noid"`) {
		t.Errorf("verify passes with junk in nodes (%v):\n%s", err, out)
	}
	if logs := s.caddy.Logs(); strings.Count(logs, "ignoring an entry of LiveKit's nodes hash") != 3 {
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
		if out, err := s.livekitCmd(t, args...); err == nil {
			t.Errorf("caddy livekit %q exited 0:\n%s", args, out)
		}
	}
}
