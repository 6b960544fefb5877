#!/usr/bin/env bash
# Builds the container image `wasinetd:VERSION` (and `:latest`) with podman.
#
#   deploy/container/build.sh            a static musl release build (the
#                                        image to ship: the binary alone)
#   BIN=path deploy/container/build.sh   an existing binary instead; a
#                                        dynamic one gets the libraries
#                                        `ldd` names copied beside it (the
#                                        tests use this with their own build)
#
# Knobs: TAG [wasinetd:latest], CONF [deploy/container/wasinetd.conf].
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TAG=${TAG:-wasinetd:latest}
CONF=${CONF:-$ROOT/deploy/container/wasinetd.conf}
if [ -z "${BIN:-}" ]; then
    rustup target add wasm32-wasip1 wasm32-wasip2 x86_64-unknown-linux-musl >/dev/null
    command -v musl-gcc >/dev/null || {
        echo "build.sh: needs musl-gcc (Debian: apt-get install musl-tools)" >&2; exit 1; }
    cargo build --release -p wasinetd --target x86_64-unknown-linux-musl
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-musl/release/wasinetd
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/sbin" "$ctx/rootfs/etc/wasinetd" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
install -m 755 "$BIN" "$ctx/rootfs/usr/sbin/wasinetd"
install -m 644 "$CONF" "$ctx/rootfs/etc/wasinetd/wasinetd.conf"
# A dynamic binary: its libraries, at the paths it asks for (a static one
# names none).
for lib in $(ldd "$BIN" 2>/dev/null | grep -o '/[^ ]*' | sort -u || true); do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cp "$ROOT/deploy/container/Containerfile" "$ctx/"
podman build -q -t "$TAG" -f "$ctx/Containerfile" "$ctx"
