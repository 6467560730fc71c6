// Command lkclient is the LiveKit client of the compose tests. It runs in a
// container on the stack's own network (never on the host's: the Go SDK's
// WebRTC sends mDNS multicast and would use the host's interfaces), talks only
// to the stack's Caddy, performs one scenario and prints JSON lines on stdout
// that the test parses. Logs go to stderr.
//
//	lkclient -api http://caddy:80 -key KEY pubsub   -room R
//	lkclient -api http://caddy:80 -key KEY rooms    -rooms 6 -per-room 2 -prefix c
//	lkclient -api http://caddy:80 -key KEY failover -room R -n 2
//	lkclient -api https://livekit.test -relay pubsub -room R   # TURN only
//
// Every join takes its token from POST /api/create-room (the endpoint of
// docker/Caddyfile) and connects to the URL that answer names, as a real
// application would.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

var (
	api = flag.String("api", "http://caddy:80", "the stack's Caddy, as seen inside its network")
	key = flag.String("key", os.Getenv("CREATE_ROOM_KEY"), "Bearer key of /api/create-room")
	// relay: ICE relay candidates only, as a client that reaches nothing but TCP 443 (the test
	// also drops UDP in the client's network namespace): media goes through the TURN servers the
	// room's node names, turns:<its TURN name>:443.
	relay = flag.Bool("relay", false, "relay (TURN) ICE candidates only")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lkclient [-api URL] [-key KEY] pubsub|rooms|failover [flags]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Getenv("LKCLIENT_SDK_LOGS") != "1" {
		lksdk.SetLogger(logger.GetDiscardLogger())
	}
	var err error
	switch args := flag.Args()[1:]; flag.Arg(0) {
	case "pubsub":
		err = pubsub(args)
	case "rooms":
		err = rooms(args)
	case "failover":
		err = failover(args)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		emit(map[string]any{"event": "error", "error": err.Error()})
		os.Exit(1)
	}
}

var stdout = json.NewEncoder(os.Stdout)
var stdoutMu sync.Mutex

// emit prints one JSON line (the test reads them as they come).
func emit(v map[string]any) {
	v["at_unix_ms"] = time.Now().UnixMilli()
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	_ = stdout.Encode(v)
}

type created struct {
	RoomName string `json:"room_name"`
	Token    string `json:"token"`
	URL      string `json:"url"`
}

// createRoom calls the create-room endpoint for identity in room.
func createRoom(room, identity string) (created, error) {
	var c created
	body, _ := json.Marshal(map[string]any{"room_name": room, "user_name": identity, "identity": identity})
	req, err := http.NewRequest(http.MethodPost, *api+"/api/create-room", bytes.NewReader(body))
	if err != nil {
		return c, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+*key)
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("create-room %s: HTTP %d: %s", room, resp.StatusCode, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("create-room %s: %w", room, err)
	}
	if c.Token == "" || c.URL == "" {
		return c, fmt.Errorf("create-room %s: no token or url in %s", room, b)
	}
	return c, nil
}

func join(c created, cb *lksdk.RoomCallback, autoSubscribe bool) (*lksdk.Room, error) {
	if cb == nil {
		cb = lksdk.NewRoomCallback()
	}
	opts := []lksdk.ConnectOption{lksdk.WithAutoSubscribe(autoSubscribe)}
	if *relay {
		opts = append(opts, lksdk.WithICETransportPolicy(webrtc.ICETransportPolicyRelay))
	}
	return lksdk.ConnectToRoomWithToken(c.URL, c.Token, cb, opts...)
}

// pubsub: alice publishes an Opus track with synthetic samples, bob joins
// the same room and must receive it (OnTrackSubscribed). The result names the
// candidate pairs alice's publisher and bob's subscriber connection use, and
// join_ms, alice's time from create-room to a published track whose media
// flows (her publisher connection's pair selected).
func pubsub(args []string) error {
	fs := flag.NewFlagSet("pubsub", flag.ExitOnError)
	room := fs.String("room", "pubsub", "room name")
	timeout := fs.Duration("timeout", 30*time.Second, "how long bob may wait for the track")
	_ = fs.Parse(args)
	start := time.Now()

	ca, err := createRoom(*room, "alice")
	if err != nil {
		return err
	}
	alice, err := join(ca, nil, false)
	if err != nil {
		return fmt.Errorf("alice joins via %s: %w", ca.URL, err)
	}
	defer alice.Disconnect()
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		return err
	}
	pub, err := alice.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "tone"})
	if err != nil {
		return fmt.Errorf("alice publishes: %w", err)
	}
	alicePair, err := selectedPair(alice.LocalParticipant.GetPublisherPeerConnection(), *timeout)
	if err != nil {
		return fmt.Errorf("alice's publisher connection: %w", err)
	}
	joinMS := time.Since(start).Milliseconds()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // 20 ms Opus frames of silence, so the track carries media
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil)
			}
		}
	}()

	cb, err := createRoom(*room, "bob")
	if err != nil {
		return err
	}
	got := make(chan string, 1)
	callback := lksdk.NewRoomCallback()
	callback.OnTrackSubscribed = func(tr *webrtc.TrackRemote, p *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		select {
		case got <- fmt.Sprintf("%s/%s/%s", rp.Identity(), p.SID(), tr.Codec().MimeType):
		default:
		}
	}
	bobJoin := time.Now()
	bob, err := join(cb, callback, true)
	if err != nil {
		return fmt.Errorf("bob joins via %s: %w", cb.URL, err)
	}
	defer bob.Disconnect()
	select {
	case s := <-got:
		subscribeMS, totalMS := time.Since(bobJoin).Milliseconds(), time.Since(start).Milliseconds()
		bobPair, err := selectedPair(bob.LocalParticipant.GetSubscriberPeerConnection(), *timeout)
		if err != nil {
			return fmt.Errorf("bob's subscriber connection: %w", err)
		}
		emit(map[string]any{"event": "subscribed", "ok": true, "url": ca.URL, "publisher": "alice",
			"subscriber": "bob", "published_sid": pub.SID(), "received": s, "relay_only": *relay,
			"alice_pair": alicePair, "bob_pair": bobPair, "join_ms": joinMS,
			"subscribe_ms": subscribeMS, "total_ms": totalMS})
		return nil
	case <-time.After(*timeout):
		return fmt.Errorf("bob did not receive alice's track %s within %s", pub.SID(), *timeout)
	}
}

// rooms joins per-room participants to each of n rooms (prefix-0 ...), prints
// one line per participant, then holds the connections until stdin closes or
// says anything (so the test can look at Redis and the nodes meanwhile). On
// release it prints what the connections went through while held.
func rooms(args []string) error {
	fs := flag.NewFlagSet("rooms", flag.ExitOnError)
	n := fs.Int("rooms", 6, "number of rooms")
	per := fs.Int("per-room", 2, "participants per room")
	prefix := fs.String("prefix", "room", "room name prefix")
	_ = fs.Parse(args)
	var joined []*lksdk.Room
	defer func() {
		for _, r := range joined {
			r.Disconnect()
		}
	}()
	var mu sync.Mutex
	reconnects, disconnects := 0, 0
	for i := 0; i < *n; i++ {
		room := fmt.Sprintf("%s-%d", *prefix, i)
		for j := 0; j < *per; j++ {
			identity := fmt.Sprintf("%s-p%d", room, j)
			c, err := createRoom(room, identity)
			if err != nil {
				return err
			}
			cb := lksdk.NewRoomCallback()
			cb.OnReconnecting = func() { mu.Lock(); reconnects++; mu.Unlock() }
			cb.OnDisconnected = func() { mu.Lock(); disconnects++; mu.Unlock() }
			r, err := join(c, cb, false)
			if err != nil {
				return fmt.Errorf("%s joins %s via %s: %w", identity, room, c.URL, err)
			}
			joined = append(joined, r)
			emit(map[string]any{"event": "joined", "room": room, "identity": identity, "url": c.URL})
		}
	}
	emit(map[string]any{"event": "holding", "participants": len(joined)})
	waitStdin()
	states := map[string]int{}
	for _, r := range joined {
		states[string(r.ConnectionState())]++
	}
	mu.Lock()
	defer mu.Unlock()
	emit(map[string]any{"event": "released", "states": states, "reconnects": reconnects, "disconnects": disconnects})
	return nil
}
