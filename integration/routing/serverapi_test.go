package routing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// drain sets node n aside as `caddy livekit drain` does, and waits until
// the proxy sees it.
func (c *cluster) drain(t *testing.T, n *harness.Node) {
	t.Helper()
	if err := c.Redis.Client().HSet(context.Background(), "caddy_livekit:drained", n.IP(), "test").Err(); err != nil {
		t.Fatal(err)
	}
	ok := harness.Poll(10*time.Second, func() bool {
		v, err := c.proxy.Nodes()
		for _, s := range v.Nodes {
			if s.ID == n.ID() {
				return err == nil && s.Drained
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("the proxy does not see %s drained", n.IP())
	}
}

// Rooms created with the server API through the proxy (server-sdk-go's
// RoomServiceClient) are placed by the proxy: none on a drained node, spread
// by load over the others, and LiveKit keeps the placement.
func TestServerAPICreateRoomHonoursDrain(t *testing.T) {
	c := startCluster(t, 3)
	drained := c.Nodes[2]
	c.drain(t, drained)
	rs := lksdk.NewRoomServiceClient(c.proxy.HTTP(), harness.APIKey, harness.APISecret)
	count := map[string]int{}
	var rooms []string
	for i := range 30 {
		room := fmt.Sprintf("api-room-%02d", i)
		if _, err := rs.CreateRoom(context.Background(), &livekit.CreateRoomRequest{Name: room, EmptyTimeout: 300}); err != nil {
			t.Fatalf("CreateRoom %s: %v", room, err)
		}
		rooms = append(rooms, room)
		count[c.RoomNode(room)]++
	}
	t.Logf("30 rooms created through the proxy's server API, %s drained: %s", drained.IP(), c.Distribution(count))
	if count[drained.ID()] > 0 || count[""] > 0 {
		t.Fatalf("rooms on the drained node or unplaced: %s", c.Distribution(count))
	}
	for _, n := range c.Nodes[:2] {
		if count[n.ID()] < 5 {
			t.Errorf("%s got %d of 30 rooms: not spread by load (%s)", c.Name(n.ID()), count[n.ID()], c.Distribution(count))
		}
	}
	// LiveKit kept every placement, and each room exists
	listed, err := rs.ListRooms(context.Background(), &livekit.ListRoomsRequest{Names: rooms})
	if err != nil || len(listed.Rooms) != len(rooms) {
		t.Fatalf("ListRooms: %d of %d rooms, %v", len(listed.GetRooms()), len(rooms), err)
	}
	for _, room := range rooms {
		if at := c.RoomNode(room); count[at] == 0 {
			t.Errorf("room_node_map[%s] moved to %s after creation", room, c.Name(at))
		}
	}
}

// The calls about a room reach its node through the proxy, whichever node
// that is: the participant is listed, found, updated and removed.
func TestServerAPIParticipantCalls(t *testing.T) {
	c := startCluster(t, 2)
	rs := lksdk.NewRoomServiceClient(c.proxy.HTTP(), harness.APIKey, harness.APISecret)
	ctx := context.Background()
	for i, n := range c.Nodes {
		room, who := fmt.Sprintf("ops-%d", i), fmt.Sprintf("ops-user-%d", i)
		c.Place(t, room, n.ID())
		p := harness.Join(t, c.proxy.WS(), room, who)
		defer p.Disconnect()
		if got, err := rs.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: room}); err != nil || len(got.Participants) != 1 {
			t.Fatalf("ListParticipants of %s on %s: %v %v", room, c.Name(n.ID()), got, err)
		}
		if _, err := rs.GetParticipant(ctx, &livekit.RoomParticipantIdentity{Room: room, Identity: who}); err != nil {
			t.Fatalf("GetParticipant on %s: %v", c.Name(n.ID()), err)
		}
		if _, err := rs.UpdateParticipant(ctx, &livekit.UpdateParticipantRequest{Room: room, Identity: who, Metadata: "m"}); err != nil {
			t.Fatalf("UpdateParticipant on %s: %v", c.Name(n.ID()), err)
		}
		if _, err := rs.UpdateRoomMetadata(ctx, &livekit.UpdateRoomMetadataRequest{Room: room, Metadata: "r"}); err != nil {
			t.Fatalf("UpdateRoomMetadata on %s: %v", c.Name(n.ID()), err)
		}
		if _, err := rs.RemoveParticipant(ctx, &livekit.RoomParticipantIdentity{Room: room, Identity: who}); err != nil {
			t.Fatalf("RemoveParticipant on %s: %v", c.Name(n.ID()), err)
		}
		if c.RoomNode(room) != n.ID() {
			t.Fatalf("the calls moved %s", room)
		}
	}
}

// A CreateRoom through one proxy racing joins of the same room through
// another never splits the room: every participant is on the node
// room_node_map names, and they see each other.
func TestServerAPICreateRoomRacingJoins(t *testing.T) {
	c := startCluster(t, 3)
	other := c.StartProxy(t, harness.LB{Options: []string{"load_measure rooms"}})
	rs := lksdk.NewRoomServiceClient(c.proxy.HTTP(), harness.APIKey, harness.APISecret)
	for i := range 5 {
		room := fmt.Sprintf("race-%d", i)
		var wg sync.WaitGroup
		var clients []*harness.Client
		var mu sync.Mutex
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := harness.Connect(other.WS(), room, fmt.Sprintf("%s-user-%d", room, j), 20*time.Second)
				if err != nil {
					t.Errorf("join %s: %v", room, err)
					return
				}
				mu.Lock()
				clients = append(clients, cl)
				mu.Unlock()
			}()
		}
		if _, err := rs.CreateRoom(context.Background(), &livekit.CreateRoomRequest{Name: room}); err != nil {
			t.Errorf("CreateRoom %s: %v", room, err)
		}
		wg.Wait()
		at := c.RoomNode(room)
		for _, cl := range clients {
			if got := c.MustSignalNode(t, cl.Identity); got != at {
				t.Errorf("%s signalled on %s, room_node_map says %s: split", cl.Identity, c.Name(got), c.Name(at))
			}
		}
		if !harness.Poll(10*time.Second, func() bool { return harness.AllSeeEachOther(clients) }) {
			t.Errorf("%s: participants do not see each other", room)
		}
	}
}

// A body the proxy cannot read gets the proxy's own Twirp error (the SDKs
// report it), and LiveKit never sees it; a CreateRoom LiveKit refuses (a
// name over its 256-byte limit) leaves no placement behind.
func TestServerAPIBadBodies(t *testing.T) {
	c := startCluster(t, 1)
	long := strings.Repeat("n", 300)
	rs := lksdk.NewRoomServiceClient(c.proxy.HTTP(), harness.APIKey, harness.APISecret)
	if _, err := rs.CreateRoom(context.Background(), &livekit.CreateRoomRequest{Name: long}); err == nil {
		t.Fatal("LiveKit created a room with a 300-byte name")
	}
	if at := c.RoomNode(long); at != "" {
		t.Fatalf("a refused CreateRoom left its placement on %s", c.Name(at))
	}
	tok, err := auth.NewAccessToken(harness.APIKey, harness.APISecret).SetVideoGrant(&auth.VideoGrant{RoomCreate: true}).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		body   []byte
		status int
		msg    string
	}{
		"malformed": {[]byte(`{"name":`), http.StatusBadRequest, "malformed CreateRoom request body"},
		"oversized": {[]byte(`{"name":"` + strings.Repeat("x", 2<<20) + `"}`), http.StatusRequestEntityTooLarge, "request body over 1048576 bytes"},
	} {
		body := want.body
		req, _ := http.NewRequest("POST", c.proxy.HTTP()+"/twirp/livekit.RoomService/CreateRoom", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Code, Msg string }
		if resp.StatusCode != want.status || json.Unmarshal(b, &e) != nil || e.Code == "" || e.Msg != want.msg {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
}
