#!/usr/bin/env bash
# Where the daemon's CPU goes per connection: the release build serving the
# bundled hello-http (or GUEST=path.wasm) under bench/tools loadgen, sampled
# by `perf record` (the cpu-clock software event: these machines have no
# hardware counters), then the top symbols and shared objects.
#
# Usage (from the repo root; installs linux-perf with apt if missing):
#   bench/profile.sh                  # c=16 for 10 s
#   C=64 DURATION=5 GUEST=guests/target/wasm32-wasip1/release/hello-std.wasm bench/profile.sh
#   WASINETD=/path/to/other/wasinetd bench/profile.sh   # another build, same load
# Output: the report on stdout; perf.data (not committed) and the full
# report (report.txt) in $OUT [bench/results/profile].

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${DURATION:-10}
C=${C:-16}
THREADS=${THREADS:-2}
OUT=${OUT:-$BENCH/results/profile}
PORT=${PORT:-19081}
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

command -v perf >/dev/null || apt_install linux-perf
say "building (release)"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1
if [ -z "${WASINETD:-}" ]; then
    cargo build --release -q -p wasinetd
    WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
fi
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
LOADGEN=$BENCH/tools/target/release/loadgen

if [ -n "${GUEST:-}" ]; then
    what="server		= $(realpath "$GUEST")"
else
    what="type		= INTERNAL UNLISTED"
fi
cat > "$WORK/wasinetd.conf" <<EOF
service hello-http
{
	$what
	type		= UNLISTED
	bind		= 127.0.0.1
	port		= $PORT
	log_on_success	=
}
EOF
# INTERNAL and UNLISTED on one line when the guest is bundled.
[ -z "${GUEST:-}" ] && sed -i '/^\ttype\t\t= UNLISTED$/d' "$WORK/wasinetd.conf"

"$WASINETD" -f "$WORK/wasinetd.conf" --limit 2000 2>"$OUT/logs/profile-daemon.log" &
SERVER_PID=$!
wait_for_port profile-daemon 200
"$LOADGEN" "127.0.0.1:$PORT" -c "$C" -d 1 --threads "$THREADS" >/dev/null
perf record -q -e cpu-clock -F 2999 -p "$SERVER_PID" -o "$OUT/perf.data" -- sleep "$DURATION" &
PERF=$!
line=$("$LOADGEN" "127.0.0.1:$PORT" -c "$C" -d "$DURATION" --threads "$THREADS")
wait "$PERF" || true
say "$line"
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed 's/  */ /g; s/ - - *$//' > "$OUT/report.txt"
echo "top symbols (share of the daemon's samples), $line:"
head -40 "$OUT/report.txt"
echo
echo "by shared object:"
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed 's/  */ /g' | head -10
