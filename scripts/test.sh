#!/usr/bin/env bash
# The test command: installs dependencies, then runs the plugin's unit tests
# and the integration tests against real redis-server and livekit-server.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
(cd integration && go vet ./...)

echo "== unit tests"
go test -race -count=1 ./...

echo "== benchmarks (smoke: one short run each)"
go test -run '^$' -bench . -benchtime 2000x ./livekitlb/

echo "== integration tests (real redis-server, livekit-server, Caddy)"
# the tests run in a private network namespace without the module proxy:
# build our Caddy and fetch the test modules out here
export CADDY_BIN="${CADDY_BIN:-$PWD/.cache/caddy}"
mkdir -p "$(dirname "$CADDY_BIN")"
go build -o "$CADDY_BIN" ./cmd/caddy
(cd integration && go mod download && go test -count=1 -timeout 20m ./...)
