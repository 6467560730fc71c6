package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"google.golang.org/protobuf/proto"
)

// SDKQuery is what server-sdk-go adds to the signal URL after the token.
var SDKQuery = "&protocol=" + strconv.Itoa(lksdk.PROTOCOL) + "&auto_subscribe=0&sdk=go"

// SignalJoined is what a raw signal join measured and received.
type SignalJoined struct {
	Upgrade time.Duration // dial to the 101 answer (LiveKit upgrades once the room's node answered)
	Join    time.Duration // dial to LiveKit's JoinResponse
	NodeID  string        // the node the JoinResponse names (the room's node)
}

// RawJoin opens a signal WebSocket to base/rtc (base: ws://HOST:PORT) with
// token and query (SDKQuery, as the SDKs send it) in the URL, waits for
// LiveKit's JoinResponse and leaves. It is a join without WebRTC: hundreds
// of them are cheap. It gives up after timeout.
func RawJoin(ctx context.Context, base, token, query string, timeout time.Duration) (SignalJoined, error) {
	return RawJoinFrom(ctx, "", nil, base, token, query, timeout)
}

// RawJoinFrom is RawJoin from the source IP from ("": any) with header
// added to the upgrade request, as a client behind an edge proxy (Caddy's
// trusted_proxies) would arrive.
func RawJoinFrom(ctx context.Context, from string, header http.Header, base, token, query string, timeout time.Duration) (SignalJoined, error) {
	var res SignalJoined
	u := base + "/rtc?access_token=" + url.QueryEscape(token) + query
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: timeout}
	if from != "" {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		d.NetDialContext = nd.DialContext
	}
	start := time.Now()
	conn, resp, err := d.DialContext(ctx, u, header)
	res.Upgrade = time.Since(start)
	if err != nil {
		if resp != nil {
			return res, fmt.Errorf("upgrade: %w (status %d)", err, resp.StatusCode)
		}
		return res, fmt.Errorf("upgrade: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return res, fmt.Errorf("waiting for the JoinResponse: %w", err)
		}
		if mt != websocket.BinaryMessage {
			continue
		}
		var msg livekit.SignalResponse
		if err := proto.Unmarshal(data, &msg); err != nil {
			return res, fmt.Errorf("signal message: %w", err)
		}
		if j := msg.GetJoin(); j != nil {
			res.Join, res.NodeID = time.Since(start), j.GetServerInfo().GetNodeId()
			_ = conn.WriteMessage(websocket.BinaryMessage, leaveRequest)
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return res, nil
		}
	}
}

// SignalJoin is RawJoin of identity into room with a token of Token and
// SDKQuery; it returns the node the JoinResponse names.
func SignalJoin(base, room, identity string, timeout time.Duration) (string, error) {
	res, err := RawJoin(context.Background(), base, Token(room, identity), SDKQuery, timeout)
	return res.NodeID, err
}

var leaveRequest, _ = proto.Marshal(&livekit.SignalRequest{Message: &livekit.SignalRequest_Leave{
	Leave: &livekit.LeaveRequest{Reason: livekit.DisconnectReason_CLIENT_INITIATED},
}})
