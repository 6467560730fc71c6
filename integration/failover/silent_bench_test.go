package failover

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// BenchmarkSilentNode measures what participants feel when the node hosting
// their room stops, through livekit_lb (defaults) and, over the same nodes in
// the same run, through stock Caddy reverse_proxy (round robin, passive
// health). Each trial puts three server-sdk-go participants in a fresh room,
// then freezes (SIGSTOP), cuts off (iptables DROP) or kills (SIGKILL) the
// room's node, and times from that moment:
//
//	back   every participant reconnected (OnReconnected) and lists the others
//	media  the same, with its WebRTC transport connected again (ICE)
//	join   a new participant's signal join (JoinResponse) succeeded
//
// A fourth mode pauses the node for 0.5 s and counts the participants who
// lost their connection. Trials alternate between the proxies; the stopped
// node is restarted after each. Figures are printed as a table and reported
// as metrics (seconds, worst trial); nothing is asserted but that a trial
// ran. LKLB_FAILOVER_TRIALS sets the trials per mode and proxy (default 10;
// -short, CI's smoke run: one trial each, livekit_lb only);
// LKLB_SILENT_PARTICIPANTS the participants per room (default 3);
// LKLB_SILENT_MODES and LKLB_SILENT_PROXIES narrow the run (comma lists of
// stop,partition,kill,pause and livekit_lb,stock).
//
//	cd integration && go test ./failover/ -run '^$' -bench SilentNode -benchtime 1x -timeout 60m
func BenchmarkSilentNode(b *testing.B) {
	trials := 1
	if !testing.Short() {
		trials = envInt(b, "LKLB_FAILOVER_TRIALS", 10)
	}
	c := startCluster(b, 3)
	lbURL, stockURL := startLBAndStock(b, c)
	proxies := []struct{ name, url string }{{"livekit_lb", lbURL}, {"stock", stockURL}}
	if testing.Short() {
		proxies = proxies[:1]
	}
	if only := os.Getenv("LKLB_SILENT_PROXIES"); only != "" {
		proxies = slices.DeleteFunc(proxies, func(p struct{ name, url string }) bool { return !slices.Contains(strings.Split(only, ","), p.name) })
	}
	modes := []string{howStop, howPartition, howKill, "pause"}
	if only := os.Getenv("LKLB_SILENT_MODES"); only != "" {
		modes = slices.DeleteFunc(modes, func(m string) bool { return !slices.Contains(strings.Split(only, ","), m) })
	}
	participants := envInt(b, "LKLB_SILENT_PARTICIPANTS", 3)

	type key struct{ how, proxy string }
	results := map[key][]silentResult{}
	dropped := map[string][]int{}
	for b.Loop() {
		for i := range trials {
			for _, how := range []string{howStop, howPartition, howKill} {
				if !slices.Contains(modes, how) {
					continue
				}
				for _, p := range proxies {
					room := fmt.Sprintf("%s-%s-%02d", how, strings.ReplaceAll(p.name, "_", ""), i+1)
					r := silentTrialWithin(b, c, []string{p.url}, how, room, participants, false, 45*time.Second)
					results[key{how, p.name}] = append(results[key{how, p.name}], r)
					b.Logf("%-9s %-10s trial %2d: back %v, media %v, join %v", how, p.name, i+1, secs(r.back), secs(r.media), secs(r.join))
				}
			}
			for _, p := range proxies {
				if slices.Contains(modes, "pause") {
					dropped[p.name] = append(dropped[p.name], pauseTrial(b, c, p.url, fmt.Sprintf("pause-%s-%02d", strings.ReplaceAll(p.name, "_", ""), i+1), participants))
				}
			}
		}
	}

	var out strings.Builder
	fmt.Fprintf(&out, "\n%d trials each, %d participants per room; seconds from the failure (worst / median / best); - = not within 45 s\n", trials, participants)
	fmt.Fprintf(&out, "%-10s %-11s %-22s %-22s %-22s\n", "failure", "proxy", "everyone back", "media too", "new join")
	for _, how := range []string{howStop, howPartition, howKill} {
		for _, p := range proxies {
			rs := results[key{how, p.name}]
			if len(rs) == 0 {
				continue
			}
			var back, media, join []time.Duration
			for _, r := range rs {
				back, media, join = append(back, r.back), append(media, r.media), append(join, r.join)
			}
			fmt.Fprintf(&out, "%-10s %-11s %-22s %-22s %-22s\n", how, p.name, spreadOf(back), spreadOf(media), spreadOf(join))
			name := strings.ReplaceAll(p.name, "_", "")
			b.ReportMetric(worst(back), name+"-"+how+"-back-max-s")
			b.ReportMetric(worst(join), name+"-"+how+"-join-max-s")
		}
	}
	for _, p := range proxies {
		if len(dropped[p.name]) == 0 {
			continue
		}
		total := 0
		for _, d := range dropped[p.name] {
			total += d
		}
		fmt.Fprintf(&out, "pause 0.5s %-11s %d of %d participants lost their connection\n", p.name, total, participants*len(dropped[p.name]))
		b.ReportMetric(float64(total), strings.ReplaceAll(p.name, "_", "")+"-pause-drops")
	}
	fmt.Print(out.String())
}

// pauseTrial puts participants in room through url, pauses the
// room's node for 0.5 s and returns how many lost their connection.
func pauseTrial(b *testing.B, c *harness.Stack, url, room string, participants int) int {
	b.Helper()
	var clients []*harness.Client
	for i := range participants {
		cl, err := harness.Connect(url, room, fmt.Sprintf("%s-p%d", room, i+1), 10*time.Second)
		if err != nil {
			b.Fatalf("join %s: %v", room, err)
		}
		defer cl.LK.Disconnect()
		clients = append(clients, cl)
	}
	node := c.NodeByID(c.RoomNode(room))
	if node == nil {
		b.Fatalf("room %s has no running node", room)
	}
	node.Pause()
	time.Sleep(500 * time.Millisecond)
	node.Resume()
	time.Sleep(3 * time.Second)
	lost := 0
	for _, cl := range clients {
		if len(cl.Drops()) > 0 || cl.Disconnects() > 0 {
			lost++
		}
	}
	return lost
}

// spreadOf formats worst / median / best in seconds; a zero (never) is "-".
func spreadOf(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.SortFunc(s, func(a, b time.Duration) int {
		switch { // never (0) sorts last
		case a == b:
			return 0
		case a == 0:
			return 1
		case b == 0:
			return -1
		case a < b:
			return -1
		}
		return 1
	})
	return fmt.Sprintf("%s / %s / %s", secs(s[len(s)-1]), secs(s[len(s)/2]), secs(s[0]))
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

// worst is the largest duration in seconds; a trial that never finished counts as 45 s.
func worst(ds []time.Duration) float64 {
	m := time.Duration(0)
	for _, d := range ds {
		if d == 0 {
			d = 45 * time.Second
		}
		m = max(m, d)
	}
	return m.Seconds()
}
