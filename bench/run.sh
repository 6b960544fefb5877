#!/usr/bin/env bash
# wasinetd's benchmark: the classic hello-world health check served one
# connection per request by wasinetd (the hello-http guest, a fresh sandboxed
# instance per connection) and, in the same run, by its peers:
#
#   xinetd      fork+exec of the native handler (bench/handlers/hello.c)
#   tcpserver   ucspi-tcp, fork+exec of the same handler
#   ssa         systemd-socket-activate --inetd -a, fork+exec of the same
#   native      an in-process tokio server, no isolation (bench/tools native)
#   xinetd-wasmtime  xinetd fork+exec of `wasmtime run` on hello-http (compiled
#               ahead with `wasmtime compile`): the do-it-yourself sandbox; the
#               wasmtime CLI of the daemon's wasmtime version is installed
#               once into ~/.cache/wasinetd-bench (~15 min); not in PEERS by
#               default
#   wasmtime-serve  `wasmtime serve` (the same wasmtime CLI) on
#               bench/handlers/hello-wasi-http, the same answer as a wasi:http
#               proxy component: a fresh instance per request, under the
#               loaders' `Connection: close` (`-S cli`: the Rust std
#               component imports wasi:cli); not in PEERS by default
#   wasinetd-std  wasinetd serving guests/hello-std: the same answer written
#               the ordinary way (read_line, then write! a line at a time to
#               Rust's line-buffered stdout: six writes), not in PEERS by
#               default
#
# Everything is on loopback, every load is bounded in time and count, and
# the figures that matter are the ratios between rows of the same run (this
# machine is shared and noisy; absolute numbers drift between runs).
#
# Usage (from the repo root; installs xinetd and ucspi-tcp with apt if they
# are missing, builds everything in release):
#   bench/run.sh                          # ~4 min: 10 s per run, c=16 and 64
#   DURATION=3 PEERS="wasinetd native" bench/run.sh   # a quick look
#   BASE=7a4f326 PEERS="base wasinetd" REPEAT=5 DURATION=5 bench/run.sh
#                                         # A/B: a change against REV (base-std
#                                         # serves hello-std with REV's build)
# Knobs: DURATION [10] s per run, CONCURRENCY ["16 64"], REPEAT [1] rounds
# (each round runs every peer once, so peers share the machine's drift; the
# report shows the median and range over rounds), PEERS ["wasinetd xinetd
# tcpserver ssa native"], THREADS [2] loader threads, OUT [bench/results]
# where results go, BASE [none]: a git revision whose release build serves
# the same config as the peer `base` (add it to PEERS), LOADERS ["loadgen"]:
# add `wrk` to measure every row with it too (HTTP/1.1, Connection: close;
# its rows are PEER@wrk, its ratios taken against its own rows).
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
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# --- set-up -----------------------------------------------------------------
need_apt=()
[[ " $PEERS " == *" xinetd"* ]] && ! command -v xinetd >/dev/null && need_apt+=(xinetd)
[[ " $PEERS " == *" tcpserver "* ]] && ! command -v tcpserver >/dev/null && need_apt+=(ucspi-tcp)
[[ " $PEERS " == *" ssa "* ]] && ! command -v systemd-socket-activate >/dev/null && need_apt+=(systemd)
[[ " ${LOADERS:-} " == *" wrk "* ]] && ! command -v wrk >/dev/null && need_apt+=(wrk)
apt_install ${need_apt[@]+"${need_apt[@]}"}
say "building (release)"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "${BASE:-}" ]; then
    # Built first, in a worktree sharing the target directory (so its
    # dependencies are not built again), and copied away: the build of the
    # checkout below puts its own binary back in place.
    say "building $BASE (release) for the peer base"
    git worktree add -q --detach "$WORK/base-src" "$BASE"
    (cd "$WORK/base-src" && CARGO_TARGET_DIR=$TARGET cargo build --release -q -p wasinetd)
    cp "$TARGET/release/wasinetd" "$WORK/wasinetd-base"
    git worktree remove --force "$WORK/base-src"
    # Both builds share the build script's output folder (same package,
    # same relative path): make the checkout's build run its own script
    # again, or it compiles with the environment REV's script left.
    touch "$ROOT/host/build.rs"
fi
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path "$ROOT/guests/Cargo.toml" --target-dir "$ROOT/guests/target" \
    --target wasm32-wasip1 -p hello-std
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
gcc -O2 -static -o "$WORK/hello" "$BENCH/handlers/hello.c"
WASINETD=$TARGET/release/wasinetd
if [ -n "${BASE:-}" ]; then
    [ -z "$(git status --porcelain -- host guests Cargo.toml Cargo.lock)" ] ||
        say "warning: the checkout has uncommitted changes; its row is HEAD plus them"
    head=$(git rev-parse --short=12 HEAD)
    "$WASINETD" --version | grep -q "$head" ||
        { say "the checkout's binary is not HEAD's: $("$WASINETD" --version)"; exit 1; }
    say "base: $("$WORK/wasinetd-base" --version); wasinetd: $("$WASINETD" --version)"
fi
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
# The same service, the guest written the ordinary way.
sed "s|type\t\t= INTERNAL UNLISTED|type\t\t= UNLISTED\n\tserver\t\t= $ROOT/guests/target/wasm32-wasip1/release/hello-std.wasm|" \
    "$WORK/wasinetd.conf" > "$WORK/wasinetd-std.conf"
if [[ " $PEERS " == *" xinetd-wasmtime "* || " $PEERS " == *" wasmtime-serve "* ]]; then
    WASMTIME=$(wasmtime_cli)
fi
if [[ " $PEERS " == *" wasmtime-serve "* ]]; then
    cargo build --release -q --manifest-path "$BENCH/handlers/hello-wasi-http/Cargo.toml" \
        --target-dir "$BENCH/handlers/hello-wasi-http/target" --target wasm32-wasip2
    "$WASMTIME" compile "$BENCH/handlers/hello-wasi-http/target/wasm32-wasip2/release/hello_wasi_http.wasm" \
        -o "$WORK/hello-wasi-http.cwasm"
fi
if [[ " $PEERS " == *" xinetd-wasmtime "* ]]; then
    cargo build --release -q --manifest-path "$ROOT/guests/Cargo.toml" --target-dir "$ROOT/guests/target" \
        --target wasm32-wasip1 -p hello-http
    "$WASMTIME" compile "$ROOT/guests/target/wasm32-wasip1/release/hello-http.wasm" -o "$WORK/hello-http.cwasm"
    xinetd_conf bench-wasmtime "$WASMTIME" "run --allow-precompiled $WORK/hello-http.cwasm"
    mv "$WORK/xinetd.conf" "$WORK/xinetd-wasmtime.conf"
fi
xinetd_conf bench-hello "$WORK/hello"

start_server() { # name; sets SERVER_PID
    local log=$OUT/logs/$1.log
    case $1 in
        wasinetd) "$WASINETD" -f "$WORK/wasinetd.conf" --limit 2000 2>"$log" & ;;
        base) "$WORK/wasinetd-base" -f "$WORK/wasinetd.conf" --limit 2000 2>"$log" & ;;
        wasinetd-std) "$WASINETD" -f "$WORK/wasinetd-std.conf" --limit 2000 2>"$log" & ;;
        base-std) "$WORK/wasinetd-base" -f "$WORK/wasinetd-std.conf" --limit 2000 2>"$log" & ;;
        xinetd) xinetd -dontfork -f "$WORK/xinetd.conf" -pidfile "$WORK/xinetd.pid" 2>"$log" & ;;
        xinetd-wasmtime) xinetd -dontfork -f "$WORK/xinetd-wasmtime.conf" -pidfile "$WORK/xinetd.pid" 2>"$log" & ;;
        wasmtime-serve) "$WASMTIME" serve -S cli --addr "127.0.0.1:$PORT" --allow-precompiled "$WORK/hello-wasi-http.cwasm" 2>"$log" & ;;
        tcpserver) tcpserver -HRl0 -c 1000 127.0.0.1 "$PORT" "$WORK/hello" 2>"$log" & ;;
        ssa) SYSTEMD_LOG_LEVEL=notice systemd-socket-activate --inetd -a -l "127.0.0.1:$PORT" "$WORK/hello" 2>"$log" & ;;
        native) "$NATIVE" "127.0.0.1:$PORT" 2>"$log" & ;;
        *) say "unknown peer $1"; exit 2 ;;
    esac
    SERVER_PID=$!
    wait_for_port "$1" 200
}

# --- runs -------------------------------------------------------------------
measure_peers "$OUT/peers.tsv"

python3 "$BENCH/report.py" "$OUT/peers.tsv" "$OUT/peers.svg" | tee "$OUT/peers.md"
