package redisoutage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// TestRedisStopped: Redis is killed for LKLB_OUTAGE_SECONDS under a trickle of
// joins, then started again on the same port. It comes back empty (no
// persistence): LiveKit's nodes write themselves into `nodes` again with
// their next stats (every 2 s), but room_node_map stays empty, and LiveKit
// never writes it again for a room that is running: the next join of each
// room places it anew, wherever the one who places it chooses.
func TestRedisStopped(t *testing.T) {
	testOutage(t, outageKind{
		name:  "stopped",
		begin: (*harness.Redis).Kill,
		end:   (*harness.Redis).Restart,
	})
}

// TestRedisHung: Redis is frozen (SIGSTOP) for LKLB_OUTAGE_SECONDS under a
// trickle of joins: connections stay open and nothing answers, so every
// Redis call can only end by its timeout. Then it continues, with its data.
func TestRedisHung(t *testing.T) {
	testOutage(t, outageKind{
		name:  "hung",
		begin: (*harness.Redis).Pause,
		end:   (*harness.Redis).Resume,
	})
}

// outageKind is a way for Redis to become unreachable and come back.
type outageKind struct {
	name  string
	begin func(*harness.Redis)
	end   func(*harness.Redis)
}

// knownRooms are joined before the outage, all on node1, which also hosts
// ballastRooms (created, nobody in them): a placement by load (load_measure
// rooms) puts a known room on node2 instead, even after the joins that
// measure the recovery placed their rooms.
var (
	knownRooms   = []string{"known-a", "known-b"}
	ballastRooms = func() (rooms []string) {
		for i := range 20 {
			rooms = append(rooms, fmt.Sprintf("ballast-%d", i+1))
		}
		return rooms
	}()
)

// idleRoom is a known room on node1 that nobody joins for longer than
// placement_cache (default 5 s) before the outage: the proxy still has its
// placement, expired, and must use it when Redis fails.
const idleRoom = "known-idle"

// trickleRooms are what the trickle of joins asks for in turn: the known
// rooms, and rooms that nobody has placed yet.
var trickleRooms = []string{"known-a", "new-a", "known-b", "new-b"}

// outageRun is one outage test: its cluster, what it watches, and when
// things happened.
type outageRun struct {
	t        *testing.T
	c        *cluster
	redis    *harness.Redis
	host     *harness.Node // node1, where the known rooms are
	watched  []*participant
	baseline time.Duration // an SDK join through the proxy before the outage

	start, returned time.Time
	kept            map[*participant]bool // connected through the whole outage
	roots           []rootCheck
	idle            rtcResult
	trickle         *trickle
	logLines        []string // Caddy's output during the outage
}

type rootCheck struct {
	at     time.Duration
	status int
	body   string
	err    error
}

func testOutage(t *testing.T, kind outageKind) {
	o := startOutageRun(t)
	o.outage(kind, outageLength(t))
	o.recovery()
	o.knownRoomsAfter()
	o.trickle.waitJoins(t, 60*time.Second)

	o.checkCaddyUp()
	o.checkRequests()
	o.checkWebSockets()
	o.checkLog()
}

// startOutageRun starts Redis, two nodes and Caddy; places the known rooms
// and the ballast on node1; and connects, in each known room, one
// participant through the proxy and, as a control, one to node1 directly.
func startOutageRun(t *testing.T) *outageRun {
	o := &outageRun{t: t, c: &cluster{t: t}, redis: harness.StartRedis(t)}
	o.c.nodes = harness.StartNodes(t, o.redis.Addr(), 2, harness.NodeOptions{})
	o.host = o.c.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, room := range append(append(slices.Clone(knownRooms), idleRoom), ballastRooms...) {
		if err := o.redis.Client().HSet(ctx, harness.RoomNodeMapKey, room, o.host.ID()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rs := lksdk.NewRoomServiceClient("http://"+o.host.HTTPAddr(), harness.APIKey, harness.APISecret)
	for _, room := range ballastRooms {
		if _, err := rs.CreateRoom(ctx, &livekit.CreateRoomRequest{Name: room}); err != nil {
			t.Fatalf("CreateRoom %s on node1: %v", room, err)
		}
	}
	o.c.startProxy("address " + o.redis.Addr())

	harness.Join(t, o.c.wsURL(), idleRoom, idleRoom+"-via-proxy")
	idleSince := time.Now()
	for _, room := range knownRooms {
		start := time.Now()
		o.watched = append(o.watched, connect(t, o.c.wsURL(), "proxy", room, room+"-via-proxy"))
		o.baseline = max(o.baseline, time.Since(start))
		o.watched = append(o.watched, connect(t, o.host.URL(), "node1 directly", room, room+"-direct"))
	}
	// idleRoom's cached placement expires; the checks below renew the
	// others' (and rotate idleRoom's into the cache's older generation)
	time.Sleep(time.Until(idleSince.Add(6 * time.Second)))
	for _, room := range knownRooms {
		if res := o.c.rawRTC(room, "check"); res.node != o.host.ID() {
			t.Fatalf("before the outage, GET /rtc for %s: %v; want it routed to %s", room, res, o.c.name(o.host.ID()))
		}
	}
	return o
}

// outage makes Redis unreachable for length under a trickle of joins, with
// GET / through Caddy every 5 s, then brings it back.
func (o *outageRun) outage(kind outageKind, length time.Duration) {
	o.trickle = &trickle{c: o.c}
	stop := make(chan struct{})
	trickled := make(chan struct{})
	logStart := len(o.c.caddyLines())
	o.start = time.Now()
	kind.begin(o.redis)
	o.t.Logf("redis %s at %s for %v", kind.name, o.start.Format("15:04:05.000"), length)
	idle := make(chan rtcResult, 1)
	go func() { idle <- o.c.rawRTC(idleRoom, "idle") }()
	go func() {
		defer close(trickled)
		o.trickle.run(stop)
	}()
	for end := o.start.Add(length); time.Now().Before(end); {
		time.Sleep(min(5*time.Second, time.Until(end)))
		status, body, err := o.c.getRoot()
		o.roots = append(o.roots, rootCheck{time.Since(o.start).Round(time.Millisecond), status, body, err})
	}
	close(stop)
	<-trickled
	o.trickle.raws.Wait()
	o.idle = <-idle
	o.kept = map[*participant]bool{}
	for _, p := range o.watched {
		ok, left := p.connected()
		o.kept[p] = ok && left.IsZero()
	}

	kind.end(o.redis)
	o.returned = time.Now()
	o.logLines = o.c.caddyLines()[logStart:]
	o.t.Logf("redis back at %s, after %v", o.returned.Format("15:04:05.000"), o.returned.Sub(o.start).Round(time.Millisecond))
}

// recovery measures, from Redis returning: the proxy's "reachable again",
// every node's fresh stats, the first new room the proxy routes (raw GET,
// every 50 ms) and the first successful SDK join (every 200 ms).
func (o *outageRun) recovery() {
	t, c := o.t, o.c
	var upAt, nodesAt, routedAt, proxyAt time.Time
	var upOK, nodesOK, routedOK, proxyOK bool
	var routed rtcResult
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		proxyAt, proxyOK = c.proxyBack(30 * time.Second)
	}()
	go func() {
		defer wg.Done()
		routedAt, routed, routedOK = c.firstRouted("routed", 30*time.Second)
	}()
	go func() {
		defer wg.Done()
		upAt, upOK = c.waitLog(logRedisUp, o.start, 30*time.Second)
	}()
	go func() {
		defer wg.Done()
		nodesAt, nodesOK = c.nodesFresh(o.redis.Client(), o.returned, 30*time.Second)
	}()
	first, err := c.firstJoin(newRooms("after"), 200*time.Millisecond, 30*time.Second)
	wg.Wait()
	since := func(at time.Time) time.Duration { return at.Sub(o.returned).Round(time.Millisecond) }
	if err != nil {
		t.Errorf("after Redis returned: %v", err)
	} else {
		first.lk.Disconnect()
		t.Logf("RECOVERY first successful SDK join through the proxy: done %v after Redis returned "+
			"(new room %s, started at +%v; joins started every 200 ms: %d; a join before the outage took %v)",
			since(first.done), first.room, since(first.start), first.tried, o.baseline.Round(time.Millisecond))
	}
	if routedOK {
		t.Logf("RECOVERY first raw GET /rtc of a new room that the proxy placed and routed (polled every 50 ms): %v after Redis returned", since(routedAt))
	} else {
		t.Errorf("no raw GET /rtc of a new room was routed within 30 s of Redis returning; last: %v", routed)
	}
	if upOK {
		t.Logf("RECOVERY proxy logged %q %v after Redis returned", logRedisUp, since(upAt))
	} else {
		t.Errorf("the proxy did not log %q within 30 s of Redis returning", logRedisUp)
	}
	if nodesOK {
		t.Logf("RECOVERY every LiveKit node had written fresh stats %v after Redis returned", since(nodesAt))
	} else {
		t.Logf("RECOVERY the LiveKit nodes did not all write fresh stats within 30 s of Redis returning")
	}
	if proxyOK {
		t.Logf("RECOVERY the proxy's /livekit/nodes: Redis reachable, every node routable with fresh stats %v after Redis returned", since(proxyAt))
	} else {
		t.Errorf("the proxy's /livekit/nodes did not list every node as routable with fresh stats within 30 s of Redis returning")
	}
}

// knownRoomsAfter joins each known room through the proxy once Redis is
// back and the proxy sees every node again (recovery waited for that),
// while the participants from before the outage are still in it on node1. Stopped Redis came back empty, so this join decides where the room
// lives: the proxy knew, and must keep it on node1. Otherwise the join must
// follow room_node_map; if LiveKit moved the room meanwhile, a split is
// LiveKit's.
func (o *outageRun) knownRoomsAfter() {
	t, c := o.t, o.c
	for _, p := range o.watched { // LiveKit may make them reconnect as Redis returns
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if ok, _ := p.connected(); ok {
				break
			}
		}
	}
	for _, room := range knownRooms {
		var stayed []string
		for _, p := range o.watched {
			if p.room == room && p.lk.ConnectionState() == lksdk.ConnectionStateConnected {
				stayed = append(stayed, p.identity)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		before := harness.RoomNode(ctx, o.redis.Client(), room)
		cancel()
		lk, err := harness.TryJoin(c.wsURL(), room, room+"-after")
		if err != nil {
			t.Errorf("join of known room %s through the proxy after Redis returned: %v", room, err)
			continue
		}
		node := lk.ServerInfo().GetNodeId()
		var missed []string
		for _, id := range stayed {
			if !sees(lk, id, 5*time.Second) {
				missed = append(missed, id)
			}
		}
		placed := c.placements(room, o.start)
		what := fmt.Sprintf("%s-after joined %s through the proxy on %s (room_node_map before the join: %s); "+
			"connected since before the outage, when the room was on %s: %v; it sees %v; placements since the outage began: %v",
			room, room, c.name(node), c.name(before), c.name(o.host.ID()), stayed, remoteIdentities(lk), placed)
		lk.Disconnect()
		byLiveKit := slices.ContainsFunc(placed, func(s string) bool { return strings.HasSuffix(s, "LiveKit selected "+c.name(before)) })
		switch {
		case before == "" && len(missed) > 0:
			t.Errorf("room split: room_node_map had lost %s (Redis came back empty) and the proxy, which knew its node, placed it anew: %s", room, what)
		case before != "" && node != before:
			t.Errorf("the join did not follow room_node_map: %s", what)
		case len(missed) > 0 && !byLiveKit:
			t.Errorf("room split by the proxy (no LiveKit node logged placing it on %s): %s", c.name(before), what)
		case len(missed) > 0:
			t.Logf("LIVEKIT split the room (it re-placed %s while its participants stayed on %s): %s", room, c.name(o.host.ID()), what)
		default:
			t.Logf("after the outage, %s", what)
		}
	}
}

// checkCaddyUp: GET / through Caddy reached a node all through the outage.
func (o *outageRun) checkCaddyUp() {
	var answers []string
	for _, r := range o.roots {
		if r.err != nil || (r.status != http.StatusOK && r.status != http.StatusNotAcceptable) {
			o.t.Errorf("GET / through Caddy %v into the outage: %d %q %v; want a node's answer (200 or 406)", r.at, r.status, r.body, r.err)
		}
		answers = append(answers, fmt.Sprintf("+%v %d", r.at, r.status))
	}
	o.t.Logf("GET / through Caddy during the outage: %s", strings.Join(answers, ", "))
}

// checkRequests: every raw request was answered within the bound; once the
// proxy knew, known rooms went to node1 and new rooms got the JSON 503; and
// the idle known room was routed from its expired cached placement.
func (o *outageRun) checkRequests() {
	t := o.t
	detected := o.returned
	if downs := logsWithMsg(o.c.caddyLog(), logRedisDown); len(downs) > 0 {
		detected = downs[0].time()
		t.Logf("proxy logged %q %v after the outage began", logRedisDown, detected.Sub(o.start).Round(time.Millisecond))
	}
	o.trickle.check(t, o.host.ID(), o.start, detected, o.returned)
	bound := redisTimeout + boundMargin
	if res := o.idle; res.err != nil || res.node != o.host.ID() || res.dur >= bound {
		t.Errorf("known room whose cached placement had expired (no join for 6 s), GET /rtc as the outage began: %v; "+
			"want it routed to its node %s from the cache within %v", res, o.c.name(o.host.ID()), bound)
	} else {
		t.Logf("known room whose cached placement had expired, GET /rtc as the outage began: %v", res)
	}
}

// checkWebSockets: the proxy never closes an established WebSocket. If the
// participant through the proxy lost its connection while the one connected
// to the node directly kept it, the proxy did; if both did, LiveKit did.
func (o *outageRun) checkWebSockets() {
	for _, room := range knownRooms {
		var viaProxy, direct *participant
		for _, p := range o.watched {
			switch {
			case p.room != room:
			case p.via == "proxy":
				viaProxy = p
			default:
				direct = p
			}
		}
		switch {
		case !o.kept[viaProxy] && o.kept[direct]:
			o.t.Errorf("%s lost its connection during the outage while %s, connected to the node directly, kept it:\n  %v\n  %v",
				viaProxy.identity, direct.identity, viaProxy, direct)
		case !o.kept[viaProxy] || !o.kept[direct]:
			o.t.Logf("LIVEKIT dropped participants of %s during the outage, not only the one through the proxy:\n  %v\n  %v",
				room, viaProxy, direct)
		default:
			o.t.Logf("participants of %s connected through the whole outage (events until now):\n  %v\n  %v", room, viaProxy, direct)
		}
	}
}

// checkLog: the outage is logged once, not per request, and nothing else in
// Caddy's output is about Redis while it lasts.
func (o *outageRun) checkLog() {
	t := o.t
	entries := o.c.caddyLog()
	downs, ups := logsWithMsg(entries, logRedisDown), logsWithMsg(entries, logRedisUp)
	if len(downs) != 1 || len(ups) != 1 {
		t.Errorf("Caddy logged %q %d times and %q %d times over one outage; want once each", logRedisDown, len(downs), logRedisUp, len(ups))
	}
	counts := map[string]int{}
	var aboutRedis []string
	for _, line := range o.logLines {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg == "" {
			e.Msg = "(not JSON)"
		}
		counts[strings.TrimSpace(e.Level+" "+e.Msg)]++
		// the recovery line may come before the test has seen Redis answer
		if e.Msg != logRedisDown && e.Msg != logRedisUp && strings.Contains(strings.ToLower(line), "redis") {
			aboutRedis = append(aboutRedis, line)
		}
	}
	if len(aboutRedis) > 0 {
		t.Errorf("Caddy's output during the outage has %d lines about Redis besides the one state change, e.g.:\n  %s",
			len(aboutRedis), strings.Join(aboutRedis[:min(3, len(aboutRedis))], "\n  "))
	}
	t.Logf("Caddy's output during the outage (%d raw requests, %d SDK joins): %s",
		len(o.trickle.rawResults), len(o.trickle.joinResults), tally(counts))
}

// tally formats counts as "3x a; 1x b", sorted.
func tally(counts map[string]int) string {
	var lines []string
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// trickle sends a join attempt every 500 ms: a raw GET /rtc, and an SDK join
// (at most 4 SDK joins at once: during a hang each one waits on LiveKit).
type trickle struct {
	c *cluster

	raws, joins sync.WaitGroup
	inflight    atomic.Int32

	mu          sync.Mutex
	rawResults  []rtcResult
	joinResults []joinResult
	skipped     int
}

type joinResult struct {
	room  string
	start time.Time
	dur   time.Duration
	err   error
}

func (tr *trickle) run(stop <-chan struct{}) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		room := trickleRooms[i%len(trickleRooms)]
		tr.raws.Add(1)
		go func() {
			defer tr.raws.Done()
			res := tr.c.rawRTC(room, fmt.Sprintf("raw-%d", i))
			tr.mu.Lock()
			tr.rawResults = append(tr.rawResults, res)
			tr.mu.Unlock()
		}()
		if tr.inflight.Load() < 4 {
			tr.inflight.Add(1)
			tr.joins.Add(1)
			go func() {
				defer tr.joins.Done()
				defer tr.inflight.Add(-1)
				start := time.Now()
				lk, err := harness.TryJoin(tr.c.wsURL(), room, fmt.Sprintf("sdk-%d", i))
				if err == nil {
					lk.Disconnect()
				}
				tr.mu.Lock()
				tr.joinResults = append(tr.joinResults, joinResult{room, start, time.Since(start), err})
				tr.mu.Unlock()
			}()
		} else {
			tr.mu.Lock()
			tr.skipped++
			tr.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// waitJoins waits for the trickle's SDK joins, which may still wait on a
// node that waited on Redis.
func (tr *trickle) waitJoins(t *testing.T, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		tr.joins.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Errorf("SDK joins of the trickle still running %v after Redis returned", timeout)
	}
}

// check asserts on the raw requests of the trickle: each one finished within
// redis_timeout + margin; once the proxy knew that Redis was gone (detected),
// known rooms went to host and new rooms got the JSON 503. Requests before
// that are bounded too but only logged, as are the SDK joins.
func (tr *trickle) check(t *testing.T, host string, start, detected, returned time.Time) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	at := func(r rtcResult) time.Duration { return r.start.Sub(start).Round(time.Millisecond) }
	bound := redisTimeout + boundMargin
	var maxDur, maxEarly time.Duration
	var early []string
	routed, refused := 0, 0
	for _, r := range tr.rawResults {
		known := slices.Contains(knownRooms, r.room)
		if r.err != nil || r.dur >= bound {
			t.Errorf("raw GET /rtc +%v into the outage: %v; want an answer within %v", at(r), r, bound)
		}
		maxDur = max(maxDur, r.dur)
		if r.start.Before(detected) {
			maxEarly = max(maxEarly, r.dur)
			early = append(early, fmt.Sprintf("+%v %v", at(r), r))
			continue
		}
		if r.start.Add(r.dur).After(returned) {
			continue
		}
		switch {
		case known && (r.node != host || r.status != http.StatusNotFound):
			t.Errorf("known room during the outage, +%v: %v; want it routed to its node %s (which answers 404 to a GET without upgrade)",
				at(r), r, tr.c.name(host))
		case known:
			routed++
		case !redisRefusal(r):
			t.Errorf("new room during the outage, +%v: %v; want 503 with Retry-After and a JSON error naming Redis", at(r), r)
		default:
			refused++
		}
	}
	t.Logf("BOUND raw GET /rtc during the outage: %d requests, max %v (before the proxy noticed: max %v); bound %v",
		len(tr.rawResults), maxDur.Round(time.Millisecond), maxEarly.Round(time.Millisecond), bound)
	t.Logf("after the proxy noticed: %d known-room requests routed to their node, %d new-room requests refused with 503", routed, refused)
	t.Logf("raw requests before the proxy noticed the outage:\n  %s", strings.Join(early, "\n  "))

	var ok int
	var maxJoin time.Duration
	errs := map[string]int{}
	for _, j := range tr.joinResults {
		maxJoin = max(maxJoin, j.dur)
		if j.err == nil {
			ok++
			t.Logf("SDK join of %s started %v into the outage succeeded after %v",
				j.room, j.start.Sub(start).Round(time.Millisecond), j.dur.Round(time.Millisecond))
			continue
		}
		kind := "new room"
		if slices.Contains(knownRooms, j.room) {
			kind = "known room"
		}
		msg := strings.Join(strings.Fields(j.err.Error()), " ")
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		errs[kind+": "+msg]++
	}
	t.Logf("SDK joins of the trickle: %d started (%d skipped, 4 already waiting), %d succeeded, longest %v; failures: %s",
		len(tr.joinResults), tr.skipped, ok, maxJoin.Round(time.Millisecond), tally(errs))
}
