package failover

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// How a trial stops the node that hosts its room.
const (
	howStop      = "stop"      // SIGSTOP: a frozen VM, a kernel hang
	howPartition = "partition" // every packet to and from the node dropped
	howKill      = "kill"      // SIGKILL: a crash
)

// silentResult is one trial: from the moment the room's node stopped, how
// long until every participant was back in the room on one live node,
// seeing the others, and until a new participant's join succeeded.
type silentResult struct {
	back, media, join time.Duration
	joinTries         int
	joinErrs          []string // why the tries before the successful one failed
	from, to          string   // room_node_map before and after
}

// silentTrial puts participants into room, spread over the proxies at urls
// (in turn), stops the room's node as how says, and waits for everyone to be
// back. With check set it asserts where they landed (every signal WebSocket
// on the room's new node); the stopped node is restarted before it returns.
func silentTrial(t testing.TB, c *cluster, urls []string, how, room string, participants int, check bool) silentResult {
	return silentTrialWithin(t, c, urls, how, room, participants, check, time.Minute)
}

// silentTrialWithin is silentTrial that waits at most limit for everyone to be back.
func silentTrialWithin(t testing.TB, c *cluster, urls []string, how, room string, participants int, check bool, limit time.Duration) silentResult {
	t.Helper()
	var clients []*client
	defer func() {
		for _, cl := range clients {
			cl.lk.Disconnect()
		}
	}()
	for i := range participants {
		cl, err := connect(urls[i%len(urls)], room, fmt.Sprintf("%s-p%d", room, i+1), 10*time.Second)
		if err != nil {
			t.Fatalf("join %s before the failure: %v", room, err)
		}
		clients = append(clients, cl)
	}
	res := silentResult{from: c.roomNode(room)}
	host := c.nodeByID(res.from)
	if host == nil {
		t.Fatalf("room_node_map[%s] = %s, not a running node", room, c.name(res.from))
	}
	if !harness.Poll(10*time.Second, func() bool { return allSeeEachOther(clients) }) {
		t.Fatalf("%s: participants do not see each other before the failure", room)
	}

	stopped := time.Now()
	switch how {
	case howStop:
		host.Pause()
	case howPartition:
		host.Cut()
	case howKill:
		host.Kill()
	}
	defer func() {
		switch how {
		case howStop:
			host.Resume()
		case howPartition:
			host.Heal()
		}
		host.Restart()
	}()

	// a new participant keeps trying to join, as the JS SDK does (a signal
	// WebSocket up to LiveKit's JoinResponse), with the SDK's default timeout
	joined := make(chan string, 1)
	var tries atomic.Int32
	go func() {
		defer close(joined)
		for time.Since(stopped) < limit {
			node, err := rawJoinTimeout(urls[0], room, fmt.Sprintf("%s-new%d", room, tries.Add(1)), 5*time.Second)
			if err == nil {
				res.join = time.Since(stopped)
				joined <- node
				return
			}
			res.joinErrs = append(res.joinErrs, fmt.Sprintf("%v: %v", time.Since(stopped).Round(time.Millisecond), err))
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// signal: the SDK reconnected and its room lists every other
	// participant (what the SDK's callbacks tell an app); media: its WebRTC
	// transport is connected again too (ICE, the same second in every mode)
	backAt := make([]time.Duration, len(clients))
	mediaAt := make([]time.Duration, len(clients))
	for deadline := stopped.Add(limit); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		all := true
		for i, cl := range clients {
			if backAt[i] == 0 && cl.reconnectedSince(stopped) && cl.sees(clients) {
				backAt[i] = time.Since(stopped)
			}
			if mediaAt[i] == 0 && backAt[i] != 0 && cl.lk.ConnectionState() == lksdk.ConnectionStateConnected {
				mediaAt[i] = time.Since(stopped)
			}
			all = all && mediaAt[i] != 0
		}
		if all {
			break
		}
	}
	res.back, res.media = slices.Max(backAt), slices.Max(mediaAt)
	if slices.Contains(backAt, 0) {
		res.back = 0 // not everyone came back
	}
	if slices.Contains(mediaAt, 0) {
		res.media = 0
	}
	if testing.Verbose() {
		for i, cl := range clients {
			var ds []string
			for _, d := range cl.log.list() {
				ds = append(ds, fmt.Sprintf("%s@%v", d.reason, d.at.Sub(stopped).Round(time.Millisecond)))
			}
			t.Logf("%s: back at %v, media at %v; %s", cl.identity, backAt[i].Round(time.Millisecond), mediaAt[i].Round(time.Millisecond), strings.Join(ds, " "))
		}
	}
	joinedAt := <-joined
	res.joinTries = int(tries.Load())
	res.to = c.roomNode(room)
	if !check {
		return res
	}

	for i, cl := range clients {
		if mediaAt[i] == 0 {
			t.Errorf("%s: %s not back in the room within a minute (drops %v)", how, cl.identity, cl.log.list())
		}
	}
	if res.join == 0 {
		t.Errorf("%s: no new join of %s succeeded within a minute (%d tries)", how, room, res.joinTries)
	} else if joinedAt != res.to {
		t.Errorf("%s: the new join's JoinResponse names %s; room_node_map[%s] = %s", how, c.name(joinedAt), room, c.name(res.to))
	}
	// the join sent while the node was dying is sent on inside the same
	// request: the client sees one slower join, not an error
	if res.joinTries != 1 {
		t.Errorf("%s: the new participant needed %d joins; failed: %v", how, res.joinTries, res.joinErrs)
	}
	if res.to == res.from || c.nodeByID(res.to) == nil {
		t.Fatalf("%s: room_node_map[%s] = %s after the failure of %s", how, room, c.name(res.to), c.name(res.from))
	}
	var newHost *harness.Node = c.nodeByID(res.to)
	for _, cl := range clients {
		if !newHost.AcceptedSignal(cl.identity) {
			t.Errorf("%s: %s is not signalling through the room's new node %s", how, cl.identity, c.name(res.to))
		}
		if got := cl.lk.ServerInfo().GetNodeId(); got != res.to {
			t.Errorf("%s: %s's server is %s; room_node_map[%s] = %s", how, cl.identity, c.name(got), room, c.name(res.to))
		}
	}
	return res
}

// reconnectedSince: the SDK reconnected (resumed or rejoined) after t.
func (cl *client) reconnectedSince(t time.Time) bool {
	for _, d := range cl.log.list() {
		if d.reason == reconnected && d.at.After(t) {
			return true
		}
	}
	return false
}

// sees: every other participant of clients is in cl's room.
func (cl *client) sees(clients []*client) bool {
	remote := map[string]bool{}
	for _, p := range cl.lk.GetRemoteParticipants() {
		remote[p.Identity()] = true
	}
	for _, o := range clients {
		if o != cl && !remote[o.identity] {
			return false
		}
	}
	return true
}

func allSeeEachOther(clients []*client) bool {
	for _, cl := range clients {
		if !cl.sees(clients) {
			return false
		}
	}
	return true
}

// TestSilentNode: the node hosting a room of three participants, connected
// through livekit_lb, is frozen (SIGSTOP), cut off the network, or killed.
// Asserted: every participant is back in the room, on the one node that
// room_node_map now names, signalling straight to it, seeing the others;
// a new participant's join succeeds there. The times are logged; the
// benchmark below measures them over many trials beside stock Caddy.
func TestSilentNode(t *testing.T) {
	c := startCluster(t, 3)
	addr := harness.FreeAddr(t)
	caddy := harness.StartCaddy(t, lbSite(addr, c.redis.Addr()))
	for _, how := range []string{howStop, howPartition, howKill} {
		r := silentTrial(t, c, []string{"ws://" + addr}, how, "silent-"+how, 3, true)
		t.Logf("%-9s everyone back %v (media %v), new join %v (%d tries %v); %s -> %s", how, r.back.Round(time.Millisecond),
			r.media.Round(time.Millisecond), r.join.Round(time.Millisecond), r.joinTries, r.joinErrs, c.name(r.from), c.name(r.to))
	}
	if !strings.Contains(caddy.Logs(), "ended the sessions of a dead livekit node") {
		t.Error("Caddy's log does not say it ended the sessions of the dead node")
	}
}

// TestSilentNodeTwoProxies: the room's participants come through two
// proxies over one Redis; its node freezes. Both proxies end their sessions,
// and everyone, through either proxy, meets on the same new node.
func TestSilentNodeTwoProxies(t *testing.T) {
	c := startCluster(t, 3)
	a, b := harness.FreeAddr(t), harness.FreeAddr(t)
	harness.StartCaddy(t, lbSite(a, c.redis.Addr()))
	harness.StartCaddy(t, lbSite(b, c.redis.Addr()))
	for i := range 2 {
		r := silentTrial(t, c, []string{"ws://" + a, "ws://" + b}, howStop, fmt.Sprintf("two-proxies-%d", i+1), 4, true)
		t.Logf("trial %d: everyone back %v, new join %v; %s -> %s", i+1, r.back.Round(time.Millisecond),
			r.join.Round(time.Millisecond), c.name(r.from), c.name(r.to))
	}
}

// TestBriefPauseKeepsEveryone: the room's node is paused for 0.5 s
// (SIGSTOP, SIGCONT), five times, then the whole machine is kept at 100 %
// CPU for 3 s. Nobody may lose the connection, the room stays where it is,
// and the proxy ends no session.
func TestBriefPauseKeepsEveryone(t *testing.T) {
	c := startCluster(t, 3)
	addr := harness.FreeAddr(t)
	caddy := harness.StartCaddy(t, lbSite(addr, c.redis.Addr()))
	var clients []*client
	for i := range 3 {
		clients = append(clients, mustConnect(t, "ws://"+addr, "brief", fmt.Sprintf("brief-p%d", i+1)))
	}
	host := c.roomNode("brief")
	node := c.nodeByID(host)
	for range 5 {
		node.Pause()
		time.Sleep(500 * time.Millisecond)
		node.Resume()
		time.Sleep(time.Second)
	}
	busy(3 * time.Second)
	time.Sleep(3 * time.Second) // time for a drop to show
	for _, cl := range clients {
		if d := cl.log.list(); len(d) > 0 || cl.disconnected.Load() > 0 {
			t.Errorf("%s lost its connection: %v (disconnected %d)", cl.identity, d, cl.disconnected.Load())
		}
	}
	if now := c.roomNode("brief"); now != host {
		t.Errorf("room moved from %s to %s", c.name(host), c.name(now))
	}
	if !allSeeEachOther(clients) {
		t.Error("participants no longer see each other")
	}
	if logs := caddy.Logs(); strings.Contains(logs, "ended the sessions") || strings.Contains(logs, "out of rotation") {
		t.Errorf("the proxy took a briefly paused or busy node out:\n%s", logs)
	}
}

// busy keeps every CPU of the machine busy for d.
func busy(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 * runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				for i := 0; i < 1e6; i++ {
				}
			}
		}()
	}
	wg.Wait()
}
