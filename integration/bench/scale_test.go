package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// outcomeHeader carries livekit_lb's routing outcome (cached, found, ...) to
// the client: a deferred response header, applied when the 101 is written.
const outcomeHeader = "X-Bench-Outcome"

func scaleCaddyfile(admin, siteAddr, redisAddr string, nodePort int) string {
	return fmt.Sprintf(`{
	admin %s
}

http://%s {
	header >%s {http.vars.livekit.outcome}
	livekit_lb %s {
		allow_networks 127.0.0.0/8
		api_key `+harness.APIKey+`
		api_secret `+harness.APISecret+`
		node_port %d
	}
}
`, admin, siteAddr, outcomeHeader, redisAddr, nodePort)
}

// scaleCase is one room count: its own Redis and its own Caddy, so that the
// room counts can be measured alternately, under the same noise.
type scaleCase struct {
	rooms int
	redis *harness.Redis
	caddy *ownCaddy
	site  string
	deck  []int // rooms in the order they are asked for
	next  int   // next index into deck

	fill          time.Duration // filling room_node_map
	redisMem      string
	hget          latencies      // HGET room_node_map from the benchmark, for reference
	startups      latencies      // caddy run to the first routed exchange, per start
	rssIdle       memory         // after the first request
	idleCPU       float64        // share of one core Caddy uses with no requests (refresh, probes)
	rssLoaded     memory         // after the load
	heap, sys     int            // Go heap after GC, memory from the OS (KiB), after the load
	first, cached latencies      // upgrade latency of a room's first and second request, one client
	outcomes      map[string]int // as the outcome header said, for the pairs
	load          runResult      // first requests, concurrent clients
	errs          int
	firstErr      error
}

func (sc *scaleCase) fail(err error) {
	sc.errs++
	if sc.firstErr == nil {
		sc.firstErr = err
	}
}

// BenchmarkScale: livekit_lb with 100 fake nodes in `nodes` and 10,000 up to
// 1,000,000 rooms in room_node_map. Each room count has its own Redis and
// Caddy, and they are measured in alternation: time from `caddy run` to the
// first routed exchange (median of several starts); upgrade latency of a
// room's first request (a placement-cache miss: one HGET) and of its second
// (cached); throughput and Caddy CPU time of first requests with concurrent
// clients; Caddy's RSS and Go heap after that load.
func BenchmarkScale(b *testing.B) {
	defer took(b, time.Now())
	sizes := pick([]int{10_000, 100_000, 1_000_000}, []int{10_000, 1_000_000})
	starts := pick(9, 3) // Caddy starts per room count
	if n := envInt("LKBENCH_STARTS", 0); n > 0 {
		starts = n
	}
	pairs := pick(1500, 150) // rooms asked twice, one client, per room count
	rounds := pick(4, 2)     // load batches per room count
	perRound := pick(2500, 600)
	conc := concurrency()
	ctx := context.Background()

	nodes := fakeNodes(100) // 127.0.0.2 .. 127.0.0.101
	port := harness.FreePort(b)
	startBackend(b, nodes, port, true)
	caddyBinary(b) // before any timing: it may start a Caddy to find the binary
	rng := rand.New(rand.NewPCG(1, 2))

	cases := make([]*scaleCase, len(sizes))
	for i, size := range sizes {
		sc := &scaleCase{rooms: size, outcomes: map[string]int{}}
		cases[i] = sc
		sc.redis = harness.StartRedis(b)
		rc := sc.redis.Client()
		registerNodes(b, rc, nodes)
		start := time.Now()
		if err := fillRooms(ctx, rc, nodes, 0, size); err != nil {
			b.Fatalf("fill room_node_map to %d: %v", size, err)
		}
		sc.fill = time.Since(start)
		if info, err := rc.Info(ctx, "memory").Result(); err == nil {
			for _, l := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(l, "used_memory_human:"); ok {
					sc.redisMem = v
				}
			}
		}
	}

	// room returns a random room of sc that its Caddy has not been asked for
	// lately: rooms are dealt from a shuffled deck, reshuffled when it runs
	// out (10,000 rooms do in the full run), by which time the placements
	// of the first ones have long left the 5 s cache.
	room := func(sc *scaleCase) int {
		if sc.next >= len(sc.deck) {
			sc.deck, sc.next = rng.Perm(sc.rooms), 0
		}
		sc.next++
		return sc.deck[sc.next-1]
	}
	tg := func(sc *scaleCase, room int) target {
		return target{url: rtcURL("ws://"+sc.site, harness.Token(roomName(room), "scale-"+strconv.Itoa(room))),
			node: nodes[room%len(nodes)].ID}
	}

	// Start-up: caddy run until the first exchange routed to its room's node.
	for s := range starts {
		for k := range cases {
			sc := cases[(s+k)%len(cases)]
			if sc.caddy != nil {
				sc.caddy.kill()
			}
			admin := harness.FreeAddr(b)
			sc.site = harness.FreeAddr(b)
			sc.deck = nil // a new Caddy: no room asked yet
			first := tg(sc, room(sc))
			start := time.Now()
			sc.caddy = startOwnCaddy(b, admin, scaleCaddyfile(admin, sc.site, sc.redis.Addr(), port))
			for {
				_, node, err := exchange(ctx, first)
				if err == nil && node == first.node {
					sc.startups = append(sc.startups, time.Since(start))
					break
				}
				if sc.caddy.exited() || time.Since(start) > 30*time.Second {
					b.Fatalf("%d rooms: no routed exchange %v after caddy run (exited %v): %v\n%s",
						sc.rooms, time.Since(start), sc.caddy.exited(), err, sc.caddy.logTail())
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	idle := pick(3*time.Second, time.Second)
	before := map[*scaleCase]time.Duration{}
	for _, sc := range cases {
		var err error
		if sc.rssIdle, err = memoryOf(sc.caddy.pid()); err != nil {
			b.Fatal(err)
		}
		before[sc] = cpuTime(sc.caddy.pid())
	}
	time.Sleep(idle)
	for _, sc := range cases {
		sc.idleCPU = float64(cpuTime(sc.caddy.pid())-before[sc]) / float64(idle)
	}

	// Per-join cost: a room's first request, then its second; and, for
	// reference, the HGET that a first request makes.
	for i := range pairs {
		for k := range cases {
			sc := cases[(i+k)%len(cases)]
			t := tg(sc, room(sc))
			for _, lat := range []*latencies{&sc.first, &sc.cached} {
				start := time.Now()
				conn, resp, err := dialer.DialContext(ctx, t.url, nil)
				took := time.Since(start)
				if err != nil {
					sc.fail(err)
					continue
				}
				sc.outcomes[resp.Header.Get(outcomeHeader)]++
				conn.Close()
				if got := resp.Header.Get(nodeHeader); got != t.node {
					sc.fail(fmt.Errorf("landed on %q, want %q", got, t.node))
					continue
				}
				*lat = append(*lat, took)
			}
			start := time.Now()
			if err := sc.redis.Client().HGet(ctx, harness.RoomNodeMapKey, roomName(rng.IntN(sc.rooms))).Err(); err != nil {
				sc.fail(err)
			} else {
				sc.hget = append(sc.hget, time.Since(start))
			}
		}
	}

	// Throughput and Caddy CPU of first requests, then the memory after them.
	for r := range rounds {
		for k := range cases {
			sc := cases[(r+k)%len(cases)]
			ts := make([]target, perRound)
			for i := range ts {
				ts[i] = tg(sc, room(sc))
			}
			before := cpuTime(sc.caddy.pid())
			res := runExchanges(ctx, ts, conc, pick(60*time.Second, 20*time.Second))
			res.cpu = cpuTime(sc.caddy.pid()) - before
			sc.load.add(res)
		}
	}
	if dir := os.Getenv("LKBENCH_PPROF"); dir != "" {
		sc := cases[len(cases)-1]
		profileUnder(b, sc.caddy.admin, 5, filepath.Join(dir, fmt.Sprintf("scale-%d-idle.cpu.pprof", sc.rooms)), nil)
		profileUnder(b, sc.caddy.admin, 5, filepath.Join(dir, fmt.Sprintf("scale-%d-first.cpu.pprof", sc.rooms)), func() {
			ts := make([]target, 300)
			for i := range ts {
				ts[i] = tg(sc, room(sc))
			}
			runExchanges(ctx, ts, conc, time.Minute)
		})
	}
	for _, sc := range cases {
		var err error
		if sc.heap, sc.sys, err = goHeap(sc.caddy.admin); err != nil {
			b.Errorf("heap of Caddy: %v", err)
		}
		if sc.rssLoaded, err = memoryOf(sc.caddy.pid()); err != nil {
			b.Fatal(err)
		}
	}

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
