// Package failover holds the integration tests of node failure (issue 5):
// a node killed, paused or draining, a config reload under load, and two
// proxies placing the same rooms, plus a burst of new rooms (a placement bug
// found on the way). Real redis-server, real livekit-server
// nodes and real server-sdk-go clients (plus raw signal WebSockets where
// hundreds of joins are needed) connect through Caddy with the livekit_lb
// plugin, and for comparison through stock reverse_proxy.
//
// Nothing asserts timing: the tests log what they measure (run with -v) and
// assert only where connections land and that they stay up. See the
// "Failover" section of BENCHMARKS.md for the command and the figures.
//
// Environment:
//
//	LKLB_FAILOVER_TRIALS=N   kill trials per proxy in TestKillRejoin (default 10)
//	LKLB_RELOAD_CLIENTS=N    SDK clients of TestReloadUnderLoad (default 200)
//	LKLB_DUAL_ROOMS=N        rooms of TestTwoProxiesOneNodePerRoom (default 100)
package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { harness.Main(m) }

// cluster is one test's Redis and LiveKit nodes; the tests put one or more
// Caddy processes in front of them.
type cluster struct {
	redis *harness.Redis
	nodes []*harness.Node
}

func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{}
	c.redis = harness.StartRedis(t)
	c.nodes = harness.StartNodes(t, c.redis.Addr(), n, harness.NodeOptions{})
	return c
}

// lbSite is a Caddyfile site at addr with livekit_lb over the cluster's
// Redis; extra lines go into the livekit_lb block.
func lbSite(addr, redisAddr string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "http://%s {\n", addr)
	fmt.Fprintf(&b, "\tlivekit_lb %s {\n", redisAddr)
	b.WriteString("\t\tallow_networks 127.0.0.0/8\n")
	for _, l := range harness.LBKeys {
		fmt.Fprintf(&b, "\t\t%s\n", l)
	}
	for _, l := range extra {
		fmt.Fprintf(&b, "\t\t%s\n", l)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// stockSite is a Caddyfile site at addr with stock reverse_proxy over every
// node: what a generic proxy in front of LiveKit looks like.
func stockSite(addr string, nodes []*harness.Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "http://%s {\n\treverse_proxy", addr)
	for _, n := range nodes {
		b.WriteString(" " + n.HTTPAddr())
	}
	b.WriteString(" {\n\t\tlb_policy round_robin\n\t\tlb_try_duration 5s\n\t\tfail_duration 10s\n\t}\n}\n")
	return b.String()
}

// roomNode returns room_node_map[room] ("" if unset).
func (c *cluster) roomNode(room string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return harness.RoomNode(ctx, c.redis.Client(), room)
}

// signalNode returns the node ID whose log shows identity's signal
// WebSocket, or "" (after a 5 s wait) if none does.
func (c *cluster) signalNode(identity string) string {
	id, _ := harness.SignalNodeOf(c.nodes, identity)
	return id
}

// nodeByID returns the node whose current incarnation has id, or nil.
func (c *cluster) nodeByID(id string) *harness.Node {
	for _, n := range c.nodes {
		if n.ID() == id {
			return n
		}
	}
	return nil
}

// name describes a node ID for messages: "node2(127.0.0.3)/ND_xxx".
func (c *cluster) name(id string) string {
	for i, n := range c.nodes {
		if n.ID() == id {
			return fmt.Sprintf("node%d(%s)/%s", i+1, n.IP(), id)
		}
	}
	if id == "" {
		return `""`
	}
	return "gone/" + id
}

// spread formats how many of rooms room_node_map puts on each node.
func (c *cluster) spread(rooms []string) string {
	count := map[string]int{}
	for _, r := range rooms {
		count[c.roomNode(r)]++
	}
	var parts []string
	for _, n := range c.nodes {
		parts = append(parts, fmt.Sprintf("%s: %d", c.name(n.ID()), count[n.ID()]))
		delete(count, n.ID())
	}
	for id, k := range count {
		parts = append(parts, fmt.Sprintf("%s: %d", c.name(id), k))
	}
	return strings.Join(parts, ", ")
}

// nodeState returns the state Redis `nodes` holds for id, and whether the
// node is there.
func (c *cluster) nodeState(id string) (livekit.NodeState, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes, err := harness.RedisNodes(ctx, c.redis.Client())
	if err != nil || nodes[id] == nil {
		return 0, false
	}
	return nodes[id].GetState(), true
}

// loggedNodeState reports whether Caddy's log has the registry's "livekit
// node" line for node id in state (it logs every change of state).
func loggedNodeState(logs, id string, state livekit.NodeState) bool {
	for _, line := range strings.Split(logs, "\n") {
		var e struct{ Msg, Node, State string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "livekit node" && e.Node == id && e.State == state.String() {
			return true
		}
	}
	return false
}

var quietSDK sync.Once

// client is a real SDK participant that records what happened to its
// connection after the join.
type client struct {
	room, identity string
	lk             *lksdk.Room
	log            *dropLog
	disconnected   atomic.Int32
}

// connect joins room as identity through url with server-sdk-go, like
// harness.TryJoin, with a connect timeout and a logger that records every
// connection loss. The caller disconnects.
func connect(url, room, identity string, timeout time.Duration) (*client, error) {
	quietSDK.Do(func() {
		if os.Getenv("LKLB_CLIENT_LOGS") != "1" {
			lksdk.SetLogger(logger.GetDiscardLogger())
		}
	})
	cl := &client{room: room, identity: identity, log: &dropLog{}}
	cb := lksdk.NewRoomCallback()
	cb.OnDisconnected = func() { cl.disconnected.Add(1) }
	cb.OnReconnected = func() { cl.log.add(drop{at: time.Now(), reason: reconnected}) }
	lk, err := lksdk.ConnectToRoomWithToken(url, harness.Token(room, identity), cb,
		lksdk.WithAutoSubscribe(false), lksdk.WithConnectTimeout(timeout), lksdk.WithLogger(cl.log.logger()))
	if err != nil {
		if why := cl.log.joinErrors(); len(why) > 0 {
			err = fmt.Errorf("%w [%s]", err, strings.Join(why, "; "))
		}
		return nil, err
	}
	cl.lk = lk
	return cl, nil
}

// drop is one connection loss the SDK handled after the join, or the end
// of one (reason reconnected).
type drop struct {
	at     time.Time
	reason string // the SDK's: transport-close (signal WebSocket lost), ice-failed, leave-resume, ...
}

// reconnected marks the SDK's OnReconnected in a dropLog.
const reconnected = "reconnected"

// episodes groups drops into losses, each ending with the SDK's
// reconnect: one loss shows up as several reasons (ice-failed, LiveKit's
// leave-resume, the WebSocket's transport-close), and a loss that lasts
// shows up again at every failed resume. The last may still be open.
func episodes(drops []drop) [][]drop {
	var out [][]drop
	open := false
	for _, d := range drops {
		if d.reason == reconnected {
			open = false
			continue
		}
		if !open {
			out = append(out, nil)
			open = true
		}
		out[len(out)-1] = append(out[len(out)-1], d)
	}
	return out
}

// dropLog collects the SDK's "handling disconnect" log entries (engine.go
// handleDisconnect), which name why a connection was lost: the room
// callbacks (OnReconnecting) do not say whether the signal WebSocket, which
// passes the proxy, or the media, which does not, was lost.
type dropLog struct {
	mu    sync.Mutex
	drops []drop
	// the SDK's reasons for failed signal connection attempts ("signal
	// transport join failed"), which its join error does not carry
	joinErrs []string
}

// joinErrors returns why the SDK's signal connection attempts failed.
func (d *dropLog) joinErrors() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.joinErrs)
}

func (d *dropLog) logger() logger.Logger { return sdkLogger{Logger: logger.GetDiscardLogger(), d: d} }

func (d *dropLog) add(dr drop) {
	d.mu.Lock()
	d.drops = append(d.drops, dr)
	d.mu.Unlock()
}

func (d *dropLog) list() []drop {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.drops)
}

// sdkLogger is a discarding logger.Logger that passes "handling disconnect"
// and failed signal connection attempts to its dropLog, however the SDK
// derives loggers from it.
type sdkLogger struct {
	logger.Logger
	d *dropLog
}

func (l sdkLogger) Debugw(msg string, kv ...any) {
	if msg != "handling disconnect" {
		return
	}
	dr := drop{at: time.Now()}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "reason" {
			dr.reason = fmt.Sprint(kv[i+1])
		}
		if kv[i] == "closed" && kv[i+1] == true {
			return // our own Disconnect
		}
	}
	l.d.add(dr)
}

// Infow keeps why a signal connection attempt failed.
func (l sdkLogger) Infow(msg string, kv ...any) {
	if msg != "signal transport join failed" && msg != "signal transport validate failed" {
		return
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "error" {
			l.d.mu.Lock()
			l.d.joinErrs = append(l.d.joinErrs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), msg, kv[i+1]))
			l.d.mu.Unlock()
		}
	}
}
func (l sdkLogger) WithValues(...any) logger.Logger { return l }
func (l sdkLogger) WithUnlikelyValues(kv ...any) logger.UnlikelyLogger {
	return logger.NewUnlikelyLogger(l, kv...)
}
func (l sdkLogger) WithName(string) logger.Logger      { return l }
func (l sdkLogger) WithComponent(string) logger.Logger { return l }
func (l sdkLogger) WithCallDepth(int) logger.Logger    { return l }
func (l sdkLogger) WithItemSampler() logger.Logger     { return l }
func (l sdkLogger) WithoutSampler() logger.Logger      { return l }
func (l sdkLogger) WithDeferredValues() (logger.Logger, logger.DeferredFieldResolver) {
	_, r := l.Logger.WithDeferredValues()
	return l, r
}

// mustConnect is connect that fails the test, and disconnects when the test ends.
func mustConnect(t *testing.T, url, room, identity string) *client {
	t.Helper()
	cl, err := connect(url, room, identity, 10*time.Second)
	if err != nil {
		t.Fatalf("join %s as %s via %s: %v", room, identity, url, err)
	}
	t.Cleanup(cl.lk.Disconnect)
	return cl
}

// rawJoin opens a signal WebSocket to base/rtc with a valid token for
// identity in room, as the JS SDK does, waits for LiveKit's JoinResponse
// and leaves. It returns the node the JoinResponse names (the room's node).
// It is a join without WebRTC: hundreds of them are cheap.
func rawJoin(base, room, identity string) (string, error) {
	return rawJoinTimeout(base, room, identity, 20*time.Second)
}

// rawJoinTimeout is rawJoin that gives up after timeout.
func rawJoinTimeout(base, room, identity string, timeout time.Duration) (string, error) {
	u := base + "/rtc?access_token=" + url.QueryEscape(harness.Token(room, identity)) +
		"&protocol=" + strconv.Itoa(lksdk.PROTOCOL) + "&auto_subscribe=0&sdk=go"
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: timeout}
	conn, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return "", fmt.Errorf("upgrade: %v (status %d)", err, resp.StatusCode)
		}
		return "", fmt.Errorf("upgrade: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return "", fmt.Errorf("waiting for the JoinResponse: %w", err)
		}
		var msg livekit.SignalResponse
		if err := proto.Unmarshal(data, &msg); err != nil {
			return "", fmt.Errorf("signal message: %w", err)
		}
		if j := msg.GetJoin(); j != nil {
			leave, _ := proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{Leave: &livekit.LeaveRequest{}}})
			_ = conn.WriteMessage(websocket.BinaryMessage, leave)
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return j.GetServerInfo().GetNodeId(), nil
		}
	}
}

// nodeWatch samples the proxy's view of the nodes (its admin endpoint's
// GET /livekit/nodes) while a test runs: how often each node was not
// routable to the proxy, and the oldest stats it saw. Placement and
// routing follow this view, so it explains where rooms went.
type nodeWatch struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen map[string]*nodeSeen
	errs int
}

type nodeSeen struct {
	samples, notRoutable int
	maxStatsAge          float64
	maxRooms             int
}

func watchNodes(adminAddr string) *nodeWatch {
	w := &nodeWatch{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]*nodeSeen{}}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			var view struct {
				Nodes []struct {
					ID       string  `json:"id"`
					StatsAge float64 `json:"stats_age_seconds"`
					Rooms    int     `json:"rooms"`
					Routable bool    `json:"routable"`
				} `json:"nodes"`
			}
			resp, err := client.Get("http://" + adminAddr + "/livekit/nodes")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&view)
				resp.Body.Close()
			}
			w.mu.Lock()
			if err != nil {
				w.errs++
			}
			for _, n := range view.Nodes {
				s := w.seen[n.ID]
				if s == nil {
					s = &nodeSeen{}
					w.seen[n.ID] = s
				}
				s.samples++
				if !n.Routable {
					s.notRoutable++
				}
				s.maxStatsAge = max(s.maxStatsAge, n.StatsAge)
				s.maxRooms = max(s.maxRooms, n.Rooms)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// report stops the watch and describes what it saw, node by node.
func (w *nodeWatch) report(c *cluster) string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, n := range c.nodes {
		if s := w.seen[n.ID()]; s != nil {
			parts = append(parts, fmt.Sprintf("%s: not routable in %d of %d samples, stats up to %.1fs old, up to %d rooms",
				c.name(n.ID()), s.notRoutable, s.samples, s.maxStatsAge, s.maxRooms))
		}
	}
	if w.errs > 0 {
		parts = append(parts, fmt.Sprintf("%d samples failed", w.errs))
	}
	return strings.Join(parts, "; ")
}

// envInt is the integer in environment variable name, or def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// summary is "median M, max X (n=N)" of ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %v, max %v, min %v (n=%d)", med.Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), s[0].Round(time.Millisecond), len(s))
}
