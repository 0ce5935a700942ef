#!/usr/bin/env bash
# Side-by-side benchmark of the PBX against Kamailio (SIP) and libsrtp (SRTP) on this
# machine, in one run; writes BENCHMARKS.md at the repository root.
#
#   bench/run.sh [--quick] [--soak-minutes N] [--out FILE] [--keep] [--no-pin]
#                [--server-cpus LIST] [--load-cpus LIST] [--skip-media] [--skip-scaling]
#
#   --quick            smoke run: tiny ladders, short benches, a 1-minute soak
#   --soak-minutes N   length of the steady-load memory soak (default 10)
#   --out FILE         where the report goes (default: BENCHMARKS.md in the repo)
#   --keep             keep the temporary data directory (logs are always kept)
#   --no-pin           run servers and sipp unpinned (default: pinned, see below)
#   --server-cpus LIST taskset CPU list of the PBX and Kamailio (default 1)
#   --load-cpus LIST   taskset CPU list of sipp (default 0)
#   --skip-media       leave out the media capacity ladders (bench/media.sh, plain RTP and SRTP)
#   --skip-scaling     leave out the scaling curves (bench/scaling.sh)
#
# Sections of an existing report that this run does not write (those of other
# bench scripts) are kept, after the ones it writes.
#
# Needs: cargo, sipp, kamailio, gcc with libsrtp2 headers (libsrtp2-dev), python3,
# timeout, ss; and ../shared/bench next to the repository (or BENCH_SHARED=DIR).
# Binds 127.0.0.1 only: PBX on :5060, Kamailio on :5070, the answering sipp on :5999.
# Everything it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${BENCH_SHARED:-$(cd "$REPO/.." && pwd)/shared/bench}
STATS="$HERE/stats.py"
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

QUICK=0
SOAK_MIN=10
OUT="$REPO/BENCHMARKS.md"
KEEP=0
PIN=1
SERVER_CPUS=1
LOAD_CPUS=0
MEDIA=1
SCALING=1
ARGS_GIVEN="$*"
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --soak-minutes)
            SOAK_MIN=${2:?--soak-minutes needs a number}
            shift
            ;;
        --out)
            OUT=${2:?--out needs a file}
            shift
            ;;
        --keep) KEEP=1 ;;
        --no-pin) PIN=0 ;;
        --server-cpus)
            SERVER_CPUS=${2:?--server-cpus needs a CPU list}
            shift
            ;;
        --load-cpus)
            LOAD_CPUS=${2:?--load-cpus needs a CPU list}
            shift
            ;;
        --skip-media) MEDIA=0 ;;
        --skip-scaling) SCALING=0 ;;
        -h | --help)
            sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "run.sh: unknown argument '$1' (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done
[[ $SOAK_MIN =~ ^[0-9]+$ && $SOAK_MIN -ge 1 ]] || {
    echo "run.sh: --soak-minutes must be a whole number >= 1" >&2
    exit 2
}

# The ladders: each step is STEP_S seconds' worth of attempts at that rate.
if [[ $QUICK == 1 ]]; then
    [[ $ARGS_GIVEN == *--soak-minutes* ]] || SOAK_MIN=1
    REG_RATES=(1000 2000)
    CALL_RATES=(50 100)
    STEP_S=3
    LATENCY_ARGS=(5000)
    CRITERION_ARGS=(--warm-up-time 1 --measurement-time 2)
else
    REG_RATES=(2000 4000 6000 8000 10000 12000 14000 16000 18000 20000)
    CALL_RATES=(200 400 600 800 1000 1200 1500 2000)
    STEP_S=10
    LATENCY_ARGS=()
    CRITERION_ARGS=()
fi
FILL_RATE=2000   # the 20,000-user registration pass before the call load
USERS_N=20000
CALLERS_N=10000
PBX_ADDR=127.0.0.1:5060
KAM_ADDR=127.0.0.1:5070
UAS_PORT=5999
SIPP_LIMIT=6000  # sipp's cap on calls in progress; above any ladder rate x call length

# ---- preflight: every tool, file and port, before anything starts -------------
need cargo "install Rust"
need sipp "apt-get install -y sip-tester"
need kamailio "apt-get install -y kamailio"
need gcc "apt-get install -y gcc"
need python3 "apt-get install -y python3"
need timeout "coreutils"
need ss "apt-get install -y iproute2"
[[ -f /usr/include/srtp2/srtp.h ]] || die "libsrtp2 headers missing (apt-get install -y libsrtp2-dev)"
for f in sipp/register.xml sipp/call.xml sipp/uas.xml kamailio/kamailio.cfg \
    make_users.py srtp/libsrtp_bench.c; do
    [[ -f $SHARED/$f ]] || die "$SHARED/$f not found (set BENCH_SHARED to the shared bench folder)"
done
for port in 5060 5070 $UAS_PORT 6001 7000 7100; do
    if ss -Hlun "sport = :$port" | grep -q .; then
        die "UDP port $port on this host is in use (an earlier run or another server?)"
    fi
done

WORK=$(mktemp -d /tmp/pbx-bench.XXXXXX)
DATA=$WORK/data
mkdir -p "$DATA" "$WORK/sipp"
log "work directory (logs): $WORK"
pin_setup "$PIN" "$SERVER_CPUS" "$LOAD_CPUS" "$WORK/bin"
log "placement: $PLACEMENT"

# ---- cleanup: stop everything we started, whatever happens ----------------------
PIDS=()
PBX_PID=
KAM_PIDFILE=$WORK/kamailio.pid
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_started "$KAM_PIDFILE"
    [[ $KEEP == 1 ]] || rm -rf "$DATA"
    [[ $rc == 0 ]] || log "stopped with an error; logs are in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alive_pbx() { kill -0 "$PBX_PID" 2>/dev/null || die "the PBX exited; see $WORK/pbx.log"; }
check_alive() { [[ $1 != PBX ]] || alive_pbx; }

# ---- 1. build ---------------------------------------------------------------------
cd "$REPO"
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "building: cargo build --release -p pbx"
cargo build --release -p pbx >"$WORK/build.log" 2>&1 || die "cargo build failed; see $WORK/build.log"
PBX_BIN=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/pbx
[[ -x $PBX_BIN ]] || die "no binary at $PBX_BIN"

# ---- 2. micro-benchmarks (before any SIP load, so they have the cores) ------------
BENCH_LATENCY="cargo bench -p pbx-plugin --features test-plugins --bench latency${LATENCY_ARGS[*]:+ -- ${LATENCY_ARGS[*]}}"
BENCH_SRTP="cargo bench -p pbx-media --bench srtp${CRITERION_ARGS[*]:+ -- ${CRITERION_ARGS[*]}}"
LIBSRTP_CMD="gcc -O2 ../shared/bench/srtp/libsrtp_bench.c -lsrtp2 -o libsrtp_bench && ./libsrtp_bench"
log "plugin latency: $BENCH_LATENCY"
LAT_STATUS=ok
cargo bench -p pbx-plugin --features test-plugins --bench latency -- "${LATENCY_ARGS[@]}" >"$WORK/latency.log" 2>&1 || {
    LAT_STATUS="exited with an error (figures are from the lines printed before it)"
    log "  the latency bench failed; see $WORK/latency.log"
}
read -r LAT1_P50 LAT1_P99 < <(python3 "$STATS" latency "$WORK/latency.log" "route + check_call")
read -r LAT2_P50 LAT2_P99 < <(python3 "$STATS" latency "$WORK/latency.log" "route + 2 × check_call")
log "  route+check_call p50 $LAT1_P50 µs p99 $LAT1_P99 µs"

log "SRTP and relay: $BENCH_SRTP"
SRTP_STATUS=ok
cargo bench -p pbx-media --bench srtp -- "${CRITERION_ARGS[@]}" >"$WORK/srtp.log" 2>&1 || {
    SRTP_STATUS="exited with an error"
    log "  the srtp bench failed; see $WORK/srtp.log"
}
SRTP_PBX=$(python3 "$STATS" criterion "$WORK/srtp.log" "srtp/protect+unprotect")
RELAY_PPS=$(python3 "$STATS" criterion "$WORK/srtp.log" "relay/plain_pps")
log "  pbx-media protect+unprotect $SRTP_PBX pkt/s, relay $RELAY_PPS pkt/s"

log "libsrtp: $LIBSRTP_CMD"
if gcc -O2 "$SHARED/srtp/libsrtp_bench.c" -lsrtp2 -o "$WORK/libsrtp_bench" >"$WORK/libsrtp.log" 2>&1; then
    "$WORK/libsrtp_bench" >>"$WORK/libsrtp.log" 2>&1 || log "  libsrtp bench failed; see $WORK/libsrtp.log"
else
    log "  libsrtp bench did not compile; see $WORK/libsrtp.log"
fi
read -r LIB_PROT LIB_UNPROT LIB_RT < <(python3 "$STATS" libsrtp "$WORK/libsrtp.log")
LIB_VERSION=$(grep -o '^libsrtp[^:]*' "$WORK/libsrtp.log" | head -1 || true)
# libsrtp's protect and unprotect timed alone, combined: 1 / (1/protect + 1/unprotect).
LIB_BOTH=$(awk -v p="$LIB_PROT" -v u="$LIB_UNPROT" \
    'BEGIN {if (p > 0 && u > 0) printf "%.0f", 1 / (1 / p + 1 / u); else print "n/a"}')
SRTP_RATIO=$(python3 "$STATS" ratio "$SRTP_PBX" "$LIB_BOTH")
log "  libsrtp protect+unprotect $LIB_BOTH pkt/s; PBX/libsrtp $SRTP_RATIO"

BENCH_MEMORY="cargo bench -p pbx-core --bench memory"
log "signalling memory (allocation count): $BENCH_MEMORY"
cargo bench -p pbx-core --bench memory >"$WORK/memory.out" 2>"$WORK/memory.log" ||
    log "  the memory bench failed; see $WORK/memory.log"
# Its table (stdout), as printed.
MEMORY_TABLE=$(grep -v '^$' "$WORK/memory.out" || true)
[[ -n $MEMORY_TABLE ]] || MEMORY_TABLE="(the memory bench printed no table; see its log)"

# ---- 3. provision and start both servers -----------------------------------------
log "provisioning tenant bench (bench.example) with $USERS_N extensions"
python3 "$SHARED/make_users.py" bench.example 1000 "$USERS_N" >"$WORK/users.csv"
# Callers for the call loads: the first 10,000 users, calling each other. (The
# PBX's usage tracking once refused calls from more than 10,000 extensions of a
# tenant; the caller set stays the same so that figures compare across runs.)
python3 "$SHARED/make_users.py" bench.example 1000 "$CALLERS_N" >"$WORK/callers.csv"
SIPP_INF=$WORK/users.csv
{
    echo "extension,password"
    seq 1000 $((1000 + USERS_N - 1)) | awk '{print $1 ",pw" $1}'
} >"$WORK/extensions.csv"
pbx() { "$PBX_BIN" --data-dir "$DATA" "$@"; }
{
    pbx tenant add bench --domain bench.example
    pbx extension import bench "$WORK/extensions.csv"
    pbx tenant limits bench --max-concurrent 100000 --max-concurrent-extension 100 \
        --max-calls-per-second 100000
} >"$WORK/provision.log" 2>&1 || die "provisioning failed; see $WORK/provision.log"
# The shipped fraud policy's own limits (default 10 concurrent calls, 20 calls a
# minute per extension) are the provider's configuration of `default-policy`,
# lifted for this tenant through the CLI like any operator would.
{
    pbx policy config set default-policy max-concurrent-calls 100000 --tenant bench
    pbx policy config set default-policy max-calls-per-minute 100000 --tenant bench
} >>"$WORK/provision.log" 2>&1 || die "cannot lift the fraud policy's limits; see $WORK/provision.log"

# The load comes from one address, which the guard would otherwise ban as a scanner
# (many users from one source): trust it, as an operator trusts a known load tester.
# Media anchoring stays on; its port range is widened so that thousands of calls in
# progress do not run out of relay ports.
cat >"$WORK/pbx.toml" <<'TOML'
[guard]
trusted = ["127.0.0.1"]

[media]
port_min = 10000
port_max = 32767
TOML
log "starting pbx serve on $PBX_ADDR"
"${SERVER_PIN[@]}" "$PBX_BIN" --data-dir "$DATA" serve --config "$WORK/pbx.toml" --sip-udp "$PBX_ADDR" \
    >"$WORK/pbx.log" 2>&1 &
PBX_PID=$!
PIDS+=("$PBX_PID")
wait_sip "$PBX_ADDR"
alive_pbx

log "starting kamailio on $KAM_ADDR"
"${SERVER_PIN[@]}" kamailio -f "$SHARED/kamailio/kamailio.cfg" -P "$KAM_PIDFILE" -w "$WORK" -m 1024 -M 64 \
    >"$WORK/kamailio.log" 2>&1 || die "kamailio did not start; see $WORK/kamailio.log"
wait_sip "$KAM_ADDR"
KAM_VERSION=$(kamailio -v 2>/dev/null | head -1 | sed 's/^version: kamailio //; s/ *$//')

log "starting the answering sipp on 127.0.0.1:$UAS_PORT"
sipp -sf "$SHARED/sipp/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -mp 7000 -nostdin \
    -trace_stat -stf "$WORK/sipp/uas.csv" -fd 5 >"$WORK/sipp/uas.log" 2>&1 &
PIDS+=("$!")

RSS_IDLE=$(rss_settled "$PBX_PID")
log "PBX idle VmRSS $RSS_IDLE KiB"

# ---- 4. register every user on both servers (and memory per registration) ---------
: >"$WORK/ladder.md"
log "PBX: registering all $USERS_N users at $FILL_RATE/s"
run_sipp PBX-fill "$SHARED/sipp/register.xml" "$PBX_ADDR" "$FILL_RATE" "$USERS_N"
PBX_FILL="$R_OK ok, $R_FAILED failed"
PBX_FILL_END=$SECONDS
alive_pbx

log "Kamailio: registering all $USERS_N users at $FILL_RATE/s"
run_sipp KAM-fill "$SHARED/sipp/register.xml" "$KAM_ADDR" "$FILL_RATE" "$USERS_N"
KAM_FILL="$R_OK ok, $R_FAILED failed"
log "  $KAM_FILL"

# The registered state: once the fill's completed transactions have run out
# their timers (Timer J, 64*T1 = 32 s) and the allocator has settled.
TIMER_WAIT=$((PBX_FILL_END + 33 - SECONDS))
((TIMER_WAIT <= 0)) || sleep "$TIMER_WAIT"
RSS_REG=$(rss_settled "$PBX_PID")
RSS_PER_10K=$(awk -v a="$RSS_REG" -v b="$RSS_IDLE" -v n="$USERS_N" \
    'BEGIN {if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) printf "%.1f", (a - b) / 1024 / (n / 10000); else print "n/a"}')
log "  PBX: $PBX_FILL; VmRSS $RSS_REG KiB, $RSS_PER_10K MiB per 10,000 registrations"

# ---- 4b. memory per call in progress at a low rate: long calls ---------------------
# A call's own cost, apart from the completed transactions a high rate keeps for
# their timers: LOW_RATE calls/s held LOW_HOLD_S each (call.xml with a longer talk),
# VmRSS read once the calls in progress have levelled off.
if [[ $QUICK == 1 ]]; then LOW_RATE=20 LOW_HOLD_S=5; else LOW_RATE=100 LOW_HOLD_S=20; fi
sed "s/<pause milliseconds=\"1000\"\/>/<pause milliseconds=\"$((LOW_HOLD_S * 1000))\"\/>/" \
    "$SHARED/sipp/call.xml" >"$WORK/call-long.xml"
grep -q "milliseconds=\"$((LOW_HOLD_S * 1000))\"" "$WORK/call-long.xml" ||
    die "could not make the long-call scenario from $SHARED/sipp/call.xml"
SIPP_INF=$WORK/callers.csv
LOW_TOTAL=$((LOW_RATE * (LOW_HOLD_S + LOW_HOLD_S / 2 + 2)))
log "low rate: $LOW_RATE calls/s held ${LOW_HOLD_S} s, $LOW_TOTAL calls"
RSS_LOW_BEFORE=$RSS_REG
timeout -k 5 $((LOW_TOTAL / LOW_RATE + LOW_HOLD_S + 60)) sipp -sf "$WORK/call-long.xml" -inf "$SIPP_INF" \
    "$PBX_ADDR" -i 127.0.0.1 -p 6001 -mp 7100 -r "$LOW_RATE" -l "$SIPP_LIMIT" -m "$LOW_TOTAL" \
    -nostdin -trace_stat -stf "$WORK/sipp/low.csv" -fd 1 >"$WORK/sipp/low.log" 2>&1 &
LOW_PID=$!
PIDS+=("$LOW_PID")
# Calls in progress level off once the first calls end (LOW_HOLD_S in); from then
# on, VmRSS and sipp's count are read together every second, and the median of
# the per-call figures is kept (one reading alone moves with the allocator's
# purges).
sleep $((LOW_HOLD_S + 2))
LOW_SAMPLES=()
for ((i = 0; i < LOW_HOLD_S / 4; i++)); do
    LOW_SAMPLES+=("$(rss_kib "$PBX_PID") $(python3 "$STATS" current "$WORK/sipp/low.csv")")
    sleep 1
done
wait "$LOW_PID" || true
forget "$LOW_PID"
read -r LOW_OK LOW_FAILED _ _ < <(python3 "$STATS" sipp "$WORK/sipp/low.csv" "$LOW_TOTAL")
RSS_LOW_N=${#LOW_SAMPLES[@]}
read -r KIB_PER_CALL_LOW RSS_LOW LOW_CUR < <(printf '%s\n' "${LOW_SAMPLES[@]}" |
    awk -v b="$RSS_LOW_BEFORE" '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ && $2 > 0 && b ~ /^[0-9]+$/ {
        n++; k[n] = ($1 - b) / $2; line[n] = $1 " " $2 }
    END {
        if (n == 0) { print "n/a n/a n/a"; exit }
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (k[j] < k[i]) { t = k[i]; k[i] = k[j]; k[j] = t; t = line[i]; line[i] = line[j]; line[j] = t }
        m = int((n + 1) / 2); printf "%.1f %s\n", k[m], line[m] }')
log "  VmRSS $RSS_LOW KiB with $LOW_CUR calls in progress (median of $RSS_LOW_N readings): $KIB_PER_CALL_LOW KiB each ($LOW_OK ok, $LOW_FAILED failed)"
alive_pbx

# ---- 5. ladders: calls, then REGISTER, each server in turn ----------------------
SIPP_INF=$WORK/callers.csv
ladder PBX call "$SHARED/sipp/call.xml" "$PBX_ADDR" "${CALL_RATES[@]}"
PBX_CALL=$BEST
PBX_CALL_ACH=$BEST_ACH
PBX_CALL_TOL=$TOL
PBX_CALL_TOL_ACH=$TOL_ACH
RSS_CALLS=$BEST_RSS
CALLS_IN_PROGRESS=$BEST_CUR
# Per 1,000 calls: the growth over the registered state while the best step ran
# (lower steps ran before it, on memory the allocator may have kept: a lower bound).
RSS_PER_1K_CALLS=$(awk -v a="$RSS_CALLS" -v b="$RSS_REG" -v c="$CALLS_IN_PROGRESS" \
    'BEGIN {if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && c ~ /^[0-9]+$/ && c > 0) printf "%.1f", (a - b) / 1024 / (c / 1000); else print "n/a"}')
# Per completed transaction at a high rate: the growth during the best step less
# its calls in progress at the low-rate cost, over the transactions whose timers
# still run (each call completes 4 in the 32 s of timers D/J/K and the 64·T1 a
# call lingers: the 407's INVITE, the INVITE, the BYE on both legs).
KIB_PER_TX_HIGH=$(awk -v a="$RSS_CALLS" -v b="$RSS_REG" -v c="$CALLS_IN_PROGRESS" -v p="$KIB_PER_CALL_LOW" -v r="$PBX_CALL_ACH" \
    'BEGIN {if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && c ~ /^[0-9]+$/ && p ~ /^[0-9.]+$/ && r > 0) printf "%.2f", (a - b - c * p) / (r * 32 * 4); else print "n/a"}')
ladder Kamailio call "$SHARED/sipp/call.xml" "$KAM_ADDR" "${CALL_RATES[@]}"
KAM_CALL=$BEST
KAM_CALL_ACH=$BEST_ACH
CALL_RATIO=$(python3 "$STATS" ratio "$PBX_CALL_ACH" "$KAM_CALL_ACH")
KAM_CALL_TOL=$TOL
KAM_CALL_TOL_ACH=$TOL_ACH

SIPP_INF=$WORK/users.csv
ladder PBX register "$SHARED/sipp/register.xml" "$PBX_ADDR" "${REG_RATES[@]}"
PBX_REG=$BEST
PBX_REG_ACH=$BEST_ACH
PBX_REG_TOL=$TOL
PBX_REG_TOL_ACH=$TOL_ACH
ladder Kamailio register "$SHARED/sipp/register.xml" "$KAM_ADDR" "${REG_RATES[@]}"
KAM_REG=$BEST
KAM_REG_ACH=$BEST_ACH
REG_RATIO=$(python3 "$STATS" ratio "$PBX_REG_ACH" "$KAM_REG_ACH")
KAM_REG_TOL=$TOL
KAM_REG_TOL_ACH=$TOL_ACH
REG_TOL_RATIO=$(python3 "$STATS" ratio "$PBX_REG_TOL_ACH" "$KAM_REG_TOL_ACH")
CALL_TOL_RATIO=$(python3 "$STATS" ratio "$PBX_CALL_TOL_ACH" "$KAM_CALL_TOL_ACH")
RSS_AFTER_LADDERS=$(rss_kib "$PBX_PID")

# ---- 6. soak: steady call load at 1,000 calls/s (quick: 100) ------------------------
SOAK_RATE=1000
[[ $QUICK == 0 ]] || SOAK_RATE=100
SOAK_S=$((SOAK_MIN * 60))
# One pinned core does not carry 1,000 calls/s with media anchored (about 0.9 ms
# of CPU a call): the soak measures memory, so the PBX gets every CPU for it
# (sipp stays on its own).
SOAK_PLACEMENT="the PBX unpinned, sharing every CPU with sipp"
if [[ ${#SERVER_PIN[@]} -gt 0 ]]; then
    taskset -a -p -c "0-$(($(nproc) - 1))" "$PBX_PID" >/dev/null ||
        die "cannot widen the PBX's CPU affinity for the soak"
    SOAK_PLACEMENT="the PBX on every CPU (unpinned for the soak), sipp on CPU $LOAD_CPUS"
fi
log "soak: PBX calls at $SOAK_RATE/s for $SOAK_MIN min, VmRSS every 10 s ($SOAK_PLACEMENT)"
SOAK_STAT=$WORK/sipp/soak.csv
: >"$WORK/soak_rss.txt"
timeout -k 5 $((SOAK_S + 90)) sipp -sf "$SHARED/sipp/call.xml" -inf "$WORK/callers.csv" "$PBX_ADDR" \
    -i 127.0.0.1 -p 6001 -mp 7100 -r "$SOAK_RATE" -l "$SIPP_LIMIT" -m $((SOAK_RATE * SOAK_S)) \
    -nostdin -trace_stat -stf "$SOAK_STAT" -fd 1 >"$WORK/sipp/soak.log" 2>&1 &
SOAK_PID=$!
PIDS+=("$SOAK_PID")
SOAK_T0=$SECONDS
while kill -0 "$SOAK_PID" 2>/dev/null && ((SECONDS - SOAK_T0 < SOAK_S)); do
    sleep 10
    alive_pbx
    echo "$((SECONDS - SOAK_T0)) $(rss_kib "$PBX_PID") $(python3 "$STATS" current "$SOAK_STAT")" \
        >>"$WORK/soak_rss.txt"
done
wait "$SOAK_PID" || true
forget "$SOAK_PID"
read -r SOAK_OK SOAK_FAILED _ _ < <(python3 "$STATS" sipp "$SOAK_STAT" $((SOAK_RATE * SOAK_S)))
read -r SOAK_N SOAK_FIRST SOAK_LAST SOAK_MAX SOAK_SLOPE SOAK_LATE SOAK_AFTER1 < <(python3 "$STATS" soak "$WORK/soak_rss.txt")
log "  $SOAK_OK ok, $SOAK_FAILED failed; VmRSS first $SOAK_FIRST last $SOAK_LAST max $SOAK_MAX KiB, slope $SOAK_SLOPE KiB/min, second half $SOAK_LATE KiB/min"
alive_pbx
RSS_END=$(rss_kib "$PBX_PID")
mkdir -p "$HERE/plots"
SOAK_POINTS=$(awk '$2 ~ /^[0-9]+$/ {printf "%s%s:%.1f", sep, $1, $2 / 1024; sep = ","}' "$WORK/soak_rss.txt")
python3 "$HERE/plot.py" "$HERE/plots/soak.svg" "Soak: PBX memory at $SOAK_RATE calls/s" \
    "seconds into the soak" "VmRSS (MiB)" "PBX=$SOAK_POINTS"

# ---- 6b. the other benches need the ports: stop the servers, then run them ----------
stop_started "$KAM_PIDFILE"
SUB_ARGS=()
[[ $QUICK == 1 ]] && SUB_ARGS+=(--quick)
# The media ladders are always pinned (rtpengine and the PBX on the same cores),
# and include the SRTP-on-both-legs ladders (bench/srtp-load).
MEDIA_ARGS=("${SUB_ARGS[@]}" --server-cpus "$SERVER_CPUS" --load-cpus "$LOAD_CPUS" --srtp)
if [[ $PIN == 1 ]]; then
    SUB_ARGS+=(--server-cpus "$SERVER_CPUS" --load-cpus "$LOAD_CPUS")
else
    SUB_ARGS+=(--no-pin)
fi
SECTIONS=()
if [[ $MEDIA == 1 ]]; then
    log "media capacity: bench/media.sh ${MEDIA_ARGS[*]}"
    if "$HERE/media.sh" "${MEDIA_ARGS[@]}" --pbx-bin "$PBX_BIN" --out "$WORK/media.md" >"$WORK/media.log" 2>&1; then
        SECTIONS+=("$WORK/media.md")
    else
        log "  bench/media.sh failed; see $WORK/media.log"
    fi
fi
if [[ $SCALING == 1 ]]; then
    log "scaling curves: bench/scaling.sh ${SUB_ARGS[*]}"
    if "$HERE/scaling.sh" "${SUB_ARGS[@]}" --out "$WORK/scaling.md" >"$WORK/scaling.log" 2>&1; then
        SECTIONS+=("$WORK/scaling.md")
    else
        log "  bench/scaling.sh failed; see $WORK/scaling.log"
    fi
fi

# ---- 7. BENCHMARKS.md ---------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//')
MODE=full
[[ $QUICK == 1 ]] && MODE="quick (smoke run: tiny ladders, short benches; not representative)"
held_rate() { # ACHIEVED STEP TOP -> "7,358/s (step 8000/s)"
    local note=
    [[ $2 == "$3" ]] && note=", top of the ladder"
    echo "$1/s (step $2/s$note)"
}
verdict() { # value target op -> met/missed
    python3 -c 'import sys
v, t, op = sys.argv[1:4]
try: v, t = float(v), float(t)
except ValueError: print("n/a"); sys.exit()
ok = v >= t if op == "ge" else v < t
print("met" if ok else "missed")' "$1" "$2" "$3"
}
soak_flat() { # SLOPE (KiB/min) over MINUTES -> flat/growing
    python3 -c 'import sys
try: first, slope, mins = map(float, sys.argv[1:4])
except ValueError: print("n/a"); sys.exit()
# Flat: the fitted growth over the span stays under 5% of the first sample.
print("flat" if slope * mins < 0.05 * first else "growing")' "$SOAK_FIRST" "$1" "$2"
}
last_reg=${REG_RATES[-1]}
last_call=${CALL_RATES[-1]}
ksep() { [[ $1 =~ ^[0-9]+$ ]] && printf "%'d" "$1" 2>/dev/null || echo "$1"; }

[[ -f $OUT ]] && cp "$OUT" "$OUT.previous"
cat >"$OUT" <<EOF
# Benchmarks

Generated by \`bench/run.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\` on $START_DATE; rerun it to
regenerate this file. Mode: $MODE.

Machine: $(nproc) cores, $CPU, Linux $(uname -r); load average at start
$LOAD_START, at end $LOAD_END (other work on the machine shares the cores).
$(rustc --version), sipp $(sipp -v 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1),
Kamailio ${KAM_VERSION:-?}, ${LIB_VERSION:-libsrtp ?}. Placement: $PLACEMENT; both
servers run throughout, only one is under load at a time.

## Results

| measure | PBX | reference | PBX / reference | target |
| --- | --- | --- | --- | --- |
| authenticated REGISTER, highest rate achieved with 0 failures | $(held_rate "$PBX_REG_ACH" "$PBX_REG" "$last_reg") | Kamailio $(held_rate "$KAM_REG_ACH" "$KAM_REG" "$last_reg") | $REG_RATIO | ≥ 1.0: $(verdict "$REG_RATIO" 1.0 ge) |
| authenticated call (dial plan + policies), highest rate achieved with 0 failures | $(held_rate "$PBX_CALL_ACH" "$PBX_CALL" "$last_call") | Kamailio $(held_rate "$KAM_CALL_ACH" "$KAM_CALL" "$last_call") | $CALL_RATIO | ≥ 1.0: $(verdict "$CALL_RATIO" 1.0 ge) |
| authenticated REGISTER, highest rate achieved with ≤ 0.1% failures | $(held_rate "$PBX_REG_TOL_ACH" "$PBX_REG_TOL" "$last_reg") | Kamailio $(held_rate "$KAM_REG_TOL_ACH" "$KAM_REG_TOL" "$last_reg") | $REG_TOL_RATIO | (for context) |
| authenticated call, highest rate achieved with ≤ 0.1% failures | $(held_rate "$PBX_CALL_TOL_ACH" "$PBX_CALL_TOL" "$last_call") | Kamailio $(held_rate "$KAM_CALL_TOL_ACH" "$KAM_CALL_TOL" "$last_call") | $CALL_TOL_RATIO | (for context) |
| SRTP protect+unprotect, 160-byte payload, one core | $(ksep "$SRTP_PBX") pkt/s | libsrtp $(ksep "$LIB_BOTH") pkt/s (protect $(ksep "$LIB_PROT"), unprotect $(ksep "$LIB_UNPROT"), its loop's round trip $(ksep "$LIB_RT")) | $SRTP_RATIO | ≥ 1.0: $(verdict "$SRTP_RATIO" 1.0 ge) |
| plugin path: instantiate + route + check_call | p50 $LAT1_P50 µs, p99 $LAT1_P99 µs | | | p99 < 50 µs: $(verdict "$LAT1_P99" 50 lt) |
| plugin path: route + restrictions + fraud check_call | p50 $LAT2_P50 µs, p99 $LAT2_P99 µs | | | |
| RTP relay, plain, one call, single-threaded runtime | $(ksep "$RELAY_PPS") pkt/s | | | |
| resident memory, idle (20,000 extensions provisioned) | $(mib "$RSS_IDLE") MiB | | | |
| resident memory per 10,000 registrations | $RSS_PER_10K MiB ($(mib "$RSS_REG") MiB with 20,000 registered) | | | |
| resident memory per 1,000 calls in progress, highest held call step | $RSS_PER_1K_CALLS MiB ($(mib "$RSS_CALLS") MiB with $CALLS_IN_PROGRESS calls in progress) | | | |
| resident memory per call in progress, low rate ($LOW_RATE calls/s held $LOW_HOLD_S s) | $KIB_PER_CALL_LOW KiB ($LOW_CUR calls in progress; $LOW_OK ok, $LOW_FAILED failed) | | | ≤ 16 KiB: $(verdict "$KIB_PER_CALL_LOW" 16.0001 lt) |
| resident memory per completed transaction, high rate (estimate, see below) | $KIB_PER_TX_HIGH KiB | | | ≤ 2 KiB: $(verdict "$KIB_PER_TX_HIGH" 2.0001 lt) |
| soak: $SOAK_RATE calls/s for $SOAK_MIN min, VmRSS every 10 s | first $(mib "$SOAK_FIRST"), last $(mib "$SOAK_LAST"), max $(mib "$SOAK_MAX") MiB; slope $SOAK_SLOPE KiB/min over $SOAK_N samples, $SOAK_AFTER1 KiB/min from the first minute on, $SOAK_LATE KiB/min over the second half; $SOAK_OK ok, $SOAK_FAILED failed | | | whole soak: $(soak_flat "$SOAK_SLOPE" "$SOAK_MIN"); from the first minute: $(soak_flat "$SOAK_AFTER1" "$((SOAK_MIN - 1))"); second half: $(soak_flat "$SOAK_LATE" "$(awk -v m="$SOAK_MIN" 'BEGIN {print m / 2}')"); max < 300 MiB: $(verdict "$(awk -v k="$SOAK_MAX" 'BEGIN {print k / 1024}')" 300 lt) |

A step is held when every attempt succeeded (sipp counted no failure and all
$STEP_S seconds' worth of attempts completed); it is tolerable when at most 0.1% of
them failed. Each server climbs until a step is not tolerable. The target figure is
the highest rate sipp achieved (its own average over the step) in a held step, and
the ratio is of those figures: a saturated server (or sipp) still holds a step, only
slower than asked, so the asked rate alone would flatter it. The ≤ 0.1% rows show
the same over tolerable steps, for context: one stray failure (for Kamailio, a 180
that its other worker process forwarded after the 200, which sipp takes as
unexpected) otherwise ends a ladder early. For
calls the average includes the 1 s talk time of the last calls, so it reads about 10%
below the asked rate for both servers alike. Registration pass before the ladders (all 20,000
users at $FILL_RATE/s): PBX $PBX_FILL, Kamailio $KAM_FILL. The call ladders run
before the REGISTER ladders. PBX VmRSS after all ladders $(mib "$RSS_AFTER_LADDERS") MiB,
at the end $(mib "$RSS_END") MiB. The idle and registered figures are read once
VmRSS has settled (five readings a second apart within 256 KiB), the registered one
after the fill's completed transactions have run out their 32 s timers: an
allocator hands freed memory back a while after it is freed. Memory per 1,000 calls
is the growth over the registered state, sampled half way through the highest held
call step, divided by the calls sipp had in progress at that moment. The low-rate
figure is a call's own cost: the growth over the registered state while $LOW_RATE
calls/s are held $LOW_HOLD_S s each (so about $((LOW_RATE * LOW_HOLD_S)) are up and few
transactions are completing), divided by the calls in progress, read together every
second once the calls in progress have levelled off ($RSS_LOW_N readings; the median
is reported). The per-transaction figure is an
estimate from the highest held step: its growth, less its calls in progress at the
low-rate cost, over the 4 completed transactions per call whose timers (32 s) still
run; the exact, allocation-counted figures are in "Signalling memory per call and
per completed transaction" below.

The soak ran with $SOAK_PLACEMENT, right after the ladders (so it starts on the
heap they left), at a steady $SOAK_RATE calls/s of 1 s calls.

![Soak: VmRSS over time](bench/plots/soak.svg)

Bench programs: plugin latency $LAT_STATUS; pbx-media srtp $SRTP_STATUS.
The PBX ran with \`[guard] trusted = ["127.0.0.1"]\` (all load comes from one address,
which the guard would otherwise ban as a scanner) and a relay port range of
10000-32767; the shipped fraud policy's own limits (10 concurrent calls, 20 calls a
minute per extension; the provider's configuration of \`default-policy\`) were
lifted for the tenant with \`pbx policy config set\`.
All 20,000 users register; the call loads use users 1000..10999 calling each other
(the same caller set in every run, so figures compare).

### Ladder steps

| system | load | rate | attempts | ok | failed | achieved | held | ≤ 0.1% failed |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(cat "$WORK/ladder.md")

## Commands

Run from the repository root; the harness does all of this and stops what it started.

\`\`\`sh
cargo build --release -p pbx
$(provision_commands 10000 32767 "1000..20999")
pbx --data-dir D serve --config pbx.toml --sip-udp $PBX_ADDR   # shipped dial plan and policies
kamailio -f ../shared/bench/kamailio/kamailio.cfg -P kam.pid -w D -m 1024 -M 64   # $KAM_ADDR
python3 ../shared/bench/make_users.py bench.example 1000 20000 > users.csv     # REGISTER
python3 ../shared/bench/make_users.py bench.example 1000 10000 > callers.csv   # calls
sipp -sf ../shared/bench/sipp/uas.xml -i 127.0.0.1 -p $UAS_PORT -mp 7000 -nostdin
# each ladder step (RATE: REGISTER ${REG_RATES[*]}; calls ${CALL_RATES[*]}), for each server:
sipp -sf ../shared/bench/sipp/register.xml -inf users.csv TARGET -i 127.0.0.1 -p 6001 -mp 7100 \\
     -r RATE -l $SIPP_LIMIT -m \$((RATE * $STEP_S)) -nostdin -trace_stat -stf stat.csv -fd 1
sipp -sf ../shared/bench/sipp/call.xml     -inf callers.csv TARGET -i 127.0.0.1 -p 6001 -mp 7100 \\
     -r RATE -l $SIPP_LIMIT -m \$((RATE * $STEP_S)) -nostdin -trace_stat -stf stat.csv -fd 1
$BENCH_LATENCY
$BENCH_SRTP
$LIBSRTP_CMD
grep VmRSS /proc/\$(pidof pbx)/status
$BENCH_MEMORY
\`\`\`

## Signalling memory per call and per completed transaction (allocation count)

\`$BENCH_MEMORY\` drives one shard of the core, sans-IO on a virtual clock, through
complete calls, a relayed INFO per call and registrations, and reads dhat's live heap
at each point (bytes asked of the allocator and not yet freed: the same on every run;
the allocator's own overhead, about 16 bytes a block, is not in them):

\`\`\`text
$MEMORY_TABLE
\`\`\`
EOF
for section in "${SECTIONS[@]}"; do
    { echo; cat "$section"; } >>"$OUT"
done
# Sections of the previous report that this run did not write: kept, in order.
if [[ -f $OUT.previous ]]; then
    python3 - "$OUT.previous" "$OUT" <<'PY'
import sys
previous, out = sys.argv[1:3]
written = {l.strip() for l in open(out) if l.startswith("## ")}
sections, current = [], None
for line in open(previous):
    if line.startswith("## "):
        current = [line]
        sections.append(current)
    elif current is not None:
        current.append(line)
with open(out, "a") as f:
    for s in sections:
        if s[0].strip() not in written:
            # One blank line between sections, however many the previous had.
            while len(s) > 1 and not s[-1].strip():
                s.pop()
            f.write("\n")
            f.writelines(s)
PY
    rm -f "$OUT.previous"
fi
log "wrote $OUT"
log "REGISTER: PBX $PBX_REG_ACH/s, Kamailio $KAM_REG_ACH/s, ratio $REG_RATIO"
log "calls:    PBX $PBX_CALL_ACH/s, Kamailio $KAM_CALL_ACH/s, ratio $CALL_RATIO"
log "SRTP:     PBX $SRTP_PBX pkt/s, libsrtp $LIB_BOTH pkt/s, ratio $SRTP_RATIO"
log "plugin:   p50 $LAT1_P50 µs, p99 $LAT1_P99 µs (route + check_call)"
log "relay:    $RELAY_PPS pkt/s"
log "memory:   idle $(mib "$RSS_IDLE") MiB, $RSS_PER_10K MiB per 10k registrations, $RSS_PER_1K_CALLS MiB per 1k calls"
log "soak:     first $(mib "$SOAK_FIRST") last $(mib "$SOAK_LAST") max $(mib "$SOAK_MAX") MiB, slope $SOAK_SLOPE KiB/min, second half $SOAK_LATE KiB/min"
