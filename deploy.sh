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
# Settings come from .env beside this script (ENV_FILE=... for another file); see .env.example.
# NODES with zero or one address runs docker/compose.single.yml, three addresses
# docker/compose.cluster.yml. Both use the same compose project (COMPOSE_PROJECT_NAME) and so the same
# Redis volume (<project>_redis-data): changing NODES from one to three entries and running
# `deploy` again upgrades a single node to a cluster with every Redis key kept.
# See docs/deploy.md.
set -euo pipefail

root=$(cd "$(dirname "$0")" && pwd)
ENV_FILE=${ENV_FILE:-$root/.env}

log() { echo "deploy: $*" >&2; }
die() { log "error: $*"; exit 1; }

# new_env writes a first .env from .env.example with fresh random secrets, so
# that `./deploy.sh deploy` alone brings up a working single node.
new_env() {
	rand() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
	sed -e "s|^REDIS_PASSWORD=.*|REDIS_PASSWORD=$(rand 32)|" \
		-e "s|^LIVEKIT_API_KEY=.*|LIVEKIT_API_KEY=API$(rand 12)|" \
		-e "s|^LIVEKIT_API_SECRET=.*|LIVEKIT_API_SECRET=$(rand 40)|" \
		-e "s|^CREATE_ROOM_KEY=.*|CREATE_ROOM_KEY=$(rand 32)|" \
		"$root/.env.example" >"$ENV_FILE"
	chmod 600 "$ENV_FILE"
	log "wrote $ENV_FILE with new random secrets (edit NODES, DOMAIN and the rest there)"
}

load_env() {
	if [ -f "$ENV_FILE" ]; then
		set -a
		# shellcheck disable=SC1090
		. "$ENV_FILE"
		set +a
	elif [ "${1:-}" = required ]; then
		new_env
		load_env
		return
	fi
	: "${COMPOSE_PROJECT_NAME:=livekit}"
	: "${REDIS_IMAGE:=local/redis:7}"
	: "${LIVEKIT_IMAGE:=local/livekit-server:v1.13.5}"
	: "${CADDY_IMAGE:=caddy-livekit:local}"
	: "${BASE_IMAGE:=local/debian:bookworm}"
	: "${CADDYFILE:=$root/docker/Caddyfile}"
	export COMPOSE_PROJECT_NAME REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE BASE_IMAGE CADDYFILE

	# NODES: the nodes' addresses. On this one machine they are the containers' fixed addresses
	# on the stack's network, all in one /24 (LK_SUBNET, default: that /24).
	IFS=, read -r -a nodes <<<"${NODES:-}"
	local i n=()
	for i in "${nodes[@]}"; do i=${i//[[:space:]]/}; [ -z "$i" ] || n+=("$i"); done
	nodes=("${n[@]+"${n[@]}"}")
	case ${#nodes[@]} in
	0) mode=single nodes=(10.213.1.11) ;;
	1) mode=single ;;
	3) mode=cluster ;;
	*) die "NODES has ${#nodes[@]} addresses: give one (single node) or three (cluster)" ;;
	esac
	for i in "${!nodes[@]}"; do
		[[ ${nodes[i]} =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.([0-9]+)$ ]] || die "NODES: ${nodes[i]} is not an IPv4 address"
		export "LIVEKIT$((i + 1))_IP=${nodes[i]}"
	done
	local prefix=${nodes[0]%.*}
	if [ -z "${LK_SUBNET:-}" ]; then
		LK_SUBNET=$prefix.0/24
		for i in "${nodes[@]}"; do
			[ "${i%.*}" = "$prefix" ] || die "NODES: on one machine every address must be in $LK_SUBNET (got $i), or set LK_SUBNET"
		done
	fi
	export LK_SUBNET
	NODES_CSV=$(IFS=,; echo "${nodes[*]}")

	# REDIS_HOST: the Redis master. Empty, "redis" or this machine's node address: the stack's own.
	if [ -z "${REDIS_HOST:-}" ] || [ "$REDIS_HOST" = redis ] || [ "$REDIS_HOST" = "${nodes[0]}" ]; then
		REDIS_HOST=redis
	fi
	export REDIS_HOST

	if docker compose version >/dev/null 2>&1; then dc_bin=(docker compose); else dc_bin=(docker-compose); fi
	network=${COMPOSE_PROJECT_NAME}_lk
	if [ "$mode" = single ]; then
		caddies=(caddy) ports=("${CADDY_PORT:-8080}")
	else
		caddies=(caddy1 caddy2) ports=("${CADDY1_PORT:-8081}" "${CADDY2_PORT:-8082}")
	fi
}

need_secrets() {
	local v
	for v in REDIS_PASSWORD LIVEKIT_API_KEY LIVEKIT_API_SECRET CREATE_ROOM_KEY; do
		[ -n "${!v:-}" ] || die "$v is not set in $ENV_FILE"
	done
	[ ${#LIVEKIT_API_SECRET} -ge 32 ] || die "LIVEKIT_API_SECRET must be at least 32 characters (LiveKit's rule)"
}

dc() { "${dc_bin[@]}" -p "$COMPOSE_PROJECT_NAME" -f "$root/docker/compose.$1.yml" "${@:2}"; }

# running_mode: the stack of this project that has containers (single, cluster or nothing).
running_mode() {
	local svc
	svc=$(docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
		--format '{{.Label "com.docker.compose.service"}}' | sort -u)
	if grep -qx caddy <<<"$svc"; then echo single
	elif grep -qx 'caddy[12]\|livekit[23]' <<<"$svc"; then echo cluster
	elif [ -n "$svc" ]; then echo "$mode"; fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

cmd_build() {
	local exports
	exports=$("$root/docker/build-images.sh")
	eval "$exports"
}

# ensure_images: pull an image that is missing, or build it when it cannot be pulled (local/...
# names, our Caddy, or no registry).
ensure_images() {
	local v missing=0
	for v in REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE; do
		image_exists "${!v}" && continue
		if [[ ${!v} != local/* && ${!v} != caddy-livekit:* ]] && docker pull -q "${!v}" >/dev/null 2>&1; then
			log "pulled ${!v}"
		else
			missing=1
		fi
	done
	if [ "$missing" = 1 ]; then
		log "building the missing images (docker/build-images.sh)"
		cmd_build
	fi
}

caddy_exec() { docker exec "$(dc "$mode" ps -q "${caddies[0]}")" caddy livekit "$@" --config /etc/caddy/Caddyfile; }

cmd_deploy() {
	need_secrets
	ensure_images
	local old
	old=$(running_mode)
	if [ -n "$old" ] && [ "$old" != "$mode" ]; then
		log "switching $COMPOSE_PROJECT_NAME from $old to $mode; Redis' volume stays"
	fi
	# A network whose subnet changed cannot be reused: take the old containers down first (the
	# Redis volume is not touched).
	local subnet
	subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$network" 2>/dev/null || true)
	if [ -n "$subnet" ] && [ "$subnet" != "$LK_SUBNET" ]; then
		log "network $network is $subnet, now $LK_SUBNET: recreating the containers"
		dc "${old:-$mode}" down --remove-orphans
	fi
	dc "$mode" up -d --remove-orphans
	log "waiting for the nodes to register and the proxy to route"
	local deadline=$((SECONDS + ${DEPLOY_WAIT:-90}))
	until caddy_exec verify --nodes "$NODES_CSV" >/dev/null 2>&1; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			caddy_exec verify --nodes "$NODES_CSV" || true
			die "the stack is not healthy after ${DEPLOY_WAIT:-90}s (see above; ./deploy.sh status)"
		fi
		sleep 1
	done
	log "$mode stack $COMPOSE_PROJECT_NAME is up: nodes $NODES_CSV"
	cat <<EOF
Create a room (the answer has the token and the URL clients connect to):

  curl -sS http://${HTTP_BIND:-127.0.0.1}:${ports[0]}/api/create-room \\
    -H "Authorization: Bearer \$CREATE_ROOM_KEY" -H 'Content-Type: application/json' \\
    -d '{"room_name": "standup", "user_name": "Alice"}'
EOF
}

# json_field NAME: a string field of the JSON on stdin (no jq needed).
json_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }

cmd_verify() {
	need_secrets
	local problems=0 svc out code body token room port i
	problem() { echo "PROBLEM: $*"; problems=$((problems + 1)); }
	for svc in redis "${caddies[@]}"; do
		out=$(dc "$mode" ps -q "$svc" 2>/dev/null || true)
		[ -n "$out" ] && [ "$(docker inspect -f '{{.State.Running}}' "$out" 2>/dev/null)" = true ] ||
			problem "container $svc of $COMPOSE_PROJECT_NAME ($mode) is not running"
	done
	[ "$problems" = 0 ] || { echo "Error: $problems problem(s)"; exit 1; }
	# Redis (reachable, noeviction, password), every node registered, serving and answering.
	# stdout has the PROBLEM lines; stderr Caddy's config-loading logs and the final error.
	local errs
	errs=$(mktemp)
	if ! out=$(caddy_exec verify --nodes "$NODES_CSV" 2>"$errs"); then
		if grep -q '^PROBLEM: ' <<<"$out"; then
			while IFS= read -r i; do
				case $i in PROBLEM:*) problem "${i#PROBLEM: }" ;; esac
			done <<<"$out"
		else
			problem "caddy livekit verify failed: $(grep -v '"level":"\(debug\|info\)"' "$errs" | tail -n 3 | tr '\n' ' ')"
		fi
	fi
	rm -f "$errs"
	# The create-room endpoint and a real join's validation through every proxy.
	for i in "${!caddies[@]}"; do
		port=${ports[i]} room=deploy-verify-$(date +%s)-$i
		body=$(curl -sS -m 10 -o - -w '\n%{http_code}' "http://127.0.0.1:$port/api/create-room" \
			-H "Authorization: Bearer $CREATE_ROOM_KEY" -H 'Content-Type: application/json' \
			-d "{\"room_name\": \"$room\", \"user_name\": \"deploy-verify\", \"ttl\": 60}" 2>&1) || true
		code=${body##*$'\n'} body=${body%$'\n'*}
		token=$(json_field token <<<"$body")
		if [ "$code" != 200 ] || [ -z "$token" ]; then
			problem "${caddies[i]}: POST /api/create-room answered $code: $(head -c 200 <<<"$body")"
			continue
		fi
		body=$(curl -sS -m 10 -o - -w '\n%{http_code}' "http://127.0.0.1:$port/rtc/validate?access_token=$token" 2>&1) || true
		code=${body##*$'\n'} body=${body%$'\n'*}
		[ "$code" = 200 ] || problem "${caddies[i]}: GET /rtc/validate with the new room's token answered $code: $(head -c 200 <<<"$body")"
	done
	if [ "$problems" -gt 0 ]; then
		echo "Error: $problems problem(s)"
		exit 1
	fi
	echo "OK: Redis, nodes $NODES_CSV, create-room and joins through ${caddies[*]}"
}

cmd_status() {
	caddy_exec status || true
	echo
	dc "$mode" ps
}

# livekit_cmd ARGS...: `caddy livekit ARGS` in a one-off container on the stack's network, so it
# works with only Redis running (a restore into a fresh stack). The password travels in the
# environment, not on the command line.
livekit_cmd() {
	docker run --rm -i --network "$network" -e REDIS_PASSWORD -v "$tmp:/backup" \
		--entrypoint caddy "$CADDY_IMAGE" livekit "$@" --redis "$REDIS_HOST:${REDIS_PORT:-6379}"
}

# Secrets are not written into a backup: .env goes in with every secret's value replaced, so the
# archive can be stored with less care than the secrets themselves (LiveKit's Redis holds room and
# node state, no keys). Restoring needs the same LIVEKIT_API_KEY/SECRET for old tokens to stay valid.
redact_env() {
	sed -E 's/^([[:space:]]*(export[[:space:]]+)?[A-Z0-9_]*(PASSWORD|SECRET|KEY)[A-Z0-9_]*=).*/\1<redacted>/' "$1"
}

cmd_backup() {
	local file=${1:?usage: deploy.sh backup FILE.tar.gz}
	[ -n "$(dc "$mode" ps -q redis 2>/dev/null)" ] || die "Redis of $COMPOSE_PROJECT_NAME is not running"
	tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
	chmod 777 "$tmp" # the image may run as another user
	livekit_cmd backup /backup/redis.jsonl >&2
	mkdir "$tmp/config"
	cp "$CADDYFILE" "$tmp/config/Caddyfile"
	[ ! -f "$ENV_FILE" ] || redact_env "$ENV_FILE" >"$tmp/config/env.redacted"
	{
		echo "created: $(date -u +%FT%TZ)"
		echo "project: $COMPOSE_PROJECT_NAME"
		echo "mode: $mode"
		echo "nodes: $NODES_CSV"
		echo "keys: $(wc -l <"$tmp/redis.jsonl")"
	} >"$tmp/MANIFEST"
	(umask 077 && tar -C "$tmp" -czf "$file" MANIFEST redis.jsonl config)
	log "backup written to $file ($(wc -l <"$tmp/redis.jsonl") keys)"
}

cmd_restore() {
	local file=${1:?usage: deploy.sh restore FILE.tar.gz}
	[ -f "$file" ] || die "$file not found"
	need_secrets
	ensure_images
	tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
	chmod 777 "$tmp"
	tar -C "$tmp" -xzf "$file" redis.jsonl
	chmod 644 "$tmp/redis.jsonl"
	# Only Redis needs to run: in a fresh deployment restore first, then `deploy`, so the nodes
	# start on the restored state. A running stack stays running.
	dc "$mode" up -d redis
	local deadline=$((SECONDS + 60))
	until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(dc "$mode" ps -q redis)")" = healthy ]; do
		[ "$SECONDS" -lt "$deadline" ] || die "Redis did not become healthy"
		sleep 1
	done
	livekit_cmd restore /backup/redis.jsonl >&2
	log "restored from $file; the configuration saved with it is in the archive's config/ (./deploy.sh deploy starts the rest)"
}

cmd_down() {
	local m
	m=$(running_mode)
	dc "${m:-$mode}" down --remove-orphans
	log "containers removed; Redis' data stays in volume ${COMPOSE_PROJECT_NAME}_redis-data (docker volume rm it to wipe)"
}

main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	build) load_env; cmd_build >/dev/null ;;
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
