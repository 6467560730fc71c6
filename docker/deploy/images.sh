# shellcheck shell=bash
# The images and compose files: building what cannot be pulled, running compose.
# Sourced by deploy.sh (functions only; deploy.sh sets root, ENV_FILE, log and die).

# dc MODE ARGS...: docker compose on MODE's file; on a host with Redis, with its profile.
dc() {
	local profile=()
	[ "$1" != host ] || [ "$runs_redis" != 1 ] || profile=(--profile redis)
	if [ "$1" = host ] && [ -z "${THIS_NODE:-}" ]; then
		# a host stack taken down from a one-machine mode: compose.host.yml insists on THIS_NODE and NODE_IP
		local THIS_NODE=127.0.0.1 NODE_IP=127.0.0.1
		export THIS_NODE NODE_IP
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

# project_ports: "SERVICE PORT" for every host port a running container of this project publishes.
project_ports() {
	docker ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
		--format '{{.Label "com.docker.compose.service"}} {{.Ports}}' |
		awk '{ for (i = 2; i <= NF; i++) if (match($i, /:[0-9]+->/)) print $1, substr($i, RSTART + 1, RLENGTH - 3) }' | sort -u
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
# docker/build-images.sh, under its local/... name when the official one was asked for. That
# fallback is remembered (pull_stamp), so later commands use the local build without asking the
# registry again; the pull is bounded by PULL_TIMEOUT seconds, as a network that drops packets
# would otherwise hold it for minutes. PULL_TIMEOUT=0: never pull.
ensure_images() {
	local v want local_name why rc build=()
	for v in REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE; do
		want=${!v}
		image_exists "$want" && continue
		local_name=$(local_build "$v")
		if [ "$local_name" != "$want" ] && [ "${PULL_TIMEOUT:-60}" != 0 ] && [ ! -f "$(pull_stamp "$want")" ]; then
			rc=0
			timeout -k 5 "${PULL_TIMEOUT:-60}" docker pull -q "$want" >/dev/null 2>&1 || rc=$?
			if [ "$rc" = 0 ]; then
				log "pulled $want"
				continue
			fi
			why="docker pull failed"
			[ "$rc" != 124 ] || why="no answer within ${PULL_TIMEOUT:-60}s, PULL_TIMEOUT"
			log "$want cannot be pulled ($why): using the local build $local_name, now and from now on (rm $(pull_stamp "$want") to try the pull again)"
			mkdir -p "$pull_stamps" && date -u +%FT%TZ >"$(pull_stamp "$want")"
		fi
		export "$v=$local_name"
		image_exists "$local_name" || build+=("$v=$local_name")
	done
	if image_exists "$CADDY_IMAGE" && caddy_stale; then
		log "$CADDY_IMAGE is older than this checkout's Go sources: rebuilding it"
		build+=("CADDY_IMAGE=$CADDY_IMAGE")
	fi
	[ ${#build[@]} -eq 0 ] || build_images "${build[@]}"
}

# need_layer4: with TURN=on, Caddy's config loads caddy-l4's layer4 listener wrapper; a Caddy
# image built without it (CADDY_BIN from cmd/caddy, an xcaddy build of the plugin alone) would
# restart forever, so say so before anything starts.
need_layer4() {
	[ "${TURN:-off}" = on ] || return 0
	local modules # not piped into grep -q: with pipefail, docker killed by SIGPIPE would fail the check
	modules=$(docker run --rm --entrypoint caddy "$CADDY_IMAGE" list-modules 2>/dev/null || true)
	grep -qx layer4 <<<"$modules" ||
		die "TURN=on needs a Caddy with mholt/caddy-l4 (the layer4 module), and $CADDY_IMAGE has none: build it from cmd/caddy-l4 (docker/build-images.sh does by default; ./deploy.sh build), or set TURN=off"
}

# pull_stamp IMAGE: the file that records that IMAGE could not be pulled on this machine, in the
# git-ignored .cache beside caddy_stamp; one per image asked for, so asking for another tag tries
# the registry again.
pull_stamps=$root/.cache/not-pulled
pull_stamp() { echo "$pull_stamps/${1//[\/:]/_}"; }

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
