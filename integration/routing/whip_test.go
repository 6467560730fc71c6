package routing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// whipOffer is a publisher's SDP offer: one audio track to send.
func whipOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// A WHIP publish (LiveKit's built-in ingress, POST /whip/v1) is routed by its
// token's room like a join: to the node the room is placed on, and a new
// room is placed by the proxy.
func TestWHIPFollowsTheRoom(t *testing.T) {
	s := harness.StartStack(t, 2, harness.NodeOptions{})
	proxy := s.StartProxyWith(t, "debug", harness.LB{Options: []string{"load_measure rooms"}})
	rs := lksdk.NewRoomServiceClient(proxy.HTTP(), harness.APIKey, harness.APISecret)
	for _, c := range []struct{ room, at string }{{"whip-placed", s.Nodes[1].ID()}, {"whip-new", ""}} {
		if c.at != "" {
			s.Place(t, c.room, c.at)
		}
		req, _ := http.NewRequest("POST", proxy.HTTP()+"/whip/v1", bytes.NewReader([]byte(whipOffer(t))))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+harness.Token(c.room, c.room+"-publisher"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || !bytes.HasPrefix(answer, []byte("v=0")) {
			t.Fatalf("%s: WHIP answered %d %.200s", c.room, resp.StatusCode, answer)
		}
		at := s.RoomNode(c.room)
		if at == "" || (c.at != "" && at != c.at) {
			t.Fatalf("%s: room_node_map %q, want %q", c.room, at, c.at)
		}
		if routes := proxy.Logged("route", "room", c.room, "node", at); len(routes) == 0 {
			t.Errorf("%s: the proxy did not send the WHIP request to the room's node %s", c.room, s.Name(at))
		}
		got, err := rs.ListParticipants(context.Background(), &livekit.ListParticipantsRequest{Room: c.room})
		if err != nil || len(got.Participants) != 1 || got.Participants[0].Identity != c.room+"-publisher" {
			t.Fatalf("%s: participants %v, %v", c.room, got, err)
		}
	}
}
