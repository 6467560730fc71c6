package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// report prints the table and reports the figures as metrics.
func (s *scaleBench) report() {
	b, cases, starts, pairs, rounds, perRound, conc := s.b, s.cases, s.starts, s.npairs, s.rounds, s.perRound, s.conc
	var rows [][]string
	for _, sc := range cases {
		rows = append(rows, []string{
			strconv.Itoa(sc.rooms), fmt.Sprintf("%.1f", sc.fill.Seconds()), sc.redisMem, ms(sc.hget.p50()), ms(sc.hget.p99()),
			fmt.Sprintf("%.0f", msf(sc.startups.p50())),
			ms(sc.first.p50()), ms(sc.first.p99()), ms(sc.cached.p50()), ms(sc.cached.p99()),
			fmt.Sprintf("%.0f", sc.load.rate()), fmt.Sprintf("%.0f", float64(sc.load.cpuPer())/1e3),
			fmt.Sprintf("%.1f%%", 100*sc.idleCPU),
			fmt.Sprintf("%.1f", float64(sc.rssIdle.rss)/1024), fmt.Sprintf("%.1f", float64(sc.rssLoaded.rss)/1024),
			fmt.Sprintf("%.1f", float64(sc.heap)/1024), outcomes(sc.outcomes),
		})
		metrics(b, fmt.Sprintf("rooms=%d", sc.rooms), map[string]float64{
			"startup-ms":        msf(sc.startups.p50()),
			"first-p50-ms":      msf(sc.first.p50()),
			"first-p99-ms":      msf(sc.first.p99()),
			"cached-p50-ms":     msf(sc.cached.p50()),
			"cached-p99-ms":     msf(sc.cached.p99()),
			"first-upgrades/s":  sc.load.rate(),
			"caddy-cpu-us/join": float64(sc.load.cpuPer()) / 1e3,
			"rss-MiB":           float64(sc.rssLoaded.rss) / 1024,
			"heap-MiB":          float64(sc.heap) / 1024,
			"idle-cpu-%":        100 * sc.idleCPU,
		})
	}
	if os.Getenv("LKBENCH_STARTS") != "" {
		for _, sc := range cases {
			fmt.Printf("starts with %d rooms: %v\n", sc.rooms, sc.startups)
		}
	}
	table(fmt.Sprintf("livekit_lb, 100 fake nodes, N rooms in room_node_map (one Redis and one Caddy per N, measured in alternation):\n"+
		"median of %d starts; %d rooms asked twice with one client; %d x %d first requests with %d clients\n(%s)",
		starts, pairs, rounds, perRound, conc, machine()),
		[]string{"rooms", "fill s", "redis mem", "HGET p50 ms", "HGET p99 ms", "start->routed ms", "first p50 ms", "first p99 ms", "cached p50 ms", "cached p99 ms",
			"first upgrades/s", "Caddy CPU us/first", "idle CPU", "RSS idle MiB", "RSS loaded MiB", "heap MiB", "outcomes (pairs)"}, rows)
}

// check fails on failed exchanges and on exchanges that landed on another
// node than their room's.
func (s *scaleBench) check() {
	b, cases := s.b, s.cases
	for _, sc := range cases {
		if sc.errs > 0 {
			b.Errorf("%d rooms: %d exchanges failed, first: %v", sc.rooms, sc.errs, sc.firstErr)
		}
		if err := sc.load.err(); err != nil {
			b.Errorf("%d rooms, load: %v", sc.rooms, err)
		}
		if sc.load.onNode != sc.load.done {
			b.Errorf("%d rooms: %d of %d exchanges landed on another node than their room's", sc.rooms, sc.load.done-sc.load.onNode, sc.load.done)
		}
	}
}

// outcomes formats the outcome counts, e.g. "found:1000 cached:1000".
func outcomes(m map[string]int) string {
	var parts []string
	for _, k := range []string{"found", "cached", "placed", "followed", "replaced", "relayed", "no_room", ""} {
		if n := m[k]; n > 0 {
			if k == "" {
				k = "?"
			}
			parts = append(parts, fmt.Sprintf("%s:%d", k, n))
		}
	}
	return strings.Join(parts, " ")
}
