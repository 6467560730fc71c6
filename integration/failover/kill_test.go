package failover

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// killResult is one trial: the time from SIGKILL of the room's node to the
// first successful join of a new participant, and how many joins it took.
type killResult struct {
	elapsed  time.Duration
	lastTry  time.Duration // kill -> start of the join that succeeded
	baseline time.Duration // a join into the same room before the kill, for scale
	attempts int
	relayed  bool // the join's WebSocket landed on a node other than the room's
}

// TestKillRejoin: a room's node is killed (SIGKILL); a new participant
// keeps trying to join the room through the proxy until one join succeeds.
// The time from the kill to that join is measured through livekit_lb and,
// over the same nodes, through stock reverse_proxy (round_robin,
// lb_try_duration 5s, fail_duration 10s). Asserted: the join succeeds and
// the room now lives on a live node that room_node_map names (and, through
// livekit_lb, the join's WebSocket landed on that node).
func TestKillRejoin(t *testing.T) {
	trials := envInt(t, "LKLB_FAILOVER_TRIALS", 10)
	c := startCluster(t, 3)
	lbURL, stockURL := startLBAndStock(t, c)
	proxies := []struct{ mode, url string }{{"livekit_lb", lbURL}, {"stock", stockURL}}
	results := map[string][]killResult{}
	for i := range trials {
		for _, p := range proxies { // alternate, so both see the same machine load
			r := killTrial(t, c, p.mode, p.url, i)
			results[p.mode] = append(results[p.mode], r)
			t.Logf("trial %2d %-10s kill -> joined %v (%d attempts, the last from %v; relayed %v; a join before the kill took %v)",
				i+1, p.mode, r.elapsed.Round(time.Millisecond), r.attempts, r.lastTry.Round(time.Millisecond), r.relayed, r.baseline.Round(time.Millisecond))
		}
	}
	for _, p := range proxies {
		var ds, base []time.Duration
		attempts, relayed := 0, 0
		for _, r := range results[p.mode] {
			ds = append(ds, r.elapsed)
			base = append(base, r.baseline)
			attempts += r.attempts
			if r.relayed {
				relayed++
			}
		}
		t.Logf("%-10s kill -> first successful join: %s; %d join attempts in all; %d of %d joins relayed by another node",
			p.mode, summary(ds), attempts, relayed, len(ds))
		t.Logf("%-10s a join with no failure, for scale: %s", p.mode, summary(base))
	}
}

// killTrial runs one trial through url and restarts the killed node.
func killTrial(t *testing.T, c *harness.Stack, mode, url string, i int) killResult {
	t.Helper()
	room := fmt.Sprintf("kill-%s-%02d", strings.ReplaceAll(mode, "_", ""), i+1)
	var clients []*harness.Client
	defer func() {
		for _, cl := range clients {
			cl.LK.Disconnect()
		}
	}()
	var res killResult
	for _, who := range []string{"a", "b"} {
		start := time.Now()
		cl, err := harness.Connect(url, room, room+"-"+who, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: join %s as %s before the kill: %v", mode, room, room+"-"+who, err)
		}
		res.baseline = time.Since(start) // the second join: the room exists, as after the kill
		clients = append(clients, cl)
	}
	host := c.RoomNode(room)
	dead := c.NodeByID(host)
	if dead == nil {
		t.Fatalf("%s: room_node_map[%s] = %s, not a running node", mode, room, c.Name(host))
	}

	killed := time.Now()
	dead.Kill()
	var err error
	joined, ok := harness.PollValue(time.Until(killed.Add(time.Minute)), harness.PollInterval, func() (cl *harness.Client, ok bool) {
		res.attempts++
		identity := fmt.Sprintf("%s-new%d", room, res.attempts)
		res.lastTry = time.Since(killed)
		cl, err = harness.Connect(url, room, identity, 5*time.Second) // the SDK's default connect timeout
		return cl, err == nil
	})
	if !ok {
		t.Fatalf("%s: no join of %s succeeded within a minute of killing %s (%d attempts; last: %v)",
			mode, room, c.Name(host), res.attempts, err)
	}
	res.elapsed = time.Since(killed)
	clients = append(clients, joined)

	now := c.RoomNode(room)
	switch {
	case now == host:
		t.Errorf("%s: room_node_map[%s] still names the killed %s after a successful join", mode, room, host)
	case c.NodeByID(now) == nil:
		t.Errorf("%s: room_node_map[%s] = %s, not a running node", mode, room, c.Name(now))
	}
	if got := joined.LK.ServerInfo().GetNodeId(); got != now {
		t.Errorf("%s: %s's JoinResponse names %s; room_node_map[%s] = %s", mode, joined.Identity, c.Name(got), room, c.Name(now))
	}
	sig := c.SignalNode(joined.Identity)
	res.relayed = sig != now
	if mode == "livekit_lb" && sig != now {
		t.Errorf("%s: %s signalled through %s; room_node_map[%s] = %s", mode, joined.Identity, c.Name(sig), room, c.Name(now))
	}
	dead.Restart()
	return res
}
