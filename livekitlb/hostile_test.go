package livekitlb

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

// Verification cannot be switched off by an empty placeholder; only by
// saying so.
func TestVerifyRequiredUnlessOff(t *testing.T) {
	for name, h := range map[string]*Handler{
		"no keys":      {},
		"no secret":    {Cluster: Cluster{APIKey: "k"}},
		"short secret": {Cluster: Cluster{APIKey: "k", APISecret: "short"}},
		"empty env":    {Cluster: Cluster{APIKey: "{env.LKLB_TEST_UNSET}", APISecret: "{env.LKLB_TEST_UNSET}"}},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
	for name, h := range map[string]*Handler{
		"keys":       {Cluster: Cluster{APIKey: testKey, APISecret: testSecret}},
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
	f.Placements["real"] = "ND_b"
	h := testHandler(t, r, false)
	for i := range 2000 {
		tok := mint(t, "anykey", "any-secret-of-at-least-32-characters!", fmt.Sprintf("junk-%d-%s", i, strings.Repeat("x", 100)), time.Hour)
		if w, rt := serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+tok, nil)); rt == nil {
			t.Fatalf("status %d", w.Code)
		}
	}
	if len(f.Placements) != 1 || f.Writes != 0 {
		t.Fatalf("unverified tokens wrote %d placements (%d rooms)", f.Writes, len(f.Placements))
	}
	_, rt := serve(t, h, httptest.NewRequest("GET", "/rtc?access_token="+mint(t, "anykey", testSecret, "real", time.Hour), nil))
	if rt.node.ID != "ND_b" {
		t.Fatalf("known room routed to %s", rt.node.ID)
	}
}

// No log line, at any level, carries a token, and none grows with what a
// client or Redis sends (a 1 MB room name, a 1 MB placement).
func TestLogLinesBoundedAndTokenFree(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	f := clustertest.NewStore()
	f.SetNode(lkNode("ND_a", "10.0.0.1", serving, 0.1, 0))
	f.SetNode(lkNode("ND_b", "10.0.0.2", serving, 0.9, 0))
	r := testCluster(t, f, noProbes(), zap.New(core))
	h := testHandler(t, r, false)
	h.logger = zap.New(core)
	huge := strings.Repeat("r", 1<<20)
	f.Placements[huge] = strings.Repeat("N", 1<<20) // a placement naming no node: re-placed, and logged
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
	r.Refresh(context.Background())
	before := testutil.CollectAndCount(metrics.nodeState)
	for i := range 100 {
		n := lkNode(fmt.Sprintf("ND_stale%d", i), "10.2.0.1", serving, 0, 0)
		n.Stats.UpdatedAt = time.Now().Add(-time.Hour).Unix()
		f.SetNode(n)
	}
	a := f.Registered["ND_a"]
	a.Stats.UpdatedAt = time.Now().Add(-time.Hour).Unix()
	r.Refresh(context.Background())
	if got := testutil.CollectAndCount(metrics.nodeState); got != before {
		t.Fatalf("%d node_state series, want %d", got, before)
	}
	if testutil.ToFloat64(metrics.nodeRoutable.WithLabelValues("ND_a")) != 0 {
		t.Fatal("the node gone stale is not shown unroutable")
	}
}
