package cluster

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Load measures, named as LiveKit's node_selector sort_by.
const (
	MeasureSysload = "sysload"
	MeasureCPULoad = "cpuload"
	MeasureRooms   = "rooms"
	MeasureClients = "clients"
)

// loadTolerance: nodes whose sysload or cpuload differ by less than this are
// equally loaded; stats are sampled, so finer differences are noise.
const loadTolerance = 0.05

func ValidMeasure(m string) error {
	switch m {
	case MeasureSysload, MeasureCPULoad, MeasureRooms, MeasureClients:
		return nil
	}
	return fmt.Errorf("load_measure %q: want sysload, cpuload, rooms or clients", m)
}

// candidate is a node with the load it would have after the pending
// placements the proxy made since its stats were written.
type candidate struct {
	node    *Node
	primary float64
	rooms   int
}

// leastLoaded picks the node for a new room among those ok accepts: lowest
// primary measure (within loadTolerance for the fractional ones), then fewest
// rooms, then at random so that two proxies do not agree on a hot node.
func leastLoaded(nodes []*Node, measure string, now time.Time, window time.Duration, ok func(*Node) bool) *Node {
	var best []candidate
	for _, n := range nodes {
		if !ok(n) {
			continue
		}
		p := 0
		if window > 0 {
			p = n.health.pending(now, window)
		}
		c := candidate{node: n, rooms: n.Rooms + p}
		// a pending placement counts as one more room, or as one tolerance
		// step of load: a load average moves over a minute, so without this a
		// burst would pile onto the node whose last sample was lowest
		switch measure {
		case MeasureCPULoad:
			c.primary = n.CPULoad + float64(p)*loadTolerance
		case MeasureRooms:
			c.primary = float64(n.Rooms + p)
		case MeasureClients:
			c.primary = float64(n.Clients + p)
		default:
			c.primary = n.Sysload + float64(p)*loadTolerance
		}
		if len(best) == 0 {
			best = append(best, c)
			continue
		}
		switch compare(c, best[0], measure) {
		case -1:
			best = append(best[:0], c)
		case 0:
			best = append(best, c)
		}
	}
	if len(best) == 0 {
		return nil
	}
	return best[rand.IntN(len(best))].node
}

func compare(a, b candidate, measure string) int {
	tol := 0.0
	if measure == MeasureSysload || measure == MeasureCPULoad {
		tol = loadTolerance
	}
	switch {
	case a.primary < b.primary-tol:
		return -1
	case a.primary > b.primary+tol:
		return 1
	case a.rooms < b.rooms:
		return -1
	case a.rooms > b.rooms:
		return 1
	}
	return 0
}
