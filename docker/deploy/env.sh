# shellcheck shell=bash
# The settings: .env, this machine's place among NODES, the stack's addresses.
# Sourced by deploy.sh (functions only; deploy.sh sets root, ENV_FILE, log and die).

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

# read_env FILE: FILE's settings into the environment, read as data the way docker compose reads an
# env file, never evaluated: KEY=VALUE lines, an optional `export ` before KEY, blank lines and
# `#` comments skipped. A value in single or double quotes is what is between them (in double quotes a
# backslash escapes the next character); an unquoted value ends at ` #` and is trimmed. `$` is never
# substituted: a secret may contain any character. A variable the caller's environment sets wins
# (the names taken from FILE are in env_from_file).
read_env() {
	local line key raw value n=0 re_dq='^"(([^"\\]|\\.)*)"[[:space:]]*(#.*)?$' re_sq="^'([^']*)'[[:space:]]*(#.*)?\$"
	declare -gA env_from_file=()
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		line=${line%$'\r'}
		line=${line#"${line%%[![:space:]]*}"}
		case $line in "" | "#"*) continue ;; esac
		[[ $line =~ ^(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=(.*)$ ]] ||
			die "$1, line $n: not KEY=VALUE"
		key=${BASH_REMATCH[2]} raw=${BASH_REMATCH[3]}
		value=${raw#"${raw%%[![:space:]]*}"}
		case $value in
		\"*)
			[[ $value =~ $re_dq ]] || die "$1, line $n: $key: the double quote is not closed (or text follows it)"
			value=$(sed 's/\\\(.\)/\1/g' <<<"${BASH_REMATCH[1]}")
			;;
		\'*)
			[[ $value =~ $re_sq ]] || die "$1, line $n: $key: the single quote is not closed (or text follows it)"
			value=${BASH_REMATCH[1]}
			;;
		*)
			value=${raw%%[[:space:]]"#"*} # a comment starts at a # after a space
			value=${value#"${value%%[![:space:]]*}"}
			value=${value%"${value##*[![:space:]]}"}
			;;
		esac
		[ -n "${env_from_file[$key]:-}" ] || [ -z "${!key+set}" ] || continue
		env_from_file[$key]=1
		printf -v "$key" '%s' "$value"
		export "${key?}"
	done <"$1"
}

load_env() {
	if [ -f "$ENV_FILE" ]; then
		read_env "$ENV_FILE"
	elif [ "${1:-}" = required ]; then
		new_env
		load_env
		return
	fi
	parse_addresses
	: "${COMPOSE_PROJECT_NAME:=livekit}"
	: "${REDIS_IMAGE:=redis:7}"
	: "${LIVEKIT_IMAGE:=livekit/livekit-server:v1.13.5}"
	: "${CADDY_IMAGE:=caddy-livekit:local}"
	: "${BASE_IMAGE:=local/debian:bookworm}"
	: "${CADDYFILE:=$root/docker/Caddyfile}"
	: "${TLS:=off}"
	export COMPOSE_PROJECT_NAME REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE BASE_IMAGE CADDYFILE TLS

	find_this_node
	if [ -n "${THIS_NODE:-}" ]; then
		host_env
	else
		bridge_env
	fi
	limits_env
	NODES_CSV=$(IFS=,; echo "${nodes[*]}")
	: "${ALLOW_NETWORKS:=$(allow_networks)}"
	export ALLOW_NETWORKS
	if docker compose version >/dev/null 2>&1; then dc_bin=(docker compose); else dc_bin=(docker-compose); fi
}

# ipv4 A: A is an IPv4 address in dotted-quad form, four numbers 0-255 without leading zeros (as Go,
# and so LiveKit and our Caddy, parse it).
ipv4() {
	local o='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
	[[ $1 =~ ^$o\.$o\.$o\.$o$ ]]
}

# parse_addresses: nodes, NODES' addresses, each checked, and THIS_NODE and REDIS_HOST when they are
# addresses; before anything is asked of Docker, so a bad address stops deploy.sh with nothing touched.
parse_addresses() {
	local i n=() seen=" "
	IFS=, read -r -a nodes <<<"${NODES:-}"
	for i in "${nodes[@]}"; do
		i=${i//[[:space:]]/}
		[ -n "$i" ] || continue
		ipv4 "$i" || die "NODES: '$i' is not an IPv4 address (four numbers 0-255 separated by dots)"
		[[ $seen != *" $i "* ]] || die "NODES: $i is listed twice"
		seen+="$i " n+=("$i")
	done
	nodes=("${n[@]+"${n[@]}"}")
	if [ -n "${THIS_NODE:-}" ]; then
		ipv4 "$THIS_NODE" || die "THIS_NODE: '$THIS_NODE' is not an IPv4 address (four numbers 0-255 separated by dots)"
	fi
	# PUBLIC_IPS: behind 1:1 NAT, node i's public address (what LiveKit advertises) is public_ips[i];
	# an empty entry: the node has none (its NODES address is public, or clients are on its network).
	public_ips=()
	local pubs=${PUBLIC_IPS:-}
	if [ -n "${pubs//[[:space:],]/}" ]; then
		IFS=, read -r -a public_ips <<<"${pubs//[[:space:]]/},"
		[ ${#public_ips[@]} = ${#nodes[@]} ] ||
			die "PUBLIC_IPS has ${#public_ips[@]} entries and NODES ${#nodes[@]}: give one per node, in NODES' order (empty for a node without NAT)"
		seen=" ${nodes[*]} "
		for i in "${public_ips[@]}"; do
			[ -n "$i" ] || continue
			ipv4 "$i" || die "PUBLIC_IPS: '$i' is not an IPv4 address (four numbers 0-255 separated by dots)"
			[[ $seen != *" $i "* ]] || die "PUBLIC_IPS: $i is listed twice, or is also in NODES"
			seen+="$i "
		done
	fi
	# REDIS_HOST may be a name (redis, or a host name of your own Redis); digits and dots are an address.
	if [[ ${REDIS_HOST:-} =~ ^[0-9.]+$ ]]; then
		ipv4 "$REDIS_HOST" || die "REDIS_HOST: '$REDIS_HOST' is not an IPv4 address (four numbers 0-255 separated by dots)"
	fi
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
	nat_env
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
	turn_env
	region_env
	caddies=(caddy)
}

# region_env: regions (host networking). NODE_REGIONS is each node's region, in NODES' order:
# LIVEKIT_REGION, this node's, goes into its livekit.yaml (`region:`, what it registers in Redis)
# and is this machine's proxy's own region (LB_REGION). REGIONS lists where each region is, "name
# lat lon, ..." as livekit.yaml's node_selector.regions; LB_REGIONS has it one per line for
# docker/Caddyfile's `regions` block (LB_REGION_MODE=on imports it); NODE_REGIONS_CSV, NODE_REGIONS
# trimmed, for verify.
region_env() {
	LIVEKIT_REGION='' LB_REGION='' LB_REGIONS='' LB_REGION_MODE=off LB_GEOIP=off NODE_REGIONS_CSV=
	export LIVEKIT_REGION LB_REGION LB_REGIONS LB_REGION_MODE LB_GEOIP
	local i entry name lat lon extra listed=" " names=() entries=() list=${REGIONS:-} own=${NODE_REGIONS:-}
	if [ -z "${own//[[:space:],]/}" ]; then
		[ -z "${list//[[:space:],]/}" ] || die "REGIONS needs NODE_REGIONS, each node's region in NODES' order"
		[ -z "${GEOIP_DB:-}" ] || [ "${mode:-}" != host ] || die "GEOIP_DB needs NODE_REGIONS and REGIONS: it places rooms in the region nearest their clients"
		return 0
	fi
	[ -n "${list//[[:space:],]/}" ] || die "NODE_REGIONS needs REGIONS, where each region is: name lat lon, ... (as livekit.yaml's node_selector.regions)"
	IFS=, read -r -a entries <<<"$list,"
	for entry in "${entries[@]}"; do
		read -r name lat lon extra <<<"$entry" || true
		[ -n "$name" ] || continue
		[ -n "$lon" ] && [ -z "$extra" ] || die "REGIONS: '$entry' is not: name lat lon"
		region_name "$name" REGIONS
		[[ $lat =~ ^-?[0-9]{1,2}(\.[0-9]+)?$ ]] && [[ $lon =~ ^-?[0-9]{1,3}(\.[0-9]+)?$ ]] &&
			awk -v a="$lat" -v o="$lon" 'BEGIN { exit !(a >= -90 && a <= 90 && o >= -180 && o <= 180) }' ||
			die "REGIONS: $name at '$lat $lon': latitude -90..90, longitude -180..180, in degrees (31.23 121.47)"
		[[ $listed != *" $name "* ]] || die "REGIONS: $name is listed twice"
		listed+="$name "
		LB_REGIONS+="$name $lat $lon"$'\n'
	done
	own=${own%"${own##*[![:space:],]}"} # a trailing comma (as NODES allows)
	IFS=, read -r -a names <<<"$own,"
	[ ${#names[@]} = ${#nodes[@]} ] ||
		die "NODE_REGIONS has ${#names[@]} entries and NODES ${#nodes[@]}: give each node its region, in NODES' order"
	for i in "${!nodes[@]}"; do
		name=${names[i]:-}
		name=${name#"${name%%[![:space:]]*}"} name=${name%"${name##*[![:space:]]}"}
		[ -n "$name" ] || die "NODE_REGIONS: node ${nodes[i]} has no region: give each node its region"
		region_name "$name" NODE_REGIONS
		[[ $listed == *" $name "* ]] || die "NODE_REGIONS: region $name (node ${nodes[i]}) is not in REGIONS: add it with its lat lon"
		[ "${nodes[i]}" != "$THIS_NODE" ] || LIVEKIT_REGION=$name
		NODE_REGIONS_CSV+="${NODE_REGIONS_CSV:+,}$name"
	done
	LB_REGION=$LIVEKIT_REGION LB_REGION_MODE=on
	# GEOIP_DB: a MaxMind City database on this machine; the proxy places a new room near its
	# client's address (docker/Caddyfile's geoip_db, the file mounted at /etc/caddy/geoip.mmdb)
	# (a file that is no MaxMind database would stop the proxy from starting: refused here). A
	# changed file (GEOIP_DB_STAMP) recreates the proxy at the next deploy, which reads it again.
	if [ -n "${GEOIP_DB:-}" ]; then
		[ -f "$GEOIP_DB" ] && [ -r "$GEOIP_DB" ] || die "GEOIP_DB: '$GEOIP_DB' is not a readable file (a MaxMind City database, .mmdb)"
		[[ $GEOIP_DB != *:* ]] || die "GEOIP_DB: '$GEOIP_DB': a path with ':' cannot be mounted; move the file"
		# the metadata marker every MMDB ends with (in its last 128 KiB); not a pipe into grep -q,
		# whose early exit would fail tail with SIGPIPE under pipefail
		LC_ALL=C grep -qaF $'\xab\xcd\xefMaxMind.com' < <(tail -c 131072 "$GEOIP_DB") ||
			die "GEOIP_DB: '$GEOIP_DB' is not a MaxMind database (.mmdb; a download ending in .tar.gz holds one: unpack it)"
		LB_GEOIP=on GEOIP_DB=$(cd "$(dirname "$GEOIP_DB")" && pwd)/$(basename "$GEOIP_DB")
		GEOIP_DB_STAMP=$(stat -Lc '%i-%s-%Y' "$GEOIP_DB")
		export GEOIP_DB GEOIP_DB_STAMP
	fi
}

# region_name NAME SETTING: NAME can be a region: as LiveKit's config and Redis carry it, and one
# word in the Caddyfile.
region_name() {
	[[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
		die "$2: '$1' is not a region name (letters, digits, . _ -, at most 64)"
}

# limits_env: the proxies' capacity limits (every mode): a node at one takes no new room.
limits_env() {
	: "${SYSLOAD_LIMIT:=0}" "${MAX_ROOMS:=0}" "${MAX_CLIENTS:=0}"
	[[ $SYSLOAD_LIMIT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "SYSLOAD_LIMIT: '$SYSLOAD_LIMIT' is not a load per CPU such as 0.9 (0: no limit)"
	[[ $MAX_ROOMS =~ ^[0-9]{1,9}$ ]] || die "MAX_ROOMS: '$MAX_ROOMS' is not a number (0: no limit)"
	[[ $MAX_CLIENTS =~ ^[0-9]{1,9}$ ]] || die "MAX_CLIENTS: '$MAX_CLIENTS' is not a number (0: no limit)"
	export SYSLOAD_LIMIT MAX_ROOMS MAX_CLIENTS
}

# nat_env: NODE_IP, the address this machine's LiveKit advertises (its public one behind 1:1 NAT),
# NODE_ADDRESSES, the proxies' public=private:7880 map (docker/Caddyfile's node_addresses), and
# PUBLIC_IPS_CSV, PUBLIC_IPS with every entry filled in, for verify.
nat_env() {
	local i pub
	NODE_IP=$THIS_NODE NODE_ADDRESSES='' PUBLIC_IPS_CSV=''
	for i in "${!nodes[@]}"; do
		pub=${public_ips[i]:-}
		if [ -n "$pub" ]; then
			NODE_ADDRESSES+="${NODE_ADDRESSES:+ }$pub=${nodes[i]}:7880"
			[ "${nodes[i]}" != "$THIS_NODE" ] || NODE_IP=$pub
		fi
		PUBLIC_IPS_CSV+="${PUBLIC_IPS_CSV:+,}${pub:-${nodes[i]}}"
	done
	export NODE_IP NODE_ADDRESSES
}

# turn_name I: the TURN name of the I-th node of NODES (0-based): turn-<I+1>.DOMAIN. A node keeps its
# name while NODES keeps its place: add machines at the end.
turn_name() { echo "turn-$(($1 + 1)).$DOMAIN"; }

# turn_env: TURN over TLS on 443 (TURN=on). This node's livekit.yaml gets its own TURN name
# (TURN_DOMAIN) with external_tls; this machine's Caddy gets TURN_ROUTES, one `import turn_node NAME
# ADDRESS:TURN_TLS_PORT` line per node of NODES (docker/Caddyfile splits 443 by server name with
# them), and TURN_CERT_NAMES, the names it holds certificates for: every node's (TURN_CERTS=all),
# or this node's only (own: with TLS=auto, where each name resolves to its own machine).
turn_env() {
	local i names=()
	TURN_ENABLED=false TURN_DOMAIN='' TURN_ROUTES='' TURN_CERT_NAMES=''
	case ${TURN:=off} in
	off) ;;
	on)
		[ "$TLS" != off ] || die "TURN=on needs TLS (auto, internal or files): Caddy terminates TURN's TLS on 443"
		case ${TURN_CERTS:=all} in all | own) ;; *) die "TURN_CERTS=$TURN_CERTS: use all or own" ;; esac
		: "${TURN_TLS_PORT:=5349}"
		[[ $TURN_TLS_PORT =~ ^[1-9][0-9]{0,4}$ ]] || die "TURN_TLS_PORT: '$TURN_TLS_PORT' is not a port"
		TURN_ENABLED=true
		for i in "${!nodes[@]}"; do
			TURN_ROUTES+="import turn_node $(turn_name "$i") ${nodes[i]}:$TURN_TLS_PORT"$'\n'
			if [ "${nodes[i]}" = "$THIS_NODE" ]; then
				TURN_DOMAIN=$(turn_name "$i")
				names+=("$TURN_DOMAIN")
			elif [ "$TURN_CERTS" = all ]; then
				names+=("$(turn_name "$i")")
			fi
		done
		TURN_CERT_NAMES=$(printf '%s, ' "${names[@]}")
		TURN_CERT_NAMES=${TURN_CERT_NAMES%, }
		;;
	*) die "TURN=$TURN: use off or on" ;;
	esac
	export TURN TURN_ENABLED TURN_DOMAIN TURN_ROUTES TURN_CERT_NAMES TURN_TLS_PORT
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
	[ ${#public_ips[@]} = 0 ] || die "PUBLIC_IPS needs host networking: NODES must be the machines' own (private) addresses (docs/deploy.md)"
	[ "${TURN:-off}" = off ] || die "TURN=$TURN needs host networking and TLS: put this machine's address in NODES (docs/deploy.md)"
	local own=${NODE_REGIONS:-}
	[ -z "${own//[[:space:],]/}${GEOIP_DB:-}" ] || die "NODE_REGIONS and GEOIP_DB need host networking, one machine per node: put this machine's address in NODES (docs/deploy.md)"
	region_env
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
	# ports: where each proxy of caddies is published (HTTP_BIND:port); port_vars: the setting that
	# moves it. The cluster's first proxy is on the single node's port unless CADDY1_PORT says
	# otherwise, fresh or upgraded, so the address clients use never depends on the stack's history.
	if [ "$mode" = single ]; then
		caddies=(caddy) ports=("${CADDY_PORT:-8080}") port_vars=(CADDY_PORT)
	else
		caddies=(caddy1 caddy2) ports=("${CADDY1_PORT:-${CADDY_PORT:-8080}}" "${CADDY2_PORT:-8082}")
		port_vars=(CADDY1_PORT CADDY2_PORT)
		export CADDY1_PORT=${ports[0]} CADDY2_PORT=${ports[1]}
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
