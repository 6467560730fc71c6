package harness

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
)

// Client is an SDK participant that records what happened to its
// connection after the join: the SDK's connection losses with their reasons
// (Drops), its callbacks (events, in String) and its disconnections.
type Client struct {
	Room, Identity string
	Via            string // how it connected, for messages ("proxy", "node1 directly")
	LK             *lksdk.Room

	drops        *dropLog
	disconnected atomic.Int32

	mu     sync.Mutex
	events []string
	left   time.Time // first time it stopped being connected
}

// Connect joins room as identity through url with server-sdk-go, like
// TryJoin, with a connect timeout (0: the SDK's default), recording every
// connection loss. The caller disconnects (c.LK.Disconnect).
func Connect(url, room, identity string, timeout time.Duration) (*Client, error) {
	quiet()
	c := &Client{Room: room, Identity: identity, drops: &dropLog{}}
	cb := lksdk.NewRoomCallback()
	cb.OnDisconnected = func() { c.disconnected.Add(1) }
	cb.OnReconnecting = func() { c.note("reconnecting") }
	cb.OnReconnected = func() {
		c.drops.add(Drop{At: time.Now(), Reason: Reconnected})
		c.note("reconnected")
	}
	cb.OnDisconnectedWithReason = func(reason lksdk.DisconnectionReason) { c.note("disconnected: " + string(reason)) }
	opts := []lksdk.ConnectOption{lksdk.WithAutoSubscribe(false), lksdk.WithLogger(c.drops.logger())}
	if timeout > 0 {
		opts = append(opts, lksdk.WithConnectTimeout(timeout))
	}
	lk, err := lksdk.ConnectToRoomWithToken(url, Token(room, identity), cb, opts...)
	if err != nil {
		if why := c.drops.joinErrors(); len(why) > 0 {
			err = fmt.Errorf("%w [%s]", err, strings.Join(why, "; "))
		}
		return nil, err
	}
	c.LK = lk
	return c, nil
}

// MustConnect is Connect that fails the test, and disconnects when the test ends.
func MustConnect(t testing.TB, url, room, identity string, timeout time.Duration) *Client {
	t.Helper()
	c, err := Connect(url, room, identity, timeout)
	if err != nil {
		t.Fatalf("join %s as %s via %s: %v", room, identity, url, err)
	}
	t.Cleanup(c.LK.Disconnect)
	return c
}

// Drops are the connection losses the SDK handled after the join, and
// their ends (Reconnected).
func (c *Client) Drops() []Drop { return c.drops.list() }

// Disconnects counts the SDK's OnDisconnected.
func (c *Client) Disconnects() int { return int(c.disconnected.Load()) }

// ReconnectedSince reports whether the SDK reconnected (resumed or
// rejoined) after t.
func (c *Client) ReconnectedSince(t time.Time) bool {
	for _, d := range c.Drops() {
		if d.Reason == Reconnected && d.At.After(t) {
			return true
		}
	}
	return false
}

// Sees reports whether every other participant of clients is in c's room.
func (c *Client) Sees(clients []*Client) bool {
	remote := map[string]bool{}
	for _, p := range c.LK.GetRemoteParticipants() {
		remote[p.Identity()] = true
	}
	for _, o := range clients {
		if o != c && !remote[o.Identity] {
			return false
		}
	}
	return true
}

// AllSeeEachOther reports whether every client sees every other.
func AllSeeEachOther(clients []*Client) bool {
	for _, c := range clients {
		if !c.Sees(clients) {
			return false
		}
	}
	return true
}

// Sees reports whether lk has a remote participant with identity, waiting
// up to timeout for it to appear.
func Sees(lk *lksdk.Room, identity string, timeout time.Duration) bool {
	return PollEvery(timeout, 100*time.Millisecond, func() bool { return lk.GetParticipantByIdentity(identity) != nil })
}

// RemoteIdentities are the identities of lk's remote participants, sorted.
func RemoteIdentities(lk *lksdk.Room) []string {
	var ids []string
	for _, p := range lk.GetRemoteParticipants() {
		ids = append(ids, p.Identity())
	}
	slices.Sort(ids)
	return ids
}

func (c *Client) note(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left.IsZero() && what != Reconnected {
		c.left = time.Now()
	}
	c.events = append(c.events, time.Now().Format("15:04:05.000")+" "+what)
}

// Connected reports whether the SDK is connected, and when it first was not.
func (c *Client) Connected() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := c.LK.ConnectionState() == lksdk.ConnectionStateConnected
	if !ok && c.left.IsZero() {
		c.left = time.Now()
	}
	return ok, c.left
}

func (c *Client) String() string {
	ok, left := c.Connected()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := fmt.Sprintf("%s in %s via %s: %s", c.Identity, c.Room, c.Via, c.LK.ConnectionState())
	if !ok || !left.IsZero() {
		s += fmt.Sprintf(" (first left connected at %s)", left.Format("15:04:05.000"))
	}
	if len(c.events) > 0 {
		s += "; events: " + strings.Join(c.events, ", ")
	}
	return s
}
