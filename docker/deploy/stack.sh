# shellcheck shell=bash
# deploy, verify and status: the stack up, and `caddy livekit` asked about the cluster.
# Sourced by deploy.sh (functions only; deploy.sh sets root, ENV_FILE, log and die).

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
		base=http://$(published_host):${ports[$1]}
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

# published_host: where this machine reaches the one-machine stacks' proxies: HTTP_BIND, the
# address their ports are published on, or loopback when that is every address.
published_host() {
	case ${HTTP_BIND:-127.0.0.1} in
	0.0.0.0 | :: | '[::]') echo 127.0.0.1 ;;
	*) echo "${HTTP_BIND:-127.0.0.1}" ;;
	esac
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

# port_taken PORT: something on this machine listens on TCP PORT where publishing HTTP_BIND:PORT
# would clash with it (the same address, or a wildcard on either side). Without ss (iproute2),
# nothing is known to be taken: compose will say it.
port_taken() {
	command -v ss >/dev/null || return 1
	ss -Hltn "sport = :$1" | awk -v bind="${HTTP_BIND:-127.0.0.1}" '
		{ a = $4; sub(/:[0-9]+$/, "", a); sub(/%.*/, "", a) }
		a == bind || a == "[" bind "]" || a ~ /^(0\.0\.0\.0|\*|\[::\])$/ || bind ~ /^(0\.0\.0\.0|::)$/ { found = 1 }
		END { exit !found }'
}

# check_ports OLD: every port the one-machine stack will publish is free, or published by this
# project's own running containers (the proxy being replaced), and no two proxies share one.
# Checked before anything is pulled, built or stopped: compose would otherwise find a taken port
# only after removing the old proxy, leaving none. A proxy with host networking (OLD=host) publishes
# nothing Docker lists, so its ports cannot be told from another program's: no check then.
check_ports() {
	[ "$1" != host ] || return 0
	local i j published own was
	published=$(project_ports)
	own=" $(awk '{ print $2 }' <<<"$published" | tr '\n' ' ') "
	for i in "${!ports[@]}"; do
		for ((j = 0; j < i; j++)); do
			[ "${ports[j]}" != "${ports[i]}" ] ||
				die "${port_vars[j]} and ${port_vars[i]} are both ${ports[i]}: give each proxy its own port in $ENV_FILE; nothing was changed"
		done
		[[ $own != *" ${ports[i]} "* ]] || continue
		! port_taken "${ports[i]}" ||
			die "port ${ports[i]} (${HTTP_BIND:-127.0.0.1}:${ports[i]}, ${port_vars[i]}) is taken by another program: set ${port_vars[i]} in $ENV_FILE to a free port, or stop that program; nothing was changed"
	done
	# Clients use the first proxy's address: a deploy that moves it says so.
	was=$(awk '$1 == "caddy" || $1 == "caddy1" { print $2; exit }' <<<"$published")
	if [ -n "$was" ] && [[ " ${ports[*]} " != *" $was "* ]]; then
		log "the proxy moves from port $was to ${ports[0]} (${port_vars[0]}): clients must use the new address; set ${port_vars[0]}=$was in $ENV_FILE to keep the old one"
	fi
}

# up_bridge: the one-machine stack up, the old proxy kept until a new one answers. `up
# --remove-orphans` removes the orphans (the single node's `caddy` when it becomes a cluster) before
# it starts the new services, so a new proxy that then fails would leave no proxy at all. Instead
# the new proxies whose ports no old proxy publishes start first, with the services they depend on;
# once one answers, `up --remove-orphans` removes the old proxy and starts the rest. A new proxy on
# the old one's port (caddy1 on the single node's CADDY_PORT, the default) can only start after the
# old one is gone, since two containers cannot publish one port: clients of that port see a gap of
# a few seconds while Caddy starts, and the proxy started first serves throughout.
up_bridge() {
	local i held start=() services=() deadline base curl_opts
	# host ports of running containers that the new stack does not have: the old proxies'
	held=$(project_ports | awk -v keep=" ${caddies[*]} " 'index(keep, " " $1 " ") == 0 { printf " %s ", $2 }')
	if [ -n "$held" ]; then
		for i in "${!caddies[@]}"; do
			[[ $held == *" ${ports[i]} "* ]] || { start+=("$i"); services+=("${caddies[i]}"); }
		done
	fi
	if [ ${#start[@]} -gt 0 ]; then
		log "starting ${services[*]} before the old proxy is removed"
		dc "$mode" up -d "${services[@]}"
		proxy_target "${start[0]}"
		deadline=$((SECONDS + ${DEPLOY_WAIT:-90}))
		until curl -s -m 3 -o /dev/null "$base/"; do
			[ "$SECONDS" -lt "$deadline" ] ||
				die "the new proxy ${services[0]} does not answer at $base after ${DEPLOY_WAIT:-90}s: the old one is kept (./deploy.sh status)"
			sleep 1
		done
	fi
	dc "$mode" up -d --remove-orphans
}

cmd_deploy() {
	need_secrets
	local old
	old=$(running_mode)
	[ "$mode" = host ] || check_ports "$old"
	ensure_images
	need_layer4
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
	if [ "$mode" = host ]; then
		dc host up -d --remove-orphans
	else
		up_bridge
	fi
	# On one machine the whole stack must come up; on one of several, this machine's node (the
	# others may not be deployed yet: `verify` checks them all).
	local wait_nodes=$NODES_CSV
	[ "$mode" != host ] || wait_nodes=$THIS_NODE
	log "waiting for node(s) $wait_nodes to register and the proxy to answer"
	local deadline=$((SECONDS + ${DEPLOY_WAIT:-90})) base ca_file='' curl_opts=()
	local wait_args=(--nodes "$wait_nodes")
	[ "$mode" != host ] || [ "$NODE_IP" = "$THIS_NODE" ] || wait_args+=(--public-ips "$NODE_IP")
	until caddy_exec verify "${wait_args[@]}" >/dev/null 2>&1 && proxy_answers; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			caddy_exec verify "${wait_args[@]}" || true
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
		local public=''
		[ "$NODE_IP" = "$THIS_NODE" ] || public=", public address $NODE_IP"
		log "node $THIS_NODE is up ($COMPOSE_PROJECT_NAME$public; Redis on $REDIS_HOST; nodes $NODES_CSV)"
		url=http://$THIS_NODE:${CADDY_PORT:-80}
		[ "$TLS" = off ] || url=https://$DOMAIN
	else
		log "$mode stack $COMPOSE_PROJECT_NAME is up: nodes $NODES_CSV"
		url=http://${HTTP_BIND:-127.0.0.1}:${ports[0]}
	fi
	create_room_hint "$url"
}

# create_room_hint URL: how to create a room, as commands that work as pasted: the key is read from
# the env file (its value is never printed), or taken from the environment that gave it to deploy.sh.
create_room_hint() {
	local file key_line
	file=$(cd "$(dirname "$ENV_FILE")" && pwd)/$(basename "$ENV_FILE")
	if [ -z "${env_from_file[CREATE_ROOM_KEY]:-}" ]; then
		key_line="# CREATE_ROOM_KEY: the key deploy.sh was given in its environment"
	elif [ "$(sed -n 's/^CREATE_ROOM_KEY=//p' "$file")" = "$CREATE_ROOM_KEY" ]; then
		# shellcheck disable=SC2016 # $(...) is for the reader's shell
		key_line='CREATE_ROOM_KEY=$(sed -n '\''s/^CREATE_ROOM_KEY=//p'\'' '"$(printf %q "$file")"')'
	else # quoted, or written with export: not the plain KEY=VALUE line that sed reads
		key_line="CREATE_ROOM_KEY='...'   # the value of CREATE_ROOM_KEY in $file"
	fi
	cat <<EOF
Create a room (the answer has the token and the URL clients connect to):

  $key_line
  curl -sS $1/api/create-room \\
    -H "Authorization: Bearer \$CREATE_ROOM_KEY" -H 'Content-Type: application/json' \\
    -d '{"room_name": "standup", "user_name": "Alice"}'
EOF
}

# verify_targets: sets target_args, verify's flags for the create-room check through every proxy
# of this machine, as the first proxy's container reaches them (by service name on a bridge network;
# with host networking on this machine's loopback, under DOMAIN with TLS, trusting the CA the
# proxy's certificate comes from) and, with TURN=on, for the TURN check, and site, how the OK line
# names them.
verify_targets() {
	local c
	target_args=() turn_checked=''
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
	[ "${TURN:-off}" = on ] || return 0
	# TURN over TLS through this machine's 443: every node's TURN name (this node's only when this
	# Caddy holds no other certificate, TURN_CERTS=own) answers a TLS handshake, and a TURN
	# allocation over it is relayed by the node the name belongs to.
	local i
	for i in "${!nodes[@]}"; do
		[ "$TURN_CERTS" = all ] || [ "${nodes[i]}" = "$THIS_NODE" ] || continue
		target_args+=(--turn "$(turn_name "$i")=${nodes[i]}")
		turn_checked+=" $(turn_name "$i")"
	done
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
	local errs args=(--nodes "$NODES_CSV") target_args site turn_checked
	[ "$mode" != host ] || args+=(--public-ips "$PUBLIC_IPS_CSV" --machine "$THIS_NODE" --digest "$(config_digest)")
	[ "${LB_REGION_MODE:-off}" != on ] || args+=(--regions "$NODE_REGIONS_CSV")
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
		local public=''
		[ "$PUBLIC_IPS_CSV" = "$NODES_CSV" ] || public=" (public addresses $PUBLIC_IPS_CSV, dialled on the private ones)"
		[ "${LB_REGION_MODE:-off}" != on ] || public+=" in regions $NODE_REGIONS_CSV"
		echo "OK: Redis on $REDIS_HOST, nodes $NODES_CSV$public, create-room and joins through the caddy of $THIS_NODE ($site)${turn_checked:+, TURN over TLS on 443 for$turn_checked}"
	else
		echo "OK: Redis, nodes $NODES_CSV, create-room and joins through $site"
	fi
}

# cmd_status: the table of `caddy livekit status`, without the config-loading logs Caddy writes on
# stderr; when it fails, its errors, then the containers, and exit 1.
cmd_status() {
	local errs rc=0
	errs=$(mktemp)
	if ! caddy_exec status 2>"$errs"; then
		rc=1
		log "caddy livekit status failed:"
		grep -v '"level":"\(debug\|info\)"' "$errs" >&2 || tail -n 3 "$errs" >&2
	fi
	rm -f "$errs"
	echo
	dc "$mode" ps
	return "$rc"
}
