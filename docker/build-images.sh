#!/usr/bin/env bash
# Builds, with no container registry, every image the compose stacks in this folder need:
# a Debian base made by debootstrap, and redis, livekit-server and our Caddy on top of it.
#
#   eval "$(docker/build-images.sh)"    # stdout is only `export VAR=...` lines; logs go to stderr
#
# Re-runs are cheap: an image is rebuilt only when it is missing or its inputs changed (the base
# image ID, the livekit version, the Caddy binary's hash: kept in the image's label
# org.livekit-lb.inputs). FORCE=1 rebuilds all.
# Every tag and input below can be overridden from the environment; Go binaries are kept in
# BUILD_CACHE (default ~/.cache/livekit-lb-images).
# ONLY: a space-separated subset of "redis livekit caddy" to build (default: all three); the base is
# built whenever it is missing.
# CADDY_BIN / LIVEKIT_BIN: use these prebuilt binaries instead of building them (e.g. the ones
# scripts/test.sh already built); the image is rebuilt when the binary's hash changes. They must run
# on the Debian base (bookworm's glibc, or static). LIVEKIT_IMAGE's tag is not checked against it.
set -euo pipefail
exec 3>&1 1>&2 # keep stdout clean for the exports; everything else is a log

: "${BASE_IMAGE:=local/debian:bookworm}"
: "${DEBIAN_SUITE:=bookworm}"
: "${REDIS_IMAGE:=local/redis:7}"
: "${LIVEKIT_VERSION:=v1.13.5}"
: "${LIVEKIT_IMAGE:=local/livekit-server:${LIVEKIT_VERSION}}"
: "${CADDY_IMAGE:=caddy-livekit:local}" # the default the compose files use for our image
# Package built into the Caddy image: a directory of this repository (a module of its own when it has
# a go.mod, as cmd/caddy-l4: our modules plus mholt/caddy-l4, which splits 443 by TLS server name for
# TURN), or MODULE/PATH@VERSION (stand-in).
: "${CADDY_PKG:=./cmd/caddy-l4}"
: "${FORCE:=0}"
: "${ONLY:=redis livekit caddy}"
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
# The engine has no buildx, and the Docker 28 client refuses BuildKit without it: use the classic
# builder, which needs no registry when every FROM is a local image.
export DOCKER_BUILDKIT=0

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
log() { echo "build-images: $*"; }
die() { log "error: $*"; exit 1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
inputs_label=org.livekit-lb.inputs
image_inputs() { docker image inspect -f "{{index .Config.Labels \"$inputs_label\"}}" "$1" 2>/dev/null || true; }

work=$(mktemp -d "${TMPDIR:-/tmp}/build-images.XXXXXX")
cleanup() {
	# debootstrap mounts /proc and /sys inside the rootfs; if it died, unmount them first and never
	# let rm cross into a mount (it would delete the host's files).
	awk -v d="$work/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount -l || true
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# Prints "URI SUITE" for every enabled deb source apt is configured with, in both apt formats.
apt_sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i + 1) }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'function flush(  n, m, i, j, u, s) {
				if (t ~ /(^|[ \t])deb([ \t]|$)/ && e != "no") {
					n = split(U, u); m = split(S, s)
					for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
				}
				t = U = S = e = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			{ k = tolower($1); $1 = "" }
			k == "types:" { t = $0 } k == "uris:" { U = $0 } k == "suites:" { S = $0 } k == "enabled:" { e = tolower($2) }
			END { flush() }' "$f"
	done
}

build_base() {
	# Use the mirror this machine's apt already uses (no host name is written in this repository).
	local mirror security rootfs=$work/rootfs
	mirror=${DEBIAN_MIRROR:-$(apt_sources | awk -v s="$DEBIAN_SUITE" '$2 == s { print $1; exit }')}
	mirror=${mirror:-$(apt_sources | awk '$2 !~ /-(security|updates|backports)$/ { print $1; exit }')}
	security=${DEBIAN_SECURITY_MIRROR:-$(apt_sources | awk '$2 ~ /-security$/ { print $1; exit }')}
	[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR"
	if ! command -v debootstrap >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
	fi
	log "$BASE_IMAGE: debootstrap $DEBIAN_SUITE from $mirror"
	debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$rootfs" "$mirror"

	# apt inside `docker build` (the redis image) needs the suite, its updates and security fixes.
	{
		echo "deb $mirror $DEBIAN_SUITE main"
		echo "deb $mirror $DEBIAN_SUITE-updates main"
		[ -z "$security" ] || echo "deb $security $DEBIAN_SUITE-security main"
	} >"$rootfs/etc/apt/sources.list"
	# Same slimming as the official Debian images: no recommends, docs, man pages or translations,
	# no apt package cache left in a layer (72 MB after an `apt-get update`), and no service may
	# start while a package is installed during an image build.
	printf '%s\n' 'APT::Install-Recommends "false";' 'APT::Install-Suggests "false";' \
		'Acquire::Languages "none";' 'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' \
		>"$rootfs/etc/apt/apt.conf.d/90docker-slim"
	{ printf 'path-exclude /usr/share/%s/*\n' doc man info locale; echo 'path-include /usr/share/doc/*/copyright'; } \
		>"$rootfs/etc/dpkg/dpkg.cfg.d/90docker-slim"
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d" && chmod +x "$rootfs/usr/sbin/policy-rc.d"
	chroot "$rootfs" apt-get clean
	rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/ldconfig/aux-cache \
		"$rootfs"/usr/share/{man,info,locale}/* # what the excludes keep out of later installs (~50 MB)
	find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
	: >"$rootfs/etc/resolv.conf" # the host's; Docker mounts its own at run time

	stale+=("$(image_id "$BASE_IMAGE")")
	tar --numeric-owner --one-file-system -C "$rootfs" -c . |
		docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
}

# needs_build IMAGE INPUTS: true if IMAGE is missing, forced, or was built from other inputs.
needs_build() {
	[ "$FORCE" != 1 ] && [ -n "$(image_id "$1")" ] && [ "$(image_inputs "$1")" = "$2" ] && return 1
	return 0
}

# docker_build IMAGE DOCKERFILE CONTEXT INPUTS. One label only: on this engine's storage driver
# (fuse-overlayfs) every extra Dockerfile step after the COPY costs a commit of 1-2 s.
docker_build() {
	log "$1: docker build"
	stale+=("$(image_id "$1")")
	docker build -t "$1" -f "$2" --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "$inputs_label=$4" "$3"
}

# Images replaced by this run, removed at the end (children first) so that rebuilds do not pile up
# untagged images. Only untagged ones go: not the rebuilt image itself (a cache hit keeps its ID),
# nor one tagged elsewhere; one still used by a container stays too (rmi refuses).
stale=()
remove_stale() {
	local i id
	for ((i = ${#stale[@]} - 1; i >= 0; i--)); do
		id=${stale[i]}
		if [ -n "$id" ] && [ "$(docker image inspect -f '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
			docker rmi "$id" >/dev/null 2>&1 || true
		fi
	done
}

# --- Go builds start first, in the background: they are CPU-bound while debootstrap and apt wait on
# the network. The Caddy binary is always rebuilt; its output stays in a cache folder because Go
# then skips even the link step (~8 s) when nothing changed. Each folder is also a build context.
cache=${BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/livekit-lb-images}
caddy_dir=$cache/caddy livekit_dir=$cache/livekit-$LIVEKIT_VERSION
mkdir -p "$caddy_dir" "$livekit_dir" "$work/empty"
[ -z "${CADDY_BIN:-}" ] || caddy_dir=$cache/caddy-bin
[ -z "${LIVEKIT_BIN:-}" ] || livekit_dir=$cache/livekit-bin
mkdir -p "$caddy_dir" "$livekit_dir"
# copy_bin SRC DEST: a prebuilt binary into a build context (only when it changed, so the file's
# time stays and nothing is rebuilt for nothing).
copy_bin() {
	[ -f "$1" ] && [ -x "$1" ] || die "$1 is not an executable file"
	cmp -s "$1" "$2" || cp "$1" "$2"
}
caddy_pid=
if ! wanted caddy; then
	:
elif [ -n "${CADDY_BIN:-}" ]; then
	log "caddy: using CADDY_BIN=$CADDY_BIN"
	# TURN=on stacks load caddy-l4's layer4 listener wrapper: without it Caddy restarts forever
	grep -qx layer4 <<<"$("$CADDY_BIN" list-modules 2>/dev/null || true)" ||
		log "warning: $CADDY_BIN has no layer4 module (mholt/caddy-l4): a stack with TURN=on will not start on this image; build cmd/caddy-l4 instead"
	(copy_bin "$CADDY_BIN" "$caddy_dir/caddy") &
	caddy_pid=$!
elif [[ $CADDY_PKG == *@* ]]; then
	(CGO_ENABLED=0 GOBIN=$caddy_dir go install -trimpath -ldflags='-s -w' "$CADDY_PKG") &
	caddy_pid=$!
elif [ -d "$repo/$CADDY_PKG" ]; then
	# -buildvcs=false: identical sources give an identical binary (so no image rebuild), and it
	# builds in a repository without commits. A directory with its own go.mod is built inside it.
	pkg_dir=$repo pkg=$CADDY_PKG
	[ ! -f "$repo/$CADDY_PKG/go.mod" ] || pkg_dir=$repo/$CADDY_PKG pkg=.
	(cd "$pkg_dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$caddy_dir/caddy" "$pkg") &
	caddy_pid=$!
else
	log "warning: $repo/$CADDY_PKG does not exist yet: skipping the Caddy image"
fi

base_input() { echo "base=$(image_id "$BASE_IMAGE")"; }
livekit_pid=
livekit_input=livekit=$LIVEKIT_VERSION
[ -z "${LIVEKIT_BIN:-}" ] || livekit_input=livekit=sha256:$(sha256sum "$LIVEKIT_BIN" | cut -d' ' -f1)
# A missing base will be built below, so everything on it must be rebuilt too.
if wanted livekit && { [ -z "$(image_id "$BASE_IMAGE")" ] || needs_build "$LIVEKIT_IMAGE" "$(base_input) $livekit_input"; }; then
	if [ -n "${LIVEKIT_BIN:-}" ]; then
		log "livekit-server: using LIVEKIT_BIN=$LIVEKIT_BIN"
		(copy_bin "$LIVEKIT_BIN" "$livekit_dir/server") &
	else
		# livekit-server links glibc (cgo), hence a Debian base and not scratch.
		(GOBIN=$livekit_dir go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION") &
	fi
	livekit_pid=$!
fi

# --- Images, each on the current base.
if [ "$FORCE" = 1 ] || [ -z "$(image_id "$BASE_IMAGE")" ]; then build_base; else log "$BASE_IMAGE: up to date"; fi

if ! wanted redis; then
	:
elif needs_build "$REDIS_IMAGE" "$(base_input)"; then
	docker_build "$REDIS_IMAGE" "$here/images/redis.Dockerfile" "$work/empty" "$(base_input)"
else log "$REDIS_IMAGE: up to date"; fi

if ! wanted livekit; then
	:
elif [ -n "$livekit_pid" ]; then
	wait "$livekit_pid" || die "livekit-server ($livekit_input) failed"
	docker_build "$LIVEKIT_IMAGE" "$here/images/livekit.Dockerfile" "$livekit_dir" "$(base_input) $livekit_input"
else log "$LIVEKIT_IMAGE: up to date"; fi

if [ -n "$caddy_pid" ]; then
	wait "$caddy_pid" || die "caddy (${CADDY_BIN:-go build $CADDY_PKG}) failed"
	inputs="$(base_input) caddy=sha256:$(sha256sum "$caddy_dir/caddy" | cut -d' ' -f1)"
	if needs_build "$CADDY_IMAGE" "$inputs"; then
		docker_build "$CADDY_IMAGE" "$here/images/caddy.Dockerfile" "$caddy_dir" "$inputs"
	else log "$CADDY_IMAGE: up to date"; fi
fi

remove_stale

# What compose reads; a variable whose image is missing is left out, so compose falls back to the
# official image name.
# Only the images this run was asked for (ONLY).
for var in BASE_IMAGE REDIS_IMAGE LIVEKIT_IMAGE CADDY_IMAGE; do
	case $var in REDIS_IMAGE) wanted redis ;; LIVEKIT_IMAGE) wanted livekit ;; CADDY_IMAGE) wanted caddy ;; esac || continue
	[ -z "$(image_id "${!var}")" ] || printf 'export %s=%q\n' "$var" "${!var}" >&3
done
