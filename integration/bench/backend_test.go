package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/livekit/protocol/livekit"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// nodeHeader: the fake backend names itself in its 101 response, so clients
// can check that they landed on their room's node.
const nodeHeader = "X-Bench-Node"

// joinMessage stands for LiveKit's first signal message (a JoinResponse is
// a few KiB of protobuf).
var joinMessage = bytes.Repeat([]byte{0x5a}, 2048)

// fakeNode is one entry of the `nodes` hash whose HTTP side is served by a
// backend of this package.
type fakeNode struct {
	ID string
	IP string
}

// fakeNodes returns n nodes on 127.0.0.2, 127.0.0.3, ... (at most 253).
func fakeNodes(n int) []fakeNode {
	nodes := make([]fakeNode, n)
	for i := range nodes {
		nodes[i] = fakeNode{ID: fmt.Sprintf("ND_bench%04d", i), IP: fmt.Sprintf("127.0.0.%d", i+2)}
	}
	return nodes
}

// backend behaves like livekit-server's /rtc for the proxy: GET
// /rtc?access_token=JWT (or a bearer token) is upgraded to a WebSocket, the
// server sends one binary message, echoes one message and closes. It does
// not verify the token: the cost measured is the proxy's.
type backend struct {
	srv  *http.Server
	byIP map[string]string // local IP -> node id
}

// startBackend serves the nodes' /rtc on port of each node's IP (one
// listener per IP), or, with wildcard, on one listener on every address of
// the namespace (for more nodes than are worth a listener each).
func startBackend(t testing.TB, nodes []fakeNode, port int, wildcard bool) *backend {
	t.Helper()
	be := &backend{byIP: map[string]string{}}
	for _, n := range nodes {
		be.byIP[n.IP] = n.ID
	}
	up := websocket.Upgrader{
		ReadBufferSize: 4096, WriteBufferSize: 4096,
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/rtc", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("access_token") == "" && r.Header.Get("Authorization") == "" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		id := be.nodeOf(r)
		conn, err := up.Upgrade(w, r, http.Header{nodeHeader: {id}})
		if err != nil {
			return // Upgrade answered
		}
		defer conn.Close()
		deadline := time.Now().Add(10 * time.Second)
		conn.SetReadDeadline(deadline)
		conn.SetWriteDeadline(deadline)
		if conn.WriteMessage(websocket.BinaryMessage, joinMessage) != nil {
			return
		}
		mt, msg, err := conn.ReadMessage()
		if err != nil || conn.WriteMessage(mt, msg) != nil {
			return
		}
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline)
	})
	be.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	addrs := []string{":" + strconv.Itoa(port)}
	if !wildcard {
		addrs = addrs[:0]
		for _, n := range nodes {
			addrs = append(addrs, net.JoinHostPort(n.IP, strconv.Itoa(port)))
		}
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("backend: %v", err)
		}
		go be.srv.Serve(l)
	}
	t.Cleanup(func() { be.srv.Close() })
	return be
}

func (be *backend) nodeOf(r *http.Request) string {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	tcp, _ := a.(*net.TCPAddr)
	if tcp == nil {
		return ""
	}
	return be.byIP[tcp.IP.String()]
}

// registerNodes writes nodes into Redis `nodes` as SERVING livekit.Node
// protobufs with fresh stats, and rewrites them every second (LiveKit calls a
// node unavailable once its stats are 5 s old) until the test ends.
func registerNodes(t testing.TB, rc *redis.Client, nodes []fakeNode) {
	t.Helper()
	write := func(ctx context.Context) error {
		now := time.Now().Unix()
		vals := make([]any, 0, 2*len(nodes))
		for _, n := range nodes {
			data, err := proto.Marshal(&livekit.Node{
				Id: n.ID, Ip: n.IP, NumCpus: 1, Type: livekit.NodeType_SERVER, State: livekit.NodeState_SERVING,
				Stats: &livekit.NodeStats{StartedAt: now, UpdatedAt: now, NumCpus: 1},
			})
			if err != nil {
				return err
			}
			vals = append(vals, n.ID, data)
		}
		return rc.HSet(ctx, harness.NodesKey, vals...).Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := write(ctx)
	cancel()
	if err != nil {
		t.Fatalf("register fake nodes: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = write(ctx) // a missed beat is caught by the next one
				cancel()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// roomName is the name of room i of the benchmarks' room_node_map.
func roomName(i int) string { return fmt.Sprintf("room-%07d", i) }

// fillRooms places rooms [from, to) in room_node_map, room i on
// nodes[i%len(nodes)], with pipelined multi-field HSETs.
func fillRooms(ctx context.Context, rc *redis.Client, nodes []fakeNode, from, to int) error {
	const perCommand, perPipeline = 1000, 50
	for i := from; i < to; {
		pipe := rc.Pipeline()
		for c := 0; c < perPipeline && i < to; c++ {
			vals := make([]any, 0, 2*perCommand)
			for k := 0; k < perCommand && i < to; k, i = k+1, i+1 {
				vals = append(vals, roomName(i), nodes[i%len(nodes)].ID)
			}
			pipe.HSet(ctx, harness.RoomNodeMapKey, vals...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	n, err := rc.HLen(ctx, harness.RoomNodeMapKey).Result()
	if err == nil && n < int64(to) {
		err = errors.New("room_node_map has " + strconv.FormatInt(n, 10) + " rooms, want " + strconv.Itoa(to))
	}
	return err
}
