package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// Modes of reaching a node, compared on the same workload.
const (
	modeOurs     = "livekit_lb"       // Caddy with our handler; rooms whose placement is cached
	modeOursCold = "livekit_lb-first" // the same, every room's first request (one Redis HGET)
	modeStock    = "reverse_proxy"    // the same Caddy binary, stock reverse_proxy, round robin
	modeDirect   = "direct"           // straight to the room's node
)

var modes = []string{modeOurs, modeOursCold, modeStock, modeDirect}

// BenchmarkUpgrade: WebSocket upgrade throughput and latency of LiveKit-like
// signal connections through livekit_lb, through stock reverse_proxy (same
// Caddy process, another site) and direct to the backends, on fake nodes
// (see backend) that answer at once, so the figures are the proxy's cost.
// livekit_lb is measured twice: on 3 hot rooms whose placement it has
// cached (two map lookups; each entry expires every 5 s, so fewer than 0.3%
// of these requests read Redis, too few to reach the p99), and on rooms it
// has never been asked for (one HGET of room_node_map each). Throughput batches alternate between
// the modes round by round, the one-client exchanges exchange by exchange,
// so that a noisy neighbour hits every mode alike; the proxy's CPU time per
// upgrade is read from /proc and is far less sensitive to that noise.
func BenchmarkUpgrade(b *testing.B) {
	defer took(b, time.Now())
	u := startUpgradeBench(b)
	ctx := context.Background()
	for _, m := range modes {
		if err := runExchanges(ctx, u.targets(m, u.warm), u.conc, u.limit).err(); err != nil {
			b.Fatalf("%s warm-up: %v", m, err)
		}
	}
	u.measure()
	if dir := os.Getenv("LKBENCH_PPROF"); dir != "" {
		u.profile(dir)
	}
	u.report()
	u.check()
}

// upgradeBench is BenchmarkUpgrade's set-up and what it measured.
type upgradeBench struct {
	b                                   *testing.B
	conc, rounds, perRound, latPerRound int
	warm, coldRooms                     int
	limit                               time.Duration
	nodes                               []fakeNode
	port                                int
	caddy                               *harness.Caddy
	base                                map[string]func(room int) string
	tokens                              map[int]string
	cursor                              map[string]int
	loaded, single                      map[string]*runResult
}

const hotRooms = 3 // one per node

// startUpgradeBench starts Redis, three fake nodes with every room placed
// on them, and one Caddy with two sites over the same backends: our
// livekit_lb (known rooms from room_node_map) and stock reverse_proxy.
func startUpgradeBench(b *testing.B) *upgradeBench {
	u := &upgradeBench{b: b, conc: concurrency(), rounds: pick(40, 10),
		perRound:    pick(400, 150),  // exchanges per mode and round, conc clients
		latPerRound: pick(80, 30),    // exchanges per mode and round, one client
		warm:        pick(1000, 300), // per mode, before measuring
		limit:       pick(60*time.Second, 15*time.Second),
		tokens:      map[int]string{}, cursor: map[string]int{},
		loaded: map[string]*runResult{}, single: map[string]*runResult{}}
	u.coldRooms = u.warm + u.rounds*(u.perRound+u.latPerRound)
	if os.Getenv("LKBENCH_PPROF") != "" {
		u.coldRooms += 100_000
	}
	for _, m := range modes {
		u.loaded[m], u.single[m] = &runResult{}, &runResult{}
	}

	redis := harness.StartRedis(b)
	u.nodes = fakeNodes(3) // 127.0.0.2 .. 127.0.0.4
	u.port = harness.FreePort(b)
	startBackend(b, u.nodes, u.port, false)
	registerNodes(b, redis.Client(), u.nodes)
	if err := fillRooms(context.Background(), redis.Client(), u.nodes, 0, hotRooms+u.coldRooms); err != nil {
		b.Fatal(err)
	}
	lbAddr, rpAddr := harness.FreeAddr(b), harness.FreeAddr(b)
	var ups []string
	for _, n := range u.nodes {
		ups = append(ups, fmt.Sprintf("%s:%d", n.IP, u.port))
	}
	u.caddy = harness.StartCaddy(b, harness.LBSite(lbAddr, harness.LB{Redis: redis.Addr(), Options: []string{fmt.Sprintf("node_port %d", u.port)}})+
		harness.StockSite(rpAddr, ups, "lb_policy round_robin"))
	u.base = map[string]func(room int) string{
		modeOurs:     func(int) string { return "ws://" + lbAddr },
		modeOursCold: func(int) string { return "ws://" + lbAddr },
		modeStock:    func(int) string { return "ws://" + rpAddr },
		modeDirect:   func(room int) string { return fmt.Sprintf("ws://%s:%d", u.nodes[room%len(u.nodes)].IP, u.port) },
	}
	return u
}

func (u *upgradeBench) token(room int) string {
	t, ok := u.tokens[room]
	if !ok {
		t = harness.Token(roomName(room), "bench-"+strconv.Itoa(room))
		u.tokens[room] = t
	}
	return t
}

// targets are the next n exchanges of mode. Every mode but the hot one
// walks through the cold rooms in the same order, each room once; the hot
// one cycles through rooms 0..2.
func (u *upgradeBench) targets(mode string, n int) []target {
	ts := make([]target, n)
	for i := range ts {
		room := hotRooms + u.cursor[mode]%u.coldRooms
		if mode == modeOurs {
			room = u.cursor[mode] % hotRooms
		}
		u.cursor[mode]++
		ts[i] = target{url: rtcURL(u.base[mode](room), u.token(room)), node: u.nodes[room%len(u.nodes)].ID}
	}
	return ts
}

// measure runs the rounds: a batch per mode with conc clients (Caddy's CPU
// time and allocations measured), then exchanges with one client, the
// modes taking turns exchange by exchange.
func (u *upgradeBench) measure() {
	ctx := context.Background()
	admin := u.caddy.AdminAddr()
	pid := u.caddy.PID()
	for r := range u.rounds {
		for k := range modes {
			m := modes[(r+k)%len(modes)]
			ts := u.targets(m, u.perRound)
			b0, n0, err0 := allocs(admin)
			before := cpuTime(pid)
			res := runExchanges(ctx, ts, u.conc, u.limit)
			res.cpu = cpuTime(pid) - before
			if res.done > 0 {
				res.cpus = []float64{res.cpu.Seconds() / float64(res.done)}
			}
			b1, n1, err1 := allocs(admin)
			if err0 == nil && err1 == nil {
				res.allocB, res.allocN = b1-b0, n1-n0
			}
			u.loaded[m].add(res)
		}
		for i := range u.latPerRound {
			for k := range modes {
				m := modes[(i+k)%len(modes)]
				u.single[m].add(runExchanges(ctx, u.targets(m, 1), 1, u.limit))
			}
		}
	}
}

// profile takes CPU and allocation profiles of Caddy into dir under each
// proxied mode.
func (u *upgradeBench) profile(dir string) {
	b, admin := u.b, u.caddy.AdminAddr()
	for _, m := range []string{modeOurs, modeOursCold, modeStock} {
		heap := "http://" + admin + "/debug/pprof/allocs"
		if err := saveURL(heap, filepath.Join(dir, m+".allocs-before.pprof")); err != nil {
			b.Error(err)
		}
		profileUnder(b, admin, 5, filepath.Join(dir, m+".cpu.pprof"), func() {
			runExchanges(context.Background(), u.targets(m, 300), u.conc, u.limit)
		})
		if err := saveURL(heap, filepath.Join(dir, m+".allocs-after.pprof")); err != nil {
			b.Error(err)
		}
	}
}

// report prints the table and the ratios, and reports them as metrics.
func (u *upgradeBench) report() {
	b, conc, rounds, perRound, latPerRound := u.b, u.conc, u.rounds, u.perRound, u.latPerRound
	loaded, single := u.loaded, u.single
	var rows [][]string
	for _, m := range modes {
		l, s := loaded[m], single[m]
		cpu, alloc := "-", "-"
		if m != modeDirect && l.done > 0 {
			cpu = fmt.Sprintf("%.0f", float64(l.cpuPer())/float64(time.Microsecond))
			alloc = fmt.Sprintf("%.1f / %.0f", float64(l.allocB)/float64(l.done)/1024, float64(l.allocN)/float64(l.done))
		}
		rows = append(rows, []string{m,
			fmt.Sprintf("%.0f", l.rate()), cpu, alloc, ms(l.upgrade.p50()), ms(l.upgrade.p99()),
			ms(s.upgrade.p50()), ms(s.upgrade.p99()),
			fmt.Sprintf("%.0f%%", 100*float64(l.onNode+s.onNode)/float64(max(1, l.done+s.done))),
			strconv.Itoa(l.errs + s.errs)})
	}
	table(fmt.Sprintf("WebSocket upgrades to fake LiveKit nodes, %d rounds; a round: %d exchanges per mode with %d clients (a batch per mode, in turn),\n"+
		"then %d per mode with one client (modes alternating); upgrades/s is the median of the batches\n(%s)",
		rounds, perRound, conc, latPerRound, machine()),
		[]string{"mode", "upgrades/s", "Caddy CPU us/upgrade", "Caddy KiB / allocs per upgrade", "p50 ms", "p99 ms", "p50 ms (1 client)", "p99 ms (1 client)", "on room's node", "errors"}, rows)
	stock, direct := loaded[modeStock], loaded[modeDirect]
	ratios := map[string]map[string]float64{}
	for _, m := range []string{modeOurs, modeOursCold} {
		l, s := loaded[m], single[m]
		r := map[string]float64{
			"ours/stock":           l.pairedRatio(*stock),
			"ours/direct":          l.pairedRatio(*direct),
			"cpu-ours/stock":       l.pairedCPURatio(*stock),
			"extra-p99-ms":         msf(l.upgrade.p99() - stock.upgrade.p99()),
			"extra-p99-ms-1client": msf(s.upgrade.p99() - single[modeStock].upgrade.p99()),
			"extra-p50-ms-1client": msf(s.upgrade.p50() - single[modeStock].upgrade.p50()),
		}
		ratios[m] = r
		lo99, hi99 := diffCI(s.upgrade, single[modeStock].upgrade, 0.99)
		lo50, hi50 := diffCI(s.upgrade, single[modeStock].upgrade, 0.50)
		fmt.Printf("%-17s throughput ours/stock %.3f, ours/direct %.3f; Caddy CPU per upgrade ours/stock %.3f (medians of per-round ratios)\n"+
			"%-17s vs stock: p99 %+.3f ms (%d clients); one client: p99 %+.3f ms (90%% bootstrap interval %+.3f .. %+.3f), p50 %+.3f ms (%+.3f .. %+.3f)\n",
			m+":", r["ours/stock"], r["ours/direct"], r["cpu-ours/stock"],
			"", r["extra-p99-ms"], conc, r["extra-p99-ms-1client"], lo99, hi99, r["extra-p50-ms-1client"], lo50, hi50)
	}
	for _, m := range modes {
		l, s := loaded[m], single[m]
		metrics(b, m, map[string]float64{
			"upgrades/s": l.rate(), "caddy-cpu-us/upgrade": float64(l.cpuPer()) / 1e3, "p50-ms": msf(l.upgrade.p50()), "p99-ms": msf(l.upgrade.p99()),
			"p50-ms-1client": msf(s.upgrade.p50()), "p99-ms-1client": msf(s.upgrade.p99()),
		})
	}
	for _, m := range []string{modeOurs, modeOursCold} {
		metrics(b, "ratios-"+m, ratios[m])
	}
}

// check fails on failed exchanges and on exchanges that landed on another
// node than their room's.
func (u *upgradeBench) check() {
	b, loaded, single := u.b, u.loaded, u.single
	for _, m := range modes {
		l, s := loaded[m], single[m]
		for _, r := range []*runResult{l, s} {
			if err := r.err(); err != nil {
				b.Errorf("%s: %v", m, err)
			}
		}
		if m != modeStock && l.onNode+s.onNode != l.done+s.done {
			b.Errorf("%s: %d of %d exchanges landed on another node than their room's", m, l.done+s.done-l.onNode-s.onNode, l.done+s.done)
		}
	}
}
