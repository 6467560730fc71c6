package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/redis/go-redis/v9"
)

// The API key every node accepts.
const (
	APIKey    = "devkey"
	APISecret = "caddy-livekit-integration-test-secret" // LiveKit wants >= 32 characters
)

// HTTPPort is the signal/API port of every node (each node on its own IP).
const HTTPPort = 7880

// Redis keys that LiveKit uses (see shared/livekit-facts.md).
const (
	NodesKey       = "nodes"         // hash: node ID -> proto livekit.Node
	RoomNodeMapKey = "room_node_map" // hash: room name -> node ID
)

// How long a node may take to register in Redis as SERVING.
const nodeStartTimeout = 30 * time.Second

// NodeOptions adjusts the nodes that StartNodes starts.
type NodeOptions struct {
	// Configure, if set, may change node i's configuration before it starts.
	// cfg is the YAML document as nested maps, with the keys port,
	// bind_addresses, rtc, redis, keys, turn, logging and an empty room map:
	//	cfg["room"].(map[string]any)["departure_timeout"] = 1
	Configure func(i int, cfg map[string]any)
}

// Node is one livekit-server process on its own loopback IP. A restart makes a
// new incarnation with a new node ID; log searches cover every incarnation.
type Node struct {
	t          testing.TB
	index      int
	ip         string
	bin        string
	configPath string
	logPath    string
	redis      *redis.Client

	mu   sync.Mutex
	runs []*nodeRun // every incarnation, the current one last
}

type nodeRun struct {
	id   string
	proc *process
}

// StartNodes starts n livekit-server nodes (LIVEKIT_SERVER_BIN, else
// livekit-server on PATH, else $(go env GOPATH)/bin/server) on 127.0.0.2 ...
// 127.0.0.(n+1), port 7880 each, sharing the Redis at redisAddr. It returns once
// every node is in Redis `nodes` as SERVING. The nodes are killed when the test ends.
func StartNodes(t testing.TB, redisAddr string, n int, opts NodeOptions) []*Node {
	t.Helper()
	if !isolated() && os.Getenv(EnvHostNetwork) != "1" {
		t.Fatal("harness: call harness.Main(m) from TestMain, or set " + EnvHostNetwork + "=1")
	}
	bin, err := findBinary("LIVEKIT_SERVER_BIN", "livekit-server", "server")
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	stunAddr := startSTUN(t)
	dir := t.TempDir()

	nodes := make([]*Node, n)
	for i := range nodes {
		nd := &Node{
			t: t, index: i, ip: fmt.Sprintf("127.0.0.%d", i+2), bin: bin, redis: client,
			configPath: filepath.Join(dir, fmt.Sprintf("node%d.yaml", i+1)),
			logPath:    filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)),
		}
		if isolated() {
			if err := addLoopbackAddr(nd.ip); err != nil {
				t.Fatal(err)
			}
		}
		cfg := nodeConfig(nd.ip, i, FreePort(t), redisAddr, stunAddr)
		if opts.Configure != nil {
			opts.Configure(i, cfg)
		}
		data, err := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nd.configPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nd.killAll)
		nd.start()
		nodes[i] = nd
	}
	for _, nd := range nodes {
		nd.waitServing()
	}
	return nodes
}

// nodeConfig is the configuration of node i (0-based) at ip.
func nodeConfig(ip string, i, tcpPort int, redisAddr, stunAddr string) map[string]any {
	rtc := map[string]any{
		"node_ip":          ip,
		"use_external_ip":  false,
		"tcp_port":         tcpPort,
		"port_range_start": 40000 + 200*i,
		"port_range_end":   40000 + 200*i + 199,
		"stun_servers":     []string{stunAddr},
	}
	if isolated() {
		// Bind ICE to the node's own loopback IP, which the node also advertises.
		rtc["enable_loopback_candidate"] = true
		rtc["ips"] = map[string]any{"includes": []string{ip + "/32"}}
	}
	return map[string]any{
		"port":           HTTPPort,
		"bind_addresses": []string{ip},
		"rtc":            rtc,
		"redis":          map[string]any{"address": redisAddr},
		"keys":           map[string]string{APIKey: APISecret},
		"turn":           map[string]any{"enabled": false},
		"room":           map[string]any{},
		"logging":        map[string]any{"level": "debug", "json": true},
	}
}

// ID is the node ID (ND_...) of the current incarnation.
func (n *Node) ID() string { return n.current().id }

// IP is the node's loopback IP, also its rtc.node_ip.
func (n *Node) IP() string { return n.ip }

// HTTPAddr is "127.0.0.N:7880".
func (n *Node) HTTPAddr() string { return fmt.Sprintf("%s:%d", n.ip, HTTPPort) }

// URL is the WebSocket URL for clients that connect to the node directly.
func (n *Node) URL() string { return "ws://" + n.HTTPAddr() }

// LogPath is the file that has the output of every incarnation.
func (n *Node) LogPath() string { return n.logPath }

// Kill kills the node with SIGKILL and waits for it to exit.
func (n *Node) Kill() { n.current().proc.kill() }

// Term sends SIGTERM: the node drains (SHUTTING_DOWN) and exits later; see WaitExit.
func (n *Node) Term() { n.current().proc.signal(syscall.SIGTERM) }

// WaitExit reports whether the node exited within timeout.
func (n *Node) WaitExit(timeout time.Duration) bool { return n.current().proc.wait(timeout) }

// Pause freezes the node (SIGSTOP); its stats in Redis go stale after 5 s.
func (n *Node) Pause() { n.current().proc.signal(syscall.SIGSTOP) }

// Resume continues a paused node (SIGCONT).
func (n *Node) Resume() { n.current().proc.signal(syscall.SIGCONT) }

// Restart kills the node if it still runs (like a crash; use Term and WaitExit
// first for a clean stop), starts it again with the same configuration and
// waits until it is SERVING under its new node ID.
func (n *Node) Restart() {
	n.t.Helper()
	n.Kill()
	n.start()
	n.waitServing()
}

// Logs returns the output lines of every incarnation.
func (n *Node) Logs() []string {
	var lines []string
	for _, r := range n.incarnations() {
		lines = append(lines, r.proc.logs.Lines()...)
	}
	return lines
}

func (n *Node) current() *nodeRun {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runs[len(n.runs)-1]
}

func (n *Node) incarnations() []*nodeRun {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*nodeRun(nil), n.runs...)
}

func (n *Node) start() {
	n.t.Helper()
	p, err := startProcess(n.bin, []string{"--config", n.configPath}, nil, n.logPath)
	if err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.runs = append(n.runs, &nodeRun{proc: p})
	n.mu.Unlock()
}

// waitServing reads the new incarnation's node ID from its start-up log line,
// then waits until Redis has that node as SERVING.
func (n *Node) waitServing() {
	n.t.Helper()
	r := n.current()
	var state livekit.NodeState
	ok := Poll(nodeStartTimeout, func() bool {
		if r.proc.exited() {
			return true
		}
		if r.id == "" {
			line, found := r.proc.logs.find(func(l string) bool {
				return strings.Contains(l, `"starting LiveKit server"`)
			})
			var entry struct {
				NodeID string `json:"nodeID"`
			}
			if !found || json.Unmarshal([]byte(line), &entry) != nil || entry.NodeID == "" {
				return false
			}
			r.id = entry.NodeID // read by others only once waitServing returned
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		nodes, err := RedisNodes(ctx, n.redis)
		if node := nodes[r.id]; err == nil && node != nil {
			state = node.GetState()
		}
		return state == livekit.NodeState_SERVING
	})
	if !ok || r.proc.exited() {
		n.t.Fatalf("node %s (%s) not SERVING in Redis (state %v, exited %v); log %s:\n%s",
			n.ip, r.id, state, r.proc.exited(), n.logPath, tail(r.proc.logs.Lines(), 30))
	}
}

// killAll kills every incarnation; it runs when the test ends.
func (n *Node) killAll() {
	for _, r := range n.incarnations() {
		r.proc.kill()
	}
	if n.t.Failed() {
		n.t.Logf("node %s log (last lines of %s):\n%s", n.ip, n.logPath, tail(n.Logs(), 15))
	}
}
