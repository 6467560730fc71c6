package redisoutage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestSentinelFailover: LiveKit's Redis is a master with one replica behind
// three sentinels, and the LiveKit nodes and the proxy find the master
// through them. The master is killed; once the sentinels promote the
// replica, joins through the proxy work again without restarting Caddy, and
// a room from before the failover still routes to its node.
func TestSentinelFailover(t *testing.T) {
	set := startSentinels(t)
	c := &cluster{t: t}
	c.nodes = harness.StartNodes(t, set.master.addr(), 2, harness.NodeOptions{
		Configure: func(_ int, cfg map[string]any) {
			cfg["redis"] = map[string]any{"sentinel_master_name": masterName, "sentinel_addresses": set.addrs()}
		},
	})
	c.startProxy("sentinel_master_name "+masterName, "sentinel_addresses "+strings.Join(set.addrs(), " "))

	const room = "before-failover"
	early := connect(t, c.wsURL(), "proxy", room, "early")
	replica := set.replica.client()
	defer replica.Close()
	host := early.lk.ServerInfo().GetNodeId()
	if res := c.rawRTC(room, "check"); res.node != host {
		t.Fatalf("before the failover, GET /rtc for %s: %v; want it routed to %s, where early joined", room, res, c.name(host))
	}

	// Raw requests every 250 ms while the failover lasts: bounded, and the
	// known room keeps its node.
	stop := make(chan struct{})
	var raws []rtcResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			raws = append(raws, c.rawRTC(room, "raw"), c.rawRTC(fmt.Sprintf("during-%d", i), "raw"))
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	killed := time.Now()
	set.master.kill()
	t.Logf("master %s killed at %s", set.master.addr(), killed.Format("15:04:05.000"))
	var promoted time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if addr, err := set.masterAddr(0); err == nil && addr == set.replica.addr() {
				promoted = time.Now()
				return
			}
		}
	}()
	first, err := c.firstJoin(newRooms("after-failover"), 200*time.Millisecond, 60*time.Second)
	if err == nil {
		first.lk.Disconnect()
	}
	close(stop)
	wg.Wait()
	if promoted.IsZero() {
		t.Errorf("sentinel1 did not name the replica %s as master within 60 s", set.replica.addr())
	} else {
		t.Logf("FAILOVER sentinel1 names the replica as master %v after the kill", promoted.Sub(killed).Round(time.Millisecond))
	}
	if err != nil {
		t.Fatalf("after the master was killed: %v", err)
	}
	t.Logf("FAILOVER first successful SDK join through the proxy: done %v after the kill (new room %s, started at +%v; joins started every 200 ms: %d)",
		first.done.Sub(killed).Round(time.Millisecond), first.room, first.start.Sub(killed).Round(time.Millisecond), first.tried)
	entries := c.caddyLog()
	for _, msg := range []string{logRedisDown, logRedisUp} {
		for _, e := range logsWithMsg(entries, msg) {
			t.Logf("FAILOVER proxy logged %q %v after the kill", msg, e.time().Sub(killed).Round(time.Millisecond))
		}
	}
	if len(logsWithMsg(entries, logRedisDown)) != len(logsWithMsg(entries, logRedisUp)) {
		t.Errorf("the proxy logged %q %d times and %q %d times; want it to end reachable",
			logRedisDown, len(logsWithMsg(entries, logRedisDown)), logRedisUp, len(logsWithMsg(entries, logRedisUp)))
	}

	bound := redisTimeout + boundMargin
	var maxDur time.Duration
	counts := map[string]int{}
	for _, r := range raws {
		maxDur = max(maxDur, r.dur)
		if r.err != nil || r.dur >= bound {
			t.Errorf("raw GET /rtc %v after the kill: %v; want an answer within %v", r.start.Sub(killed).Round(time.Millisecond), r, bound)
		}
		switch {
		case r.room == room && r.node != host:
			t.Errorf("known room %v after the kill: %v; want it routed to %s", r.start.Sub(killed).Round(time.Millisecond), r, c.name(host))
		case r.room == room:
			counts["known room routed to its node"]++
		case r.node != "":
			counts["new room routed"]++
		case redisRefusal(r):
			counts["new room refused (Redis)"]++
		default:
			counts[fmt.Sprintf("new room %d %s", r.status, strings.TrimSpace(r.body))]++
		}
	}
	t.Logf("BOUND raw GET /rtc during the failover: %d requests, max %v (bound %v): %v", len(raws), maxDur.Round(time.Millisecond), bound, counts)

	// The room from before the failover: its placement was replicated, so a
	// new participant joins the one that is still there.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	placed := harness.RoomNode(ctx, replica, room)
	cancel()
	if placed != host {
		t.Errorf("room_node_map[%s] on the promoted replica = %s; want %s", room, c.name(placed), c.name(host))
	}
	late, err := c.firstJoin(sameRoom(room), 500*time.Millisecond, 30*time.Second)
	if err != nil {
		t.Fatalf("join of %s, the room from before the failover: %v", room, err)
	}
	defer late.lk.Disconnect()
	t.Logf("FAILOVER first successful SDK join of %s, the room from before: done %v after the kill (joins started every 500 ms: %d)",
		room, late.done.Sub(killed).Round(time.Millisecond), late.tried)
	if ok, _ := early.connected(); ok && !sees(late.lk, "early", 5*time.Second) {
		t.Errorf("a late joiner of %s is on %s and does not see early (on %s); it sees %v",
			room, c.name(late.lk.ServerInfo().GetNodeId()), c.name(host), remoteIdentities(late.lk))
	}
	t.Logf("after the failover, a late joiner of %s is on %s and sees %v; early: %v",
		room, c.name(late.lk.ServerInfo().GetNodeId()), remoteIdentities(late.lk), early)
}
