package redisoutage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/redis/go-redis/v9"
)

// joined is the first successful join of firstJoin; the caller disconnects lk.
type joined struct {
	start, done time.Time
	room        string
	tried       int // joins started
	lk          *lksdk.Room
}

// firstJoin starts an SDK join through c every interval (at most 4 at once),
// the i-th one to room(i), until one succeeds, and returns it. It gives up
// after timeout.
func (c *cluster) firstJoin(room func(i int) string, interval, timeout time.Duration) (joined, error) {
	type result struct {
		start, at time.Time
		room      string
		lk        *lksdk.Room
		err       error
	}
	results := make(chan result, 64)
	var wg sync.WaitGroup
	defer func() {
		go func() { // close whatever joins after the winner
			wg.Wait()
			close(results)
		}()
		for r := range results {
			if r.lk != nil {
				r.lk.Disconnect()
			}
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.After(timeout)
	inflight, tried := 0, 0
	var lastErr error
	for launch := true; ; {
		if launch && inflight < 4 {
			room, identity := room(tried), fmt.Sprintf("first-%d", tried)
			tried++
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				lk, err := harness.TryJoin(c.proxy.WS(), room, identity)
				results <- result{start, time.Now(), room, lk, err}
			}()
		}
		launch = false
		select {
		case r := <-results:
			inflight--
			if r.err == nil {
				return joined{r.start, r.at, r.room, tried, r.lk}, nil
			}
			lastErr = r.err
		case <-tick.C:
			launch = true
		case <-deadline:
			return joined{tried: tried}, fmt.Errorf("no join through the proxy succeeded in %v (%d tried; last error: %v)", timeout, tried, lastErr)
		}
	}
}

// newRooms names a new room for every join of firstJoin.
func newRooms(prefix string) func(int) string {
	return func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
}

// sameRoom sends every join of firstJoin to room.
func sameRoom(room string) func(int) string {
	return func(int) string { return room }
}

// firstRouted polls GET /rtc for new rooms every 50 ms until livekit_lb
// routes one to a node (it placed the room in Redis), and returns when.
func (c *cluster) firstRouted(prefix string, timeout time.Duration) (time.Time, rtcResult, bool) {
	i := 0
	last, ok := harness.PollValue(timeout, harness.PollInterval, func() (rtcResult, bool) {
		res := c.rawRTC(fmt.Sprintf("%s-%d", prefix, i), "poll")
		i++
		return res, res.node != ""
	})
	if !ok {
		return time.Time{}, last, false
	}
	return time.Now(), last, true
}

// nodesFresh waits until Redis `nodes` (read through rc) has every node of c,
// by current ID, with stats written in or after the second of since, and
// returns when that was seen.
func (c *cluster) nodesFresh(rc *redis.Client, since time.Time, timeout time.Duration) (time.Time, bool) {
	return harness.PollValue(timeout, harness.PollInterval, func() (time.Time, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		nodes, err := harness.RedisNodes(ctx, rc)
		cancel()
		fresh := err == nil
		for _, n := range c.Nodes {
			if nodes[n.ID()].GetStats().GetUpdatedAt() < since.Unix() {
				fresh = false
			}
		}
		return time.Now(), fresh
	})
}
