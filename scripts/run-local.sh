#!/usr/bin/env bash
# Runs a working single-node stack on this machine without containers:
# redis-server, one livekit-server and our Caddy in front, all on loopback.
# Ctrl-C stops everything. Set DOMAIN (and open 80/443) to serve with TLS.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

STATE=${STATE:-$PWD/.local}
REDIS_PORT=${REDIS_PORT:-6390}
NODE_IP=${NODE_IP:-127.0.0.1}
LISTEN=${LISTEN:-:8080}
export LIVEKIT_API_KEY=${LIVEKIT_API_KEY:-devkey}
export LIVEKIT_API_SECRET=${LIVEKIT_API_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')devsecret}
export REDIS_PASSWORD=${REDIS_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}
mkdir -p "$STATE"

echo "building Caddy with the LiveKit modules" >&2
go build -o "$STATE/caddy" ./cmd/caddy

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$REDIS_PASSWORD" \
	--dir "$STATE" --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
	--logfile "$STATE/redis.log" &
pids+=($!)

cat >"$STATE/livekit.yaml" <<YAML
port: 7880
bind_addresses: ["$NODE_IP"]
rtc: {tcp_port: 7881, port_range_start: 50000, port_range_end: 50100, node_ip: $NODE_IP, use_external_ip: false}
redis: {address: "127.0.0.1:$REDIS_PORT", password: "$REDIS_PASSWORD"}
keys: {"$LIVEKIT_API_KEY": "$LIVEKIT_API_SECRET"}
logging: {level: info}
YAML
livekit-server --config "$STATE/livekit.yaml" >"$STATE/livekit.log" 2>&1 &
pids+=($!)

cat >"$STATE/Caddyfile" <<CADDY
{
	admin 127.0.0.1:2019
}
${DOMAIN:-http://$LISTEN} {
	livekit_lb 127.0.0.1:$REDIS_PORT {
		redis {
			password {env.REDIS_PASSWORD}
		}
		api_key {env.LIVEKIT_API_KEY}
		api_secret {env.LIVEKIT_API_SECRET}
	}
}
CADDY
"$STATE/caddy" run --adapter caddyfile --config "$STATE/Caddyfile" >"$STATE/caddy.log" 2>&1 &
pids+=($!)

url="http://127.0.0.1:${LISTEN##*:}"
for _ in $(seq 60); do
	if curl -fsS "$url/" >/dev/null 2>&1; then
		echo "LiveKit is up behind Caddy at ${DOMAIN:-$url} (logs in $STATE)"
		echo "API key: $LIVEKIT_API_KEY  secret: $LIVEKIT_API_SECRET"
		wait -n "${pids[@]}"
		exit 1
	fi
	sleep 1
done
echo "stack did not come up; see $STATE/*.log" >&2
exit 1
