package harness

import "time"

// PollInterval is how often Poll asks.
const PollInterval = 50 * time.Millisecond

// Poll calls cond every 50ms until it returns true or timeout passes, and
// reports whether it did.
func Poll(timeout time.Duration, cond func() bool) bool {
	return PollEvery(timeout, PollInterval, cond)
}

// PollEvery is Poll that asks every interval.
func PollEvery(timeout, interval time.Duration, cond func() bool) bool {
	_, ok := PollValue(timeout, interval, func() (struct{}, bool) { return struct{}{}, cond() })
	return ok
}

// PollValue calls f every interval until it reports ok or timeout passes
// (f is called at least once), and returns what f returned last.
func PollValue[T any](timeout, interval time.Duration, f func() (T, bool)) (T, bool) {
	deadline := time.Now().Add(timeout)
	for {
		v, ok := f()
		if ok || time.Now().After(deadline) {
			return v, ok
		}
		time.Sleep(interval)
	}
}

// PollErr calls f every interval until it returns nil or timeout passes,
// and returns the last error (nil once f succeeded).
func PollErr(timeout, interval time.Duration, f func() error) error {
	err, _ := PollValue(timeout, interval, func() (error, bool) {
		err := f()
		return err, err == nil
	})
	return err
}
