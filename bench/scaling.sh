#!/usr/bin/env bash
# Scaling curves of the PBX, as tables and SVG plots:
#   - REGISTER rate, idle memory and start-up time against extensions provisioned
#     (20,000, 100,000, 1,000,000 in one tenant);
#   - the same against tenants (1, 100, 10,000) holding the same 100,000 extensions;
#   - the call rate against the number of provider policies in the chain (0, 2, 5).
#
#   bench/scaling.sh [--quick] [--out FILE] [--plots DIR] [--server-cpus LIST]
#                    [--load-cpus LIST] [--no-pin] [--keep]
#
#   --quick            smoke run: small populations, short ladders
#   --out FILE         the markdown section (default: scaling.md in the work directory)
#   --plots DIR        where the SVG plots go (default: bench/plots in the repository)
#   --server-cpus LIST taskset CPU list for the PBX (default 1)
#   --load-cpus LIST   taskset CPU list for sipp (default 0)
#   --no-pin           run everything unpinned
#   --keep             keep the data directories
#
# Needs: cargo, sipp, python3, taskset, ss; ../shared/bench next to the repository
# (or BENCH_SHARED=DIR). Binds 127.0.0.1 only (PBX :5060, answering sipp :5999);
# everything it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${BENCH_SHARED:-$(cd "$REPO/.." && pwd)/shared/bench}
STATS="$HERE/stats.py"
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

QUICK=0
OUT=
PLOTS="$HERE/plots"
SERVER_CPUS=1
LOAD_CPUS=0
PIN=1
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --out) OUT=${2:?--out needs a file}; shift ;;
        --plots) PLOTS=${2:?--plots needs a directory}; shift ;;
        --server-cpus) SERVER_CPUS=${2:?--server-cpus needs a CPU list}; shift ;;
        --load-cpus) LOAD_CPUS=${2:?--load-cpus needs a CPU list}; shift ;;
        --no-pin) PIN=0 ;;
        --keep) KEEP=1 ;;
        -h | --help)
            sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "scaling.sh: unknown argument '$1' (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

if [[ $QUICK == 1 ]]; then
    EXT_AXIS=(2000 10000)
    TENANT_AXIS=(1 10 100)
    TENANT_TOTAL=2000
    POLICY_AXIS=(0 2)
    REG_RATES=(1000 2000)
    CALL_RATES=(50 100)
    SAMPLE=2000
    STEP_S=3
else
    EXT_AXIS=(20000 100000 1000000)
    TENANT_AXIS=(1 100 10000)
    TENANT_TOTAL=100000
    POLICY_AXIS=(0 2 5)
    REG_RATES=(2000 4000 6000 8000 10000 12000 14000 16000 18000 20000)
    CALL_RATES=(200 400 600 800 1000 1200 1500 2000)
    SAMPLE=20000
    STEP_S=10
fi
FILL_RATE=2000
PBX_ADDR=127.0.0.1:5060
UAS_PORT=5999
SIPP_LIMIT=6000

need cargo "install Rust"
need sipp "apt-get install -y sip-tester"
need python3 "apt-get install -y python3"
need ss "apt-get install -y iproute2"
for f in sipp/register.xml sipp/call.xml sipp/uas.xml; do
    [[ -f $SHARED/$f ]] || die "$SHARED/$f not found (set BENCH_SHARED to the shared bench folder)"
done
for port in 5060 $UAS_PORT 6001 7000 7100; do
    if ss -Hlun "sport = :$port" | grep -q .; then
        die "UDP port $port on this host is in use (an earlier run or another server?)"
    fi
done
WORK=$(mktemp -d /tmp/pbx-scaling.XXXXXX)
mkdir -p "$WORK/sipp" "$WORK/bin" "$PLOTS"
OUT=${OUT:-$WORK/scaling.md}
log "work directory (logs): $WORK"

pin_setup "$PIN" "$SERVER_CPUS" "$LOAD_CPUS" "$WORK/bin"

PIDS=()
PBX_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_started
    [[ $KEEP == 1 ]] || rm -rf "$WORK"/data-*
    [[ $rc == 0 ]] || log "stopped with an error; logs are in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alive_pbx() { kill -0 "$PBX_PID" 2>/dev/null || die "the PBX exited; see $WORK/pbx-*.log"; }
check_alive() { alive_pbx; } # every ladder here is the PBX's

# ---- build --------------------------------------------------------------------------
cd "$REPO"
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
log "building: cargo build --release -p pbx --bin pbx --example bulk_provision"
cargo build --release -p pbx --bin pbx --example bulk_provision >"$WORK/build.log" 2>&1 ||
    die "cargo build failed; see $WORK/build.log"
TARGET=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PBX_BIN=$TARGET/release/pbx
PROVISION_BIN=$TARGET/release/examples/bulk_provision
POLICY_WASM=$(find "$TARGET/release/build" -name default_policy.wasm -path '*wasm32-wasip2/release*' | head -1)
[[ -x $PBX_BIN && -x $PROVISION_BIN ]] || die "the build left no binaries in $TARGET/release"
[[ -f $POLICY_WASM ]] || die "no default_policy.wasm under $TARGET/release/build"

cat >"$WORK/pbx.toml" <<'TOML'
[guard]
trusted = ["127.0.0.1"]

[media]
port_min = 10000
port_max = 32767
TOML

# users.csv for sipp: SAMPLE users spread evenly over TENANTS tenants of
# EXTENSIONS extensions, each calling the mirror user of its own tenant.
users_csv() {
    python3 - "$1" "$2" "$SAMPLE" >"$3" <<'PY'
import sys
tenants, extensions, sample = map(int, sys.argv[1:])
per = extensions // tenants
take = max(1, min(per, sample // tenants or 1))
print("SEQUENTIAL")
rows = 0
for t in range(tenants):
    step = max(1, per // take)
    for i in range(take):
        n = 1000 + i * step
        callee = 1000 + (take - 1 - i) * step
        print(f"{n};[authentication username={n} password=pw{n}];s{t}.example;{callee}")
        rows += 1
        if rows >= sample:
            sys.exit(0)
PY
}

# start_pbx LABEL DATA: starts the PBX pinned; sets PBX_PID and START_MS (spawn to
# the first answered OPTIONS), then IDLE_KIB two seconds later.
start_pbx() {
    local t0 t1
    t0=$(date +%s%N)
    "${SERVER_PIN[@]}" "$PBX_BIN" --data-dir "$2" serve --config "$WORK/pbx.toml" \
        --sip-udp "$PBX_ADDR" >"$WORK/pbx-$1.log" 2>&1 &
    PBX_PID=$!
    PIDS+=("$PBX_PID")
    wait_sip "$PBX_ADDR"
    t1=$(date +%s%N)
    START_MS=$(((t1 - t0) / 1000000))
    alive_pbx
    sleep 2
    IDLE_KIB=$(rss_kib "$PBX_PID")
}

stop_pbx() {
    kill "$PBX_PID" 2>/dev/null || true
    wait_gone "$PBX_PID"
    kill -9 "$PBX_PID" 2>/dev/null || true
    forget "$PBX_PID"
}

# provision LABEL TENANTS EXTENSIONS: a fresh data directory; sets DATA, PROV_S.
provision() {
    DATA=$WORK/data-$1
    rm -rf "$DATA"
    local line
    line=$("$PROVISION_BIN" "$DATA" "$2" "$3") || die "provisioning $1 failed"
    PROV_S=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<<"$line")
    log "  provisioned: $line"
}

: >"$WORK/ladder.md"
pbx() { "$PBX_BIN" --data-dir "$DATA" "$@"; }

# register_point LABEL TENANTS EXTENSIONS: a fresh population, the PBX started
# on it and its REGISTER ladder; sets ROW ("provisioned start-up idle best tol").
register_point() {
    provision "$1" "$2" "$3"
    users_csv "$2" "$3" "$WORK/users-$1.csv"
    SIPP_INF=$WORK/users-$1.csv
    start_pbx "$1" "$DATA"
    ladder "PBX-$1" register "$SHARED/sipp/register.xml" "$PBX_ADDR" "${REG_RATES[@]}"
    ROW="$PROV_S $START_MS $IDLE_KIB $BEST_ACH $TOL_ACH"
    log "  start-up ${START_MS} ms, idle $(mib "$IDLE_KIB") MiB, REGISTER $BEST_ACH/s"
    stop_pbx
}

# ---- 1. extensions ------------------------------------------------------------------
EXT_ROWS=()
for n in "${EXT_AXIS[@]}"; do
    log "extensions: $n in one tenant"
    register_point "ext-$n" 1 "$n"
    EXT_ROWS+=("$n $ROW")
done

# ---- 2. tenants ---------------------------------------------------------------------
TENANT_ROWS=()
for t in "${TENANT_AXIS[@]}"; do
    log "tenants: $t sharing $TENANT_TOTAL extensions"
    register_point "tenants-$t" "$t" "$TENANT_TOTAL"
    TENANT_ROWS+=("$t $ROW")
done

# ---- 3. policies in the chain -------------------------------------------------------
log "starting the answering sipp on 127.0.0.1:$UAS_PORT"
sipp -sf "$SHARED/sipp/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -mp 7000 -nostdin \
    -trace_stat -stf "$WORK/sipp/uas.csv" -fd 5 >"$WORK/sipp/uas.log" 2>&1 &
PIDS+=("$!")
POLICY_ROWS=()
for p in "${POLICY_AXIS[@]}"; do
    log "policies: the shipped default-policy and $p more in the chain"
    provision "pol-$p" 1 "$SAMPLE"
    {
        pbx tenant limits s0 --max-concurrent 100000 --max-concurrent-extension 100 \
            --max-calls-per-second 100000
        pbx policy config set default-policy max-concurrent-calls 100000 --tenant s0
        pbx policy config set default-policy max-calls-per-minute 100000 --tenant s0
        for i in $(seq 1 "$p"); do
            pbx policy install "chain-$i" "$POLICY_WASM"
            pbx policy config set "chain-$i" max-concurrent-calls 100000
            pbx policy config set "chain-$i" max-calls-per-minute 100000
        done
    } >>"$WORK/provision.log" 2>&1 || die "policy set-up failed; see $WORK/provision.log"
    users_csv 1 "$SAMPLE" "$WORK/users-pol.csv"
    SIPP_INF=$WORK/users-pol.csv
    start_pbx "pol-$p" "$DATA"
    run_sipp "PBX-fill-$p" "$SHARED/sipp/register.xml" "$PBX_ADDR" "$FILL_RATE" "$SAMPLE"
    ladder "PBX-policies-$p" call "$SHARED/sipp/call.xml" "$PBX_ADDR" "${CALL_RATES[@]}"
    POLICY_ROWS+=("$p $BEST_ACH $TOL_ACH")
    log "  calls $BEST_ACH/s with no failure"
    stop_pbx
done

# ---- 4. tables and plots ------------------------------------------------------------
series() { # series COLUMN ROWS...: "x:y,..." from column 1 and COLUMN
    local col=$1 row out=
    shift
    for row in "$@"; do
        out+=$(awk -v c="$col" '{printf "%s:%s,", $1, $c}' <<<"$row")
    done
    printf '%s' "${out%,}"
}
mib_series() {
    local row out=
    for row in "$@"; do
        out+=$(awk '{ if ($4 ~ /^[0-9]+$/) printf "%s:%.1f,", $1, $4 / 1024; else printf "%s:n/a,", $1 }' <<<"$row")
    done
    printf '%s' "${out%,}"
}
python3 "$HERE/plot.py" "$PLOTS/register-by-extensions.svg" "REGISTER rate against extensions (one tenant)" \
    "extensions provisioned" "REGISTER/s, no failure" --logx "PBX=$(series 5 "${EXT_ROWS[@]}")"
python3 "$HERE/plot.py" "$PLOTS/memory-by-extensions.svg" "Idle memory against extensions (one tenant)" \
    "extensions provisioned" "MiB" --logx "idle VmRSS (MiB)=$(mib_series "${EXT_ROWS[@]}")"
python3 "$HERE/plot.py" "$PLOTS/startup-by-extensions.svg" "Start-up against extensions (one tenant)" \
    "extensions provisioned" "ms to the first answered OPTIONS" --logx "start-up=$(series 3 "${EXT_ROWS[@]}")"
python3 "$HERE/plot.py" "$PLOTS/register-by-tenants.svg" "REGISTER rate against tenants ($TENANT_TOTAL extensions)" \
    "tenants" "REGISTER/s, no failure" --logx "PBX=$(series 5 "${TENANT_ROWS[@]}")"
python3 "$HERE/plot.py" "$PLOTS/memory-by-tenants.svg" "Idle memory against tenants ($TENANT_TOTAL extensions)" \
    "tenants" "MiB" --logx "idle VmRSS (MiB)=$(mib_series "${TENANT_ROWS[@]}")"
python3 "$HERE/plot.py" "$PLOTS/calls-by-policies.svg" "Call rate against policies in the chain" \
    "provider policies besides default-policy" "calls/s, no failure" "PBX=$(series 2 "${POLICY_ROWS[@]}")"

# population_table FIRST_HEADING ROWS...: one row per population measured.
population_table() {
    local row n prov start idle best tol
    echo "| $1 | provisioned in | start-up | idle VmRSS | REGISTER/s, no failure | REGISTER/s, ≤ 0.1% failed |"
    echo "|---|---|---|---|---|---|"
    shift
    for row in "$@"; do
        read -r n prov start idle best tol <<<"$row"
        echo "| $n | $prov s | $start ms | $(mib "$idle") MiB | $best | $tol |"
    done
}
rel_plots=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PLOTS" "$REPO")
{
    echo "## Scaling curves (issue 21)"
    echo
    echo "Measured $START_DATE on $(nproc) CPUs, $PLACEMENT; command:"
    echo "\`bench/scaling.sh$([[ $QUICK == 1 ]] && echo ' --quick')$([[ $PIN == 0 ]] && echo ' --no-pin')\`."
    [[ $QUICK == 1 ]] && echo "**Smoke run (--quick): small populations and short ladders; not figures to size hardware by.**"
    echo "Each REGISTER ladder registers $SAMPLE users spread evenly over the population"
    echo "(sipp register.xml of ../shared/bench, $STEP_S s per step); start-up is from"
    echo "spawning \`pbx serve\` to its first answered OPTIONS; idle memory is VmRSS two"
    echo "seconds later. Provisioning is \`host/pbx/examples/bulk_provision.rs\` (the store's"
    echo "\`add_tenant\` and \`import_extensions\`, as the CLI uses them)."
    echo
    population_table "extensions (1 tenant)" "${EXT_ROWS[@]}"
    echo
    population_table "tenants ($TENANT_TOTAL extensions)" "${TENANT_ROWS[@]}"
    echo
    echo "| provider policies besides default-policy | calls/s, no failure | calls/s, ≤ 0.1% failed |"
    echo "|---|---|---|"
    for row in "${POLICY_ROWS[@]}"; do
        read -r n best tol <<<"$row"
        echo "| $n | $best | $tol |"
    done
    echo
    for plot in register-by-extensions memory-by-extensions startup-by-extensions register-by-tenants \
        memory-by-tenants calls-by-policies; do
        echo "![$plot]($rel_plots/$plot.svg)"
    done
    echo
    echo "Every ladder step:"
    echo
    echo "| system | load | asked | attempts | ok | failed | achieved | held | ≤ 0.1% |"
    echo "|---|---|---|---|---|---|---|---|---|"
    cat "$WORK/ladder.md"
} >"$OUT"
log "wrote $OUT and the plots in $PLOTS"
