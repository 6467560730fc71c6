#!/usr/bin/env bash
# The test command: installs dependencies, then runs the plugin's unit tests,
# the integration tests against real redis-server and livekit-server, and the
# Docker deployment tests. Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo; echo "== $* ($(date +%T))"; }

step "dependencies"
bash scripts/deps.sh

step "gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
(cd integration && go mod download && go vet ./...)
(cd cmd/caddy-l4 && go mod download && go vet ./...)

step "unit and golden tests (race detector on the concurrent packages)"
go test -count=1 -race ./cluster/... ./livekitlb/ ./tokenhandler/
go test -count=1 . ./livekitcmd/
(cd cmd/caddy-l4 && go test -count=1 .) # docker/Caddyfile with TURN=on (caddy-l4): golden JSON

step "benchmarks (smoke: one short pass each)"
go test -run '^$' -bench . -benchtime 2000x ./cluster/ ./livekitlb/ ./tokenhandler/

step "integration tests (real redis-server, livekit-server, Caddy, server-sdk-go clients)"
# the tests run in a private network namespace without the module proxy:
# build our Caddy out here, the deployment's (cmd/caddy-l4: the plugin and caddy-l4), which the
# Docker tests below put in their image too (TestTURN splits 443 with caddy-l4's layer4)
export CADDY_BIN="${CADDY_BIN:-$PWD/.cache/caddy}"
mkdir -p "$(dirname "$CADDY_BIN")"
(cd cmd/caddy-l4 && go build -o "$CADDY_BIN" .)
# Redis outages of LKLB_OUTAGE_SECONDS (60 in a full run, see BENCHMARKS.md)
export LKLB_OUTAGE_SECONDS="${LKLB_OUTAGE_SECONDS:-15}"
(cd integration && go test -count=1 -timeout 25m ./...)

step "benchmark against stock Caddy and direct connections (smoke: the short run prints its tables)"
(cd integration && go test -count=1 -run '^$' -bench . -benchtime 1x -short -timeout 15m ./bench/)
(cd integration && go test -count=1 -run '^$' -bench SilentNode -benchtime 1x -short -timeout 10m ./failover/)

step "Docker deployment tests"
LIVEKIT_BIN="${LIVEKIT_BIN:-$(command -v livekit-server)}" bash scripts/test-compose.sh

step "done"
