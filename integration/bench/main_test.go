package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// short: the CI variant (-short or LKBENCH_SHORT=1), about a minute in all.
func short() bool { return testing.Short() || os.Getenv("LKBENCH_SHORT") == "1" }

// pick returns full or, in short mode, small.
func pick[T any](full, small T) T {
	if short() {
		return small
	}
	return full
}

// envInt reads a positive integer from the environment, else def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// concurrency of the throughput phases.
func concurrency() int { return envInt("LKBENCH_CONC", 8) }

// latencies is a sample of durations.
type latencies []time.Duration

// pct returns the p-th percentile (0 < p <= 1) by nearest rank.
func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l latencies) p50() time.Duration { return l.pct(0.50) }
func (l latencies) p99() time.Duration { return l.pct(0.99) }

// diffCI is a bootstrap 90% interval, in ms, of a.pct(p) - b.pct(p): how
// far the difference of two samples' percentiles can be trusted on a noisy
// machine.
func diffCI(a, b latencies, p float64) (lo, hi float64) {
	if len(a) == 0 || len(b) == 0 {
		return 0, 0
	}
	const n = 400
	rng := rand.New(rand.NewPCG(7, 11))
	diffs := make([]float64, n)
	ra, rb := make(latencies, len(a)), make(latencies, len(b))
	for i := range diffs {
		for j := range ra {
			ra[j] = a[rng.IntN(len(a))]
		}
		for j := range rb {
			rb[j] = b[rng.IntN(len(b))]
		}
		diffs[i] = msf(ra.pct(p) - rb.pct(p))
	}
	slices.Sort(diffs)
	return diffs[n/20], diffs[n-n/20-1]
}

// ms formats a duration in milliseconds with three decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f", msf(d)) }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// table prints an aligned table on stdout (benchmark output, shown without -v).
func table(title string, header []string, rows [][]string) {
	var b strings.Builder
	b.WriteString("\n" + title + "\n")
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, strings.Join(header, "\t")+"\t")
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t")+"\t")
	}
	w.Flush()
	fmt.Print(b.String())
}

// metrics reports figures as a sub-benchmark named name, so that the
// standard benchmark output (and benchstat) carries them too.
func metrics(b *testing.B, name string, m map[string]float64) {
	b.Run(name, func(b *testing.B) {
		for unit, v := range m {
			b.ReportMetric(v, unit)
		}
		b.ReportMetric(0, "ns/op") // the loop is not b.N-driven
	})
}

// machine describes where the figures come from.
func machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", loadavg " + strings.Join(strings.Fields(string(data))[:3], " ")
	}
	return fmt.Sprintf("%s, %d CPUs, %s%s", cpu, runtime.NumCPU(), runtime.Version(), load)
}

// took prints how long a benchmark ran: defer took(b, time.Now()).
func took(b *testing.B, start time.Time) {
	fmt.Printf("(%s took %.0f s)\n", b.Name(), time.Since(start).Seconds())
}
