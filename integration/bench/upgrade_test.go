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

// upgradeCaddyfile is one Caddy with two sites over the same backends: our
// livekit_lb (known rooms from room_node_map) and stock reverse_proxy.
func upgradeCaddyfile(lbAddr, rpAddr, redisAddr string, nodes []fakeNode, port int) string {
	ups := ""
	for _, n := range nodes {
		ups += fmt.Sprintf(" %s:%d", n.IP, port)
	}
	return fmt.Sprintf(`http://%s {
	livekit_lb %s {
		allow_networks 127.0.0.0/8
		api_key `+harness.APIKey+`
		api_secret `+harness.APISecret+`
		node_port %d
	}
}

http://%s {
	reverse_proxy%s {
		lb_policy round_robin
	}
}
`, lbAddr, redisAddr, port, rpAddr, ups)
}

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
	conc := concurrency()
	rounds := pick(40, 10)
	perRound := pick(400, 150)  // exchanges per mode and round, conc clients
	latPerRound := pick(80, 30) // exchanges per mode and round, one client
	warm := pick(1000, 300)     // per mode, before measuring
	limit := pick(60*time.Second, 15*time.Second)
	const hotRooms = 3 // one per node
	coldRooms := warm + rounds*(perRound+latPerRound)
	if os.Getenv("LKBENCH_PPROF") != "" {
		coldRooms += 100_000
	}

	ctx := context.Background()
	redis := harness.StartRedis(b)
	nodes := fakeNodes(3) // 127.0.0.2 .. 127.0.0.4
	port := harness.FreePort(b)
	startBackend(b, nodes, port, false)
	registerNodes(b, redis.Client(), nodes)
	if err := fillRooms(ctx, redis.Client(), nodes, 0, hotRooms+coldRooms); err != nil {
		b.Fatal(err)
	}
	lbAddr, rpAddr := harness.FreeAddr(b), harness.FreeAddr(b)
	caddy := harness.StartCaddy(b, upgradeCaddyfile(lbAddr, rpAddr, redis.Addr(), nodes, port))

	tokens := map[int]string{}
	token := func(room int) string {
		t, ok := tokens[room]
		if !ok {
			t = harness.Token(roomName(room), "bench-"+strconv.Itoa(room))
			tokens[room] = t
		}
		return t
	}
	base := map[string]func(room int) string{
		modeOurs:     func(int) string { return "ws://" + lbAddr },
		modeOursCold: func(int) string { return "ws://" + lbAddr },
		modeStock:    func(int) string { return "ws://" + rpAddr },
		modeDirect:   func(room int) string { return fmt.Sprintf("ws://%s:%d", nodes[room%len(nodes)].IP, port) },
	}
	// Every mode but the hot one walks through the cold rooms in the same
	// order, each room once; the hot one cycles through rooms 0..2.
	cursor := map[string]int{}
	targets := func(mode string, n int) []target {
		ts := make([]target, n)
		for i := range ts {
			room := hotRooms + cursor[mode]%coldRooms
			if mode == modeOurs {
				room = cursor[mode] % hotRooms
			}
			cursor[mode]++
			ts[i] = target{url: rtcURL(base[mode](room), token(room)), node: nodes[room%len(nodes)].ID}
		}
		return ts
	}

	for _, m := range modes {
		if err := runExchanges(ctx, targets(m, warm), conc, limit).err(); err != nil {
			b.Fatalf("%s warm-up: %v", m, err)
		}
	}
	loaded := map[string]*runResult{}
	single := map[string]*runResult{}
	for _, m := range modes {
		loaded[m], single[m] = &runResult{}, &runResult{}
	}
	pid := caddyPID(b, caddy)
	for r := range rounds {
		for k := range modes {
			m := modes[(r+k)%len(modes)]
			ts := targets(m, perRound)
			b0, n0, err0 := allocs(caddy.AdminAddr())
			before := cpuTime(pid)
			res := runExchanges(ctx, ts, conc, limit)
			res.cpu = cpuTime(pid) - before
			if res.done > 0 {
				res.cpus = []float64{res.cpu.Seconds() / float64(res.done)}
			}
			b1, n1, err1 := allocs(caddy.AdminAddr())
			if err0 == nil && err1 == nil {
				res.allocB, res.allocN = b1-b0, n1-n0
			}
			loaded[m].add(res)
		}
		// one client: the modes take turns exchange by exchange
		for i := range latPerRound {
			for k := range modes {
				m := modes[(i+k)%len(modes)]
				single[m].add(runExchanges(ctx, targets(m, 1), 1, limit))
			}
		}
	}

	if dir := os.Getenv("LKBENCH_PPROF"); dir != "" {
		for _, m := range []string{modeOurs, modeOursCold, modeStock} {
			heap := "http://" + caddy.AdminAddr() + "/debug/pprof/allocs"
			if err := saveURL(heap, filepath.Join(dir, m+".allocs-before.pprof")); err != nil {
				b.Error(err)
			}
			profileUnder(b, caddy.AdminAddr(), 5, filepath.Join(dir, m+".cpu.pprof"), func() {
				runExchanges(ctx, targets(m, 300), conc, limit)
			})
			if err := saveURL(heap, filepath.Join(dir, m+".allocs-after.pprof")); err != nil {
				b.Error(err)
			}
		}
	}

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
