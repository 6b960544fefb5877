#!/usr/bin/env bash
# Builds the Debian package: target/debian/wasinetd_VERSION_ARCH.deb.
#
# The release binary, then what it generates for a package from its own
# definitions (`wasinetd __generate`: manual pages wasinetd(8),
# wasinetd-check(8), wasinetd-run(8), wasinetd-build(8), wasinetd.conf(5); bash, zsh and fish
# completions), the systemd units of examples/systemd with the binary at
# /usr/sbin, then cargo-deb (installed on first use, pinned, into
# ~/.cache/wasinetd-tools). The units are installed, not enabled.
#
# Usage (from anywhere): deploy/debian/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS=${WASINETD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/wasinetd-tools}
CARGO_DEB_VERSION=3.8.0

rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
if ! "$TOOLS/bin/cargo-deb" --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "build.sh: installing cargo-deb $CARGO_DEB_VERSION into $TOOLS (once)" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root "$TOOLS"
fi
cargo build --release -p wasinetd
# Under target/release/: the only place cargo-deb takes for built files
# (it maps it to CARGO_TARGET_DIR, wherever that is).
GEN=$TARGET/release/generated
rm -rf "$GEN"
"$TARGET/release/wasinetd" __generate "$GEN"
# Debian ships manual pages compressed.
gzip -9n "$GEN"/man/*
mkdir -p "$GEN/systemd"
for unit in wasinetd.service wasinetd.socket; do
    sed 's|/usr/local/bin/wasinetd|/usr/sbin/wasinetd|g' "examples/systemd/$unit" \
        > "$GEN/systemd/$unit"
done
"$TOOLS/bin/cargo-deb" -p wasinetd --no-build --no-strip
