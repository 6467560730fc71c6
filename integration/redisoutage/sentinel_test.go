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
	f := startFailoverRun(t)
	f.killMaster()
	f.checkLog()
	f.checkRaws()
	f.checkRoomFromBefore()
}

// failoverRun is TestSentinelFailover's sentinel set, cluster and what it saw.
type failoverRun struct {
	t     *testing.T
	set   *sentinelSet
	c     *cluster
	early *harness.Client // joined the room before the failover
	host  string          // its node

	killed time.Time
	raws   []rtcResult
}

const roomBefore = "before-failover"

// startFailoverRun starts the set, two nodes and the proxy, which find the
// master through the sentinels, and joins early to roomBefore.
func startFailoverRun(t *testing.T) *failoverRun {
	f := &failoverRun{t: t, set: startSentinels(t)}
	f.c = &cluster{Stack: &harness.Stack{Nodes: harness.StartNodes(t, f.set.master.Addr(), 2, harness.NodeOptions{
		Configure: func(_ int, cfg map[string]any) {
			cfg["redis"] = map[string]any{"sentinel_master_name": masterName, "sentinel_addresses": f.set.addrs()}
		},
	})}}
	f.c.startProxy(t, "sentinel_master_name "+masterName, "sentinel_addresses "+strings.Join(f.set.addrs(), " "))
	f.early = harness.MustConnect(t, f.c.proxy.WS(), roomBefore, "early", 0)
	f.early.Via = "proxy"
	f.host = f.early.LK.ServerInfo().GetNodeId()
	if res := f.c.rawRTC(roomBefore, "check"); res.node != f.host {
		t.Fatalf("before the failover, GET /rtc for %s: %v; want it routed to %s, where early joined", roomBefore, res, f.c.Name(f.host))
	}
	return f
}

// killMaster kills the master and waits for the first successful join
// through the proxy, sending raw requests every 250 ms meanwhile (checkRaws).
func (f *failoverRun) killMaster() {
	t, set := f.t, f.set
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			f.raws = append(f.raws, f.c.rawRTC(roomBefore, "raw"), f.c.rawRTC(fmt.Sprintf("during-%d", i), "raw"))
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	f.killed = time.Now()
	set.master.Kill()
	t.Logf("master %s killed at %s", set.master.Addr(), f.killed.Format("15:04:05.000"))
	var promoted time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		harness.PollEvery(60*time.Second, 50*time.Millisecond, func() bool {
			if addr, err := set.masterAddr(0); err == nil && addr == set.replica.Addr() {
				promoted = time.Now()
				return true
			}
			return false
		})
	}()
	first, err := f.c.firstJoin(newRooms("after-failover"), 200*time.Millisecond, 60*time.Second)
	if err == nil {
		first.lk.Disconnect()
	}
	close(stop)
	wg.Wait()
	if promoted.IsZero() {
		t.Errorf("sentinel1 did not name the replica %s as master within 60 s", set.replica.Addr())
	} else {
		t.Logf("FAILOVER sentinel1 names the replica as master %v after the kill", promoted.Sub(f.killed).Round(time.Millisecond))
	}
	if err != nil {
		t.Fatalf("after the master was killed: %v", err)
	}
	t.Logf("FAILOVER first successful SDK join through the proxy: done %v after the kill (new room %s, started at +%v; joins started every 200 ms: %d)",
		first.done.Sub(f.killed).Round(time.Millisecond), first.room, first.start.Sub(f.killed).Round(time.Millisecond), first.tried)
}

// checkLog: the proxy ends with Redis reachable.
func (f *failoverRun) checkLog() {
	entries := f.c.proxy.LogEntries()
	for _, msg := range []string{logRedisDown, logRedisUp} {
		for _, e := range harness.Messages(entries, msg) {
			f.t.Logf("FAILOVER proxy logged %q %v after the kill", msg, e.Time().Sub(f.killed).Round(time.Millisecond))
		}
	}
	if downs, ups := harness.Messages(entries, logRedisDown), harness.Messages(entries, logRedisUp); len(downs) != len(ups) {
		f.t.Errorf("the proxy logged %q %d times and %q %d times; want it to end reachable",
			logRedisDown, len(downs), logRedisUp, len(ups))
	}
}

// checkRaws: every raw request during the failover was answered within the
// bound, and the known room kept its node.
func (f *failoverRun) checkRaws() {
	t, c := f.t, f.c
	bound := redisTimeout + boundMargin
	var maxDur time.Duration
	counts := map[string]int{}
	for _, r := range f.raws {
		maxDur = max(maxDur, r.dur)
		if r.err != nil || r.dur >= bound {
			t.Errorf("raw GET /rtc %v after the kill: %v; want an answer within %v", r.start.Sub(f.killed).Round(time.Millisecond), r, bound)
		}
		switch {
		case r.room == roomBefore && r.node != f.host:
			t.Errorf("known room %v after the kill: %v; want it routed to %s", r.start.Sub(f.killed).Round(time.Millisecond), r, c.Name(f.host))
		case r.room == roomBefore:
			counts["known room routed to its node"]++
		case r.node != "":
			counts["new room routed"]++
		case redisRefusal(r):
			counts["new room refused (Redis)"]++
		default:
			counts[fmt.Sprintf("new room %d %s", r.status, strings.TrimSpace(r.body))]++
		}
	}
	t.Logf("BOUND raw GET /rtc during the failover: %d requests, max %v (bound %v): %v", len(f.raws), maxDur.Round(time.Millisecond), bound, counts)
}

// checkRoomFromBefore: the room from before the failover had its placement
// replicated, so a new participant joins the one that is still there.
func (f *failoverRun) checkRoomFromBefore() {
	t, c := f.t, f.c
	replica := client(f.set.replica)
	defer replica.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	placed := harness.RoomNode(ctx, replica, roomBefore)
	cancel()
	if placed != f.host {
		t.Errorf("room_node_map[%s] on the promoted replica = %s; want %s", roomBefore, c.Name(placed), c.Name(f.host))
	}
	late, err := c.firstJoin(sameRoom(roomBefore), 500*time.Millisecond, 30*time.Second)
	if err != nil {
		t.Fatalf("join of %s, the room from before the failover: %v", roomBefore, err)
	}
	defer late.lk.Disconnect()
	t.Logf("FAILOVER first successful SDK join of %s, the room from before: done %v after the kill (joins started every 500 ms: %d)",
		roomBefore, late.done.Sub(f.killed).Round(time.Millisecond), late.tried)
	if ok, _ := f.early.Connected(); ok && !harness.Sees(late.lk, "early", 5*time.Second) {
		t.Errorf("a late joiner of %s is on %s and does not see early (on %s); it sees %v",
			roomBefore, c.Name(late.lk.ServerInfo().GetNodeId()), c.Name(f.host), harness.RemoteIdentities(late.lk))
	}
	t.Logf("after the failover, a late joiner of %s is on %s and sees %v; early: %v",
		roomBefore, c.Name(late.lk.ServerInfo().GetNodeId()), harness.RemoteIdentities(late.lk), f.early)
}
