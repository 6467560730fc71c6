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

// scaleCase is one room count: its own Redis and its own Caddy, so that the
// room counts can be measured alternately, under the same noise.
type scaleCase struct {
	rooms int
	redis *harness.Redis
	caddy *harness.Caddy
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
	s := startScaleBench(b)
	s.startups()
	s.idle(pick(3*time.Second, time.Second))
	s.pairs()
	s.load()
	if dir := os.Getenv("LKBENCH_PPROF"); dir != "" {
		s.profile(dir)
	}
	s.memory()
	s.report()
	s.check()
}

// scaleBench is BenchmarkScale's fake nodes, room counts and settings.
type scaleBench struct {
	b                      *testing.B
	nodes                  []fakeNode
	port                   int
	rng                    *rand.Rand
	cases                  []*scaleCase
	starts, npairs, rounds int
	perRound, conc         int
}

// startScaleBench starts 100 fake nodes and, per room count, a Redis with
// the nodes and that many rooms.
func startScaleBench(b *testing.B) *scaleBench {
	s := &scaleBench{b: b, starts: pick(9, 3), // Caddy starts per room count
		npairs:   pick(1500, 150), // rooms asked twice, one client, per room count
		rounds:   pick(4, 2),      // load batches per room count
		perRound: pick(2500, 600), conc: concurrency(), rng: rand.New(rand.NewPCG(1, 2))}
	if n := envInt("LKBENCH_STARTS", 0); n > 0 {
		s.starts = n
	}
	ctx := context.Background()
	s.nodes = fakeNodes(100) // 127.0.0.2 .. 127.0.0.101
	s.port = harness.FreePort(b)
	startBackend(b, s.nodes, s.port, true)
	harness.CaddyBinary(b) // before any timing: it may build the binary
	for _, size := range pick([]int{10_000, 100_000, 1_000_000}, []int{10_000, 1_000_000}) {
		sc := &scaleCase{rooms: size, outcomes: map[string]int{}}
		s.cases = append(s.cases, sc)
		sc.redis = harness.StartRedis(b)
		rc := sc.redis.Client()
		registerNodes(b, rc, s.nodes)
		start := time.Now()
		if err := fillRooms(ctx, rc, s.nodes, 0, size); err != nil {
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
	return s
}

// room returns a random room of sc that its Caddy has not been asked for
// lately: rooms are dealt from a shuffled deck, reshuffled when it runs
// out (10,000 rooms do in the full run), by which time the placements
// of the first ones have long left the 5 s cache.
func (s *scaleBench) room(sc *scaleCase) int {
	if sc.next >= len(sc.deck) {
		sc.deck, sc.next = s.rng.Perm(sc.rooms), 0
	}
	sc.next++
	return sc.deck[sc.next-1]
}

func (s *scaleBench) target(sc *scaleCase, room int) target {
	return target{url: rtcURL("ws://"+sc.site, harness.Token(roomName(room), "scale-"+strconv.Itoa(room))),
		node: s.nodes[room%len(s.nodes)].ID}
}

// startups times, in alternation, caddy run until the first exchange
// routed to its room's node.
func (s *scaleBench) startups() {
	b := s.b
	for i := range s.starts {
		for k := range s.cases {
			sc := s.cases[(i+k)%len(s.cases)]
			if sc.caddy != nil {
				sc.caddy.Kill()
			}
			sc.site = harness.FreeAddr(b)
			sc.deck = nil // a new Caddy: no room asked yet
			first := s.target(sc, s.room(sc))
			start := time.Now()
			sc.caddy = harness.LaunchCaddy(b, harness.LBSite(sc.site, harness.LB{Redis: sc.redis.Addr(), Options: []string{fmt.Sprintf("node_port %d", s.port)}},
				"header >"+outcomeHeader+" {http.vars.livekit.outcome}"))
			err := harness.PollErr(30*time.Second, 2*time.Millisecond, func() error {
				if sc.caddy.Exited() {
					return nil // reported below
				}
				_, node, err := exchange(context.Background(), first)
				if err == nil && node != first.node {
					err = fmt.Errorf("landed on %q, want %q", node, first.node)
				}
				return err
			})
			if err != nil || sc.caddy.Exited() {
				b.Fatalf("%d rooms: no routed exchange %v after caddy run (exited %v): %v\n%s",
					sc.rooms, time.Since(start), sc.caddy.Exited(), err, sc.caddy.LogTail(30))
			}
			sc.startups = append(sc.startups, time.Since(start))
		}
	}
}

// idle measures each Caddy's RSS after its first request and the CPU it
// uses without requests (refresh, probes) for d.
func (s *scaleBench) idle(d time.Duration) {
	before := map[*scaleCase]time.Duration{}
	for _, sc := range s.cases {
		var err error
		if sc.rssIdle, err = memoryOf(sc.caddy.PID()); err != nil {
			s.b.Fatal(err)
		}
		before[sc] = cpuTime(sc.caddy.PID())
	}
	time.Sleep(d)
	for _, sc := range s.cases {
		sc.idleCPU = float64(cpuTime(sc.caddy.PID())-before[sc]) / float64(d)
	}
}

// pairs measures the per-join cost: a room's first request, then its
// second; and, for reference, the HGET that a first request makes.
func (s *scaleBench) pairs() {
	ctx, rng, cases := context.Background(), s.rng, s.cases
	for i := range s.npairs {
		for k := range cases {
			sc := cases[(i+k)%len(cases)]
			t := s.target(sc, s.room(sc))
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
}

// load measures throughput and Caddy CPU of first requests with
// concurrent clients.
func (s *scaleBench) load() {
	ctx, cases := context.Background(), s.cases
	for r := range s.rounds {
		for k := range cases {
			sc := cases[(r+k)%len(cases)]
			ts := make([]target, s.perRound)
			for i := range ts {
				ts[i] = s.target(sc, s.room(sc))
			}
			before := cpuTime(sc.caddy.PID())
			res := runExchanges(ctx, ts, s.conc, pick(60*time.Second, 20*time.Second))
			res.cpu = cpuTime(sc.caddy.PID()) - before
			sc.load.add(res)
		}
	}
}

// profile takes CPU profiles into dir of the Caddy with the most rooms,
// idle and under first requests.
func (s *scaleBench) profile(dir string) {
	sc := s.cases[len(s.cases)-1]
	admin := sc.caddy.AdminAddr()
	profileUnder(s.b, admin, 5, filepath.Join(dir, fmt.Sprintf("scale-%d-idle.cpu.pprof", sc.rooms)), nil)
	profileUnder(s.b, admin, 5, filepath.Join(dir, fmt.Sprintf("scale-%d-first.cpu.pprof", sc.rooms)), func() {
		ts := make([]target, 300)
		for i := range ts {
			ts[i] = s.target(sc, s.room(sc))
		}
		runExchanges(context.Background(), ts, s.conc, time.Minute)
	})
}

// memory reads each Caddy's Go heap and RSS after the load.
func (s *scaleBench) memory() {
	b, cases := s.b, s.cases
	for _, sc := range cases {
		var err error
		if sc.heap, sc.sys, err = goHeap(sc.caddy.AdminAddr()); err != nil {
			b.Errorf("heap of Caddy: %v", err)
		}
		if sc.rssLoaded, err = memoryOf(sc.caddy.PID()); err != nil {
			b.Fatal(err)
		}
	}
}
