package failover

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// nodeWatch samples the proxy's view of the nodes (its admin endpoint's
// GET /livekit/nodes) while a test runs: how often each node was not
// routable to the proxy, and the oldest stats it saw. Placement and
// routing follow this view, so it explains where rooms went.
type nodeWatch struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen map[string]*nodeSeen
	errs int
}

type nodeSeen struct {
	samples, notRoutable int
	maxStatsAge          float64
	maxRooms             int
}

// watchNodes samples caddy's view every 250 ms until report.
func watchNodes(caddy *harness.Caddy) *nodeWatch {
	w := &nodeWatch{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]*nodeSeen{}}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			view, err := caddy.Nodes()
			w.add(view, err)
		}
	}()
	return w
}

func (w *nodeWatch) add(view harness.NodesView, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs++
	}
	for _, n := range view.Nodes {
		s := w.seen[n.ID]
		if s == nil {
			s = &nodeSeen{}
			w.seen[n.ID] = s
		}
		s.samples++
		if !n.Routable {
			s.notRoutable++
		}
		s.maxStatsAge = max(s.maxStatsAge, n.StatsAge)
		s.maxRooms = max(s.maxRooms, n.Rooms)
	}
}

// report stops the watch and describes what it saw, node by node.
func (w *nodeWatch) report(c *harness.Stack) string {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, n := range c.Nodes {
		if s := w.seen[n.ID()]; s != nil {
			parts = append(parts, fmt.Sprintf("%s: not routable in %d of %d samples, stats up to %.1fs old, up to %d rooms",
				c.Name(n.ID()), s.notRoutable, s.samples, s.maxStatsAge, s.maxRooms))
		}
	}
	if w.errs > 0 {
		parts = append(parts, fmt.Sprintf("%d samples failed", w.errs))
	}
	return strings.Join(parts, "; ")
}
