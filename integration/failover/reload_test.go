package failover

import (
	"errors"
	"fmt"
	"io"
	"net/http"
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
	total := envInt(t, "LKLB_RELOAD_CLIENTS", 200)
	const rooms, concurrency = 20, 20
	c := startCluster(t, 3)
	addr := harness.FreeAddr(t)
	// rooms: the nodes share one host, so their sampled load averages differ
	// only by when they were taken. The first 20 joins place 20 rooms at
	// once, which can pile them onto one node (TestBurstOfNewRoomsIsSpread);
	// that node's WebRTC set-ups then time out on this machine (reported).
	const measure = "load_measure rooms"
	caddy := harness.StartCaddy(t, lbSite(addr, c.redis.Addr(), measure, "fail_duration 5s"))
	watch := watchNodes(caddy.AdminAddr())
	url := "ws://" + addr

	var (
		mu       sync.Mutex
		joined   []*client
		failures []joinFailure
		started  atomic.Int32
		done     atomic.Int32
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, cl := range joined {
			cl.lk.Disconnect()
		}
	})

	// the reload happens once half of the clients have started joining,
	// while up to `concurrency` joins are in flight
	reloadAt := total / 2
	reloadStart := make(chan struct{})
	type reloadResult struct {
		err                error
		began, ended       time.Time
		joinedBefore, done int32
	}
	reloaded := make(chan reloadResult, 1)
	go func() {
		<-reloadStart
		before := done.Load()
		began := time.Now()
		err := caddy.Reload(lbSite(addr, c.redis.Addr(), measure, "fail_duration 7s"))
		reloaded <- reloadResult{err, began, time.Now(), before, done.Load()}
	}()

	begin := time.Now()
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range total {
		sem <- struct{}{}
		if started.Add(1) == int32(reloadAt)+1 {
			close(reloadStart)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			room := fmt.Sprintf("reload-%02d", i%rooms)
			identity := fmt.Sprintf("%s-p%03d", room, i)
			start := time.Now()
			cl, err := connect(url, room, identity, 15*time.Second)
			done.Add(1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, joinFailure{room, identity, err, start, time.Now()})
				return
			}
			joined = append(joined, cl)
		}()
	}
	wg.Wait()
	joinTime := time.Since(begin)
	var rr reloadResult
	select {
	case rr = <-reloaded:
	case <-time.After(time.Minute):
		t.Fatal("caddy reload did not return within a minute")
	}
	if rr.err != nil {
		t.Fatalf("reload: %v", rr.err)
	}
	since := func(at time.Time) time.Duration { return at.Sub(rr.began).Round(time.Millisecond) }
	t.Logf("%d clients over %d rooms, %d at a time: all joins done in %v; the reload (fail_duration 5s -> 7s) took %v, started after %d joins had completed, returned after %d",
		total, rooms, concurrency, joinTime.Round(time.Millisecond), rr.ended.Sub(rr.began).Round(time.Millisecond), rr.joinedBefore, rr.done)

	// the new config is the running one
	resp, err := http.Get("http://" + caddy.AdminAddr() + "/config/apps/http/servers")
	if err != nil {
		t.Fatalf("admin config: %v", err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(cfg), `"fail_duration":7000000000`) {
		t.Errorf("running config after the reload has no fail_duration of 7s:\n%s", cfg)
	}

	// let the SDK notice a lost WebSocket (it pings every few seconds), and
	// give a client that is resuming a lost media connection time to finish
	time.Sleep(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	harness.Poll(20*time.Second, func() bool {
		for _, cl := range joined {
			if cl.lk.ConnectionState() != lksdk.ConnectionStateConnected {
				return false
			}
		}
		return true
	})
	t.Logf("the proxy's view of the nodes during the test: %s", watch.report(c))

	// a loss the reload could cause: the WebSocket closes first (no ICE
	// failure, no leave from LiveKit before it), during the reload or soon
	// after (Caddy closes the old config's streams after stream_close_delay)
	inReload := func(at time.Time) bool {
		return !at.Before(rr.began.Add(-time.Second)) && !at.After(rr.ended.Add(5*time.Second))
	}
	signalDrops, otherDrops := 0, 0
	for _, cl := range joined {
		if st := cl.lk.ConnectionState(); st != lksdk.ConnectionStateConnected || cl.disconnected.Load() > 0 {
			t.Errorf("%s: state %s after the reload (%d disconnects, drops %v)", cl.identity, st, cl.disconnected.Load(), cl.log.list())
		}
		for _, ep := range episodes(cl.log.list()) {
			var reasons []string
			for _, d := range ep {
				reasons = append(reasons, d.reason)
			}
			if ep[0].reason == "transport-close" && inReload(ep[0].at) {
				signalDrops++
				t.Errorf("%s lost its signal connection %v after the reload began (%s)", cl.identity, since(ep[0].at), strings.Join(reasons, ", "))
				continue
			}
			otherDrops++
			t.Logf("%s lost its connection %v after the reload began (%s; room on %s); the SDK resumed it",
				cl.identity, since(ep[0].at), strings.Join(reasons, ", "), c.name(c.roomNode(cl.room)))
		}
	}
	mediaFails, handover := 0, 0
	for _, f := range failures {
		switch {
		case errors.Is(f.err, lksdk.ErrConnectionTimeout):
			// the signal connection (through the proxy) worked; WebRTC did not come up in time
			mediaFails++
			t.Logf("join of %s timed out after its signal connection (%v..%v after the reload began; room on %s): %v",
				f.identity, since(f.start), since(f.at), c.name(c.roomNode(f.room)), f.err)
		case !f.start.After(rr.ended) && !f.at.Before(rr.began):
			handover++
			t.Logf("join of %s, in flight during the reload, failed (%v..%v after the reload began): %v",
				f.identity, since(f.start), since(f.at), f.err)
		default:
			t.Errorf("join of %s failed %v..%v after the reload began: %v", f.identity, since(f.start), since(f.at), f.err)
		}
	}
	t.Logf("joined %d of %d; failed joins: %d in flight during the reload, %d WebRTC timeouts after the signal connection, %d other; "+
		"connections lost after joining: %d at the proxy during the reload, %d others (ICE failure or LiveKit's leave first, or far from the reload)",
		len(joined), total, handover, mediaFails, len(failures)-handover-mediaFails, signalDrops, otherDrops)

	// and they are on their rooms' nodes
	misplaced := 0
	for _, cl := range joined {
		if sig, at := c.signalNode(cl.identity), c.roomNode(cl.room); sig != at {
			misplaced++
			if misplaced <= 5 {
				t.Errorf("%s signalled through %s; room_node_map[%s] = %s", cl.identity, c.name(sig), cl.room, c.name(at))
			}
		}
	}
	if misplaced > 0 {
		t.Errorf("%d of %d clients not on their room's node", misplaced, len(joined))
	}
	var names []string
	for i := range rooms {
		names = append(names, fmt.Sprintf("reload-%02d", i))
	}
	t.Logf("rooms per node: %s", c.spread(names))
}

type joinFailure struct {
	room, identity string
	err            error
	start, at      time.Time
}
