package redisoutage

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// trickle sends a join attempt every 500 ms: a raw GET /rtc, and an SDK join
// (at most 4 SDK joins at once: during a hang each one waits on LiveKit).
type trickle struct {
	c *cluster

	raws, joins sync.WaitGroup
	inflight    atomic.Int32

	mu          sync.Mutex
	rawResults  []rtcResult
	joinResults []joinResult
	skipped     int
}

type joinResult struct {
	room  string
	start time.Time
	dur   time.Duration
	err   error
}

func (tr *trickle) run(stop <-chan struct{}) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		room := trickleRooms[i%len(trickleRooms)]
		tr.raws.Add(1)
		go func() {
			defer tr.raws.Done()
			res := tr.c.rawRTC(room, fmt.Sprintf("raw-%d", i))
			tr.mu.Lock()
			tr.rawResults = append(tr.rawResults, res)
			tr.mu.Unlock()
		}()
		if tr.inflight.Load() < 4 {
			tr.inflight.Add(1)
			tr.joins.Add(1)
			go func() {
				defer tr.joins.Done()
				defer tr.inflight.Add(-1)
				start := time.Now()
				lk, err := harness.TryJoin(tr.c.proxy.WS(), room, fmt.Sprintf("sdk-%d", i))
				if err == nil {
					lk.Disconnect()
				}
				tr.mu.Lock()
				tr.joinResults = append(tr.joinResults, joinResult{room, start, time.Since(start), err})
				tr.mu.Unlock()
			}()
		} else {
			tr.mu.Lock()
			tr.skipped++
			tr.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// waitJoins waits for the trickle's SDK joins, which may still wait on a
// node that waited on Redis.
func (tr *trickle) waitJoins(t *testing.T, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		tr.joins.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Errorf("SDK joins of the trickle still running %v after Redis returned", timeout)
	}
}

// check asserts on the raw requests of the trickle: each one finished within
// redis_timeout + margin; once the proxy knew that Redis was gone (detected),
// known rooms went to host and new rooms got the JSON 503. Requests before
// that are bounded too but only logged, as are the SDK joins.
func (tr *trickle) check(t *testing.T, host string, start, detected, returned time.Time) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	at := func(r rtcResult) time.Duration { return r.start.Sub(start).Round(time.Millisecond) }
	bound := redisTimeout + boundMargin
	var maxDur, maxEarly time.Duration
	var early []string
	routed, refused := 0, 0
	for _, r := range tr.rawResults {
		known := slices.Contains(knownRooms, r.room)
		if r.err != nil || r.dur >= bound {
			t.Errorf("raw GET /rtc +%v into the outage: %v; want an answer within %v", at(r), r, bound)
		}
		maxDur = max(maxDur, r.dur)
		if r.start.Before(detected) {
			maxEarly = max(maxEarly, r.dur)
			early = append(early, fmt.Sprintf("+%v %v", at(r), r))
			continue
		}
		if r.start.Add(r.dur).After(returned) {
			continue
		}
		switch {
		case known && (r.node != host || r.status != http.StatusNotFound):
			t.Errorf("known room during the outage, +%v: %v; want it routed to its node %s (which answers 404 to a GET without upgrade)",
				at(r), r, tr.c.Name(host))
		case known:
			routed++
		case !redisRefusal(r):
			t.Errorf("new room during the outage, +%v: %v; want 503 with Retry-After and a JSON error naming Redis", at(r), r)
		default:
			refused++
		}
	}
	t.Logf("BOUND raw GET /rtc during the outage: %d requests, max %v (before the proxy noticed: max %v); bound %v",
		len(tr.rawResults), maxDur.Round(time.Millisecond), maxEarly.Round(time.Millisecond), bound)
	t.Logf("after the proxy noticed: %d known-room requests routed to their node, %d new-room requests refused with 503", routed, refused)
	t.Logf("raw requests before the proxy noticed the outage:\n  %s", strings.Join(early, "\n  "))

	var ok int
	var maxJoin time.Duration
	errs := map[string]int{}
	for _, j := range tr.joinResults {
		maxJoin = max(maxJoin, j.dur)
		if j.err == nil {
			ok++
			t.Logf("SDK join of %s started %v into the outage succeeded after %v",
				j.room, j.start.Sub(start).Round(time.Millisecond), j.dur.Round(time.Millisecond))
			continue
		}
		kind := "new room"
		if slices.Contains(knownRooms, j.room) {
			kind = "known room"
		}
		msg := strings.Join(strings.Fields(j.err.Error()), " ")
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		errs[kind+": "+msg]++
	}
	t.Logf("SDK joins of the trickle: %d started (%d skipped, 4 already waiting), %d succeeded, longest %v; failures: %s",
		len(tr.joinResults), tr.skipped, ok, maxJoin.Round(time.Millisecond), tally(errs))
}

// tally formats counts as "3x a; 1x b", sorted.
func tally(counts map[string]int) string {
	var lines []string
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}
