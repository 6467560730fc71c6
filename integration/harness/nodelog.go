package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// AcceptedSignal reports whether the node (any incarnation) has so far logged
// that it accepted the signal WebSocket of participant identity. It does not
// wait; see SignalNodeOf.
func (n *Node) AcceptedSignal(identity string) bool {
	_, ok := n.signalRun(identity)
	return ok
}

// SignalNodeOf waits up to 5 s for one of nodes to log that it accepted the
// signal WebSocket of participant identity, and returns that node's ID (of the
// incarnation that logged it; the first such node in nodes if several did).
func SignalNodeOf(nodes []*Node, identity string) (nodeID string, ok bool) {
	Poll(5*time.Second, func() bool {
		for _, n := range nodes {
			if id, found := n.signalRun(identity); found {
				nodeID, ok = id, true
				return true
			}
		}
		return false
	})
	return nodeID, ok
}

// signalRun returns the node ID of the incarnation that logged LiveKit's
// "new client WS connected" for identity.
func (n *Node) signalRun(identity string) (string, bool) {
	for _, r := range n.incarnations() {
		_, found := r.proc.logs.find(func(line string) bool {
			p, ok := WSConnected(line)
			return ok && p == identity
		})
		if found {
			return r.id, true
		}
	}
	return "", false
}

// WSConnected returns the participant of a LiveKit log line "new client WS
// connected" (pkg/service/rtcservice.go: the node accepted the signal
// WebSocket), if line is one. The line's JSON may follow a prefix.
func WSConnected(line string) (participant string, ok bool) {
	const msg = "new client WS connected"
	i := strings.Index(line, "{")
	if i < 0 || !strings.Contains(line, msg) {
		return "", false
	}
	var entry struct {
		Msg         string `json:"msg"`
		Participant string `json:"participant"`
	}
	if json.Unmarshal([]byte(line[i:]), &entry) != nil || entry.Msg != msg || entry.Participant == "" {
		return "", false
	}
	return entry.Participant, true
}

// RoomNode returns the node ID that Redis room_node_map holds for room, or "".
func RoomNode(ctx context.Context, client *redis.Client, room string) string {
	id, err := client.HGet(ctx, RoomNodeMapKey, room).Result()
	if err != nil {
		return ""
	}
	return id
}

// RedisNodes returns the nodes registered in Redis `nodes`, by node ID.
func RedisNodes(ctx context.Context, client *redis.Client) (map[string]*livekit.Node, error) {
	raw, err := client.HGetAll(ctx, NodesKey).Result()
	if err != nil {
		return nil, err
	}
	nodes := make(map[string]*livekit.Node, len(raw))
	for id, data := range raw {
		var node livekit.Node
		if err := proto.Unmarshal([]byte(data), &node); err != nil {
			return nil, fmt.Errorf("node %s: %w", id, err)
		}
		nodes[id] = &node
	}
	return nodes, nil
}
