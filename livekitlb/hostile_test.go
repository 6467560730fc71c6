package livekitlb

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
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
	f := newFakeStore()
	f.setNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	f.bad = []BadNode{{Field: `"junk"`, Reason: "not a livekit.Node protobuf"}, {Field: `"ND_fake"`, Reason: `entry carries node id "ND_a"`}}
	core, logs := observer.New(zap.InfoLevel)
	book, _ := newAddressBook(7880, nil, defaultAllowNetworks)
	r := newRegistry(testSettings(), f, book, zap.New(core))
	t.Cleanup(func() { _ = r.Destruct() })
	r.WaitLoaded(context.Background())
	r.refresh(context.Background())
	r.refresh(context.Background())

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
	f.bad = nil
	for i := range 5000 {
		f.bad = append(f.bad, BadNode{Field: fmt.Sprintf(`"junk%d"`, i), Reason: "no node id"})
	}
	before := logs.Len()
	r.refresh(context.Background())
	if n := logs.Len() - before; n > maxBadLogged+1 {
		t.Fatalf("5000 junk entries made %d log lines", n)
	}
}

// Verification cannot be switched off by an empty placeholder; only by
// saying so.
func TestVerifyRequiredUnlessOff(t *testing.T) {
	for name, h := range map[string]*Handler{
		"no keys":      {},
		"no secret":    {apiKey: "k"},
		"short secret": {apiKey: "k", apiSecret: "short"},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	for name, h := range map[string]*Handler{
		"keys":       {apiKey: testKey, apiSecret: testSecret},
		"verify off": {verifyOff: true},
	} {
		if err := h.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Without verification, a token's room is followed where it is placed but
// never placed: 2000 made-up rooms write nothing.
func TestUnverifiedTokensNeverPlace(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["real"] = "ND_b"
	h := testHandler(t, r, false)
	for i := range 2000 {
		tok := mint(t, "anykey", "any-secret-of-at-least-32-characters!", fmt.Sprintf("junk-%d-%s", i, strings.Repeat("x", 100)), time.Hour)
		if w, rt := serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+tok, nil)); rt == nil {
			t.Fatalf("status %d", w.Code)
		}
	}
	if len(f.rooms) != 1 || f.writes != 0 {
		t.Fatalf("unverified tokens wrote %d placements (%d rooms)", f.writes, len(f.rooms))
	}
	_, rt := serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+mint(t, "anykey", testSecret, "real", time.Hour), nil))
	if rt.node.ID != "ND_b" {
		t.Fatalf("known room routed to %s", rt.node.ID)
	}
}

// A placement of "" names no node: the room is placed again, not held.
func TestEmptyPlacementIsReplaced(t *testing.T) {
	f, r := twoNodes(t)
	f.rooms["r"] = ""
	if n, o := mustRoute(t, r, "r"); o != OutcomePlaced || f.room("r") != n.ID {
		t.Fatalf("%s %s, map %q", n.ID, o, f.room("r"))
	}
}

// Entries that cannot host rooms (stale stats: long-dead nodes) are not
// probed, so thousands of them cost no probes.
func TestProbesSkipEntriesThatCannotHostRooms(t *testing.T) {
	f, r := twoNodes(t)
	for i := range 3000 {
		n := lkNode(fmt.Sprintf("ND_dead%d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), serving, 0, 0)
		n.Stats.UpdatedAt = time.Now().Add(-time.Hour).Unix()
		f.setNode(n)
	}
	r.refresh(context.Background())
	p := newProber(time.Hour, 50*time.Millisecond)
	start := time.Now()
	r.probeAll(context.Background(), p)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a probe round over 3000 dead entries took %v", d)
	}
	for _, n := range r.snap.Load().nodes {
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
	f.Fuzz(func(t *testing.T, field string, value []byte) {
		n, err := decodeNode(field, value)
		if err == nil && (n.Id != field || !validNodeID(n.Id)) {
			t.Fatalf("accepted id %q under field %q", n.Id, field)
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

// No log line, at any level, carries a token, and none grows with what a
// client or Redis sends (a 1 MB room name, a 1 MB placement).
func TestLogLinesBoundedAndTokenFree(t *testing.T) {
	f, r := twoNodes(t)
	core, logs := observer.New(zap.DebugLevel)
	r.log = zap.New(core)
	h := testHandler(t, r, false)
	h.logger = zap.New(core)
	huge := strings.Repeat("r", 1<<20)
	f.rooms[huge] = strings.Repeat("N", 1<<20) // a placement naming no node: re-placed, and logged
	tokens := []string{mint(t, testKey, testSecret, huge, time.Hour), "garbage.token.here"}
	verifying := testHandler(t, r, true)
	verifying.logger = zap.New(core)
	for _, tok := range tokens {
		serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+tok, nil))
		serve(t, verifying, httptest.NewRequest("GET", "/rtc?access_token="+tok, nil))
		req := httptest.NewRequest("GET", "/rtc/"+strings.Repeat("p", 1<<16), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		serve(t, h, req)
	}
	if logs.FilterMessage("room re-placed").Len() == 0 {
		t.Fatal("the placement naming no node was not re-placed")
	}
	for _, e := range logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		if len(line)+len(e.Message) > 2048 {
			t.Errorf("a %d-byte log line: %q", len(line), e.Message)
		}
		for _, tok := range tokens {
			if strings.Contains(string(line), tok) {
				t.Errorf("log %q carries a token", e.Message)
			}
		}
	}
}

// Stale entries this proxy never saw alive get no metric series (20,000 of
// them would be 100,000 series); a node seen alive keeps its own when it
// goes stale, so that its routable=0 can be alerted on.
func TestMetricSeriesOnlyForNodesSeenAlive(t *testing.T) {
	f, r := twoNodes(t)
	r.refresh(context.Background())
	before := testutil.CollectAndCount(metrics.nodeState)
	for i := range 100 {
		n := lkNode(fmt.Sprintf("ND_stale%d", i), "10.2.0.1", serving, 0, 0)
		n.Stats.UpdatedAt = time.Now().Add(-time.Hour).Unix()
		f.setNode(n)
	}
	a := f.nodes["ND_a"]
	a.Stats.UpdatedAt = time.Now().Add(-time.Hour).Unix()
	r.refresh(context.Background())
	if got := testutil.CollectAndCount(metrics.nodeState); got != before {
		t.Fatalf("%d node_state series, want %d", got, before)
	}
	if testutil.ToFloat64(metrics.nodeRoutable.WithLabelValues("ND_a")) != 0 {
		t.Fatal("the node gone stale is not shown unroutable")
	}
}
