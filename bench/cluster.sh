#!/usr/bin/env bash
# The PBX behind the Kamailio front of examples/cluster/, measured with sipp
# through the front: REGISTER and call ladders for one node on SQLite, one node
# on PostgreSQL, and two nodes on PostgreSQL (with Redis counting limits), and
# what each call and registration costs the database, Redis, the front and the
# nodes (transactions, commands, CPU time). Prints a Markdown report.
#
#   bench/cluster.sh [--quick] [--out FILE]
#
#   --quick     smoke run: two short steps per ladder
#   --out FILE  where the report goes (default: standard output)
#
# Needs: cargo, sipp, kamailio, redis-server, PostgreSQL's server programs
# (Debian: postgresql), python3; ../shared/bench next to the repository (or
# BENCH_SHARED=DIR). Binds 127.0.0.1 only: the front on :5060, nodes on :5070
# and :5080, PostgreSQL on :5433, Redis on :6390, the answering sipp on :5999.
# Everything it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail
[[ -z ${BENCH_TRACE:-} ]] || set -x

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${BENCH_SHARED:-$(cd "$REPO/.." && pwd)/shared/bench}
STATS="$HERE/stats.py"
EXAMPLES=$REPO/examples/cluster
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

QUICK=0
OUT=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --out)
            OUT=${2:?--out needs a file}
            shift
            ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "cluster.sh: unknown argument '$1' (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

if [[ $QUICK == 1 ]]; then
    REG_RATES=(500 1000)
    CALL_RATES=(50 100)
    STEP_S=3
    USERS_N=2000
else
    REG_RATES=(1000 2000 3000 4000 5000 6000 8000)
    CALL_RATES=(100 200 300 400 500 600 800)
    STEP_S=10
    USERS_N=10000
fi
CALLERS_N=$((USERS_N / 2))
FILL_RATE=1000
FRONT=127.0.0.1:5060
NODE_A=127.0.0.1:5070
NODE_B=127.0.0.1:5080
PG_PORT=5433
REDIS_PORT=6390
UAS_PORT=5999
SIPP_LIMIT=6000

need cargo "install Rust"
need sipp "apt-get install -y sip-tester"
need kamailio "apt-get install -y kamailio"
need redis-server "apt-get install -y redis-server"
need python3 "apt-get install -y python3"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $PG_BIN/initdb ]] || die "PostgreSQL is not installed (apt-get install -y postgresql)"
for f in sipp/register.xml sipp/call.xml sipp/uas.xml make_users.py; do
    [[ -f $SHARED/$f ]] || die "$SHARED/$f not found (set BENCH_SHARED to the shared bench folder)"
done
for port in 5060 5070 5080 $UAS_PORT 6001 7000 7100; do
    if ss -Hlun "sport = :$port" | grep -q .; then
        die "UDP port $port on this host is in use (an earlier run or another server?)"
    fi
done

WORK=$(mktemp -d /tmp/pbx-cluster-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/sipp"
log "work directory (logs): $WORK"

PIDS=()
NODE_PIDS=()
KAM_PIDFILE=$WORK/kamailio.pid
# PostgreSQL refuses to run as root: it runs as `postgres` then.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_front() {
    if [[ -s $KAM_PIDFILE ]]; then
        local kp
        kp=$(cat "$KAM_PIDFILE")
        kill "$kp" 2>/dev/null || true
        wait_gone "$kp"
        pkill -9 -P "$kp" 2>/dev/null || true
        kill -9 "$kp" 2>/dev/null || true
        rm -f "$KAM_PIDFILE"
    fi
}
stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do
        wait_gone "$pid"
        kill -9 "$pid" 2>/dev/null || true
        forget "$pid"
    done
    NODE_PIDS=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_front
    stop_nodes
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -d $WORK/pg ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
    fi
    [[ $rc == 0 ]] || log "stopped with an error; logs are in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_alive() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || die "a node exited; see $WORK/*.node-*.log"
    done
}

# CPU seconds (user + system) used so far by a process and its children
# that are still running.
cpu_s() {
    python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        pass
print(f"{total / tick:.2f}")
PY
}
pg_pids() { pgrep -f "postgres" -u postgres 2>/dev/null | tr '\n' ' ' || true; }
kam_pids() { pgrep -x kamailio | tr '\n' ' ' || true; }
redis_pids() { pgrep -f "redis-server 127.0.0.1:$REDIS_PORT" | tr '\n' ' ' || true; }
pg_sql() { as_pg "$PG_BIN/psql" -h "$WORK/pgsock" -p "$PG_PORT" -U postgres -At -c "$1" "${2:-postgres}"; }
# Transactions committed and rows written in the bench database.
pg_counts() {
    local row
    row=$(pg_sql "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = 'pbx'" 2>/dev/null || true)
    [[ -n $row ]] && echo "${row/|/ }" || echo "0 0"
}
redis_cmds() {
    redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^total_commands_processed/ {print $2+0}'
}

# ---- build, and the engines ---------------------------------------------------------
cd "$REPO"
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
log "building: cargo build --release -p pbx"
cargo build --release -p pbx >"$WORK/build.log" 2>&1 || die "cargo build failed; see $WORK/build.log"
PBX_BIN=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/pbx

log "starting PostgreSQL on 127.0.0.1:$PG_PORT (fsync and synchronous commit on, as shipped)"
mkdir -p "$WORK/pg" "$WORK/pgsock"
[[ $(id -u) != 0 ]] || chown postgres "$WORK/pg" "$WORK/pgsock"
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >"$WORK/initdb.log" 2>&1 ||
    die "initdb failed; see $WORK/initdb.log"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
    -o "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1 -c max_connections=200" start \
    >/dev/null || die "PostgreSQL did not start; see $WORK/pg/server.log"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/pbx"

log "starting Redis on 127.0.0.1:$REDIS_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

# The answering sipp. It is started after each registration pass: the front
# reaches a phone at the address its REGISTER came from (the Path's received
# parameter, as for a phone behind NAT), so the pass is sent from the
# answering sipp's own port.
UAS_PID=
start_uas() {
    sipp -sf "$SHARED/sipp/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -mp 7000 -nostdin \
        -trace_stat -stf "$WORK/sipp/uas.csv" -fd 5 >"$WORK/sipp/uas.log" 2>&1 &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
}
stop_uas() {
    [[ -n $UAS_PID ]] || return 0
    kill "$UAS_PID" 2>/dev/null || true
    wait "$UAS_PID" 2>/dev/null || true
    forget "$UAS_PID"
    UAS_PID=
}

# The shared call scenario acknowledges the 407 with a branch of its own; a
# stateful proxy matches that ACK to the INVITE by the INVITE's branch (RFC
# 3261 §17.1.1.3) and otherwise keeps retransmitting the 407 into the call.
# Through the front the scenario's first ACK reuses the INVITE's branch (sipp's
# [branch-3]: three messages back).
CALL_XML=$WORK/call-via-proxy.xml
python3 - "$SHARED/sipp/call.xml" >"$CALL_XML" <<'PY'
import sys
text = open(sys.argv[1]).read()
ack = "ACK sip:[field3]@[field2] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
assert ack in text, "the shared call scenario changed"
print(text.replace(ack, ack.replace("[branch]", "[branch-3]"), 1), end="")
PY
python3 "$SHARED/make_users.py" bench.example 1000 "$USERS_N" >"$WORK/users.csv"
python3 "$SHARED/make_users.py" bench.example 1000 "$CALLERS_N" >"$WORK/callers.csv"
{
    echo "extension,password"
    seq 1000 $((1000 + USERS_N - 1)) | awk '{print $1 ",pw" $1}'
} >"$WORK/extensions.csv"

# A node's configuration: the example's, with the bench's database, Redis and
# relay ports; on SQLite without [store] and [cluster] (a single node).
node_config() { # NAME STORE(sqlite|postgres) OUT
    python3 - "$EXAMPLES/$1.toml" "$2" "$PG_URL" "$REDIS_URL" >"$3" <<'PY'
import re, sys
path, store, pg, redis = sys.argv[1:]
text = open(path).read()
text = text.replace("postgres://pbx:change-me@127.0.0.1/pbx", pg)
text = text.replace("redis://127.0.0.1:6379", redis)
# The bench's load comes from sipp through the front; the API is not needed.
text = re.sub(r"\n\[api\]\n(?:[^\[]*\n)", "\n", text)
# All of it comes from one address, which the guard would judge as one very
# busy client: trust it, as an operator trusts a known load tester.
text = text.replace("[guard]\n", "[guard]\ntrusted = [\"127.0.0.1/32\"]\n", 1)
if store == "sqlite":
    text = re.sub(r"\n\[cluster\]\n(?:[^\[]*\n)", "\n", text)
    text = re.sub(r"\n\[store\]\n(?:[^\[]*\n?)", "\n", text)
print(text)
PY
}

# ---- one configuration: provision, start, register, ladders ------------------------
REPORT=$WORK/report.md
LADDERS=$WORK/ladder.md
: >"$LADDERS"
: >"$WORK/costs.md"
: >"$WORK/summary.md"

run_config() { # LABEL STORE NODES
    local label=$1 store=$2 nodes=$3 data pbx_args=() name
    log "== $label"
    if [[ $store == postgres ]]; then
        pg_sql "DROP DATABASE IF EXISTS pbx" >/dev/null
        pg_sql "CREATE DATABASE pbx" >/dev/null
        pbx_args=(--database "$PG_URL")
    fi
    data=$WORK/$label
    mkdir -p "$data/node-a" "$data/node-b"
    {
        "$PBX_BIN" --data-dir "$data/node-a" "${pbx_args[@]}" tenant add bench --domain bench.example
        "$PBX_BIN" --data-dir "$data/node-a" "${pbx_args[@]}" extension import bench "$WORK/extensions.csv"
        "$PBX_BIN" --data-dir "$data/node-a" "${pbx_args[@]}" tenant limits bench --max-concurrent 100000 \
            --max-concurrent-extension 100 --max-calls-per-second 100000
        "$PBX_BIN" --data-dir "$data/node-a" "${pbx_args[@]}" policy config set default-policy \
            max-concurrent-calls 100000 --tenant bench
        "$PBX_BIN" --data-dir "$data/node-a" "${pbx_args[@]}" policy config set default-policy \
            max-calls-per-minute 100000 --tenant bench
    } >"$WORK/$label.provision.log" 2>&1 || die "provisioning failed; see $WORK/$label.provision.log"
    cp "$data/node-a/secret.key" "$data/node-b/"
    local list="$WORK/$label.dispatcher.list"
    : >"$list"
    for name in node-a node-b; do
        [[ $name == node-b && $nodes == 1 ]] && break
        node_config "$name" "$store" "$WORK/$label.$name.toml"
        "$PBX_BIN" serve --config "$WORK/$label.$name.toml" --data-dir "$data/$name" \
            >"$WORK/$label.$name.log" 2>&1 &
        NODE_PIDS+=("$!")
        PIDS+=("$!")
        if [[ $name == node-a ]]; then
            wait_sip "$NODE_A"
            echo "1 sip:$NODE_A" >>"$list"
        else
            wait_sip "$NODE_B"
            echo "1 sip:$NODE_B" >>"$list"
        fi
    done
    sed -e "s/^debug=2/debug=1/" "$EXAMPLES/kamailio.cfg" >"$WORK/$label.kamailio.cfg"
    mkdir -p "$WORK/run"
    kamailio -f "$WORK/$label.kamailio.cfg" -P "$KAM_PIDFILE" -Y "$WORK/run" -w "$WORK" \
        -m 512 -M 32 -A "NODES=\"$list\"" >"$WORK/$label.kamailio.log" 2>&1 ||
        die "kamailio did not start; see $WORK/$label.kamailio.log"
    wait_sip "$FRONT"
    sleep 3 # the front's first OPTIONS probes mark the nodes up

    SIPP_INF=$WORK/users.csv
    log "registering all $USERS_N users at $FILL_RATE/s through the front"
    snapshot 0
    SIPP_PORT=$UAS_PORT run_sipp "$label-fill" "$SHARED/sipp/register.xml" "$FRONT" \
        "$FILL_RATE" "$USERS_N"
    local fill="$R_OK ok, $R_FAILED failed"
    start_uas
    sleep 1 # the write-behind batches land
    snapshot 1
    cost_row "$label" REGISTER "$R_OK"

    SIPP_INF=$WORK/callers.csv
    # One fixed-rate run for the costs, then the ladder.
    local probe_rate=${CALL_RATES[0]} probe_total=$((CALL_RATES[0] * STEP_S))
    snapshot 0
    run_sipp "$label-callcost" "$CALL_XML" "$FRONT" "$probe_rate" "$probe_total"
    sleep 2 # the last calls' records land
    snapshot 1
    cost_row "$label" call "$R_OK"

    ladder "$label" call "$CALL_XML" "$FRONT" "${CALL_RATES[@]}"
    local call_best=$BEST_ACH call_step=$BEST call_tol=$TOL_ACH
    SIPP_INF=$WORK/users.csv
    ladder "$label" register "$SHARED/sipp/register.xml" "$FRONT" "${REG_RATES[@]}"
    local reg_best=$BEST_ACH reg_step=$BEST reg_tol=$TOL_ACH
    printf '| %s | %s/s (step %s/s) | %s/s | %s/s (step %s/s) | %s/s | %s |\n' "$label" \
        "$reg_best" "$reg_step" "$reg_tol" "$call_best" "$call_step" "$call_tol" "$fill" \
        >>"$WORK/summary.md"
    stop_uas
    stop_front
    stop_nodes
}

# snapshot N: the counters cost_row compares, into X<N> W<N> R<N> CN<N> CF<N> CP<N>
# (PostgreSQL transactions and rows written, Redis commands, CPU seconds of
# the nodes, the front and PostgreSQL).
snapshot() {
    local n=$1 x w
    read -r x w < <(pg_counts)
    printf -v "X$n" '%s' "$x"
    printf -v "W$n" '%s' "$w"
    printf -v "R$n" '%s' "$(redis_cmds)"
    printf -v "CN$n" '%s' "$(cpu_s "${NODE_PIDS[@]}")"
    # shellcheck disable=SC2046 # one argument per pid
    printf -v "CF$n" '%s' "$(cpu_s $(kam_pids))"
    # shellcheck disable=SC2046
    printf -v "CP$n" '%s' "$(cpu_s $(pg_pids))"
}

# cost_row LABEL WHAT N: the deltas measured around the last run, per N done.
cost_row() {
    local label=$1 what=$2 n=$3
    python3 - "$label" "$what" "$n" "$X0" "$X1" "$W0" "$W1" "$R0" "$R1" \
        "$CN0" "$CN1" "$CF0" "$CF1" "$CP0" "$CP1" >>"$WORK/costs.md" <<'PY'
import sys
label, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3] or 0)
x0, x1, w0, w1, r0, r1 = (float(v or 0) for v in sys.argv[4:10])
cn0, cn1, cf0, cf1, cp0, cp1 = (float(v or 0) for v in sys.argv[10:16])
def per(a, b, scale=1.0, fmt="{:.2f}"):
    return fmt.format((b - a) * scale / n) if n > 0 else "n/a"
pg = label.startswith("pg")
print(f"| {label} | {what} | {n} | "
      f"{per(x0, x1) if pg else 'n/a'} | {per(w0, w1) if pg else 'n/a'} | "
      f"{per(r0, r1)} | {per(cn0, cn1, 1e3, '{:.3f}')} | {per(cf0, cf1, 1e3, '{:.3f}')} | "
      f"{per(cp0, cp1, 1e3, '{:.3f}') if pg else 'n/a'} |")
PY
}

run_config sqlite-1node sqlite 1
run_config pg-1node postgres 1
run_config pg-2nodes postgres 2

KAM_VERSION=$(kamailio -v 2>/dev/null | head -1 | sed 's/^version: kamailio //; s/ *$//')
PG_VERSION=$("$PG_BIN/postgres" --version)
{
    echo "Generated by \`bench/cluster.sh${QUICK:+$([[ $QUICK == 1 ]] && echo ' --quick')}\` on $START_DATE."
    echo "Machine: $(nproc) cores; sipp, Kamailio (front, 2 UDP workers), PostgreSQL"
    echo "($PG_VERSION, fsync on), Redis and the nodes all share them. $USERS_N users"
    echo "register; calls are between the first $CALLERS_N. Kamailio $KAM_VERSION."
    echo
    echo "| configuration | REGISTER, 0 failures | REGISTER, ≤ 0.1% | calls, 0 failures | calls, ≤ 0.1% | registration pass |"
    echo "| --- | --- | --- | --- | --- | --- |"
    cat "$WORK/summary.md"
    echo
    echo "What one REGISTER (the registration pass) and one call (a fixed run at ${CALL_RATES[0]}/s) cost:"
    echo
    echo "| configuration | what | done | PostgreSQL transactions | rows written | Redis commands | node CPU ms | front CPU ms | PostgreSQL CPU ms |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$WORK/costs.md"
    echo
    echo "Ladder steps:"
    echo
    echo "| configuration | kind | step | attempts | ok | failed | achieved | held | ≤ 0.1% |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$LADDERS"
} >"$REPORT"
if [[ -n $OUT ]]; then cp "$REPORT" "$OUT"; else cat "$REPORT"; fi
log "done; report in ${OUT:-$REPORT}"
