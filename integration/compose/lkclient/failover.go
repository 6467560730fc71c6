package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// failover joins n participants to room and prints "joined"; then it reads a
// line from stdin ("kill": the test kills the room's node right after sending
// it) and keeps joining the room through the same URL with a token obtained
// before the kill, until a join succeeds. It prints the time from the line
// to that join, and what happened to the participants joined before.
func failover(args []string) error {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	room := fs.String("room", "failover", "room name")
	n := fs.Int("n", 2, "participants joined before the kill")
	deadline := fs.Duration("deadline", 60*time.Second, "give up rejoining after this long")
	settle := fs.Duration("settle", 10*time.Second, "after the rejoin, how long to wait for the earlier participants' reconnection")
	_ = fs.Parse(args)

	type state struct {
		identity                                string
		room                                    *lksdk.Room
		mu                                      sync.Mutex
		reconnecting, reconnected, disconnected time.Time
	}
	var killedAt time.Time
	var killMu sync.Mutex
	since := func(t time.Time) any { // ms from the kill line (negative: before it); null: never
		killMu.Lock()
		defer killMu.Unlock()
		if killedAt.IsZero() || t.IsZero() {
			return nil
		}
		return t.Sub(killedAt).Milliseconds()
	}
	var parts []*state
	defer func() {
		for _, p := range parts {
			p.room.Disconnect()
		}
	}()
	for i := 0; i < *n; i++ {
		st := &state{identity: fmt.Sprintf("%s-p%d", *room, i)}
		c, err := createRoom(*room, st.identity)
		if err != nil {
			return err
		}
		cb := lksdk.NewRoomCallback()
		cb.OnReconnecting = func() { st.mu.Lock(); st.reconnecting = time.Now(); st.mu.Unlock() }
		cb.OnReconnected = func() { st.mu.Lock(); st.reconnected = time.Now(); st.mu.Unlock() }
		cb.OnDisconnected = func() { st.mu.Lock(); st.disconnected = time.Now(); st.mu.Unlock() }
		r, err := join(c, cb, false)
		if err != nil {
			return fmt.Errorf("%s joins via %s: %w", st.identity, c.URL, err)
		}
		st.room = r
		parts = append(parts, st)
	}
	rejoin, err := createRoom(*room, *room+"-rejoiner")
	if err != nil {
		return err
	}
	emit(map[string]any{"event": "joined", "room": *room, "participants": *n, "url": rejoin.URL})

	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("stdin closed before the kill signal")
	}
	killMu.Lock()
	killedAt = time.Now()
	killMu.Unlock()

	attempts := 0
	var errs []string
	rejoined, ok := harness.PollValue(time.Until(killedAt.Add(*deadline)), 200*time.Millisecond, func() (*lksdk.Room, bool) {
		attempts++
		r, err := join(rejoin, nil, false)
		if err != nil && len(errs) < 5 {
			errs = append(errs, fmt.Sprintf("+%dms: %v", time.Since(killedAt).Milliseconds(), err))
		}
		return r, err == nil
	})
	if !ok {
		return fmt.Errorf("no successful rejoin within %s after %d attempts: %v", *deadline, attempts, errs)
	}
	defer rejoined.Disconnect()
	at := time.Now()
	emit(map[string]any{"event": "rejoined", "ms": at.Sub(killedAt).Milliseconds(),
		"rejoined_unix_ms": at.UnixMilli(), "kill_line_unix_ms": killedAt.UnixMilli(),
		"attempts": attempts, "errors": errs})

	// The participants joined before the kill: the SDK resumes or rejoins by itself.
	harness.PollEvery(*settle, 100*time.Millisecond, func() bool {
		for _, p := range parts {
			p.mu.Lock()
			waiting := p.reconnected.IsZero() && p.disconnected.IsZero()
			p.mu.Unlock()
			if waiting {
				return false
			}
		}
		return true
	})
	var earlier []map[string]any
	for _, p := range parts {
		p.mu.Lock()
		earlier = append(earlier, map[string]any{"identity": p.identity,
			"reconnecting_ms": since(p.reconnecting), "reconnected_ms": since(p.reconnected),
			"disconnected_ms": since(p.disconnected), "state": string(p.room.ConnectionState())})
		p.mu.Unlock()
	}
	emit(map[string]any{"event": "earlier", "participants": earlier})
	return nil
}

// waitStdin returns when stdin has a line or is closed.
func waitStdin() {
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}
