#!/usr/bin/env bash
# Interpreted handlers: the same Python hello-world health check
# (examples/python/app/hello.py), one connection per request, in one run:
#
#   xinetd-python3    xinetd fork+exec'ing native /usr/bin/python3 hello.py
#   wasinetd-python   wasinetd, python.wasm (CPython 3.12 for WASI) started
#                     per connection on the same script (examples/python/hello.conf)
#   wasinetd-prebuilt wasinetd, the same script built ahead with
#                     componentize-py (`wasinetd build`): a fresh
#                     instance of the start-up snapshot per connection
#   wasinetd-js       wasinetd, quickjs.wasm on examples/js/app/hello.js
#   wasinetd-prebuilt-unmerged  the same, built with `--no-merge`: CPython's
#                     shared libraries as componentize-py linked them (what
#                     the merge into one module saves)
#   wasinetd-prebuilt-js  wasinetd, the same script built ahead with
#                     componentize-qjs (`wasinetd build`): a fresh instance
#                     of the snapshot (engine up, script compiled) per connection
#   xinetd-ruby       xinetd fork+exec'ing native /usr/bin/ruby (Debian's,
#                     installed with apt if missing) --disable-gems on
#                     examples/ruby/app/hello.rb
#   wasinetd-ruby     wasinetd, ruby.wasm (CRuby 3.4, npm) driven by the
#                     daemon on the same script, same flag (examples/ruby/hello.conf)
#
# Usage (from the repo root; installs xinetd and ruby with apt if missing, fetches the
# interpreters with examples/interpreters/fetch.sh and componentize-py with
# pip, builds wasinetd in release):
#   bench/scripts.sh                   # ~2 min: 10 s per row at c=16
#   DURATION=3 PEERS="wasinetd-prebuilt xinetd-python3" bench/scripts.sh
# Knobs: DURATION [10] s, CONCURRENCY ["16"], REPEAT [1] (the median run is
# reported), PEERS [all seven], THREADS [2], OUT [bench/results].
# Output: markdown on stdout and in $OUT/scripts.md, rows in $OUT/scripts.tsv.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-"16"}
REPEAT=${REPEAT:-1}
PEERS=${PEERS:-"xinetd-python3 wasinetd-python wasinetd-prebuilt wasinetd-prebuilt-unmerged wasinetd-js wasinetd-prebuilt-js xinetd-ruby wasinetd-ruby"}
THREADS=${THREADS:-2}
OUT=${OUT:-$BENCH/results}
PORT=${PORT:-19180}
PYTHON3=${PYTHON3:-/usr/bin/python3}
RUBY=${RUBY:-/usr/bin/ruby}
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# --- set-up -----------------------------------------------------------------
if [[ " $PEERS " == *" xinetd-python3 "* ]] && ! command -v xinetd >/dev/null; then
    apt_install xinetd
fi
if [[ " $PEERS " == *" xinetd-ruby "* ]] && [ ! -x "$RUBY" ]; then
    apt_install ruby
fi
say "building (release)"
cargo build --release -q -p wasinetd
cargo build --release -q --manifest-path "$BENCH/tools/Cargo.toml" --target-dir "$BENCH/tools/target"
WASINETD=${CARGO_TARGET_DIR:-$ROOT/target}/release/wasinetd
LOADGEN=$BENCH/tools/target/release/loadgen
INTERP=$ROOT/examples/interpreters
if [ ! -f "$INTERP/python.wasm" ] || [ ! -f "$INTERP/quickjs.wasm" ] || [ ! -f "$INTERP/ruby.wasm" ]; then
    examples/interpreters/fetch.sh
fi
PREBUILT=$WORK/hello.wasm
if [[ " $PEERS " == *" wasinetd-prebuilt "* ]]; then
    "$WASINETD" build examples/python/app/hello.py -o "$PREBUILT"
fi
UNMERGED=$WORK/hello-unmerged.wasm
if [[ " $PEERS " == *" wasinetd-prebuilt-unmerged "* ]]; then
    "$WASINETD" build --no-merge examples/python/app/hello.py -o "$UNMERGED"
fi
PREBUILT_JS=$WORK/hello-js.wasm
if [[ " $PEERS " == *" wasinetd-prebuilt-js "* ]]; then
    "$WASINETD" build examples/js/app/hello.js -o "$PREBUILT_JS"
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
wasinetd_conf "$UNMERGED" "" > "$WORK/unmerged.conf"
wasinetd_conf "$PREBUILT_JS" "" > "$WORK/prebuilt-js.conf"
wasinetd_conf "$INTERP/quickjs.wasm" \
    "$(printf '\tserver_args = --std /app/hello.js\n\tpreopen = %s:/app:ro' "$ROOT/examples/js/app")" \
    > "$WORK/js.conf"
wasinetd_conf "$INTERP/ruby.wasm" \
    "$(printf '\tserver_args = --disable-gems /app/hello.rb\n\tpreopen = %s:/app:ro' "$ROOT/examples/ruby/app")" \
    > "$WORK/ruby.conf"
xinetd_conf bench-ruby "$RUBY" "--disable-gems $ROOT/examples/ruby/app/hello.rb"
mv "$WORK/xinetd.conf" "$WORK/xinetd-ruby.conf"
xinetd_conf bench-python "$PYTHON3" "$APP/hello.py"

start_server() { # name; sets SERVER_PID
    local log=$OUT/logs/$1.log
    case $1 in
        xinetd-python3) xinetd -dontfork -f "$WORK/xinetd.conf" -pidfile "$WORK/xinetd.pid" 2>"$log" & ;;
        wasinetd-python) "$WASINETD" -f "$WORK/python.conf" 2>"$log" & ;;
        wasinetd-prebuilt) "$WASINETD" -f "$WORK/prebuilt.conf" 2>"$log" & ;;
        wasinetd-prebuilt-unmerged) "$WASINETD" -f "$WORK/unmerged.conf" 2>"$log" & ;;
        wasinetd-js) "$WASINETD" -f "$WORK/js.conf" 2>"$log" & ;;
        wasinetd-prebuilt-js) "$WASINETD" -f "$WORK/prebuilt-js.conf" 2>"$log" & ;;
        xinetd-ruby) xinetd -dontfork -f "$WORK/xinetd-ruby.conf" -pidfile "$WORK/xinetd.pid" 2>"$log" & ;;
        wasinetd-ruby) "$WASINETD" -f "$WORK/ruby.conf" 2>"$log" & ;;
        *) say "unknown peer $1"; exit 2 ;;
    esac
    SERVER_PID=$!
    # Up to 2 minutes: a cold cache compiles the interpreter first.
    wait_for_port "$1" 2400
}
# --- runs -------------------------------------------------------------------
measure_peers "$OUT/scripts.tsv"

# The median run per (peer, c); ratios against xinetd at the same c: the
# Ruby rows against xinetd-ruby, the others against xinetd-python3.
python3 - "$OUT/scripts.tsv" <<'PY' | tee "$OUT/scripts.md"
import csv, sys
from collections import defaultdict

rows = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    rows[(r["peer"], r["c"])].append(r)
pick = {k: sorted(v, key=lambda r: float(r["conn_per_s"] or 0))[(len(v) - 1) // 2] for k, v in rows.items()}
print("| peer | c | conn/s (median) | range | × xinetd (python3; Ruby rows: ruby) | p50 ms | p99 ms | errors | server CPU µs/conn |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
for (peer, c), r in pick.items():
    base = pick.get(("xinetd-ruby" if "ruby" in peer else "xinetd-python3", c))
    ratio = "n/a"
    if base and float(base["conn_per_s"] or 0) > 0:
        ratio = "%.2f" % (float(r["conn_per_s"]) / float(base["conn_per_s"]))
    runs = [float(x["conn_per_s"] or 0) for x in rows[(peer, c)]]
    span = f"{min(runs):.0f}-{max(runs):.0f}"
    print(f"| {peer} | {c} | {float(r['conn_per_s']):.0f} | {span} | {ratio} | {r['p50_ms']} | {r['p99_ms']} "
          f"| {r['errors']} | {r['cpu_us_per_conn']} |")

# The same ratios per run, from the rows of that run only.
pairs = [("wasinetd-prebuilt", "xinetd-python3"), ("wasinetd-prebuilt", "wasinetd-prebuilt-unmerged"),
         ("wasinetd-prebuilt-js", "wasinetd-js"), ("wasinetd-ruby", "xinetd-ruby")]
by_run = {(r["peer"], r["c"], r["run"]): r for v in rows.values() for r in v}
runs = sorted({r["run"] for v in rows.values() for r in v}, key=int)
print()
print("| per run, c=" + "/".join(sorted({c for _, c in pick}, key=int)) + " | " + " | ".join(f"run {n}" for n in runs) + " |")
print("|---|" + "--:|" * len(runs))
for a, b in pairs:
    for what, key, inverse in (("conn/s", "conn_per_s", False), ("CPU/conn", "cpu_us_per_conn", True)):
        cells = []
        for n in runs:
            ra = next((by_run.get((a, c, n)) for _, c in pick if (a, c, n) in by_run), None)
            rb = next((by_run.get((b, c, n)) for _, c in pick if (b, c, n) in by_run), None)
            try:
                x, y = float(ra[key]), float(rb[key])
                cells.append("%.2f" % ((y / x) if inverse else (x / y)))
            except (TypeError, ValueError, ZeroDivisionError):
                cells.append("n/a")
        if any(c != "n/a" for c in cells):
            label = f"{b} {what} ÷ {a}'s" if inverse else f"{a} {what} ÷ {b}"
            print(f"| {label} | " + " | ".join(cells) + " |")
PY
