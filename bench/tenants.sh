#!/usr/bin/env bash
# Tenants under load: does one customer's CPU hunger reach another's?
#
#   isolation  tenant B's hello-http (c=C) alone, then while tenant A keeps
#              BUSY [50] busy-looping guests running: B's p99 and conn/s
#              with A busy over B alone (targets: p99 <= 2x, conn/s >= 0.5x).
#   shares     tenants A and B both saturated (SAT [8] busy guests each, CPU
#              budget 100ms per guest, each ended guest replaced at once),
#              cpu_share 1 and 3: the CPU each got over SHARES_DURATION
#              [30] s, from the daemon's per-tenant CPU counters (charged
#              at every tick of a running guest)
#              (target: 25/75 +- 10 points).
#
# Each is run REPEAT [3] times; the report gives every round and the median.
# Usage (from the repo root): bench/tenants.sh [isolation] [shares]
# Knobs: DURATION [10] s, C [16], BUSY [50], SAT [8], REPEAT [3],
# OUT [bench/results]. Output: $OUT/tenants.md (and stdout).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${DURATION:-10}
SHARES_DURATION=${SHARES_DURATION:-30}
C=${C:-16}
BUSY=${BUSY:-50}
SAT=${SAT:-8}
REPEAT=${REPEAT:-3}
OUT=${OUT:-$BENCH/results}
WHAT=${*:-isolation shares}
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/wasinetd-tenants.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "tenants: $*" >&2; }

rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
LOADGEN=$BENCH/tools/target/release/loadgen
REPORT=$OUT/tenants.md
: > "$REPORT"
out() { echo "$*" | tee -a "$REPORT"; }

wait_port() {
    for _ in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    say "port $1 never opened"; exit 1
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }
# The CPU seconds the daemon counted for a tenant so far.
cpu_of() {
    curl -s "http://127.0.0.1:19299/metrics" |
        awk -v t="tenant=\"$1\"" '/^wasinetd_tenant_cpu_seconds_total/ && index($0, t) {print $2; exit}'
}

# Two tenants' folders (owner-only writable, as the daemon requires), a
# busy-looping guest in each.
mkdir -p "$WORK/a" "$WORK/b"
chmod 755 "$WORK/a" "$WORK/b"
for t in a b; do
    printf '(module (func (export "_start") (loop (br 0))))\n' > "$WORK/$t/spin.wat"
    chmod 644 "$WORK/$t/spin.wat"
done
config() { # SHARE_A SHARE_B
    cat > "$WORK/t.conf" <<EOF2
defaults
{
	log_on_success	=
	log_on_failure	=
}
tenant a
{
	includedir	= $WORK/a
	ports		= 19210-19219
	bind		= 127.0.0.1
	cpu_share	= $1
	instances	= 200
}
tenant b
{
	includedir	= $WORK/b
	ports		= 19220-19229
	bind		= 127.0.0.1
	cpu_share	= $2
	instances	= 200
}
EOF2
    cat > "$WORK/a/spin" <<EOF2
service spin-a
{
	type		= UNLISTED
	port		= 19210
	server		= spin.wat
	instances	= $((BUSY > SAT ? BUSY : SAT))
	rlimit_cpu	= $3
	runtime_max	= 60s
}
EOF2
    cat > "$WORK/b/spin" <<EOF2
service spin-b
{
	type		= UNLISTED
	port		= 19220
	server		= spin.wat
	instances	= $SAT
	rlimit_cpu	= $3
	runtime_max	= 60s
}
service hello-http
{
	type		= INTERNAL UNLISTED
	port		= 19221
}
EOF2
    chmod 644 "$WORK/a/spin" "$WORK/b/spin"
}
start() {
    "$WASINETD" -f "$WORK/t.conf" --admin 127.0.0.1:19299 2>>"$OUT/logs/tenants.log" &
    D=$!; PIDS+=("$D")
    wait_port 19210; wait_port 19220; wait_port 19221; wait_port 19299
}
stop() { kill "$D"; wait "$D" 2>/dev/null || true; }

if [[ " $WHAT " == *" isolation "* ]]; then
    config 1 1 2s
    start
    out "## Tenant B's hello-http beside tenant A's $BUSY busy-looping guests (c=$C, ${DURATION}s)"
    out ""
    out "| round | B alone conn/s | B alone p99 ms | with A busy conn/s | with A busy p99 ms | conn/s ratio | p99 ratio |"
    out "|--:|--:|--:|--:|--:|--:|--:|"
    "$LOADGEN" 127.0.0.1:19221 -c "$C" -d 1 >/dev/null
    ratios_c=(); ratios_p=()
    for r in $(seq 1 "$REPEAT"); do
        alone=$("$LOADGEN" 127.0.0.1:19221 -c "$C" -d "$DURATION")
        "$LOADGEN" 127.0.0.1:19210 --raw -c "$BUSY" -d $((DURATION + 6)) --timeout 30 >/dev/null &
        BG=$!; PIDS+=("$BG")
        sleep 3
        busy=$("$LOADGEN" 127.0.0.1:19221 -c "$C" -d "$DURATION")
        wait "$BG" 2>/dev/null || true
        rc=$(awk -v a="$(field conn_per_s "$alone")" -v b="$(field conn_per_s "$busy")" 'BEGIN{printf "%.2f", b/a}')
        rp=$(awk -v a="$(field p99_ms "$alone")" -v b="$(field p99_ms "$busy")" 'BEGIN{printf "%.2f", b/a}')
        ratios_c+=("$rc"); ratios_p+=("$rp")
        out "| $r | $(field conn_per_s "$alone") | $(field p99_ms "$alone") | $(field conn_per_s "$busy") | $(field p99_ms "$busy") | $rc | $rp |"
        sleep 3
    done
    out ""
    out "- conn/s with A busy / alone: median $(printf '%s\n' "${ratios_c[@]}" | median) [$(printf '%s\n' "${ratios_c[@]}" | range)] (target >= 0.5)"
    out "- p99 with A busy / alone: median $(printf '%s\n' "${ratios_p[@]}" | median) [$(printf '%s\n' "${ratios_p[@]}" | range)] (target <= 2)"
    out ""
    stop
fi

if [[ " $WHAT " == *" shares "* ]]; then
    config 1 3 100ms
    start
    out "## Tenants A and B saturated ($SAT busy guests each), cpu_share 1 : 3 (${SHARES_DURATION}s)"
    out ""
    out "| round | A CPU s | B CPU s | A share |"
    out "|--:|--:|--:|--:|"
    shares=()
    for r in $(seq 1 "$REPEAT"); do
        "$LOADGEN" 127.0.0.1:19210 --raw -c "$SAT" -d $((SHARES_DURATION + 4)) --timeout 30 >/dev/null &
        BA=$!; PIDS+=("$BA")
        "$LOADGEN" 127.0.0.1:19220 --raw -c "$SAT" -d $((SHARES_DURATION + 4)) --timeout 30 >/dev/null &
        BB=$!; PIDS+=("$BB")
        sleep 2
        a0=$(cpu_of a); b0=$(cpu_of b)
        sleep "$SHARES_DURATION"
        a1=$(cpu_of a); b1=$(cpu_of b)
        wait "$BA" "$BB" 2>/dev/null || true
        read -r da db share < <(awk -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" \
            'BEGIN{da=a1-a0; db=b1-b0; printf "%.2f %.2f %.1f\n", da, db, 100*da/(da+db)}')
        shares+=("$share")
        out "| $r | $da | $db | ${share}% |"
        sleep 2
    done
    out ""
    out "- A's share of the CPU: median $(printf '%s\n' "${shares[@]}" | median)% [$(printf '%s\n' "${shares[@]}" | range)] (target 25 +- 10)"
    out ""
    stop
fi
