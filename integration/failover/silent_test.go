package failover

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestSilentNode: the node hosting a room of three participants, connected
// through livekit_lb, is frozen (SIGSTOP), cut off the network, or killed.
// Asserted: every participant is back in the room, on the one node that
// room_node_map now names, signalling straight to it, seeing the others;
// a new participant's join succeeds there. The times are logged; the
// benchmark below measures them over many trials beside stock Caddy.
func TestSilentNode(t *testing.T) {
	c := startCluster(t, 3)
	caddy := c.StartProxy(t, harness.LB{})
	for _, how := range []string{howStop, howPartition, howKill} {
		r := silentTrial(t, c, []string{caddy.WS()}, how, "silent-"+how, 3, true)
		t.Logf("%-9s everyone back %v (media %v), new join %v (%d tries %v); %s -> %s", how, r.back.Round(time.Millisecond),
			r.media.Round(time.Millisecond), r.join.Round(time.Millisecond), r.joinTries, r.joinErrs, c.Name(r.from), c.Name(r.to))
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
	a, b := c.StartProxy(t, harness.LB{}), c.StartProxy(t, harness.LB{})
	for i := range 2 {
		r := silentTrial(t, c, []string{a.WS(), b.WS()}, howStop, fmt.Sprintf("two-proxies-%d", i+1), 4, true)
		t.Logf("trial %d: everyone back %v, new join %v; %s -> %s", i+1, r.back.Round(time.Millisecond),
			r.join.Round(time.Millisecond), c.Name(r.from), c.Name(r.to))
	}
}

// TestBriefPauseKeepsEveryone: the room's node is paused for 0.5 s
// (SIGSTOP, SIGCONT), five times, then the whole machine is kept at 100 %
// CPU for 3 s. Nobody may lose the connection, the room stays where it is,
// and the proxy ends no session.
func TestBriefPauseKeepsEveryone(t *testing.T) {
	c := startCluster(t, 3)
	caddy := c.StartProxy(t, harness.LB{})
	var clients []*harness.Client
	for i := range 3 {
		clients = append(clients, harness.MustConnect(t, caddy.WS(), "brief", fmt.Sprintf("brief-p%d", i+1), connectTimeout))
	}
	host := c.RoomNode("brief")
	node := c.NodeByID(host)
	for range 5 {
		node.Pause()
		time.Sleep(500 * time.Millisecond)
		node.Resume()
		time.Sleep(time.Second)
	}
	busy(3 * time.Second)
	time.Sleep(3 * time.Second) // time for a drop to show
	for _, cl := range clients {
		if d := cl.Drops(); len(d) > 0 || cl.Disconnects() > 0 {
			t.Errorf("%s lost its connection: %v (disconnected %d)", cl.Identity, d, cl.Disconnects())
		}
	}
	if now := c.RoomNode("brief"); now != host {
		t.Errorf("room moved from %s to %s", c.Name(host), c.Name(now))
	}
	if !harness.AllSeeEachOther(clients) {
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
