# Shared by bench/run.sh and bench/scripts.sh: the work directory, the
# apt set-up, and the measuring loop. Source it after setting OUT, PORT,
# DURATION, CONCURRENCY, REPEAT, PEERS, THREADS; the script then defines
# start_server NAME (start one peer in the background, set SERVER_PID, end
# with wait_for_port) and sets LOADGEN before calling measure_peers.

mkdir -p "$OUT/logs"
WORK=$(mktemp -d /tmp/wasinetd-bench.XXXXXX)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "bench: $*" >&2; }

# Installs Debian packages that are missing, never letting one start its
# distro service (xinetd's would take the ports).
apt_install() { # package...
    [ $# -gt 0 ] || return 0
    say "installing $*"
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    rm -f /usr/sbin/policy-rc.d
}

# Writes $WORK/xinetd.conf: service NAME on 127.0.0.1:$PORT, xinetd
# fork+exec'ing SERVER (with SERVER_ARGS) per connection, with no limit
# that would switch it off under load.
xinetd_conf() { # name server [server_args]
    {
        printf 'defaults\n{\n\tlog_type\t= FILE %s\n\tlog_on_failure\t= HOST\n}\n' \
            "$WORK/xinetd-service.log"
        printf 'service %s\n{\n\ttype\t\t= UNLISTED\n\tsocket_type\t= stream\n' "$1"
        printf '\tprotocol\t= tcp\n\tport\t\t= %s\n\tbind\t\t= 127.0.0.1\n' "$PORT"
        printf '\twait\t\t= no\n\tuser\t\t= root\n\tserver\t\t= %s\n' "$2"
        [ -n "${3:-}" ] && printf '\tserver_args\t= %s\n' "$3"
        # xinetd's built-in cps = 50 10 would switch the service off.
        printf '\tcps\t\t= 1000000 1\n\tinstances\t= UNLIMITED\n\tper_source\t= UNLIMITED\n}\n'
    } > "$WORK/xinetd.conf"
}

# The wasmtime CLI of the daemon's own wasmtime version (from Cargo.lock),
# installed once into a cache directory; prints its path.
wasmtime_cli() {
    local v root
    v=$(awk '/^name = "wasmtime"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock")
    root=${XDG_CACHE_HOME:-$HOME/.cache}/wasinetd-bench/wasmtime-$v
    if [ ! -x "$root/bin/wasmtime" ]; then
        say "installing wasmtime-cli $v into $root (once; ~15 min on 2 cores)"
        cargo install -q wasmtime-cli --version "$v" --locked --root "$root" >&2
    fi
    echo "$root/bin/wasmtime"
}

# Waits until something accepts on $PORT, up to TRIES times 50 ms; else
# shows peer NAME's log and stops the run.
wait_for_port() { # name tries
    for _ in $(seq 1 "$2"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    say "$1 did not start; log:"; cat "$OUT/logs/$1.log" >&2; exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    sleep 1
}

# CPU of a process and its reaped children, in clock ticks.
cpu_ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat"; }

# One measurement with the second, independent loader: wrk, HTTP/1.1 with
# `Connection: close` (so one connection per request, as loadgen makes),
# printed in loadgen's words (ok= errors= conn_per_s= p50_ms= p99_ms=).
wrk_line() { # concurrency seconds
    local out
    out=$(wrk -t "$THREADS" -c "$1" -d "${2}s" --latency -H 'Connection: close' \
        "http://127.0.0.1:$PORT/" 2>&1) || true
    python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def pct(p):
    m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return f"{ms(*m.groups()):.3f}" if m else "nan"
ok = re.search(r"(\d+) requests in", out)
rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errs += int(non2xx.group(1)) if non2xx else 0
print(f"ok={ok.group(1) if ok else 0} errors={errs} conn_per_s={rate.group(1) if rate else 'nan'} "
      f"p50_ms={pct(50)} p99_ms={pct(99)}")
PY
}

# Every peer at every concurrency, REPEAT rounds, each on a fresh server
# after a one-second warm-up, measured by every loader in LOADERS in turn
# (`loadgen`, and `wrk` if asked: its rows are named PEER@wrk): one TSV
# row a measurement (and on stderr).
measure_peers() { # tsv
    local tsv=$1 hz peer c run line t0 t1 s0 s1 ok cores us loader name
    hz=$(getconf CLK_TCK)
    printf 'peer\tc\trun\tok\terrors\tconn_per_s\tp50_ms\tp99_ms\tcpu_cores\tcpu_us_per_conn\n' > "$tsv"
    local order
    for run in $(seq 1 "$REPEAT"); do
        # Every other round the other way round, so no peer always runs
        # first (a machine's drift within a round would favour one).
        order=$PEERS
        ((run % 2 == 0)) && order=$(tr ' ' '\n' <<<"$PEERS" | tac | tr '\n' ' ')
        for peer in $order; do
            for c in $CONCURRENCY; do
                start_server "$peer"
                "$LOADGEN" "127.0.0.1:$PORT" -c "$c" -d 1 --threads "$THREADS" >/dev/null
                for loader in ${LOADERS:-loadgen}; do
                    t0=$(cpu_ticks "$SERVER_PID"); s0=$(date +%s.%N)
                    case $loader in
                        loadgen) line=$("$LOADGEN" "127.0.0.1:$PORT" -c "$c" -d "$DURATION" --threads "$THREADS"); name=$peer ;;
                        wrk) line=$(wrk_line "$c" "$DURATION"); name=$peer@wrk ;;
                        *) say "unknown loader $loader"; exit 2 ;;
                    esac
                    t1=$(cpu_ticks "$SERVER_PID"); s1=$(date +%s.%N)
                    get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
                    ok=$(get ok)
                    cores=$(awk -v a="$t0" -v b="$t1" -v s="$s0" -v e="$s1" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz/(e-s)}')
                    us=$(awk -v a="$t0" -v b="$t1" -v ok="$ok" -v hz="$hz" 'BEGIN{ if (ok>0) printf "%.0f", (b-a)/hz*1e6/ok; else print "nan" }')
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$run" "$ok" "$(get errors)" \
                        "$(get conn_per_s)" "$(get p50_ms)" "$(get p99_ms)" "$cores" "$us" | tee -a "$tsv" >&2
                done
                stop_server
            done
        done
    done
}
