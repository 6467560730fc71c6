package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

func TestDecodeNode(t *testing.T) {
	good := lkNode("ND_abc123", "10.0.0.1", serving, 0.1, 0)
	raw := func(n *livekit.Node) []byte { b, _ := proto.Marshal(n); return b }
	if n, err := decodeNode("ND_abc123", raw(good)); err != nil || n.Ip != "10.0.0.1" {
		t.Fatalf("a LiveKit entry: %v", err)
	}
	for name, c := range map[string]struct {
		field string
		value []byte
	}{
		"not protobuf":       {"ND_x", []byte("\xff\xff not a node")},
		"empty id":           {"", raw(&livekit.Node{Ip: "10.0.0.9", State: serving})},
		"id of another node": {"ND_fake", raw(good)},
		"id with a newline":  {"ND_a\nb", raw(&livekit.Node{Id: "ND_a\nb"})},
		"id of 1 KB":         {strings.Repeat("a", 1024), raw(&livekit.Node{Id: strings.Repeat("a", 1024)})},
	} {
		if _, err := decodeNode(c.field, c.value); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A junk entry in `nodes` is skipped and logged once; routing goes on with
// the rest, and nothing in it can take a healthy node out.
func TestRefreshIgnoresBadEntries(t *testing.T) {
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	copyOfA, _ := proto.Marshal(lkNode("ND_a", "203.0.113.66", serving, 0, 0))
	f.Junk = map[string]string{"junk": "\xff not a node", "ND_fake": string(copyOfA)}
	core, logs := observer.New(zap.InfoLevel)
	r, err := New(testConfig(), f, zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	r.Ready(context.Background())
	r.Refresh(context.Background())
	r.Refresh(context.Background())

	if n, o := mustRoute(t, r, "new-room"); n.ID != "ND_a" || o != OutcomePlaced {
		t.Fatalf("routing with junk in nodes: %s %s", n.ID, o)
	}
	if got := r.BadNodes(); len(got) != 2 {
		t.Fatalf("BadNodes = %v", got)
	}
	if n := logs.FilterMessage("ignoring an entry of LiveKit's nodes hash").Len(); n != 2 {
		t.Fatalf("%d log lines for 2 bad entries over 3 refreshes, want 2", n)
	}
	// thousands of them: a bounded number of lines
	f.Lock()
	for i := range 5000 {
		f.Junk[fmt.Sprintf("junk%d", i)] = ""
	}
	f.Unlock()
	before := logs.Len()
	r.Refresh(context.Background())
	if n := logs.Len() - before; n > maxBadLogged+1 {
		t.Fatalf("5000 junk entries made %d log lines", n)
	}
}

// A placement of "" names no node: the room is placed again, not held.
func TestEmptyPlacementIsReplaced(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["r"] = ""
	if n, o := mustRoute(t, r, "r"); o != OutcomePlaced || f.Room("r") != n.ID {
		t.Fatalf("%s %s, map %q", n.ID, o, f.Room("r"))
	}
}

// Entries that cannot host rooms (stale stats: long-dead nodes) are not
// probed, so thousands of them cost no probes.
func TestProbesSkipEntriesThatCannotHostRooms(t *testing.T) {
	f, r := twoNodes(t)
	for i := range 3000 {
		n := lkNode(fmt.Sprintf("ND_dead%d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), serving, 0, 0)
		n.Stats.UpdatedAt = time.Now().Add(-time.Hour).Unix()
		f.SetNode(n)
	}
	r.Refresh(context.Background())
	p := newProber(Config{ProbeInterval: time.Hour, ProbeTimeout: 50 * time.Millisecond}, r.view.current, zap.NewNop(), NopObserver{})
	start := time.Now()
	p.probeAll(context.Background())
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a probe round over 3000 dead entries took %v", d)
	}
	for _, n := range r.view.current().nodes {
		if strings.HasPrefix(n.ID, "ND_dead") && n.health.fails.Load() != 0 {
			t.Fatalf("%s was probed", n.ID)
		}
	}
}

// decodeNode never panics, and accepts only what names itself truthfully.
func FuzzDecodeNode(f *testing.F) {
	b, _ := proto.Marshal(lkNode("ND_abc", "10.0.0.1", serving, 0.5, 3))
	f.Add("ND_abc", b)
	f.Add("", []byte{})
	f.Add("ND_x", []byte("\x0a\x04ND_x\x12\x08127.0.0.1"))
	r := lkNode("ND_r", "10.0.0.1", serving, 0.5, 3)
	r.Region = "us west\n"
	b, _ = proto.Marshal(r)
	f.Add("ND_r", b)
	f.Fuzz(func(t *testing.T, field string, value []byte) {
		n, err := decodeNode(field, value)
		if err == nil && (n.Id != field || !validNodeID(n.Id)) {
			t.Fatalf("accepted id %q under field %q", n.Id, field)
		}
		if err == nil && !validRegion(n.Region) {
			t.Fatalf("accepted region %q", n.Region)
		}
		if err != nil && len(err.Error()) > 4*maxFieldShown+100 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	})
}

// Whatever IP a node advertises in Redis, the proxy dials only inside the
// allow-list.
func FuzzDial(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "8.8.8.8", "::ffff:8.8.8.8", "fe80::1%eth0", "127.0.0.1", "10.0.0.1:80", "", "0.0.0.0", "::"} {
		f.Add(s)
	}
	book, err := newAddressBook(7880, nil, defaultAllowNetworks)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ip string) {
		dial, err := book.dial(ip)
		if err != nil {
			if dial != "" {
				t.Fatalf("error and address %q", dial)
			}
			return
		}
		a, err := parseDialHost(dial)
		if err != nil || !book.allowed(a) {
			t.Fatalf("%q dials %q, outside the allow-list (%v)", ip, dial, err)
		}
	})
}

func parseDialHost(dial string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(dial)
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(host)
}
