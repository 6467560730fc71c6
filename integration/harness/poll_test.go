package harness_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestPoll: the variants return what their last call returned.
func TestPoll(t *testing.T) {
	n := 0
	if v, ok := harness.PollValue(time.Second, time.Millisecond, func() (int, bool) { n++; return n, n == 3 }); !ok || v != 3 {
		t.Errorf("PollValue = %d, %v; want 3, true", v, ok)
	}
	if v, ok := harness.PollValue(20*time.Millisecond, time.Millisecond, func() (string, bool) { return "last", false }); ok || v != "last" {
		t.Errorf("PollValue at the timeout = %q, %v; want the last value, false", v, ok)
	}
	n = 0
	err := harness.PollErr(20*time.Millisecond, time.Millisecond, func() error { n++; return fmt.Errorf("try %d", n) })
	if err == nil || err.Error() != fmt.Sprintf("try %d", n) {
		t.Errorf("PollErr = %v after %d tries; want the last error", err, n)
	}
	if err := harness.PollErr(time.Second, time.Millisecond, func() error { return nil }); err != nil {
		t.Errorf("PollErr = %v; want nil", err)
	}
	if harness.PollEvery(20*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Error("PollEvery reported a condition that never held")
	}
	if !harness.Poll(time.Second, func() bool { return true }) {
		t.Error("Poll did not report a condition that held")
	}
}
