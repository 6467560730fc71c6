package cluster

import (
	"context"
	"testing"
	"time"
)

// One failed probe (a GC pause, a busy CPU) ends no session; the second in
// a row is a death: open sessions are closed, a request still waiting for
// its answer is abandoned (to be sent again), and a session bound after
// the death ends at once.
func TestOneFailedProbeEndsNoSession(t *testing.T) {
	_, c := twoNodes(t)
	c.probes.interval = time.Hour // as if probing
	a := c.view.current().byID["ND_a"]
	open, waiting := NewSession(context.Background()), NewSession(context.Background())
	open.Bind(a)
	waiting.Bind(a)
	if !open.Commit() { // its 101 went to the client
		t.Fatal("a live session may not commit")
	}
	c.probes.probed(a, context.DeadlineExceeded)
	if open.Context().Err() != nil || waiting.Context().Err() != nil || a.health.sessions.count() != 2 {
		t.Fatal("one slow probe ended sessions")
	}
	c.probes.probed(a, context.DeadlineExceeded)
	if open.Context().Err() == nil || waiting.Context().Err() == nil || a.health.sessions.count() != 0 {
		t.Fatal("a dead node's sessions go on")
	}
	if open.Release() {
		t.Fatal("a session whose answer began was abandoned (it must not be sent again)")
	}
	if waiting.Commit() || !waiting.Release() {
		t.Fatal("a session still waiting was not abandoned")
	}
	late := NewSession(context.Background())
	late.Bind(a)
	if late.Context().Err() == nil {
		t.Fatal("a session bound to a dead node goes on")
	}
}
