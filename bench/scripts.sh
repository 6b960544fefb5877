#!/usr/bin/env bash
# Interpreted handlers: the same Python hello-world health check
# (examples/python/app/hello.py), one connection per request, in one run:
#
#   xinetd-python3    xinetd fork+exec'ing native /usr/bin/python3 hello.py
#   wasinetd-python   wasinetd, python.wasm (CPython 3.12 for WASI) started
#                     per connection on the same script (examples/python/hello.conf)
#   wasinetd-prebuilt wasinetd, the same script built ahead with
#                     componentize-py (examples/python/prebuild.sh): a fresh
#                     instance of the start-up snapshot per connection
#   wasinetd-js       wasinetd, quickjs.wasm on examples/js/app/hello.js
#
# Usage (from the repo root; installs xinetd with apt if missing, fetches the
# interpreters with examples/interpreters/fetch.sh and componentize-py with
# pip, builds wasinetd in release):
#   bench/scripts.sh                   # ~1.5 min: 10 s per row at c=16
#   DURATION=3 PEERS="wasinetd-prebuilt xinetd-python3" bench/scripts.sh
# Knobs: DURATION [10] s, CONCURRENCY ["16"], REPEAT [1] (the median run is
# reported), PEERS [all four], THREADS [2], OUT [bench/results].
# Output: markdown on stdout and in $OUT/scripts.md, rows in $OUT/scripts.tsv.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-"16"}
REPEAT=${REPEAT:-1}
PEERS=${PEERS:-"xinetd-python3 wasinetd-python wasinetd-prebuilt wasinetd-js"}
THREADS=${THREADS:-2}
OUT=${OUT:-$BENCH/results}
PORT=${PORT:-19180}
PYTHON3=${PYTHON3:-/usr/bin/python3}
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/wasinetd-bench-scripts.XXXXXX)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "bench: $*" >&2; }

# --- set-up -----------------------------------------------------------------
if [[ " $PEERS " == *" xinetd-python3 "* ]] && ! command -v xinetd >/dev/null; then
    say "installing xinetd"
    # Never let the package start the distro's xinetd service.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xinetd >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
say "building (release)"
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
LOADGEN=$BENCH/tools/target/release/loadgen
INTERP=$ROOT/examples/interpreters
if [ ! -f "$INTERP/python.wasm" ] || [ ! -f "$INTERP/quickjs.wasm" ]; then
    examples/interpreters/fetch.sh
fi
PREBUILT=$WORK/hello.wasm
if [[ " $PEERS " == *" wasinetd-prebuilt "* ]]; then
    examples/python/prebuild.sh examples/python/app hello "$PREBUILT"
fi
# Every wasinetd row maps its guest from this cache; the first start of
# each compiles it, before anything is measured.
export CACHE_DIRECTORY=$WORK/cache
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
APP=$ROOT/examples/python/app

# The examples' services, without a per-connection success line (the xinetd
# row logs none either), with the examples' rlimit_as.
wasinetd_conf() { # server, extra attribute lines
    printf 'service bench\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = %s\n' "$PORT"
    printf '\tserver = %s\n\trlimit_as = 64M\n\tlog_on_success =\n%s\n}\n' "$1" "$2"
}
wasinetd_conf "$INTERP/python.wasm" "$(printf '\tserver_args = /app/hello.py\n\tpreopen = %s:/app:ro' "$APP")" \
    > "$WORK/python.conf"
wasinetd_conf "$PREBUILT" "" > "$WORK/prebuilt.conf"
wasinetd_conf "$INTERP/quickjs.wasm" \
    "$(printf '\tserver_args = --std /app/hello.js\n\tpreopen = %s:/app:ro' "$ROOT/examples/js/app")" \
    > "$WORK/js.conf"
cat > "$WORK/xinetd.conf" <<EOF
defaults
{
	log_type	= FILE $WORK/xinetd-service.log
	log_on_failure	= HOST
}
service bench-python
{
	type		= UNLISTED
	socket_type	= stream
	protocol	= tcp
	port		= $PORT
	bind		= 127.0.0.1
	wait		= no
	user		= root
	server		= $PYTHON3
	server_args	= $APP/hello.py
	# xinetd's built-in cps = 50 10 would switch the service off.
	cps		= 1000000 1
	instances	= UNLIMITED
	per_source	= UNLIMITED
}
EOF

start_server() { # name; sets SERVER_PID
    local log=$OUT/logs/$1.log
    case $1 in
        xinetd-python3) xinetd -dontfork -f "$WORK/xinetd.conf" -pidfile "$WORK/xinetd.pid" 2>"$log" & ;;
        wasinetd-python) "$WASINETD" -f "$WORK/python.conf" 2>"$log" & ;;
        wasinetd-prebuilt) "$WASINETD" -f "$WORK/prebuilt.conf" 2>"$log" & ;;
        wasinetd-js) "$WASINETD" -f "$WORK/js.conf" 2>"$log" & ;;
        *) say "unknown peer $1"; exit 2 ;;
    esac
    SERVER_PID=$!
    # Up to 2 minutes: a cold cache compiles the interpreter first.
    for _ in $(seq 1 2400); do
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
printf 'peer\tc\trun\tok\terrors\tconn_per_s\tp50_ms\tp99_ms\tcpu_cores\tcpu_us_per_conn\n' > "$OUT/scripts.tsv"
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
                "$(get conn_per_s)" "$(get p50_ms)" "$(get p99_ms)" "$cores" "$us" | tee -a "$OUT/scripts.tsv" >&2
        done
    done
done

# The median run per (peer, c); ratios against xinetd-python3 at the same c.
python3 - "$OUT/scripts.tsv" <<'PY' | tee "$OUT/scripts.md"
import csv, sys
from collections import defaultdict

rows = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    rows[(r["peer"], r["c"])].append(r)
pick = {k: sorted(v, key=lambda r: float(r["conn_per_s"] or 0))[(len(v) - 1) // 2] for k, v in rows.items()}
print("| peer | c | conn/s | × xinetd-python3 | p50 ms | p99 ms | errors | server CPU µs/conn |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
for (peer, c), r in pick.items():
    base = pick.get(("xinetd-python3", c))
    ratio = "n/a"
    if base and float(base["conn_per_s"] or 0) > 0:
        ratio = "%.2f" % (float(r["conn_per_s"]) / float(base["conn_per_s"]))
    print(f"| {peer} | {c} | {float(r['conn_per_s']):.0f} | {ratio} | {r['p50_ms']} | {r['p99_ms']} "
          f"| {r['errors']} | {r['cpu_us_per_conn']} |")
PY
