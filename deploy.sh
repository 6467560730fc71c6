#!/usr/bin/env bash
# Deploys LiveKit behind our Caddy (livekit_lb + the create-room endpoint) with Docker Compose.
#
#   ./deploy.sh build             build the images locally (no registry needed)
#   ./deploy.sh deploy            build or pull missing images, start or upgrade the stack
#   ./deploy.sh verify            check Redis, the nodes, create-room and a join through the proxy
#   ./deploy.sh status            nodes as the proxy sees them, and the containers
#   ./deploy.sh backup FILE.tar.gz    LiveKit's Redis keys and the configuration
#   ./deploy.sh restore FILE.tar.gz   put the keys back (into a fresh, empty Redis too)
#   ./deploy.sh down              stop and remove the containers; Redis' volume stays
#
# Settings come from .env beside this script (ENV_FILE=... for another file); see .env.example. It is
# read as data (KEY=VALUE, quotes optional, no $ substitution), never run as shell.
# Variables already in the environment win over .env (as with docker compose).
# Where the stack runs follows from NODES:
#   - one of its addresses is this machine's (or THIS_NODE names it): this machine is that node,
#     with host networking (docker/compose.host.yml): the same .env and the same command on every
#     machine; Redis runs on the machine REDIS_HOST names (default: the first address).
#   - otherwise everything runs on this machine, on a bridge network: zero or one address
#     docker/compose.single.yml, three docker/compose.cluster.yml. Both use the same compose project
#     (COMPOSE_PROJECT_NAME) and so the same Redis volume (<project>_redis-data): changing NODES from
#     one to three entries and running `deploy` again upgrades a single node to a cluster with every
#     Redis key kept, and the proxy's address (CADDY_PORT, unless CADDY1_PORT is set).
# See docs/deploy.md.
set -euo pipefail

root=$(cd "$(dirname "$0")" && pwd)
ENV_FILE=${ENV_FILE:-$root/.env}

log() { echo "deploy: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The commands' code, by concern.
# shellcheck source=docker/deploy/env.sh
. "$root/docker/deploy/env.sh"     # .env, this machine's place among NODES, addresses
# shellcheck source=docker/deploy/images.sh
. "$root/docker/deploy/images.sh"  # images built when they cannot be pulled; compose
# shellcheck source=docker/deploy/stack.sh
. "$root/docker/deploy/stack.sh"   # deploy, verify, status
# shellcheck source=docker/deploy/backup.sh
. "$root/docker/deploy/backup.sh"  # backup, restore, down

main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	build) load_env; cmd_build ;;
	deploy | up) load_env required; cmd_deploy ;;
	verify) load_env required; cmd_verify ;;
	status) load_env required; cmd_status ;;
	backup) load_env required; cmd_backup "$@" ;;
	restore) load_env required; cmd_restore "$@" ;;
	down) load_env required; cmd_down ;;
	*) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
	esac
}
main "$@"
