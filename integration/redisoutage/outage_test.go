package redisoutage

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
	watched  []*harness.Client
	baseline time.Duration // an SDK join through the proxy before the outage

	start, returned time.Time
	kept            map[*harness.Client]bool // connected through the whole outage
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
	o := &outageRun{t: t, c: &cluster{Stack: harness.StartStack(t, 2, harness.NodeOptions{})}}
	o.redis = o.c.Redis
	o.host = o.c.Nodes[0]
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
	o.c.startProxy(t, "address "+o.redis.Addr())

	harness.Join(t, o.c.proxy.WS(), idleRoom, idleRoom+"-via-proxy")
	idleSince := time.Now()
	for _, room := range knownRooms {
		start := time.Now()
		viaProxy := harness.MustConnect(t, o.c.proxy.WS(), room, room+"-via-proxy", 0)
		o.baseline = max(o.baseline, time.Since(start))
		direct := harness.MustConnect(t, o.host.URL(), room, room+"-direct", 0)
		viaProxy.Via, direct.Via = "proxy", "node1 directly"
		o.watched = append(o.watched, viaProxy, direct)
	}
	// idleRoom's cached placement expires; the checks below renew the
	// others' (and rotate idleRoom's into the cache's older generation)
	time.Sleep(time.Until(idleSince.Add(6 * time.Second)))
	for _, room := range knownRooms {
		if res := o.c.rawRTC(room, "check"); res.node != o.host.ID() {
			t.Fatalf("before the outage, GET /rtc for %s: %v; want it routed to %s", room, res, o.c.Name(o.host.ID()))
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
	logStart := len(o.c.proxy.LogLines())
	o.start = time.Now()
	kind.begin(o.redis)
	o.t.Logf("redis %s at %s for %v", kind.name, o.start.Format("15:04:05.000"), length)
	idle := make(chan rtcResult, 1)
	go func() { idle <- o.c.rawRTC(idleRoom, "idle") }()
	go func() {
		defer close(trickled)
		o.trickle.run(stop)
	}()
	end := o.start.Add(length)
	harness.PollEvery(length, 0, func() bool { // every 5 s, the last at the end
		time.Sleep(min(5*time.Second, time.Until(end)))
		status, body, err := o.c.getRoot()
		o.roots = append(o.roots, rootCheck{time.Since(o.start).Round(time.Millisecond), status, body, err})
		return !time.Now().Before(end)
	})
	close(stop)
	<-trickled
	o.trickle.raws.Wait()
	o.idle = <-idle
	o.kept = map[*harness.Client]bool{}
	for _, p := range o.watched {
		ok, left := p.Connected()
		o.kept[p] = ok && left.IsZero()
	}

	kind.end(o.redis)
	o.returned = time.Now()
	o.logLines = o.c.proxy.LogLines()[logStart:]
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
