# shellcheck shell=bash
# backup, restore and down.
# Sourced by deploy.sh (functions only; deploy.sh sets root, ENV_FILE, log and die).

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
	# no container, and no network left by one: compose would only complain
	if [ -z "$m" ] && [ -z "$(docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ]; then
		log "nothing is running in project $COMPOSE_PROJECT_NAME"
		return 0
	fi
	dc "${m:-$mode}" down --remove-orphans
	log "containers removed; Redis' data stays in volume ${COMPOSE_PROJECT_NAME}_redis-data (docker volume rm it to wipe)"
}
