#!/usr/bin/env bash
# End-to-end check of the compose stacks on the local images: Redis answers PING with the password,
# every LiveKit node registers in Redis, and LiveKit's "OK" comes back through each Caddy on its
# loopback port. Each stack is torn down (with its volumes) afterwards.
#
#   docker/smoke.sh [single|cluster ...]    # default: both
#
# Only loopback and the stack's own containers are contacted: the host never dials container IPs
# (after a teardown such an address would route out of the machine).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exports=$("$here/build-images.sh") # a failed build stops here (inside eval "$(...)" it would not)
eval "$exports"

# Throwaway credentials unless the caller brings its own; LiveKit wants a secret of 32+ characters.
rand() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
export REDIS_PASSWORD=${REDIS_PASSWORD:-$(rand 16)} LIVEKIT_API_KEY=${LIVEKIT_API_KEY:-smoke}
export LIVEKIT_API_SECRET=${LIVEKIT_API_SECRET:-$(rand 16)} CREATE_ROOM_KEY=${CREATE_ROOM_KEY:-$(rand 16)}

# `docker compose` (v2) where installed, else the Debian package's docker-compose (v1).
if docker compose version >/dev/null 2>&1; then dc=(docker compose); else dc=(docker-compose); fi

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND once a second.
wait_for() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || { echo "FAIL: $what" >&2; return 1; }
		sleep 1
	done
	echo "ok: $what"
}

# The stack under test is torn down on any exit, so a failed check leaves nothing running.
c=()
teardown() { [ ${#c[@]} -eq 0 ] || "${c[@]}" down -v --remove-orphans; c=(); }
trap teardown EXIT

# -T: no TTY, so this also works under CI. redis-cli authenticates through REDISCLI_AUTH.
redis() { "${c[@]}" exec -T redis redis-cli "$@"; }
pong() { [ "$(redis ping 2>/dev/null)" = PONG ]; }
registered() { [ "$(redis hlen nodes 2>/dev/null)" = "$1" ]; }
caddy_ok() { [ "$(curl -s -m 2 "http://127.0.0.1:$1/")" = OK ]; }

check_stack() { # STACK NODES CADDY_PORT...
	local stack=$1 nodes=$2 port
	shift 2
	c=("${dc[@]}" -p "lk-smoke-$stack" -f "$here/compose.$stack.yml")
	"${c[@]}" up -d
	wait_for 30 "$stack: redis PING with the password" pong
	if [ "$("${c[@]}" exec -T redis redis-cli --no-auth-warning -a wrong ping 2>&1)" = PONG ]; then
		echo "FAIL: $stack: redis answered a wrong password" >&2
		return 1
	fi
	wait_for 60 "$stack: $nodes LiveKit node(s) in the Redis hash 'nodes'" registered "$nodes"
	for port in "$@"; do
		wait_for 30 "$stack: GET http://127.0.0.1:$port/ through Caddy answers OK" caddy_ok "$port"
		curl -s -o /dev/null -w "  HTTP %{http_code} from 127.0.0.1:$port\n" "http://127.0.0.1:$port/"
	done
	teardown
}

[ $# -gt 0 ] || set -- single cluster
for stack in "$@"; do
	case $stack in
	single) check_stack single 1 "${CADDY_PORT:-8080}" ;;
	cluster) check_stack cluster 3 "${CADDY1_PORT:-${CADDY_PORT:-8080}}" "${CADDY2_PORT:-8082}" ;;
	*) echo "unknown stack: $stack" >&2; exit 2 ;;
	esac
done
echo "smoke: all checks passed"
