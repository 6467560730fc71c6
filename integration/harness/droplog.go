package harness

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/livekit/protocol/logger"
)

// Drop is one connection loss the SDK handled after the join, or the end
// of one (Reason Reconnected).
type Drop struct {
	At     time.Time
	Reason string // the SDK's: transport-close (signal WebSocket lost), ice-failed, leave-resume, ...
}

// Reconnected marks the SDK's OnReconnected among a client's drops.
const Reconnected = "reconnected"

// Episodes groups drops into losses, each ending with the SDK's
// reconnect: one loss shows up as several reasons (ice-failed, LiveKit's
// leave-resume, the WebSocket's transport-close), and a loss that lasts
// shows up again at every failed resume. The last may still be open.
func Episodes(drops []Drop) [][]Drop {
	var out [][]Drop
	open := false
	for _, d := range drops {
		if d.Reason == Reconnected {
			open = false
			continue
		}
		if !open {
			out = append(out, nil)
			open = true
		}
		out[len(out)-1] = append(out[len(out)-1], d)
	}
	return out
}

// dropLog collects the SDK's "handling disconnect" log entries (engine.go
// handleDisconnect), which name why a connection was lost: the room
// callbacks (OnReconnecting) do not say whether the signal WebSocket, which
// passes the proxy, or the media, which does not, was lost.
type dropLog struct {
	mu    sync.Mutex
	drops []Drop
	// the SDK's reasons for failed signal connection attempts ("signal
	// transport join failed"), which its join error does not carry
	joinErrs []string
}

// joinErrors returns why the SDK's signal connection attempts failed.
func (d *dropLog) joinErrors() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.joinErrs)
}

func (d *dropLog) logger() logger.Logger { return sdkLogger{Logger: logger.GetDiscardLogger(), d: d} }

func (d *dropLog) add(dr Drop) {
	d.mu.Lock()
	d.drops = append(d.drops, dr)
	d.mu.Unlock()
}

func (d *dropLog) list() []Drop {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.drops)
}

// sdkLogger is a discarding logger.Logger that passes "handling disconnect"
// and failed signal connection attempts to its dropLog, however the SDK
// derives loggers from it.
type sdkLogger struct {
	logger.Logger
	d *dropLog
}

func (l sdkLogger) Debugw(msg string, kv ...any) {
	if msg != "handling disconnect" {
		return
	}
	dr := Drop{At: time.Now()}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "reason" {
			dr.Reason = fmt.Sprint(kv[i+1])
		}
		if kv[i] == "closed" && kv[i+1] == true {
			return // our own Disconnect
		}
	}
	l.d.add(dr)
}

// Infow keeps why a signal connection attempt failed.
func (l sdkLogger) Infow(msg string, kv ...any) {
	if msg != "signal transport join failed" && msg != "signal transport validate failed" {
		return
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "error" {
			l.d.mu.Lock()
			l.d.joinErrs = append(l.d.joinErrs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), msg, kv[i+1]))
			l.d.mu.Unlock()
		}
	}
}
func (l sdkLogger) WithValues(...any) logger.Logger { return l }
func (l sdkLogger) WithUnlikelyValues(kv ...any) logger.UnlikelyLogger {
	return logger.NewUnlikelyLogger(l, kv...)
}
func (l sdkLogger) WithName(string) logger.Logger      { return l }
func (l sdkLogger) WithComponent(string) logger.Logger { return l }
func (l sdkLogger) WithCallDepth(int) logger.Logger    { return l }
func (l sdkLogger) WithItemSampler() logger.Logger     { return l }
func (l sdkLogger) WithoutSampler() logger.Logger      { return l }
func (l sdkLogger) WithDeferredValues() (logger.Logger, logger.DeferredFieldResolver) {
	_, r := l.Logger.WithDeferredValues()
	return l, r
}
