package livekitcmd

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

const (
	serving  = livekit.NodeState_SERVING
	draining = livekit.NodeState_SHUTTING_DOWN
)

// Status: a node that answers is routable (a draining one too: joins to
// its rooms still go there), one whose port is closed is "not answering",
// and a junk entry is named.
func TestStatus(t *testing.T) {
	r := startRedis(t)
	r.register(t,
		lkNode("ND_up", "10.9.0.1", serving, 0),
		lkNode("ND_leaving", "10.9.0.2", draining, 0),
		lkNode("ND_silent", "10.9.0.3", serving, 0))
	if err := r.rc.HSet(context.Background(), "nodes", "junk", "not a protobuf").Err(); err != nil {
		t.Fatal(err)
	}
	up := liveNode(t)
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": up, "10.9.0.2": liveNode(t), "10.9.0.3": deadNode(t)})

	out := mustCLI(t, "status", "--config", cfg)
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for id, want := range map[string][]string{
		"ND_up":      {up, "SERVING", "yes"},
		"ND_leaving": {"SHUTTING_DOWN", "yes"},
		"ND_silent":  {"SERVING", "no: not answering"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[id], w) {
				t.Errorf("status line of %s lacks %q: %q", id, w, lines[id])
			}
		}
	}
	if !strings.Contains(out, `PROBLEM: nodes entry "junk" ignored: not a livekit.Node protobuf`) {
		t.Errorf("status does not name the junk entry:\n%s", out)
	}

	var view livekitlb.NodesView
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "--config", cfg, "--json")), &view); err != nil {
		t.Fatal(err)
	}
	if !view.RedisReachable || len(view.Nodes) != 3 || len(view.Ignored) != 1 {
		t.Errorf("status --json: reachable %v, %d nodes, %d ignored; want true, 3, 1", view.RedisReachable, len(view.Nodes), len(view.Ignored))
	}
	for _, n := range view.Nodes {
		if n.Routable != (n.ID != "ND_silent") || n.Rooms != 1 || n.Clients != 2 {
			t.Errorf("status --json: %+v", n)
		}
	}
}

// An empty cluster says so rather than printing an empty table.
func TestStatusNoNodes(t *testing.T) {
	r := startRedis(t)
	out := mustCLI(t, "status", "--config", writeCaddyfile(t, r, nil))
	if !strings.Contains(out, "(no nodes registered in Redis)") {
		t.Errorf("status of an empty cluster:\n%s", out)
	}
}

// Rooms: every placement, sorted, or only one node's.
func TestRooms(t *testing.T) {
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, time.Second), lkNode("ND_b", "10.9.0.2", serving, time.Second))
	if err := r.rc.HSet(context.Background(), "room_node_map", "zeta", "ND_a", "alpha", "ND_b", "mid", "ND_a", "orphan", "ND_gone").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": liveNode(t), "10.9.0.2": liveNode(t)})

	out := mustCLI(t, "rooms", "--config", cfg)
	if i, j, k := strings.Index(out, "alpha"), strings.Index(out, "mid"), strings.Index(out, "zeta"); i < 0 || !(i < j && j < k) {
		t.Errorf("rooms not listed in order:\n%s", out)
	}
	if !strings.Contains(out, "(4 rooms)") {
		t.Errorf("rooms: no count:\n%s", out)
	}
	// a room on a node id no longer in Redis' nodes is marked; the others are not
	if !strings.Contains(out, "ND_gone (node gone)") || strings.Count(out, "(node gone)") != 1 {
		t.Errorf("rooms: want the room on ND_gone, and only it, marked (node gone):\n%s", out)
	}
	var gone struct {
		Rooms []map[string]any `json:"rooms"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "rooms", "--config", cfg, "--json")), &gone); err != nil {
		t.Fatal(err)
	}
	for _, room := range gone.Rooms {
		if (room["node_gone"] == true) != (room["node"] == "ND_gone") {
			t.Errorf("rooms --json: %v: node_gone wrong", room)
		}
	}

	var view livekitlb.RoomsView
	if err := json.Unmarshal([]byte(mustCLI(t, "rooms", "--config", cfg, "--node", "ND_a", "--json")), &view); err != nil {
		t.Fatal(err)
	}
	want := []livekitlb.RoomPlacement{{Room: "mid", Node: "ND_a"}, {Room: "zeta", Node: "ND_a"}}
	if len(view.Rooms) != 2 || view.Rooms[0] != want[0] || view.Rooms[1] != want[1] {
		t.Errorf("rooms --node ND_a --json: %+v, want %+v", view.Rooms, want)
	}

	if err := json.Unmarshal([]byte(mustCLI(t, "rooms", "--config", cfg, "--node", "ND_none", "--json")), &view); err != nil {
		t.Fatal(err)
	}
	if view.Rooms == nil || len(view.Rooms) != 0 {
		t.Errorf("rooms of a node without rooms: %#v, want an empty list", view.Rooms)
	}
}
