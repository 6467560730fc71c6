package redisoutage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

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
	if downs := o.c.proxy.Logged(logRedisDown); len(downs) > 0 {
		detected = downs[0].Time()
		t.Logf("proxy logged %q %v after the outage began", logRedisDown, detected.Sub(o.start).Round(time.Millisecond))
	}
	o.trickle.check(t, o.host.ID(), o.start, detected, o.returned)
	bound := redisTimeout + boundMargin
	if res := o.idle; res.err != nil || res.node != o.host.ID() || res.dur >= bound {
		t.Errorf("known room whose cached placement had expired (no join for 6 s), GET /rtc as the outage began: %v; "+
			"want it routed to its node %s from the cache within %v", res, o.c.Name(o.host.ID()), bound)
	} else {
		t.Logf("known room whose cached placement had expired, GET /rtc as the outage began: %v", res)
	}
}

// checkWebSockets: the proxy never closes an established WebSocket. If the
// participant through the proxy lost its connection while the one connected
// to the node directly kept it, the proxy did; if both did, LiveKit did.
func (o *outageRun) checkWebSockets() {
	for _, room := range knownRooms {
		var viaProxy, direct *harness.Client
		for _, p := range o.watched {
			switch {
			case p.Room != room:
			case p.Via == "proxy":
				viaProxy = p
			default:
				direct = p
			}
		}
		switch {
		case !o.kept[viaProxy] && o.kept[direct]:
			o.t.Errorf("%s lost its connection during the outage while %s, connected to the node directly, kept it:\n  %v\n  %v",
				viaProxy.Identity, direct.Identity, viaProxy, direct)
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
	entries := o.c.proxy.LogEntries()
	downs, ups := harness.Messages(entries, logRedisDown), harness.Messages(entries, logRedisUp)
	if len(downs) != 1 || len(ups) != 1 {
		t.Errorf("Caddy logged %q %d times and %q %d times over one outage; want once each", logRedisDown, len(downs), logRedisUp, len(ups))
	}
	counts := map[string]int{}
	var aboutRedis []string
	for _, line := range o.logLines {
		var e harness.LogEntry
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

// knownRoomsAfter joins each known room through the proxy once Redis is
// back and the proxy sees every node again (recovery waited for that),
// while the participants from before the outage are still in it on node1. Stopped Redis came back empty, so this join decides where the room
// lives: the proxy knew, and must keep it on node1. Otherwise the join must
// follow room_node_map; if LiveKit moved the room meanwhile, a split is
// LiveKit's.
func (o *outageRun) knownRoomsAfter() {
	t, c := o.t, o.c
	for _, p := range o.watched { // LiveKit may make them reconnect as Redis returns
		harness.PollEvery(5*time.Second, 100*time.Millisecond, func() bool { ok, _ := p.Connected(); return ok })
	}
	for _, room := range knownRooms {
		var stayed []string
		for _, p := range o.watched {
			if p.Room == room && p.LK.ConnectionState() == lksdk.ConnectionStateConnected {
				stayed = append(stayed, p.Identity)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		before := harness.RoomNode(ctx, o.redis.Client(), room)
		cancel()
		lk, err := harness.TryJoin(c.proxy.WS(), room, room+"-after")
		if err != nil {
			t.Errorf("join of known room %s through the proxy after Redis returned: %v", room, err)
			continue
		}
		node := lk.ServerInfo().GetNodeId()
		var missed []string
		for _, id := range stayed {
			if !harness.Sees(lk, id, 5*time.Second) {
				missed = append(missed, id)
			}
		}
		placed := c.placements(room, o.start)
		what := fmt.Sprintf("%s-after joined %s through the proxy on %s (room_node_map before the join: %s); "+
			"connected since before the outage, when the room was on %s: %v; it sees %v; placements since the outage began: %v",
			room, room, c.Name(node), c.Name(before), c.Name(o.host.ID()), stayed, harness.RemoteIdentities(lk), placed)
		lk.Disconnect()
		byLiveKit := slices.ContainsFunc(placed, func(s string) bool { return strings.HasSuffix(s, "LiveKit selected "+c.Name(before)) })
		switch {
		case before == "" && len(missed) > 0:
			t.Errorf("room split: room_node_map had lost %s (Redis came back empty) and the proxy, which knew its node, placed it anew: %s", room, what)
		case before != "" && node != before:
			t.Errorf("the join did not follow room_node_map: %s", what)
		case len(missed) > 0 && !byLiveKit:
			t.Errorf("room split by the proxy (no LiveKit node logged placing it on %s): %s", c.Name(before), what)
		case len(missed) > 0:
			t.Logf("LIVEKIT split the room (it re-placed %s while its participants stayed on %s): %s", room, c.Name(o.host.ID()), what)
		default:
			t.Logf("after the outage, %s", what)
		}
	}
}
