#!/usr/bin/env bash
# Soak: mixed traffic for MINUTES minutes, hostile guests among normal
# ones, while the daemon's resident memory, open descriptors and threads
# are sampled every SAMPLE seconds. A daemon that holds its limits ends
# where it started: no growth between the first and the last part of the
# run, and the normal service answering throughout.
#
# On loopback only; every loop is bounded in time. The hostile guests are
# guests/hostile's modes (the adversarial suite's): a host-call loop at its
# CPU limit, a guest touching 200 MiB, one holding files, one filling its
# preopen, one flooding stderr, one forging log lines, clients that reset
# and clients that say nothing.
#
# Usage (from the repo root; builds in release):
#   bench/soak.sh                      # 10 minutes
#   MINUTES=2 bench/soak.sh            # a quick look
# Knobs: MINUTES [10], SAMPLE [10] s, OUT [bench/results].
# Output: $OUT/soak.tsv (time, rss_kib, fds, threads, hello answers and
# errors in the last period) and a summary on stdout and in $OUT/soak.md.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
MINUTES=${MINUTES:-10}
SAMPLE=${SAMPLE:-10}
OUT=${OUT:-$BENCH/results}
PORT=${PORT:-19080}
mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/wasinetd-soak.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "soak: $*" >&2; }

say "building (release)"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path guests/Cargo.toml --target wasm32-wasip1 -p hostile -p echo
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
LOADGEN=$BENCH/tools/target/release/loadgen
GUESTS=$ROOT/guests/target/wasm32-wasip1/release
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$WORK/ro" "$WORK/rw"
echo x > "$WORK/ro/f"
svc() { # name port guest args [extra lines]
    printf 'service %s\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = %s\n\tserver = %s\n\tserver_args = %s\n%s\n}\n' \
        "$1" "$2" "$3" "$4" "${5:-}"
}
{
    printf 'service hello-http\n{\n\ttype = INTERNAL UNLISTED\n\tbind = 127.0.0.1\n\tport = %s\n\tlog_on_success =\n}\n' "$PORT"
    svc echo $((PORT + 1)) "$GUESTS/echo.wasm" "" "	log_on_success ="
    svc clock $((PORT + 2)) "$GUESTS/hostile.wasm" clock "	rlimit_cpu = 1s"
    svc touch $((PORT + 3)) "$GUESTS/hostile.wasm" "touch 200" "	rlimit_as = 256M"
    svc files $((PORT + 4)) "$GUESTS/hostile.wasm" "open-files /ro/f 1000" "	preopen = $WORK/ro:/ro"
    svc fill $((PORT + 5)) "$GUESTS/hostile.wasm" "fill /rw/big 65536" \
        "	preopen = $WORK/rw:/rw
	preopen_quota = 4M 100"
    svc flood $((PORT + 6)) "$GUESTS/hostile.wasm" "stderr-lines 1000 3000"
    svc forge $((PORT + 7)) "$GUESTS/hostile.wasm" forge
} > "$WORK/wasinetd.conf"

"$WASINETD" -f "$WORK/wasinetd.conf" --no-cache 2>"$OUT/logs/soak.log" &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 1 600); do
    [ "$(grep -c '^listening service=' "$OUT/logs/soak.log" 2>/dev/null || true)" -ge 8 ] && break
    sleep 0.1
done
grep -q 'listening service=forge' "$OUT/logs/soak.log" || { say "the daemon did not start"; exit 1; }

END=$(( $(date +%s) + MINUTES * 60 ))
# The attackers: each loops until END, one connection at a time, from
# 127.0.0.2 (the measured client is 127.0.0.1: one address is one
# source's share of the slots).
python3 - "$PORT" "$END" <<'EOF' &
import socket, struct, sys, threading, time
port, end = int(sys.argv[1]), float(sys.argv[2])
def loop(offset, action):
    while time.time() < end:
        try:
            action(port + offset)
        except OSError:
            time.sleep(0.05)
SRC = ("127.0.0.2", 0)
def plain(p):
    with socket.create_connection(("127.0.0.1", p), timeout=30, source_address=SRC) as s:
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
def held(p):
    # Holds the guest's files a moment, then lets go.
    with socket.create_connection(("127.0.0.1", p), timeout=30, source_address=SRC) as s:
        s.recv(1000)
        time.sleep(0.5)
def reset(p):
    s = socket.create_connection(("127.0.0.1", p), timeout=30, source_address=SRC)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
def quiet(p):
    # Says nothing: the echo guest waits until idle_timeout.
    with socket.create_connection(("127.0.0.1", p), timeout=60, source_address=SRC) as s:
        while s.recv(65536):
            pass
attacks = [(2, plain), (3, plain), (4, held), (5, plain), (6, plain), (7, plain), (1, reset), (1, quiet)]
for offset, action in attacks:
    threading.Thread(target=loop, args=(offset, action), daemon=True).start()
while time.time() < end:
    time.sleep(1)
EOF
PIDS+=("$!")

printf 'secs\trss_kib\tfds\tthreads\thello_ok\thello_errors\tp99_ms\n' > "$OUT/soak.tsv"
START=$(date +%s)
while [ "$(date +%s)" -lt "$END" ]; do
    line=$("$LOADGEN" "127.0.0.1:$PORT" -c 4 -d "$SAMPLE" --threads 1)
    get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$DAEMON/status")
    fds=$(ls "/proc/$DAEMON/fd" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(( $(date +%s) - START ))" "$rss" "$fds" "$threads" \
        "$(get ok)" "$(get errors)" "$(get p99_ms)" | tee -a "$OUT/soak.tsv" >&2
done

python3 - "$OUT/soak.tsv" <<'EOF' | tee "$OUT/soak.md"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
rows = [[float(x) if x not in ("", "nan") else 0.0 for x in r] for r in rows]
if len(rows) < 6:
    sys.exit("soak: too few samples for a verdict")
third = len(rows) // 3
# The first third warms up (pool slots, caches); the last third is
# compared with the middle one. Attacks come and go (a guest holding a
# thousand files, one touching 200 MiB), so a sample may catch one: the
# floor of each third is what stays.
mid, last = rows[third:2 * third], rows[2 * third:]
def low(rs, i): return min(r[i] for r in rs)
def med(rs, i): return statistics.median(r[i] for r in rs)
print("| figure | middle third: min / median | last third: min / median | max |")
print("|---|--:|--:|--:|")
for name, i in [("RSS KiB", 1), ("open fds", 2), ("threads", 3), ("hello p99 ms", 6)]:
    print(f"| {name} | {low(mid, i):.0f} / {med(mid, i):.0f} | {low(last, i):.0f} / {med(last, i):.0f} | {max(r[i] for r in rows):.0f} |")
ok = sum(r[4] for r in rows); errors = sum(r[5] for r in rows)
print(f"\nhello: {ok:.0f} answered, {errors:.0f} errors, over {rows[-1][0]:.0f} s")
grew = low(last, 1) > low(mid, 1) * 1.10 + 4096 or low(last, 2) > low(mid, 2) + 8 or max(r[3] for r in last) > max(r[3] for r in mid)
print("verdict:", "GROWTH" if grew else "no growth", "|", f"{errors:.0f} errors" if errors else "no error")
sys.exit(1 if grew or errors else 0)
EOF
