package cluster

import (
	"fmt"
	"strconv"

	"github.com/livekit/protocol/livekit"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// BadNode is an entry of the `nodes` hash that the proxy ignores: any process
// that reaches Redis can write there, and one unreadable or lying entry must
// not stop routing nor take a healthy node out.
type BadNode struct {
	Field  string `json:"field"` // quoted and cut to maxFieldShown
	Reason string `json:"reason"`
}

// maxFieldShown bounds how much of a hash field a log line or status shows.
const maxFieldShown = 64

// decodeNodes reads the `nodes` hash, setting aside what LiveKit would
// never write.
func decodeNodes(entries map[string]string) ([]*livekit.Node, []BadNode) {
	nodes := make([]*livekit.Node, 0, len(entries))
	var bad []BadNode
	for field, b := range entries {
		n, err := decodeNode(field, []byte(b))
		if err != nil {
			bad = append(bad, BadNode{Field: Quote(field), Reason: err.Error()})
			continue
		}
		nodes = append(nodes, n)
	}
	return nodes, bad
}

// decodeNode reads one `nodes` entry as LiveKit writes it (the field is
// the node id, the value proto.Marshal(livekit.Node)), and refuses what
// LiveKit would never write.
func decodeNode(field string, value []byte) (*livekit.Node, error) {
	n := &livekit.Node{}
	if err := proto.Unmarshal(value, n); err != nil {
		return nil, fmt.Errorf("not a livekit.Node protobuf")
	}
	switch {
	case n.Id == "":
		return nil, fmt.Errorf("no node id")
	case !validNodeID(n.Id):
		return nil, fmt.Errorf("node id %s is not one LiveKit makes", Quote(n.Id))
	case n.Id != field:
		// a copy of a healthy node's id under another field would take that
		// node out, or route its rooms to an address of the writer's choice
		return nil, fmt.Errorf("entry carries node id %s", Quote(n.Id))
	case !validRegion(n.Region):
		// it becomes a metric label and picks where new rooms go
		return nil, fmt.Errorf("region %s is not a region name", Quote(n.Region))
	}
	return n, nil
}

// validRegion: empty, or up to 64 printable ASCII characters without spaces
// (LiveKit's own are such as us-west-2).
func validRegion(r string) bool {
	if len(r) > 64 {
		return false
	}
	for i := 0; i < len(r); i++ {
		if r[i] <= ' ' || r[i] > '~' {
			return false
		}
	}
	return true
}

// validNodeID: LiveKit's ids are "ND_" and 12 base62 characters; accept any
// short run of letters, digits, '_' and '-', never empty.
func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// maxLogged bounds a client's or Redis' string in a log line: a 1 MB room
// name or placement must not make a 1 MB line.
const maxLogged = 256

// Field is a zap field of s, cut to maxLogged bytes.
func Field(key, s string) zap.Field {
	if len(s) > maxLogged {
		s = s[:maxLogged] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return zap.String(key, s)
}

// Quote quotes s for a log line or an error, cut to maxFieldShown bytes.
func Quote(s string) string {
	if len(s) > maxFieldShown {
		return strconv.Quote(s[:maxFieldShown]) + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return strconv.Quote(s)
}
