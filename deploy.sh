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
# Variables already in the environment win over .env (as with docker compose).
# Where the stack runs follows from NODES:
#   - one of its addresses is this machine's (or THIS_NODE names it): this machine is that node,
#     with host networking (docker/compose.host.yml): the same .env and the same command on every
#     machine; Redis runs on the machine REDIS_HOST names (default: the first address).
#   - otherwise everything runs on this machine, on a bridge network: zero or one address
#     docker/compose.single.yml, three docker/compose.cluster.yml. Both use the same compose project
#     (COMPOSE_PROJECT_NAME) and so the same Redis volume (<project>_redis-data): changing NODES from
#     one to three entries and running `deploy` again upgrades a single node to a cluster with every
#     Redis key kept.
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
		# The caller's environment wins over .env: keep what it sets, source, put it back.
		local k
		declare -A keep=()
		for k in $(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)=.*/\2/p' "$ENV_FILE"); do
			[ -z "${!k+set}" ] || keep[$k]=${!k}
		done
		set -a
		# shellcheck disable=SC1090
		. "$ENV_FILE"
		set +a
		for k in "${!keep[@]}"; do export "$k=${keep[$k]}"; done
	elif [ "${1:-}" = required ]; then
		new_env
		load_env
		return
	fi
	: "${COMPOSE_PROJECT_NAME:=livekit}"
	: "${REDIS_IMAGE:=redis:7}"
	: "${LIVEKIT_IMAGE:=livekit/livekit-server:v1.13.5}"
	: "${CADDY_IMAGE:=caddy-livekit:local}"
	: "${BASE_IMAGE:=local/debian:bookworm}"
	: "${CADDYFILE:=$root/docker/Caddyfile}"
	: "${TLS:=off}"
	export COMPOSE_PROJECT_NAME REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE BASE_IMAGE CADDYFILE TLS

	IFS=, read -r -a nodes <<<"${NODES:-}"
	local i n=()
	for i in "${nodes[@]}"; do i=${i//[[:space:]]/}; [ -z "$i" ] || n+=("$i"); done
	nodes=("${n[@]+"${n[@]}"}")
	for i in "${nodes[@]}"; do
		[[ $i =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "NODES: $i is not an IPv4 address"
	done
	find_this_node
	if [ -n "${THIS_NODE:-}" ]; then
		host_env
	else
		bridge_env
	fi
	NODES_CSV=$(IFS=,; echo "${nodes[*]}")
	: "${ALLOW_NETWORKS:=$(allow_networks)}"
	export ALLOW_NETWORKS
	if docker compose version >/dev/null 2>&1; then dc_bin=(docker compose); else dc_bin=(docker-compose); fi
}

# local_addresses: "interface address" for every IPv4 address of this machine.
local_addresses() { ip -o -4 addr show 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $2, $4 }'; }

# find_this_node: THIS_NODE, when set, must be in NODES; otherwise it is the NODES address that
# this machine has, if any.
find_this_node() {
	local i a
	if [ -n "${THIS_NODE:-}" ]; then
		for i in "${nodes[@]}"; do [ "$i" != "$THIS_NODE" ] || return 0; done
		die "THIS_NODE=$THIS_NODE is not in NODES=${NODES:-}"
	fi
	for a in $(local_addresses | awk '{ print $2 }'); do
		for i in "${nodes[@]}"; do
			if [ "$i" = "$a" ]; then THIS_NODE=$i; return 0; fi
		done
	done
}

# host_env: this machine is node THIS_NODE of NODES, with host networking.
host_env() {
	mode=host
	export THIS_NODE
	: "${HOST_NETWORK:=host}"
	network=$HOST_NETWORK
	export HOST_NETWORK
	# REDIS_HOST: the Redis master's address; empty: the first node, which then runs it.
	case ${REDIS_HOST:-} in
	"") REDIS_HOST=${nodes[0]} ;;
	redis) die "REDIS_HOST=redis is the one-machine stacks' service name: give the Redis machine's address" ;;
	esac
	export REDIS_HOST
	runs_redis=0
	[ "$REDIS_HOST" != "$THIS_NODE" ] || runs_redis=1
	case $TLS in
	off) CADDY_SITE=:${CADDY_PORT:-80} ;;
	auto | internal | files)
		[ -n "${DOMAIN:-}" ] || die "TLS=$TLS needs DOMAIN, the name clients connect to"
		CADDY_SITE=$DOMAIN
		if [ "$TLS" = files ]; then
			[ -r "${TLS_CERT_FILE:-}" ] && [ -r "${TLS_KEY_FILE:-}" ] ||
				die "TLS=files needs TLS_CERT_FILE and TLS_KEY_FILE, readable files (got '${TLS_CERT_FILE:-}', '${TLS_KEY_FILE:-}')"
		fi
		;;
	*) die "TLS=$TLS: use off, auto, internal or files" ;;
	esac
	export CADDY_SITE
	caddies=(caddy)
}

# bridge_env: every container on this machine, on the stack's own bridge network. NODES are the
# nodes' fixed container addresses there, all in one /24 (LK_SUBNET, default: that /24).
bridge_env() {
	local i
	case ${#nodes[@]} in
	0) mode=single nodes=(10.213.1.11) ;;
	1) mode=single ;;
	3) mode=cluster ;;
	*) die "NODES has ${#nodes[@]} addresses and none is this machine's: give one (single node) or three (cluster on this machine), or set THIS_NODE" ;;
	esac
	[ "$TLS" = off ] || die "TLS=$TLS needs host networking: put this machine's address in NODES (docs/deploy.md)"
	# Addresses of this machine's own LAN would be taken by containers: that is a NODES list meant for
	# several machines, run on a machine that is not in it.
	local lan
	lan=$(local_addresses | awk '$1 !~ /^(lo|docker|br-|veth)/ { sub(/\.[0-9]+$/, "", $2); print $2 }')
	for i in "${nodes[@]}"; do
		! grep -qx "${i%.*}" <<<"$lan" ||
			die "NODES: $i is on this machine's network but none of NODES is this machine: run deploy.sh on the machines NODES lists, or set THIS_NODE"
	done
	for i in "${!nodes[@]}"; do export "LIVEKIT$((i + 1))_IP=${nodes[i]}"; done
	local prefix=${nodes[0]%.*}
	if [ -z "${LK_SUBNET:-}" ]; then
		LK_SUBNET=$prefix.0/24
		for i in "${nodes[@]}"; do
			[ "${i%.*}" = "$prefix" ] || die "NODES: on one machine every address must be in $LK_SUBNET (got $i), or set LK_SUBNET"
		done
	fi
	export LK_SUBNET
	# REDIS_HOST: the Redis master. Empty, "redis" or the first node's address: the stack's own.
	if [ -z "${REDIS_HOST:-}" ] || [ "$REDIS_HOST" = redis ] || [ "$REDIS_HOST" = "${nodes[0]}" ]; then
		REDIS_HOST=redis
	fi
	export REDIS_HOST
	network=${COMPOSE_PROJECT_NAME}_lk
	runs_redis=1
	if [ "$mode" = single ]; then
		caddies=(caddy) ports=("${CADDY_PORT:-8080}")
	else
		caddies=(caddy1 caddy2) ports=("${CADDY1_PORT:-8081}" "${CADDY2_PORT:-8082}")
	fi
}

# allow_networks: where the proxies may dial node addresses read from Redis: the private ranges
# (livekitlb's defaultAllowNetworks, "private"), and any public NODES address as itself. Private
# NODES are not listed, so adding a machine leaves the value, and the proxies' containers, as they are.
allow_networks() {
	local i out=private
	for i in "${nodes[@]}"; do
		[[ $i =~ ^(10\.|127\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.) ]] || out+=" $i"
	done
	echo "$out"
}

need_secrets() {
	local v
	for v in REDIS_PASSWORD LIVEKIT_API_KEY LIVEKIT_API_SECRET CREATE_ROOM_KEY; do
		[ -n "${!v:-}" ] || die "$v is not set in $ENV_FILE"
	done
	[ ${#LIVEKIT_API_SECRET} -ge 32 ] || die "LIVEKIT_API_SECRET must be at least 32 characters (LiveKit's rule)"
	[ ${#CREATE_ROOM_KEY} -ge 32 ] || die "CREATE_ROOM_KEY must be at least 32 characters (the create-room endpoint refuses shorter keys)"
}

# dc MODE ARGS...: docker compose on MODE's file; on a host with Redis, with its profile.
dc() {
	local profile=()
	[ "$1" != host ] || [ "$runs_redis" != 1 ] || profile=(--profile redis)
	if [ "$1" = host ] && [ -z "${THIS_NODE:-}" ]; then
		# a host stack taken down from a one-machine mode: compose.host.yml insists on THIS_NODE
		local THIS_NODE=127.0.0.1
		export THIS_NODE
	fi
	"${dc_bin[@]}" -p "$COMPOSE_PROJECT_NAME" -f "$root/docker/compose.$1.yml" "${profile[@]+"${profile[@]}"}" "${@:2}"
}

# running_mode: the stack of this project that has containers (single, cluster, host or nothing).
running_mode() {
	local svc
	svc=$(docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
		--format '{{.Label "com.docker.compose.service"}}' | sort -u)
	if grep -qx livekit <<<"$svc"; then echo host
	elif grep -qx caddy <<<"$svc"; then echo single
	elif grep -qx 'caddy[12]\|livekit[23]' <<<"$svc"; then echo cluster
	elif [ -n "$svc" ]; then echo "$mode"; fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# local_build VAR: the name under which docker/build-images.sh builds the image VAR asks for: itself
# for a local one, local/... for an official one (never retagged with a local build).
local_build() {
	local want=${!1}
	case $1:$want in
	REDIS_IMAGE:local/* | LIVEKIT_IMAGE:local/* | CADDY_IMAGE:*) echo "$want" ;;
	REDIS_IMAGE:*) echo local/redis:7 ;;
	LIVEKIT_IMAGE:*:*) echo "local/livekit-server:${want##*:}" ;;
	LIVEKIT_IMAGE:*) echo local/livekit-server:v1.13.5 ;;
	esac
}

# build_images VAR=NAME...: docker/build-images.sh for just these images.
build_images() {
	local exports only
	log "building (docker/build-images.sh): $*"
	only=$(printf '%s\n' "$@" | sed 's/_IMAGE=.*//' | tr 'A-Z\n' 'a-z ')
	exports=$(env "$@" ONLY="$only" LIVEKIT_VERSION="${LIVEKIT_IMAGE##*:}" "$root/docker/build-images.sh")
	eval "$exports"
	[[ " $only " != *" caddy "* ]] || { mkdir -p "${caddy_stamp%/*}" && touch "$caddy_stamp"; }
}

cmd_build() {
	local v build=()
	for v in REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE; do
		export "$v=$(local_build "$v")"
		build+=("$v=${!v}")
	done
	build_images "${build[@]}"
}

# ensure_images: every image of the stack present. One that is missing is pulled; one that cannot be
# pulled (no registry, or our Caddy, which only exists as a local build) is built by
# docker/build-images.sh, under its local/... name when the official one was asked for.
ensure_images() {
	local v want local_name build=()
	for v in REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE; do
		want=${!v}
		image_exists "$want" && continue
		if [[ $want != local/* && $want != caddy-livekit:* ]] && docker pull -q "$want" >/dev/null 2>&1; then
			log "pulled $want"
			continue
		fi
		local_name=$(local_build "$v")
		[ "$local_name" = "$want" ] || log "$want cannot be pulled: using the local build $local_name"
		export "$v=$local_name"
		image_exists "$local_name" || build+=("$v=$local_name")
	done
	if image_exists "$CADDY_IMAGE" && caddy_stale; then
		log "$CADDY_IMAGE is older than this checkout's Go sources: rebuilding it"
		build+=("CADDY_IMAGE=$CADDY_IMAGE")
	fi
	[ ${#build[@]} -eq 0 ] || build_images "${build[@]}"
}

# caddy_stamp: touched whenever deploy.sh builds our Caddy image from this checkout.
caddy_stamp=$root/.cache/caddy-image.stamp

# caddy_stale: this checkout's Go sources changed since deploy.sh last built our Caddy image from
# them, as after a `git pull`: deploy then rolls the new code out. An image deploy.sh did not build
# (no stamp) is left as it is.
caddy_stale() {
	[[ $CADDY_IMAGE == caddy-livekit:* ]] && [ -f "$caddy_stamp" ] || return 1
	[ -n "$(find "$root" -path "$root/integration" -prune -o -path "$root/.git" -prune -o \
		\( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$caddy_stamp" -print -quit)" ]
}

# caddy_exec ARGS...: `caddy livekit ARGS` in this machine's first proxy, which reads the cluster from
# its own Caddyfile. CREATE_ROOM_KEY (verify's create-room check) is this .env's, passed by name: its
# value travels in the environment, not on a command line.
caddy_exec() {
	docker exec -e CREATE_ROOM_KEY "$(dc "$mode" ps -q "${caddies[0]}")" caddy livekit "$@" --config /etc/caddy/Caddyfile
}

# proxy_target I: sets base (the URL at which caddy I answers on this machine) and curl_opts (how
# to reach it: the public name resolved to this machine, and the CA of TLS=internal or files, which
# a client must trust as a real one would).
proxy_target() {
	curl_opts=()
	if [ "$mode" != host ]; then
		base=http://127.0.0.1:${ports[$1]}
	elif [ "$TLS" = off ]; then
		base=http://127.0.0.1:${CADDY_PORT:-80}
	else
		base=https://$DOMAIN
		curl_opts=(--resolve "$DOMAIN:443:127.0.0.1")
		case $TLS in
		internal)
			# fetched once per command: Caddy's root does not change while it runs
			ca_file=${ca_file:-$(mktemp)}
			[ -s "$ca_file" ] ||
				docker exec "$(dc host ps -q caddy)" cat /data/caddy/pki/authorities/local/root.crt >"$ca_file" 2>/dev/null || true
			curl_opts+=(--cacert "$ca_file")
			;;
		files) curl_opts+=(--cacert "$TLS_CERT_FILE") ;;
		esac
	fi
}

# Every machine of a deployment must run the same .env and Caddyfile. deploy records a digest of
# both per machine (`caddy livekit deployment record`); verify compares (`--machine`, `--digest`).
# The digest is taken here, where both files are: the proxy's container has neither .env itself nor
# this machine's path to the Caddyfile.
config_digest() { cat "$ENV_FILE" "$CADDYFILE" | sha256sum | cut -c1-16; }

# proxy_answers: this machine's first proxy answers HTTP(S) on its public side (its certificate
# valid for DOMAIN when TLS is on): Caddy may still be starting when the nodes are already up.
proxy_answers() {
	proxy_target 0
	curl -s -m 3 "${curl_opts[@]+"${curl_opts[@]}"}" -o /dev/null "$base/"
}

cmd_deploy() {
	need_secrets
	ensure_images
	local old
	old=$(running_mode)
	if [ -n "$old" ] && [ "$old" != "$mode" ]; then
		log "switching $COMPOSE_PROJECT_NAME from $old to $mode; Redis' volume stays"
	fi
	if [ "$mode" = host ]; then
		# Other networking: nothing of the old containers can be kept (the volumes are).
		[ -z "$old" ] || [ "$old" = host ] || dc "$old" down --remove-orphans
	else
		[ "$old" != host ] || dc host down --remove-orphans
		# A network whose subnet changed cannot be reused: take the old containers down first (the
		# Redis volume is not touched).
		local subnet
		subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$network" 2>/dev/null || true)
		if [ -n "$subnet" ] && [ "$subnet" != "$LK_SUBNET" ]; then
			log "network $network is $subnet, now $LK_SUBNET: recreating the containers"
			dc "${old:-$mode}" down --remove-orphans
		fi
	fi
	dc "$mode" up -d --remove-orphans
	# On one machine the whole stack must come up; on one of several, this machine's node (the
	# others may not be deployed yet: `verify` checks them all).
	local wait_nodes=$NODES_CSV
	[ "$mode" != host ] || wait_nodes=$THIS_NODE
	log "waiting for node(s) $wait_nodes to register and the proxy to answer"
	local deadline=$((SECONDS + ${DEPLOY_WAIT:-90})) base ca_file='' curl_opts=()
	until caddy_exec verify --nodes "$wait_nodes" >/dev/null 2>&1 && proxy_answers; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			caddy_exec verify --nodes "$wait_nodes" || true
			proxy_answers || log "the proxy does not answer at $base"
			die "the stack is not healthy after ${DEPLOY_WAIT:-90}s (see above; ./deploy.sh status)"
		fi
		sleep 1
	done
	[ -z "$ca_file" ] || rm -f "$ca_file"
	local url
	if [ "$mode" = host ]; then
		caddy_exec deployment record "$THIS_NODE" "$(config_digest)" >/dev/null 2>&1 ||
			log "warning: could not record this machine's configuration in Redis"
		log "node $THIS_NODE is up ($COMPOSE_PROJECT_NAME; Redis on $REDIS_HOST; nodes $NODES_CSV)"
		url=http://$THIS_NODE:${CADDY_PORT:-80}
		[ "$TLS" = off ] || url=https://$DOMAIN
	else
		log "$mode stack $COMPOSE_PROJECT_NAME is up: nodes $NODES_CSV"
		url=http://${HTTP_BIND:-127.0.0.1}:${ports[0]}
	fi
	cat <<EOF
Create a room (the answer has the token and the URL clients connect to):

  curl -sS $url/api/create-room \\
    -H "Authorization: Bearer \$CREATE_ROOM_KEY" -H 'Content-Type: application/json' \\
    -d '{"room_name": "standup", "user_name": "Alice"}'
EOF
}

# verify_targets: sets target_args, verify's flags for the create-room check through every proxy
# of this machine, as the first proxy's container reaches them (by service name on a bridge network;
# with host networking on this machine's loopback, under DOMAIN with TLS, trusting the CA the
# proxy's certificate comes from), and site, how the OK line names them.
verify_targets() {
	local c
	target_args=()
	if [ "$mode" != host ]; then
		for c in "${caddies[@]}"; do target_args+=(--create-room "http://$c/api/create-room"); done
		site=${caddies[*]}
		return
	fi
	if [ "$TLS" = off ]; then
		site=http://127.0.0.1:${CADDY_PORT:-80}
		target_args=(--create-room "$site/api/create-room")
		return
	fi
	site=https://$DOMAIN
	target_args=(--create-room "$site/api/create-room" --dial 127.0.0.1:443)
	case $TLS in
	internal) target_args+=(--ca-file /data/caddy/pki/authorities/local/root.crt) ;;
	files) target_args+=(--ca-file /etc/caddy/tls/cert.pem) ;;
	esac
}

cmd_verify() {
	need_secrets
	local problems=0 svc out i services=(redis "${caddies[@]}")
	problem() { echo "PROBLEM: $*"; problems=$((problems + 1)); }
	if [ "$mode" = host ]; then
		services=(livekit caddy)
		[ "$runs_redis" != 1 ] || services+=(redis)
	fi
	for svc in "${services[@]}"; do
		out=$(dc "$mode" ps -q "$svc" 2>/dev/null || true)
		[ -n "$out" ] && [ "$(docker inspect -f '{{.State.Running}}' "$out" 2>/dev/null)" = true ] ||
			problem "container $svc of $COMPOSE_PROJECT_NAME ($mode) is not running"
	done
	[ "$problems" = 0 ] || { echo "Error: $problems problem(s)"; exit 1; }
	# caddy livekit verify: Redis (reachable, noeviction, password), every node registered, serving
	# and answering; on one machine of several, another machine of NODES last deployed with another
	# .env or Caddyfile; through every proxy of this machine, a room from the create-room endpoint
	# and LiveKit's validation of a join with its token.
	# stdout has the PROBLEM lines; stderr Caddy's config-loading logs and the final error.
	local errs args=(--nodes "$NODES_CSV") target_args site
	[ "$mode" != host ] || args+=(--machine "$THIS_NODE" --digest "$(config_digest)")
	verify_targets
	errs=$(mktemp)
	if ! out=$(caddy_exec verify "${args[@]}" "${target_args[@]}" 2>"$errs"); then
		if grep -q '^PROBLEM: ' <<<"$out"; then
			while IFS= read -r i; do
				case $i in PROBLEM:*) problem "${i#PROBLEM: }" ;; esac
			done <<<"$out"
		else
			problem "caddy livekit verify failed: $(grep -v '"level":"\(debug\|info\)"' "$errs" | tail -n 3 | tr '\n' ' ')"
		fi
	fi
	rm -f "$errs"
	if [ "$problems" -gt 0 ]; then
		echo "Error: $problems problem(s)"
		exit 1
	fi
	if [ "$mode" = host ]; then
		echo "OK: Redis on $REDIS_HOST, nodes $NODES_CSV, create-room and joins through the caddy of $THIS_NODE ($site)"
	else
		echo "OK: Redis, nodes $NODES_CSV, create-room and joins through $site"
	fi
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
	# Redis of another machine: caddy livekit backup says so if it cannot be reached.
	[ "$runs_redis" != 1 ] || [ -n "$(dc "$mode" ps -q redis 2>/dev/null)" ] || die "Redis of $COMPOSE_PROJECT_NAME is not running"
	ensure_images
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
		echo "redis: $REDIS_HOST"
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
	# start on the restored state. A running stack stays running. Redis on another machine must be
	# up already.
	if [ "$runs_redis" = 1 ]; then
		dc "$mode" up -d redis
		local deadline=$((SECONDS + 60))
		until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(dc "$mode" ps -q redis)")" = healthy ]; do
			[ "$SECONDS" -lt "$deadline" ] || die "Redis did not become healthy"
			sleep 1
		done
	fi
	livekit_cmd restore /backup/redis.jsonl >&2
	log "restored from $file into Redis on $REDIS_HOST; the configuration saved with it is in the archive's config/ (./deploy.sh deploy starts the rest)"
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
