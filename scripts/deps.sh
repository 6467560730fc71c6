#!/usr/bin/env bash
# Installs what the stack and the tests need on a fresh Debian machine:
# redis-server and iptables from Debian's packages, livekit-server v1.13.5 from Go modules.
# Idempotent: does nothing for what is already there.
set -euo pipefail

LIVEKIT_VERSION=${LIVEKIT_VERSION:-v1.13.5}
BIN=${BIN:-/usr/local/bin}

if ! command -v redis-server >/dev/null; then
	echo "deps: installing redis-server" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
	# the package starts a system redis on 6379; the tests start their own
	systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
fi

if ! command -v iptables >/dev/null && [ ! -x /usr/sbin/iptables ]; then
	echo "deps: installing iptables (the partition tests drop a node's packets)" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null
fi

if ! "$BIN/livekit-server" --version 2>/dev/null | grep -q "${LIVEKIT_VERSION#v}"; then
	echo "deps: building livekit-server $LIVEKIT_VERSION (a few minutes the first time)" >&2
	tmp=$(mktemp -d)
	GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION"
	install -m 0755 "$tmp/server" "$BIN/livekit-server"
	rm -rf "$tmp"
fi
