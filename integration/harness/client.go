package harness

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// LBKeys are the lines of a livekit_lb block that verify tokens with the
// nodes' key, as every livekit_lb must unless it says `verify off`.
var LBKeys = []string{"api_key " + APIKey, "api_secret " + APISecret}

// Token is an access token for identity to join room, signed with APIKey/APISecret.
func Token(room, identity string) string { return TokenWith(APIKey, APISecret, room, identity) }

// TokenWith is an access token for identity to join room, signed with key
// and secret.
func TokenWith(key, secret, room, identity string) string {
	at := auth.NewAccessToken(key, secret).
		SetIdentity(identity).
		SetValidFor(time.Hour).
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room})
	jwt, err := at.ToJWT()
	if err != nil {
		panic(err) // only fails for an empty key or secret
	}
	return jwt
}

// Join connects identity to room through url (ws://HOST:PORT) with the Go SDK,
// like a real client: signal WebSocket, then WebRTC. It fails the test if that
// fails, and disconnects when the test ends.
func Join(t testing.TB, url, room, identity string) *lksdk.Room {
	t.Helper()
	r, err := TryJoin(url, room, identity)
	if err != nil {
		t.Fatalf("join %s as %s via %s: %v", room, identity, url, err)
	}
	t.Cleanup(r.Disconnect)
	return r
}

// TryJoin is Join for a join that may fail; the caller disconnects.
// The SDK's logs are discarded unless LKLB_CLIENT_LOGS=1.
func TryJoin(url, room, identity string) (*lksdk.Room, error) {
	return TryJoinWithToken(url, Token(room, identity))
}

var quietSDK sync.Once

// quiet discards the SDK's logs (the WebRTC stack logs there) unless
// LKLB_CLIENT_LOGS=1.
func quiet() {
	quietSDK.Do(func() {
		if os.Getenv("LKLB_CLIENT_LOGS") != "1" {
			lksdk.SetLogger(logger.GetDiscardLogger())
		}
	})
}

// JoinWithToken connects with a token minted elsewhere (the create-room
// endpoint) and disconnects when the test ends.
func JoinWithToken(t testing.TB, url, token string) *lksdk.Room {
	t.Helper()
	r, err := TryJoinWithToken(url, token)
	if err != nil {
		t.Fatalf("join via %s: %v", url, err)
	}
	t.Cleanup(r.Disconnect)
	return r
}

// TryJoinWithToken is JoinWithToken for a join that may fail; the caller
// disconnects.
func TryJoinWithToken(url, token string) (*lksdk.Room, error) {
	quiet()
	return lksdk.ConnectToRoomWithToken(url, token, lksdk.NewRoomCallback(), lksdk.WithAutoSubscribe(false))
}
