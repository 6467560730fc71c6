package cluster

import (
	"errors"
	"fmt"
	"time"
)

// ErrFull: every node that could take a new room is at a capacity limit.
// It is an ErrNoNode, so callers that only know that one answer 503 too.
var ErrFull = fmt.Errorf("%w: every node is at its capacity limit (sysload_limit, max_rooms, max_clients)", ErrNoNode)

// Limits keep new rooms off a node; its rooms keep working. Zero: no limit.
type Limits struct {
	SysloadLimit float64 // LiveKit's node_selector.sysload_limit: load average per CPU
	MaxRooms     int
	MaxClients   int
}

func (l Limits) validate() error {
	if l.SysloadLimit < 0 || l.MaxRooms < 0 || l.MaxClients < 0 {
		return errors.New("sysload_limit, max_rooms and max_clients must not be negative")
	}
	return nil
}

// full: n may take no new room. Rooms count the placements this proxy made
// since n's stats were written, as leastLoaded does.
func (l Limits) full(n *Node, now time.Time, window time.Duration) bool {
	return (l.SysloadLimit > 0 && n.Sysload >= l.SysloadLimit) ||
		(l.MaxRooms > 0 && n.Rooms+n.health.pending(now, window) >= l.MaxRooms) ||
		(l.MaxClients > 0 && n.Clients >= l.MaxClients)
}
