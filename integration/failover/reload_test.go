package failover

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// TestReloadUnderLoad: SDK clients join through livekit_lb, 20 at a time
// over 20 rooms, and halfway through the proxy's config is reloaded with a
// different fail_duration (a new registry for the cluster). Asserted: the
// reload succeeds and takes effect; every client that joined is connected
// afterwards; none lost its signal connection (the part that passes the
// proxy) at the reload; joins that were not in flight during the reload did
// not fail before their signal connection was up; every client is on its
// room's node.
//
// Reported, not asserted: lost media connections (ICE, which does not pass
// the proxy) and joins whose WebRTC set-up timed out after the signal
// connection worked (both happen on a busy machine without any reload), and
// joins whose connection was dropped by Caddy's listener handover at the
// reload (Caddy core: with SO_REUSEPORT each config has its own listening
// socket, and connections still in the old socket's accept queue are reset
// when it closes; stock reverse_proxy does the same).
func TestReloadUnderLoad(t *testing.T) {
	r := &reloadRun{t: t, total: envInt(t, "LKLB_RELOAD_CLIENTS", 200), c: startCluster(t, 3)}
	r.caddy = r.c.StartProxy(t, reloadLB(r.c, "fail_duration 5s"))
	watch := watchNodes(r.caddy.Caddy)
	t.Cleanup(r.disconnect)

	r.joinAndReload()
	r.checkRunningConfig()
	r.waitConnected()
	t.Logf("the proxy's view of the nodes during the test: %s", watch.report(r.c))
	signalDrops, otherDrops := r.checkDrops()
	handover, mediaFails := r.checkFailures()
	t.Logf("joined %d of %d; failed joins: %d in flight during the reload, %d WebRTC timeouts after the signal connection, %d other; "+
		"connections lost after joining: %d at the proxy during the reload, %d others (ICE failure or LiveKit's leave first, or far from the reload)",
		len(r.joined), r.total, handover, mediaFails, len(r.failures)-handover-mediaFails, signalDrops, otherDrops)
	r.checkPlacement()
}

// The joins of TestReloadUnderLoad go to reloadRooms rooms, reloadConcurrency
// at a time.
const reloadRooms, reloadConcurrency = 20, 20

// reloadLB is the proxy's configuration with one more option. rooms: the
// nodes share one host, so their sampled load averages differ only by when
// they were taken. The first 20 joins place 20 rooms at once, which can pile
// them onto one node (TestBurstOfNewRoomsIsSpread); that node's WebRTC
// set-ups then time out on this machine (reported).
func reloadLB(c *harness.Stack, option string) harness.LB {
	return harness.LB{Redis: c.Redis.Addr(), Options: []string{"load_measure rooms", option}}
}

// reloadRun is one run of TestReloadUnderLoad.
type reloadRun struct {
	t     *testing.T
	total int
	c     *harness.Stack
	caddy *harness.Proxy

	mu       sync.Mutex // guards joined and failures while the joins run
	joined   []*harness.Client
	failures []joinFailure
	rr       reloadResult
}

type joinFailure struct {
	room, identity string
	err            error
	start, at      time.Time
}

type reloadResult struct {
	err                error
	began, ended       time.Time
	joinedBefore, done int32
}

func (r *reloadRun) disconnect() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cl := range r.joined {
		cl.LK.Disconnect()
	}
}

// since is the time from the reload's start to at.
func (r *reloadRun) since(at time.Time) time.Duration {
	return at.Sub(r.rr.began).Round(time.Millisecond)
}

// joinAndReload joins every client, reloadConcurrency at a time; the reload
// (fail_duration 5s -> 7s) happens once half of the clients have started
// joining, while up to reloadConcurrency joins are in flight.
func (r *reloadRun) joinAndReload() {
	t := r.t
	var started, done atomic.Int32
	reloadAt := r.total / 2
	reloadStart := make(chan struct{})
	reloaded := make(chan reloadResult, 1)
	go func() {
		<-reloadStart
		before := done.Load()
		began := time.Now()
		err := r.caddy.Reload(harness.LBSite(r.caddy.Addr, reloadLB(r.c, "fail_duration 7s")))
		reloaded <- reloadResult{err, began, time.Now(), before, done.Load()}
	}()

	begin := time.Now()
	sem := make(chan struct{}, reloadConcurrency)
	var wg sync.WaitGroup
	for i := range r.total {
		sem <- struct{}{}
		if started.Add(1) == int32(reloadAt)+1 {
			close(reloadStart)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			room := fmt.Sprintf("reload-%02d", i%reloadRooms)
			identity := fmt.Sprintf("%s-p%03d", room, i)
			start := time.Now()
			cl, err := harness.Connect(r.caddy.WS(), room, identity, 15*time.Second)
			done.Add(1)
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil {
				r.failures = append(r.failures, joinFailure{room, identity, err, start, time.Now()})
				return
			}
			r.joined = append(r.joined, cl)
		}()
	}
	wg.Wait()
	joinTime := time.Since(begin)
	select {
	case r.rr = <-reloaded:
	case <-time.After(time.Minute):
		t.Fatal("caddy reload did not return within a minute")
	}
	if r.rr.err != nil {
		t.Fatalf("reload: %v", r.rr.err)
	}
	t.Logf("%d clients over %d rooms, %d at a time: all joins done in %v; the reload (fail_duration 5s -> 7s) took %v, started after %d joins had completed, returned after %d",
		r.total, reloadRooms, reloadConcurrency, joinTime.Round(time.Millisecond), r.rr.ended.Sub(r.rr.began).Round(time.Millisecond), r.rr.joinedBefore, r.rr.done)
}

// checkRunningConfig: the new config is the running one.
func (r *reloadRun) checkRunningConfig() {
	cfg, err := r.caddy.Admin("/config/apps/http/servers", nil)
	if err != nil {
		r.t.Fatalf("admin config: %v", err)
	}
	if !strings.Contains(cfg, `"fail_duration":7000000000`) {
		r.t.Errorf("running config after the reload has no fail_duration of 7s:\n%s", cfg)
	}
}

// waitConnected lets the SDK notice a lost WebSocket (it pings every few
// seconds), and gives a client that is resuming a lost media connection
// time to finish.
func (r *reloadRun) waitConnected() {
	time.Sleep(5 * time.Second)
	harness.Poll(20*time.Second, func() bool {
		for _, cl := range r.joined {
			if cl.LK.ConnectionState() != lksdk.ConnectionStateConnected {
				return false
			}
		}
		return true
	})
}

// checkDrops: every client is connected, and none lost its signal
// connection at the reload. A loss the reload could cause: the WebSocket
// closes first (no ICE failure, no leave from LiveKit before it), during the
// reload or soon after (Caddy closes the old config's streams after
// stream_close_delay). Other losses are logged.
func (r *reloadRun) checkDrops() (signalDrops, otherDrops int) {
	t, c := r.t, r.c
	inReload := func(at time.Time) bool {
		return !at.Before(r.rr.began.Add(-time.Second)) && !at.After(r.rr.ended.Add(5*time.Second))
	}
	for _, cl := range r.joined {
		if st := cl.LK.ConnectionState(); st != lksdk.ConnectionStateConnected || cl.Disconnects() > 0 {
			t.Errorf("%s: state %s after the reload (%d disconnects, drops %v)", cl.Identity, st, cl.Disconnects(), cl.Drops())
		}
		for _, ep := range harness.Episodes(cl.Drops()) {
			var reasons []string
			for _, d := range ep {
				reasons = append(reasons, d.Reason)
			}
			if ep[0].Reason == "transport-close" && inReload(ep[0].At) {
				signalDrops++
				t.Errorf("%s lost its signal connection %v after the reload began (%s)", cl.Identity, r.since(ep[0].At), strings.Join(reasons, ", "))
				continue
			}
			otherDrops++
			t.Logf("%s lost its connection %v after the reload began (%s; room on %s); the SDK resumed it",
				cl.Identity, r.since(ep[0].At), strings.Join(reasons, ", "), c.Name(c.RoomNode(cl.Room)))
		}
	}
	return signalDrops, otherDrops
}

// checkFailures: a join failed only in flight during the reload, or in its
// WebRTC set-up after the signal connection worked (both logged).
func (r *reloadRun) checkFailures() (handover, mediaFails int) {
	t, c := r.t, r.c
	for _, f := range r.failures {
		switch {
		case errors.Is(f.err, lksdk.ErrConnectionTimeout):
			// the signal connection (through the proxy) worked; WebRTC did not come up in time
			mediaFails++
			t.Logf("join of %s timed out after its signal connection (%v..%v after the reload began; room on %s): %v",
				f.identity, r.since(f.start), r.since(f.at), c.Name(c.RoomNode(f.room)), f.err)
		case !f.start.After(r.rr.ended) && !f.at.Before(r.rr.began):
			handover++
			t.Logf("join of %s, in flight during the reload, failed (%v..%v after the reload began): %v",
				f.identity, r.since(f.start), r.since(f.at), f.err)
		default:
			t.Errorf("join of %s failed %v..%v after the reload began: %v", f.identity, r.since(f.start), r.since(f.at), f.err)
		}
	}
	return handover, mediaFails
}

// checkPlacement: every client is on its room's node.
func (r *reloadRun) checkPlacement() {
	t, c := r.t, r.c
	misplaced := 0
	for _, cl := range r.joined {
		if sig, at := c.SignalNode(cl.Identity), c.RoomNode(cl.Room); sig != at {
			misplaced++
			if misplaced <= 5 {
				t.Errorf("%s signalled through %s; room_node_map[%s] = %s", cl.Identity, c.Name(sig), cl.Room, c.Name(at))
			}
		}
	}
	if misplaced > 0 {
		t.Errorf("%d of %d clients not on their room's node", misplaced, len(r.joined))
	}
	var names []string
	for i := range reloadRooms {
		names = append(names, fmt.Sprintf("reload-%02d", i))
	}
	t.Logf("rooms per node: %s", c.Spread(names))
}
