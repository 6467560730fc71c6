package tokenhandler

import (
	"errors"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// createRooms counts create-room calls by HTTP status; process-wide, as
// Caddy's own metrics, so that counts survive reloads.
var createRooms = sync.OnceValue(func() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "livekit", Name: "create_room_total",
		Help: "Create-room calls by HTTP status."}, []string{"status"})
})

// registerMetrics puts the counter on the config's registry (Caddy's /metrics).
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := reg.Register(createRooms()); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return err
		}
	}
	return nil
}

func countCreateRoom(status int) { createRooms().WithLabelValues(strconv.Itoa(status)).Inc() }
