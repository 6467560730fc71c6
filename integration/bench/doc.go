// Package bench measures the livekit_lb modules against stock Caddy
// reverse_proxy and direct connections, and at a million rooms. Everything
// is a `go test -bench` benchmark that runs inside the harness's private
// network namespace; see BENCHMARKS.md at the repository root for the
// commands and the latest figures.
//
//	cd integration && go test ./bench/ -run '^$' -bench . -benchtime 1x -timeout 20m
//	cd integration && go test ./bench/ -run '^$' -bench . -benchtime 1x -short   # CI, about a minute
//
// Each benchmark runs a fixed amount of work once (so -benchtime 1x), prints
// a table on stdout and reports the same figures with b.ReportMetric. Nothing
// asserts timing: a benchmark fails only when requests fail or land on the
// wrong node.
//
// Environment:
//
//	LKBENCH_SHORT=1    same as -short
//	LKBENCH_PPROF=DIR  also take 5 s CPU profiles of Caddy: under the upgrade
//	                   workload of each proxied mode (DIR/livekit_lb.cpu.pprof,
//	                   livekit_lb-first, reverse_proxy), and of the Caddy with
//	                   the most rooms, idle and under first requests
//	                   (DIR/scale-1000000-idle.cpu.pprof, ...-first...)
//	LKBENCH_CONC=N     concurrent clients of the throughput phases (default 8)
//	LKBENCH_STARTS=N   Caddy starts per room count in BenchmarkScale, and
//	                   print every start-up time
//	CADDY_BIN=PATH     a built ./cmd/caddy, instead of the harness's build
package bench
