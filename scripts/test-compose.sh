#!/usr/bin/env bash
# The Docker deployment tests: builds the images (docker/build-images.sh, no registry needed), then
# runs integration/compose (deploy.sh and the compose stacks, with real LiveKit clients in
# containers on each stack's own network).
#
#   bash scripts/test-compose.sh [go test flags, e.g. -run TestCluster]
#
# CADDY_BIN / LIVEKIT_BIN: reuse prebuilt binaries for the images instead of building them (see
# docker/build-images.sh). Needs Docker and docker-compose (v1.29 or `docker compose`).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v docker >/dev/null || { echo "test-compose: docker is needed" >&2; exit 1; }
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null ||
	{ echo "test-compose: docker-compose (or docker compose) is needed" >&2; exit 1; }

echo "== images (docker/build-images.sh)"
start=$SECONDS
exports=$(docker/build-images.sh) # a failed build stops here
eval "$exports"
echo "images ready in $((SECONDS - start))s"

echo "== compose tests"
start=$SECONDS
(cd integration && LKLB_COMPOSE_TESTS=1 go test -count=1 -timeout 30m ./compose/ -v "$@")
echo "compose tests: $((SECONDS - start))s"
