#!/usr/bin/env bash
# wasinetd's benchmark: the classic hello-world health check served one
# connection per request by wasinetd (the hello-http guest, a fresh sandboxed
# instance per connection) and, in the same run, by its peers:
#
#   xinetd      fork+exec of the native handler (bench/handlers/hello.c)
#   tcpserver   ucspi-tcp, fork+exec of the same handler
#   ssa         systemd-socket-activate --inetd -a, fork+exec of the same
#   native      an in-process tokio server, no isolation (bench/tools native)
#
# Everything is on loopback, every load is bounded in time and count, and
# the figures that matter are the ratios between rows of the same run (this
# machine is shared and noisy; absolute numbers drift between runs).
#
# Usage (from the repo root; installs xinetd and ucspi-tcp with apt if they
# are missing, builds everything in release):
#   bench/run.sh                          # ~4 min: 10 s per run, c=16 and 64
#   DURATION=3 PEERS="wasinetd native" bench/run.sh   # a quick look
# Knobs: DURATION [10] s per run, CONCURRENCY ["16 64"], REPEAT [1] (the
# median run is reported), PEERS ["wasinetd xinetd tcpserver ssa native"],
# THREADS [2] loader threads, OUT [bench/results] where results go.
#
# Output: a markdown table on stdout and in $OUT/peers.md, raw rows in
# $OUT/peers.tsv, a chart in $OUT/peers.svg; server logs in $OUT/logs/.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-"16 64"}
REPEAT=${REPEAT:-1}
PEERS=${PEERS:-"wasinetd xinetd tcpserver ssa native"}
THREADS=${THREADS:-2}
OUT=${OUT:-$BENCH/results}
PORT=${PORT:-19080}
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/wasinetd-bench.XXXXXX)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "bench: $*" >&2; }

# --- set-up -----------------------------------------------------------------
need_apt=()
[[ " $PEERS " == *" xinetd "* ]] && ! command -v xinetd >/dev/null && need_apt+=(xinetd)
[[ " $PEERS " == *" tcpserver "* ]] && ! command -v tcpserver >/dev/null && need_apt+=(ucspi-tcp)
[[ " $PEERS " == *" ssa "* ]] && ! command -v systemd-socket-activate >/dev/null && need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
    say "installing ${need_apt[*]}"
    # Never let the package start the distro's xinetd service.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
say "building (release)"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
gcc -O2 -static -o "$WORK/hello" "$BENCH/handlers/hello.c"
WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
LOADGEN=$BENCH/tools/target/release/loadgen
NATIVE=$BENCH/tools/target/release/native
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cat > "$WORK/wasinetd.conf" <<EOF
# hello-http, bundled in the binary; no per-connection success line (the
# xinetd row logs none either), limits at their defaults.
service hello-http
{
	type		= INTERNAL UNLISTED
	bind		= 127.0.0.1
	port		= $PORT
	log_on_success	=
}
EOF
cat > "$WORK/xinetd.conf" <<EOF
defaults
{
	log_type	= FILE $WORK/xinetd-service.log
	log_on_failure	= HOST
}
service bench-hello
{
	type		= UNLISTED
	socket_type	= stream
	protocol	= tcp
	port		= $PORT
	bind		= 127.0.0.1
	wait		= no
	user		= root
	server		= $WORK/hello
	# xinetd's built-in cps = 50 10 would switch the service off.
	cps		= 1000000 1
	instances	= UNLIMITED
	per_source	= UNLIMITED
}
EOF

start_server() { # name; sets SERVER_PID
    local log=$OUT/logs/$1.log
    case $1 in
        wasinetd) "$WASINETD" -f "$WORK/wasinetd.conf" --limit 2000 2>"$log" & ;;
        xinetd) xinetd -dontfork -f "$WORK/xinetd.conf" -pidfile "$WORK/xinetd.pid" 2>"$log" & ;;
        tcpserver) tcpserver -HRl0 -c 1000 127.0.0.1 "$PORT" "$WORK/hello" 2>"$log" & ;;
        ssa) SYSTEMD_LOG_LEVEL=notice systemd-socket-activate --inetd -a -l "127.0.0.1:$PORT" "$WORK/hello" 2>"$log" & ;;
        native) "$NATIVE" "127.0.0.1:$PORT" 2>"$log" & ;;
        *) say "unknown peer $1"; exit 2 ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    say "$1 did not start; log:"; cat "$log" >&2; exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    sleep 1
}

# CPU of a process and its reaped children, in clock ticks.
cpu_ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# --- runs -------------------------------------------------------------------
printf 'peer\tc\trun\tok\terrors\tconn_per_s\tp50_ms\tp99_ms\tcpu_cores\tcpu_us_per_conn\n' > "$OUT/peers.tsv"
for peer in $PEERS; do
    for c in $CONCURRENCY; do
        for run in $(seq 1 "$REPEAT"); do
            start_server "$peer"
            # A short warm-up, not measured.
            "$LOADGEN" "127.0.0.1:$PORT" -c "$c" -d 1 --threads "$THREADS" >/dev/null
            t0=$(cpu_ticks "$SERVER_PID"); s0=$(date +%s.%N)
            line=$("$LOADGEN" "127.0.0.1:$PORT" -c "$c" -d "$DURATION" --threads "$THREADS")
            t1=$(cpu_ticks "$SERVER_PID"); s1=$(date +%s.%N)
            stop_server
            get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
            ok=$(get ok)
            cores=$(awk -v a="$t0" -v b="$t1" -v s="$s0" -v e="$s1" -v hz="$HZ" 'BEGIN{printf "%.2f", (b-a)/hz/(e-s)}')
            us=$(awk -v a="$t0" -v b="$t1" -v ok="$ok" -v hz="$HZ" 'BEGIN{ if (ok>0) printf "%.0f", (b-a)/hz*1e6/ok; else print "nan" }')
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$peer" "$c" "$run" "$ok" "$(get errors)" \
                "$(get conn_per_s)" "$(get p50_ms)" "$(get p99_ms)" "$cores" "$us" | tee -a "$OUT/peers.tsv" >&2
        done
    done
done

python3 "$BENCH/report.py" "$OUT/peers.tsv" "$OUT/peers.svg" | tee "$OUT/peers.md"
