package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// signalQuery is what the benchmark's signal joins add to the URL, as
// server-sdk-go 2.19.0 did (protocol 16).
const signalQuery = "&protocol=16&auto_subscribe=0&sdk=go&version=2.19.0"

// BenchmarkJoin: real joins (server-sdk-go: signal WebSocket, then WebRTC
// until connected) to real livekit-server nodes, through livekit_lb, through
// stock reverse_proxy and direct to the room's node. Each join is to a new
// room placed beforehand in room_node_map (as the create-room endpoint or
// an earlier participant would), so livekit_lb takes its known-room path;
// through reverse_proxy half of the joins land on the other node, which
// relays the signal connection over Redis.
func BenchmarkJoin(b *testing.B) {
	defer took(b, time.Now())
	j := startJoinBench(b)
	j.signalJoins(pick(60, 10))
	j.sdkJoins(pick(20, 3))
}

// The modes of BenchmarkJoin.
var jmodes = []string{modeOurs, modeStock, modeDirect}

// joinBench is BenchmarkJoin's stack: Redis, two nodes, and one Caddy with
// livekit_lb and stock reverse_proxy over the nodes.
type joinBench struct {
	b            *testing.B
	s            *harness.Stack
	lbURL, rpURL string
}

func startJoinBench(b *testing.B) *joinBench {
	j := &joinBench{b: b, s: harness.StartStack(b, 2, harness.NodeOptions{})}
	lbAddr, rpAddr := harness.FreeAddr(b), harness.FreeAddr(b)
	harness.StartCaddy(b, harness.LBSite(lbAddr, harness.LB{Redis: j.s.Redis.Addr()})+
		harness.StockSite(rpAddr, harness.Upstreams(j.s.Nodes), "lb_policy round_robin"))
	j.lbURL, j.rpURL = "ws://"+lbAddr, "ws://"+rpAddr
	return j
}

// url is where a join of mode to a room on host goes.
func (j *joinBench) url(mode string, host *harness.Node) string {
	switch mode {
	case modeOurs:
		return j.lbURL
	case modeStock:
		return j.rpURL
	}
	return host.URL()
}

// place puts room on host in room_node_map, as the create-room endpoint or
// an earlier participant would.
func (j *joinBench) place(room string, host *harness.Node) {
	if err := j.s.Redis.Client().HSet(context.Background(), harness.RoomNodeMapKey, room, host.ID()).Err(); err != nil {
		j.b.Fatal(err)
	}
}

// onNode reports whether identity's signal WebSocket landed on host.
func (j *joinBench) onNode(identity string, host *harness.Node) bool {
	id, ok := harness.SignalNodeOf(j.s.Nodes, identity)
	return ok && id == host.ID()
}

// signalled is one signal join: upgrade and JoinResponse, no WebRTC.
type signalled struct {
	mode, identity string
	host           *harness.Node
	up, join       time.Duration
}

// signalJoins makes n signal joins per mode, one at a time, modes
// alternating (round 0 warms up), and reports them.
func (j *joinBench) signalJoins(n int) {
	var sigs []signalled
	errs := map[string]int{}
	var firstErr error
	for i := range n + 1 {
		for k := range jmodes {
			m := jmodes[(i+k)%len(jmodes)]
			host := j.s.Nodes[(i+k)%len(j.s.Nodes)]
			room := fmt.Sprintf("signal-%s-%d", m, i)
			j.place(room, host)
			identity := room + "-p"
			res, err := harness.RawJoin(context.Background(), j.url(m, host), harness.Token(room, identity), signalQuery, 15*time.Second)
			if i == 0 {
				continue
			}
			if err != nil {
				errs[m]++
				if firstErr == nil {
					firstErr = fmt.Errorf("%s signal join %s: %w", m, room, err)
				}
				continue
			}
			sigs = append(sigs, signalled{mode: m, identity: identity, host: host, up: res.Upgrade, join: res.Join})
		}
	}
	j.reportSignals(n, sigs, errs, firstErr)
}

// reportSignals prints the signal joins per mode, reverse_proxy also split
// by where the connection landed, and fails on errors or misplaced joins.
func (j *joinBench) reportSignals(n int, sigs []signalled, errs map[string]int, firstErr error) {
	b := j.b
	type row struct{ up, join latencies }
	rows := map[string]*row{}
	on := map[string]int{}
	for _, s := range sigs {
		labels := []string{s.mode}
		landed := j.onNode(s.identity, s.host)
		if landed {
			on[s.mode]++
		}
		if s.mode == modeStock && landed {
			labels = append(labels, s.mode+" (on room's node)")
		} else if s.mode == modeStock {
			labels = append(labels, s.mode+" (relayed)")
		}
		for _, l := range labels {
			if rows[l] == nil {
				rows[l] = &row{}
			}
			rows[l].up = append(rows[l].up, s.up)
			rows[l].join = append(rows[l].join, s.join)
		}
	}
	var out [][]string
	for _, l := range []string{modeOurs, modeStock, modeStock + " (on room's node)", modeStock + " (relayed)", modeDirect} {
		r := rows[l]
		if r == nil {
			continue
		}
		onNode, nerrs := "", ""
		if l == modeOurs || l == modeStock || l == modeDirect {
			onNode, nerrs = fmt.Sprintf("%d/%d", on[l], len(r.join)), strconv.Itoa(errs[l])
		}
		out = append(out, []string{l, strconv.Itoa(len(r.join)), ms(r.up.p50()), ms(r.up.p99()), ms(r.join.p50()), ms(r.join.p99()), onNode, nerrs})
		metrics(b, "signal-"+strings.NewReplacer(" ", "-", "(", "", ")", "", "'", "").Replace(l), map[string]float64{
			"upgrade-p50-ms": msf(r.up.p50()), "upgrade-p99-ms": msf(r.up.p99()),
			"joinresponse-p50-ms": msf(r.join.p50()), "joinresponse-p99-ms": msf(r.join.p99()),
		})
	}
	table(fmt.Sprintf("Signal joins to 2 livekit-server nodes (WebSocket to JoinResponse, no WebRTC), %d per mode, one at a time, modes alternating\n(%s)", n, machine()),
		[]string{"mode", "joins", "upgrade p50 ms", "upgrade p99 ms", "JoinResponse p50 ms", "JoinResponse p99 ms", "on room's node", "errors"}, out)
	for _, m := range jmodes {
		if errs[m] > 0 {
			b.Errorf("%s: %d signal joins failed, first: %v", m, errs[m], firstErr)
		}
		if r := rows[m]; r != nil && m != modeStock && on[m] != len(r.join) {
			b.Errorf("%s: %d of %d signal connections landed on another node than their room's", m, len(r.join)-on[m], len(r.join))
		}
	}
}

// sdkJoins makes n real SDK joins per mode, one at a time, modes
// alternating, after one direct join that warms the client up, and
// reports them.
func (j *joinBench) sdkJoins(n int) {
	b := j.b
	errs := map[string]int{}
	var firstErr error
	type joined struct {
		mode, identity string
		host           *harness.Node
		took           time.Duration
	}
	var all []joined
	join := func(mode, tag string, i int, host *harness.Node) (joined, bool) {
		room := fmt.Sprintf("join-%s-%s-%d", mode, tag, i)
		identity := room + "-p"
		j.place(room, host)
		start := time.Now()
		r, err := harness.TryJoin(j.url(mode, host), room, identity)
		took := time.Since(start)
		if err != nil {
			errs[mode]++
			if firstErr == nil {
				firstErr = fmt.Errorf("%s join %s: %w", mode, room, err)
			}
			return joined{}, false
		}
		r.Disconnect()
		return joined{mode: mode, identity: identity, host: host, took: took}, true
	}
	join(modeDirect, "warm", 0, j.s.Nodes[0]) // the first join of a client process sets up more
	clear(errs)
	for i := range n {
		for k := range jmodes {
			if jd, ok := join(jmodes[(i+k)%len(jmodes)], "run", i, j.s.Nodes[(i+k)%len(j.s.Nodes)]); ok {
				all = append(all, jd)
			}
		}
	}

	took := map[string]latencies{}
	onNode := map[string]int{}
	for _, jd := range all {
		took[jd.mode] = append(took[jd.mode], jd.took)
		if j.onNode(jd.identity, jd.host) {
			onNode[jd.mode]++
		}
	}
	var rows [][]string
	for _, m := range jmodes {
		l := took[m]
		rows = append(rows, []string{m, strconv.Itoa(len(l)), ms(l.p50()), ms(l.p99()),
			fmt.Sprintf("%d/%d", onNode[m], len(l)), strconv.Itoa(errs[m])})
		metrics(b, m, map[string]float64{"join-p50-ms": msf(l.p50()), "join-p99-ms": msf(l.p99())})
	}
	table(fmt.Sprintf("Real joins to 2 livekit-server nodes (server-sdk-go, signal + WebRTC connected), %d per mode, one at a time, modes alternating\n(%s)", n, machine()),
		[]string{"mode", "joins", "p50 ms", "p99 ms", "signal on room's node", "errors"}, rows)
	ours, stock := took[modeOurs], took[modeStock]
	fmt.Printf("livekit_lb vs reverse_proxy: p50 %+.1f ms, p99 %+.1f ms; vs direct: p50 %+.1f ms, p99 %+.1f ms\n",
		msf(ours.p50()-stock.p50()), msf(ours.p99()-stock.p99()),
		msf(ours.p50()-took[modeDirect].p50()), msf(ours.p99()-took[modeDirect].p99()))

	for _, m := range jmodes {
		if errs[m] > 0 {
			b.Errorf("%s: %d joins failed, first: %v", m, errs[m], firstErr)
		}
		if m != modeStock && onNode[m] != len(took[m]) {
			b.Errorf("%s: %d of %d signal connections landed on another node than their room's", m, len(took[m])-onNode[m], len(took[m]))
		}
	}
}
