package failover

import (
	"fmt"
	"slices"
	"strings"
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
func silentTrial(t testing.TB, c *harness.Stack, urls []string, how, room string, participants int, check bool) silentResult {
	return silentTrialWithin(t, c, urls, how, room, participants, check, time.Minute)
}

// silentTrialWithin is silentTrial that waits at most limit for everyone to be back.
func silentTrialWithin(t testing.TB, c *harness.Stack, urls []string, how, room string, participants int, check bool, limit time.Duration) silentResult {
	t.Helper()
	r := &silentRun{t: t, c: c, how: how, room: room, limit: limit}
	defer r.disconnect()
	r.joinAll(urls, participants)
	r.stopHost()
	defer r.restoreHost()
	joined := r.keepJoining(urls[0])
	r.waitBack()
	joinedAt := <-joined
	r.res.joinTries = int(r.tries.Load())
	r.res.to = c.RoomNode(room)
	if check {
		r.check(joinedAt)
	}
	return r.res
}

// silentRun is one trial of silentTrialWithin.
type silentRun struct {
	t         testing.TB
	c         *harness.Stack
	how, room string
	limit     time.Duration

	clients []*harness.Client
	host    *harness.Node
	stopped time.Time
	tries   atomic.Int32
	res     silentResult
	// when each client was back in the room, and with its media too
	backAt, mediaAt []time.Duration
}

func (r *silentRun) disconnect() {
	for _, cl := range r.clients {
		cl.LK.Disconnect()
	}
}

// joinAll connects the participants, in turn through urls, and waits until
// they see each other.
func (r *silentRun) joinAll(urls []string, participants int) {
	r.t.Helper()
	for i := range participants {
		cl, err := harness.Connect(urls[i%len(urls)], r.room, fmt.Sprintf("%s-p%d", r.room, i+1), connectTimeout)
		if err != nil {
			r.t.Fatalf("join %s before the failure: %v", r.room, err)
		}
		r.clients = append(r.clients, cl)
	}
	r.res.from = r.c.RoomNode(r.room)
	r.host = r.c.NodeByID(r.res.from)
	if r.host == nil {
		r.t.Fatalf("room_node_map[%s] = %s, not a running node", r.room, r.c.Name(r.res.from))
	}
	if !harness.Poll(10*time.Second, func() bool { return harness.AllSeeEachOther(r.clients) }) {
		r.t.Fatalf("%s: participants do not see each other before the failure", r.room)
	}
}

// stopHost stops the room's node as r.how says.
func (r *silentRun) stopHost() {
	r.stopped = time.Now()
	switch r.how {
	case howStop:
		r.host.Pause()
	case howPartition:
		r.host.Cut()
	case howKill:
		r.host.Kill()
	}
}

// restoreHost undoes stopHost and restarts the node.
func (r *silentRun) restoreHost() {
	switch r.how {
	case howStop:
		r.host.Resume()
	case howPartition:
		r.host.Heal()
	}
	r.host.Restart()
}

// keepJoining has a new participant keep trying to join, as the JS SDK does
// (a signal WebSocket up to LiveKit's JoinResponse), with the SDK's default
// timeout. The channel gets the node of the join that succeeded, or is
// closed at the time limit.
func (r *silentRun) keepJoining(url string) <-chan string {
	joined := make(chan string, 1)
	go func() {
		defer close(joined)
		harness.PollEvery(time.Until(r.stopped.Add(r.limit)), 20*time.Millisecond, func() bool {
			node, err := harness.SignalJoin(url, r.room, fmt.Sprintf("%s-new%d", r.room, r.tries.Add(1)), 5*time.Second)
			if err == nil {
				r.res.join = time.Since(r.stopped)
				joined <- node
				return true
			}
			r.res.joinErrs = append(r.res.joinErrs, fmt.Sprintf("%v: %v", time.Since(r.stopped).Round(time.Millisecond), err))
			return false
		})
	}()
	return joined
}

// waitBack waits until every client is back. signal: the SDK reconnected
// and its room lists every other participant (what the SDK's callbacks
// tell an app); media: its WebRTC transport is connected again too (ICE,
// the same second in every mode).
func (r *silentRun) waitBack() {
	r.backAt = make([]time.Duration, len(r.clients))
	r.mediaAt = make([]time.Duration, len(r.clients))
	harness.PollEvery(time.Until(r.stopped.Add(r.limit)), 5*time.Millisecond, func() bool {
		all := true
		for i, cl := range r.clients {
			if r.backAt[i] == 0 && cl.ReconnectedSince(r.stopped) && cl.Sees(r.clients) {
				r.backAt[i] = time.Since(r.stopped)
			}
			if r.mediaAt[i] == 0 && r.backAt[i] != 0 && cl.LK.ConnectionState() == lksdk.ConnectionStateConnected {
				r.mediaAt[i] = time.Since(r.stopped)
			}
			all = all && r.mediaAt[i] != 0
		}
		return all
	})
	r.res.back, r.res.media = slices.Max(r.backAt), slices.Max(r.mediaAt)
	if slices.Contains(r.backAt, 0) {
		r.res.back = 0 // not everyone came back
	}
	if slices.Contains(r.mediaAt, 0) {
		r.res.media = 0
	}
	if testing.Verbose() {
		for i, cl := range r.clients {
			var ds []string
			for _, d := range cl.Drops() {
				ds = append(ds, fmt.Sprintf("%s@%v", d.Reason, d.At.Sub(r.stopped).Round(time.Millisecond)))
			}
			r.t.Logf("%s: back at %v, media at %v; %s", cl.Identity, r.backAt[i].Round(time.Millisecond), r.mediaAt[i].Round(time.Millisecond), strings.Join(ds, " "))
		}
	}
}

// check asserts that everyone is back, on the room's new node, and that the
// new participant joined there at the first try.
func (r *silentRun) check(joinedAt string) {
	t, c, how, room, res := r.t, r.c, r.how, r.room, r.res
	t.Helper()
	for i, cl := range r.clients {
		if r.mediaAt[i] == 0 {
			t.Errorf("%s: %s not back in the room within a minute (drops %v)", how, cl.Identity, cl.Drops())
		}
	}
	if res.join == 0 {
		t.Errorf("%s: no new join of %s succeeded within a minute (%d tries)", how, room, res.joinTries)
	} else if joinedAt != res.to {
		t.Errorf("%s: the new join's JoinResponse names %s; room_node_map[%s] = %s", how, c.Name(joinedAt), room, c.Name(res.to))
	}
	// the join sent while the node was dying is sent on inside the same
	// request: the client sees one slower join, not an error
	if res.joinTries != 1 {
		t.Errorf("%s: the new participant needed %d joins; failed: %v", how, res.joinTries, res.joinErrs)
	}
	if res.to == res.from || c.NodeByID(res.to) == nil {
		t.Fatalf("%s: room_node_map[%s] = %s after the failure of %s", how, room, c.Name(res.to), c.Name(res.from))
	}
	newHost := c.NodeByID(res.to)
	for _, cl := range r.clients {
		if !newHost.AcceptedSignal(cl.Identity) {
			t.Errorf("%s: %s is not signalling through the room's new node %s", how, cl.Identity, c.Name(res.to))
		}
		if got := cl.LK.ServerInfo().GetNodeId(); got != res.to {
			t.Errorf("%s: %s's server is %s; room_node_map[%s] = %s", how, cl.Identity, c.Name(got), room, c.Name(res.to))
		}
	}
}
