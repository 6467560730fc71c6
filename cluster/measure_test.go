package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
)

func node(id string, sysload, cpu float64, rooms, clients int) *Node {
	return &Node{ID: id, State: serving, Dial: id + ":7880", Fresh: true, Sysload: sysload, CPULoad: cpu,
		Rooms: rooms, Clients: clients, health: &nodeHealth{}}
}

func TestLeastLoadedByMeasure(t *testing.T) {
	nodes := []*Node{
		node("a", 0.9, 0.1, 30, 3),
		node("b", 0.1, 0.8, 20, 9),
		node("c", 0.5, 0.5, 10, 6),
	}
	all := func(*Node) bool { return true }
	for measure, want := range map[string]string{
		MeasureSysload: "b", MeasureCPULoad: "a", MeasureRooms: "c", MeasureClients: "a",
	} {
		if got := leastLoaded(nodes, measure, time.Now(), 0, all); got.ID != want {
			t.Errorf("%s: got %s, want %s", measure, got.ID, want)
		}
	}
}

// Idle nodes report equal load; pending placements must spread a burst of
// new rooms instead of piling them on one node until stats catch up.
func TestBurstOfNewRoomsSpreads(t *testing.T) {
	nodes := []*Node{node("a", 0.2, 0, 0, 0), node("b", 0.21, 0, 0, 0), node("c", 0.19, 0, 0, 0)}
	now := time.Now()
	count := map[string]int{}
	for range 21 {
		n := leastLoaded(nodes, MeasureSysload, now, 5*time.Second, func(*Node) bool { return true })
		n.health.markPlaced(now)
		count[n.ID]++
	}
	for _, n := range nodes {
		if count[n.ID] != 7 {
			t.Fatalf("placements %v, want 7 on each node", count)
		}
	}
}

func TestPendingPlacementsExpire(t *testing.T) {
	h := &nodeHealth{}
	now := time.Now()
	h.markPlaced(now.Add(-10 * time.Second))
	h.markPlaced(now)
	if got := h.pending(now, 5*time.Second); got != 1 {
		t.Fatalf("pending = %d, want 1", got)
	}
}

func TestClearlyLessLoadedNodeWins(t *testing.T) {
	nodes := []*Node{node("hot", 1.5, 0, 0, 0), node("cool", 0.2, 0, 40, 0)}
	for i := range 10 {
		if n := leastLoaded(nodes, MeasureSysload, time.Now(), 5*time.Second, func(*Node) bool { return true }); n.ID != "cool" {
			t.Fatalf("round %d: got %s, want cool (sysload dominates room count)", i, n.ID)
		}
	}
}

func TestStaleStatsMakeNodeUnavailable(t *testing.T) {
	ln := &livekit.Node{Id: "x", Ip: "10.0.0.1", State: serving, Stats: &livekit.NodeStats{UpdatedAt: time.Now().Add(-6 * time.Second).Unix()}}
	n := newNode(ln, "10.0.0.1:7880", nil, &nodeHealth{}, time.Now(), 5*time.Second)
	if n.Routable(time.Now()) {
		t.Fatal("node with 6s old stats is routable, LiveKit's rule is 5s")
	}
	ln.Stats.UpdatedAt = time.Now().Unix()
	if n := newNode(ln, "10.0.0.1:7880", nil, &nodeHealth{}, time.Now(), 5*time.Second); !n.Routable(time.Now()) {
		t.Fatal("fresh node not routable")
	}
}

func TestAddressBook(t *testing.T) {
	b, err := newAddressBook(7880, map[string]string{"203.0.113.9": "10.1.0.9:7880"}, []string{"10.0.0.0/8", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]string{
		"10.2.3.4":        "10.2.3.4:7880",
		"203.0.113.9":     "10.1.0.9:7880", // mapped by the operator
		"192.0.2.1":       "192.0.2.1:7880",
		"::ffff:10.0.0.5": "10.0.0.5:7880",
	} {
		if got, err := b.dial(ip); err != nil || got != want {
			t.Errorf("dial(%s) = %q, %v; want %q", ip, got, err, want)
		}
	}
	for _, ip := range []string{"8.8.8.8", "192.168.1.1", "not-an-ip", ""} {
		if got, err := b.dial(ip); err == nil {
			t.Errorf("dial(%s) = %q, want refusal", ip, got)
		}
	}
	// a public address without a mapping: the log line and verify say what to add
	if _, err := b.dial("198.51.100.7"); err == nil || !strings.Contains(err.Error(), "no node_addresses mapping (a node behind NAT: map its public address to its private one, 198.51.100.7=<private IP>:7880)") {
		t.Errorf("dial(198.51.100.7): %v", err)
	}
	for _, bad := range [][]string{{"10.0.0.0/33"}, {"example.com"}} {
		if _, err := newAddressBook(7880, nil, bad); err == nil {
			t.Errorf("allow_networks %v accepted", bad)
		}
	}
	if _, err := newAddressBook(7880, map[string]string{"x": "10.0.0.1:1"}, nil); err == nil {
		t.Error("node_addresses with a non-IP key accepted")
	}
}

func BenchmarkLeastLoaded100Nodes(b *testing.B) {
	nodes := make([]*Node, 100)
	for i := range nodes {
		nodes[i] = node(fmt.Sprint("n", i), float64(i%7)/10, 0, i, 0)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		leastLoaded(nodes, MeasureSysload, now, 5*time.Second, func(*Node) bool { return true })
	}
}

// A node whose load sample is lower takes more of a burst, not all of it.
func TestBurstOnUnevenLoadSpreads(t *testing.T) {
	nodes := []*Node{node("low", 0.10, 0, 0, 0), node("mid", 0.30, 0, 0, 0), node("high", 0.32, 0, 0, 0)}
	now := time.Now()
	count := map[string]int{}
	for range 20 {
		n := leastLoaded(nodes, MeasureSysload, now, 5*time.Second, func(*Node) bool { return true })
		n.health.markPlaced(now)
		count[n.ID]++
	}
	if count["low"] >= 20 || count["mid"] == 0 || count["high"] == 0 || count["low"] <= count["mid"] {
		t.Fatalf("burst of 20 placed %v: want most on low, some on each", count)
	}
}
