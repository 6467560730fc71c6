package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// signalJoin opens LiveKit's signal connection at base (ws://host:port) the
// way server-sdk-go does and waits for the JoinResponse; it returns the time
// to the 101 answer (LiveKit upgrades only once the room's node answered)
// and to the JoinResponse. It never starts WebRTC.
func signalJoin(ctx context.Context, base, token string) (upgrade, join time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	url := rtcURL(base, token) + "&protocol=16&auto_subscribe=0&sdk=go&version=2.19.0"
	start := time.Now()
	conn, resp, err := dialer.DialContext(ctx, url, nil)
	upgrade = time.Since(start)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return 0, 0, err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return 0, 0, fmt.Errorf("waiting for JoinResponse: %w", err)
		}
		if mt != websocket.BinaryMessage {
			continue
		}
		var msg livekit.SignalResponse
		if err := proto.Unmarshal(data, &msg); err != nil {
			return 0, 0, fmt.Errorf("signal message: %w", err)
		}
		if msg.GetJoin() != nil {
			join = time.Since(start)
			conn.WriteMessage(websocket.BinaryMessage, leaveRequest)
			return upgrade, join, nil
		}
	}
}

var leaveRequest, _ = proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{
	Leave: &livekit.LeaveRequest{Reason: livekit.DisconnectReason_CLIENT_INITIATED},
}})

// joinCaddyfile: livekit_lb and stock reverse_proxy over the real nodes.
func joinCaddyfile(lbAddr, rpAddr, redisAddr string, nodes []*harness.Node) string {
	ups := ""
	for _, n := range nodes {
		ups += " " + n.HTTPAddr()
	}
	return fmt.Sprintf(`http://%s {
	livekit_lb %s {
		allow_networks 127.0.0.0/8
		api_key `+harness.APIKey+`
		api_secret `+harness.APISecret+`
	}
}

http://%s {
	reverse_proxy%s {
		lb_policy round_robin
	}
}
`, lbAddr, redisAddr, rpAddr, ups)
}

// BenchmarkJoin: real joins (server-sdk-go: signal WebSocket, then WebRTC
// until connected) to real livekit-server nodes, through livekit_lb, through
// stock reverse_proxy and direct to the room's node. Each join is to a new
// room placed beforehand in room_node_map (as the create-room endpoint or
// an earlier participant would), so livekit_lb takes its known-room path;
// through reverse_proxy half of the joins land on the other node, which
// relays the signal connection over Redis.
func BenchmarkJoin(b *testing.B) {
	defer took(b, time.Now())
	joins := pick(20, 3) // per mode
	ctx := context.Background()
	redis := harness.StartRedis(b)
	nodes := harness.StartNodes(b, redis.Addr(), 2, harness.NodeOptions{})
	lbAddr, rpAddr := harness.FreeAddr(b), harness.FreeAddr(b)
	harness.StartCaddy(b, joinCaddyfile(lbAddr, rpAddr, redis.Addr(), nodes))
	jmodes := []string{modeOurs, modeStock, modeDirect}
	url := func(mode string, host *harness.Node) string {
		switch mode {
		case modeOurs:
			return "ws://" + lbAddr
		case modeStock:
			return "ws://" + rpAddr
		}
		return host.URL()
	}

	type joined struct {
		mode, identity string
		host           *harness.Node
		took           time.Duration
	}
	var all []joined
	errs := map[string]int{}
	var firstErr error
	join := func(mode, tag string, i int, host *harness.Node) (joined, bool) {
		room := fmt.Sprintf("join-%s-%s-%d", mode, tag, i)
		identity := room + "-p"
		if err := redis.Client().HSet(ctx, harness.RoomNodeMapKey, room, host.ID()).Err(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		r, err := harness.TryJoin(url(mode, host), room, identity)
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
	// Signal joins: upgrade and JoinResponse, no WebRTC.
	signals := pick(60, 10) // per mode
	type signalled struct {
		mode, identity string
		host           *harness.Node
		up, join       time.Duration
	}
	var sigs []signalled
	sigErrs := map[string]int{}
	var sigErr error
	for i := range signals + 1 { // round 0 warms up
		for k := range jmodes {
			m := jmodes[(i+k)%len(jmodes)]
			host := nodes[(i+k)%len(nodes)]
			room := fmt.Sprintf("signal-%s-%d", m, i)
			if err := redis.Client().HSet(ctx, harness.RoomNodeMapKey, room, host.ID()).Err(); err != nil {
				b.Fatal(err)
			}
			identity := room + "-p"
			up, jr, err := signalJoin(ctx, url(m, host), harness.Token(room, identity))
			if i == 0 {
				continue
			}
			if err != nil {
				sigErrs[m]++
				if sigErr == nil {
					sigErr = fmt.Errorf("%s signal join %s: %w", m, room, err)
				}
				continue
			}
			sigs = append(sigs, signalled{mode: m, identity: identity, host: host, up: up, join: jr})
		}
	}
	// rows: each mode, and reverse_proxy split by where the connection landed
	type row struct{ up, join latencies }
	sigRows := map[string]*row{}
	label := func(s signalled, on bool) []string {
		l := []string{s.mode}
		if s.mode == modeStock {
			if on {
				l = append(l, s.mode+" (on room's node)")
			} else {
				l = append(l, s.mode+" (relayed)")
			}
		}
		return l
	}
	sigOn := map[string]int{}
	for _, s := range sigs {
		id, ok := harness.SignalNodeOf(nodes, s.identity)
		on := ok && id == s.host.ID()
		if on {
			sigOn[s.mode]++
		}
		for _, l := range label(s, on) {
			if sigRows[l] == nil {
				sigRows[l] = &row{}
			}
			sigRows[l].up = append(sigRows[l].up, s.up)
			sigRows[l].join = append(sigRows[l].join, s.join)
		}
	}
	var srows [][]string
	for _, l := range []string{modeOurs, modeStock, modeStock + " (on room's node)", modeStock + " (relayed)", modeDirect} {
		r := sigRows[l]
		if r == nil {
			continue
		}
		on, errs := "", ""
		if l == modeOurs || l == modeStock || l == modeDirect {
			on, errs = fmt.Sprintf("%d/%d", sigOn[l], len(r.join)), strconv.Itoa(sigErrs[l])
		}
		srows = append(srows, []string{l, strconv.Itoa(len(r.join)), ms(r.up.p50()), ms(r.up.p99()), ms(r.join.p50()), ms(r.join.p99()), on, errs})
		metrics(b, "signal-"+strings.NewReplacer(" ", "-", "(", "", ")", "", "'", "").Replace(l), map[string]float64{
			"upgrade-p50-ms": msf(r.up.p50()), "upgrade-p99-ms": msf(r.up.p99()),
			"joinresponse-p50-ms": msf(r.join.p50()), "joinresponse-p99-ms": msf(r.join.p99()),
		})
	}
	table(fmt.Sprintf("Signal joins to 2 livekit-server nodes (WebSocket to JoinResponse, no WebRTC), %d per mode, one at a time, modes alternating\n(%s)", signals, machine()),
		[]string{"mode", "joins", "upgrade p50 ms", "upgrade p99 ms", "JoinResponse p50 ms", "JoinResponse p99 ms", "on room's node", "errors"}, srows)
	for _, m := range jmodes {
		if sigErrs[m] > 0 {
			b.Errorf("%s: %d signal joins failed, first: %v", m, sigErrs[m], sigErr)
		}
		if r := sigRows[m]; r != nil && m != modeStock && sigOn[m] != len(r.join) {
			b.Errorf("%s: %d of %d signal connections landed on another node than their room's", m, len(r.join)-sigOn[m], len(r.join))
		}
	}

	join(modeDirect, "warm", 0, nodes[0]) // the first join of a client process sets up more
	clear(errs)
	for i := range joins {
		for k := range jmodes {
			m := jmodes[(i+k)%len(jmodes)]
			if j, ok := join(m, "run", i, nodes[(i+k)%len(nodes)]); ok {
				all = append(all, j)
			}
		}
	}

	took := map[string]latencies{}
	onNode := map[string]int{}
	for _, j := range all {
		took[j.mode] = append(took[j.mode], j.took)
		if id, ok := harness.SignalNodeOf(nodes, j.identity); ok && id == j.host.ID() {
			onNode[j.mode]++
		}
	}
	var rows [][]string
	for _, m := range jmodes {
		l := took[m]
		rows = append(rows, []string{m, strconv.Itoa(len(l)), ms(l.p50()), ms(l.p99()),
			fmt.Sprintf("%d/%d", onNode[m], len(l)), strconv.Itoa(errs[m])})
		metrics(b, m, map[string]float64{"join-p50-ms": msf(l.p50()), "join-p99-ms": msf(l.p99())})
	}
	table(fmt.Sprintf("Real joins to 2 livekit-server nodes (server-sdk-go, signal + WebRTC connected), %d per mode, one at a time, modes alternating\n(%s)", joins, machine()),
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
