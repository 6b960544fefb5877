#!/usr/bin/env bash
# wasinetd's benchmark, the scenarios beyond connections/s (bench/run.sh
# covers those):
#
#   hold        HOLD [10000] simultaneous connections to the bundled echo
#               guest from 64 loopback source addresses, each proven to hold
#               a live guest (one byte echoed), the daemon's resident memory
#               (RSS and PSS) per held connection, then every connection
#               answered; and one connection past --limit. The daemon and
#               the loader each need HOLD descriptors: HOLD past the hard
#               RLIMIT_NOFILE stops with what to raise. vm.max_map_count is
#               raised where it is too low and may be (root).
#   neighbours  the hello-http service's latency alone, then while another
#               service runs busy-looping guests at its instance cap.
#
# Usage (from the repo root): bench/extras.sh [hold] [neighbours]
# Knobs: HOLD [10000], DURATION [10] s per neighbours run, C [16],
# BUSY [4] busy guests (the neighbour's `instances`), OUT [bench/results].
# Output: $OUT/extras.md (and stdout).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
HOLD=${HOLD:-10000}
DURATION=${DURATION:-10}
C=${C:-16}
BUSY=${BUSY:-4}
OUT=${OUT:-$BENCH/results}
WHAT=${*:-hold neighbours}
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/wasinetd-extras.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "extras: $*" >&2; }

rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
LOADGEN=$BENCH/tools/target/release/loadgen
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
REPORT=$OUT/extras.md
: > "$REPORT"
out() { echo "$*" | tee -a "$REPORT"; }

wait_port() {
    for _ in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    say "port $1 never opened"; exit 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }

if [[ " $WHAT " == *" hold "* ]]; then
    cat > "$WORK/hold.conf" <<EOF2
service echo
{
	type		= INTERNAL UNLISTED
	bind		= 127.0.0.1
	port		= 19201
	log_on_success	=
	rlimit_as	= 4M
	runtime_max	= 300s
	instances	= UNLIMITED
	per_source	= UNLIMITED
}
EOF2
    nofile=$(ulimit -Hn)
    if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((HOLD + 512)) ]; then
        say "HOLD=$HOLD needs $((HOLD + 512)) descriptors in the daemon and in the loader;"
        say "the hard RLIMIT_NOFILE here is $nofile (raising it needs CAP_SYS_RESOURCE)"
        exit 1
    fi
    # Each live guest maps a few areas (memory, its image, stack, guard
    # pages); the kernel's default of 65530 areas holds about 8,000 guests.
    maps=$(cat /proc/sys/vm/max_map_count)
    if [ "$maps" -lt $((HOLD * 8 + 65536)) ]; then
        sysctl -q -w vm.max_map_count=$((HOLD * 8 + 65536)) 2>/dev/null ||
            say "vm.max_map_count is $maps, too low for $HOLD guests, and cannot be raised here"
    fi
    "$WASINETD" -f "$WORK/hold.conf" --limit "$HOLD" 2>"$OUT/logs/hold.log" &
    D=$!; PIDS+=("$D")
    wait_port 19201
    sleep 1
    idle=$(rss_kib "$D")
    idle_pss=$(pss_kib "$D")
    # HOLD + 1 connections: the last one is past the limit.
    coproc LG { "$LOADGEN" 127.0.0.1:19201 --hold $((HOLD + 1)) --sources 64 --threads 2; }
    read -r held_line <&"${LG[0]}"
    held=$(rss_kib "$D")
    held_pss=$(pss_kib "$D")
    areas=$(wc -l < "/proc/$D/maps")
    live=$(sed -n 's/.*held=\([0-9]*\).*/\1/p' <<<"$held_line")
    echo go >&"${LG[1]}"
    read -r answer_line <&"${LG[0]}"
    wait "$LG_PID" 2>/dev/null || true
    per=$(( (held - idle) * 1024 / (live > 0 ? live : 1) ))
    per_pss=$(( (held_pss - idle_pss) * 1024 / (live > 0 ? live : 1) ))
    out "## $HOLD simultaneous connections, each holding a live guest"
    out ""
    out "- wasinetd --limit $HOLD, bundled echo guest (rlimit_as 4M), $((HOLD + 1)) connections opened from 64 source addresses"
    out "- loader: \`$held_line\`"
    out "- daemon RSS idle: ${idle} KiB; with the connections held: ${held} KiB; per held connection: $((per / 1024)) KiB"
    out "- daemon PSS (shared pages divided among their mappers) idle: ${idle_pss} KiB; held: ${held_pss} KiB; per held connection: $((per_pss / 1024)) KiB"
    out "- memory areas mapped with the connections held: $areas"
    out "- after every held connection sent a line: \`$answer_line\`"
    out "- one past the limit: not live at the probe (it waits in the listen backlog: not accepted, refused or reset), then served once a slot freed: answered is out of all $((HOLD + 1))"
    out ""
    kill "$D"; wait "$D" 2>/dev/null || true
fi

if [[ " $WHAT " == *" neighbours "* ]]; then
    printf '(module (func (export "_start") (loop (br 0))))\n' > "$WORK/spin.wat"
    cat > "$WORK/n.conf" <<EOF2
service hello-http
{
	type		= INTERNAL UNLISTED
	bind		= 127.0.0.1
	port		= 19202
	log_on_success	=
}
service spin
{
	type		= UNLISTED
	bind		= 127.0.0.1
	port		= 19203
	server		= $WORK/spin.wat
	instances	= $BUSY
	rlimit_cpu	= 2s
	log_on_success	=
	log_on_failure	=
}
EOF2
    "$WASINETD" -f "$WORK/n.conf" 2>"$OUT/logs/neighbours.log" &
    D=$!; PIDS+=("$D")
    wait_port 19202; wait_port 19203
    "$LOADGEN" 127.0.0.1:19202 -c "$C" -d 1 >/dev/null
    alone=$("$LOADGEN" 127.0.0.1:19202 -c "$C" -d "$DURATION")
    # Keep the spin service at its cap for the whole measured window.
    "$LOADGEN" 127.0.0.1:19203 --raw -c "$BUSY" -d $((DURATION + 6)) --timeout 30 >/dev/null &
    BG=$!; PIDS+=("$BG")
    sleep 2
    loaded=$("$LOADGEN" 127.0.0.1:19202 -c "$C" -d "$DURATION")
    wait "$BG" 2>/dev/null || true
    p99() { sed -n 's/.*p99_ms=\([^ ]*\).*/\1/p' <<<"$1"; }
    out "## hello-http beside $BUSY busy-looping guests (c=$C)"
    out ""
    out "- alone:  \`$alone\`"
    out "- loaded: \`$loaded\`"
    out "- p99 loaded / alone: $(awk -v a="$(p99 "$alone")" -v b="$(p99 "$loaded")" 'BEGIN{printf "%.2f", b/a}')"
    out ""
    kill "$D"; wait "$D" 2>/dev/null || true
fi
