#!/usr/bin/env bash
# Media capacity: how many concurrent anchored G.711 calls (50 packets/s each way)
# the PBX relays with < 0.1% loss and low added jitter, side by side with the
# reference relay, rtpengine (userspace forwarding) driven by Kamailio's rtpengine
# module, on this machine in one run. Writes a Markdown section for BENCHMARKS.md.
#
#   bench/media.sh [--quick] [--out FILE] [--steps N,N,...] [--measure S]
#                  [--server-cpus LIST] [--load-cpus LIST] [--only pbx|rtpengine]
#                  [--retries N] [--pbx-bin PATH] [--srtp | --srtp-only]
#                  [--srtp-load-bin PATH] [--keep]
#
#   --quick              smoke run: two small steps, short holds; not representative
#   --out FILE           where the section goes (default: standard output)
#   --steps LIST         concurrent calls per step (default 100,250,500,750,1000,1500,2000,
#                        3000,4000,6000,8000,10000; quick: 50,100)
#   --measure S          seconds measured while all of a step's calls are up
#                        (default 30; quick: 8)
#   --server-cpus LIST   taskset CPU list of the server under test (default 1)
#   --load-cpus LIST     taskset CPU list of sipp and the capture (default 0)
#   --only WHICH         measure only the PBX or only Kamailio + rtpengine
#   --retries N          further runs of a step not held before the ladder stops (default 1)
#   --pbx-bin PATH       use this pbx binary instead of cargo build --release -p pbx
#   --srtp               after the plain RTP ladders, the same ladders with SDES-SRTP on
#                        both legs, driven by bench/srtp-load (its own table)
#   --srtp-only          only the SRTP ladders (no sipp)
#   --srtp-load-bin PATH use this srtp-load instead of cargo build --release -p srtp-load
#   --keep               keep the data directory and captures (logs are always kept)
#
# The SRTP ladders: srtp-load plays both ends of every call in one process, over
# SIP/TLS to the PBX (127.0.0.1:5061, a self-signed certificate made in the work
# directory; the PBX takes SDES keys only on secure signalling) and over UDP to
# Kamailio; callers offer RTP/SAVP PCMA with one fresh AES_CM_128_HMAC_SHA1_80 key
# per call, callees answer the relay's AES_CM_128_HMAC_SHA1_32 line with a fresh key
# of their own (rtpengine reuses the offerer's key when the answer picks the
# offerer's suite; see the section's text). Media sockets: one per leg, callers on
# 127.0.3.1, callees on 127.0.3.2 (any port), so the capture tells them apart by
# address; its own SIP on 127.0.0.1:6010 and :6011 (UDP) or an ephemeral TLS port.
#
# Needs: cargo, sipp (sip-tester, with rtp_stream), kamailio with its rtpengine
# module, rtpengine (Debian: rtpengine-daemon), tcpdump, taskset, python3, ss,
# openssl (--srtp);
# ../shared/bench next to the repository (or BENCH_SHARED=DIR). Runs as root (the
# loopback capture). Binds loopback only: PBX on 127.0.0.1:5060 (and TLS :5061 with
# --srtp), Kamailio on :5070, rtpengine's ng socket on :2223, the answering sipp on
# :5999 (media :7000), the calling sipp on :6001 (media :7100), srtp-load as above;
# relay ports 10000-39999 (PBX) and 40000-59999 (rtpengine). Everything it starts
# is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail
[[ -z ${BENCH_TRACE:-} ]] || set -x

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${BENCH_SHARED:-$(cd "$REPO/.." && pwd)/shared/bench}
STATS="$HERE/stats.py"
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

QUICK=0
OUT=
STEPS=
MEASURE_S=
SERVER_CPUS=1
LOAD_CPUS=0
ONLY=
PBX_BIN=
RETRIES=1
KEEP=0
PLAIN=1
SRTP=0
SRTP_LOAD=
ARGS_GIVEN="$*"
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --out)
            OUT=${2:?--out needs a file}
            shift
            ;;
        --steps)
            STEPS=${2:?--steps needs a list, e.g. 100,250,500}
            shift
            ;;
        --measure)
            MEASURE_S=${2:?--measure needs seconds}
            shift
            ;;
        --server-cpus)
            SERVER_CPUS=${2:?--server-cpus needs a CPU list}
            shift
            ;;
        --load-cpus)
            LOAD_CPUS=${2:?--load-cpus needs a CPU list}
            shift
            ;;
        --only)
            ONLY=${2:?--only needs pbx or rtpengine}
            shift
            ;;
        --pbx-bin)
            PBX_BIN=${2:?--pbx-bin needs a path}
            shift
            ;;
        --retries)
            RETRIES=${2:?--retries needs a number}
            shift
            ;;
        --srtp) SRTP=1 ;;
        --srtp-only)
            SRTP=1
            PLAIN=0
            ;;
        --srtp-load-bin)
            SRTP_LOAD=${2:?--srtp-load-bin needs a path}
            shift
            ;;
        --keep) KEEP=1 ;;
        -h | --help)
            sed -n '2,47p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "media.sh: unknown argument '$1' (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done
if [[ $QUICK == 1 ]]; then
    STEPS=${STEPS:-50,100}
    MEASURE_S=${MEASURE_S:-8}
else
    STEPS=${STEPS:-100,250,500,750,1000,1500,2000,3000,4000,6000,8000,10000}
    MEASURE_S=${MEASURE_S:-30}
fi
IFS=, read -r -a STEP_LIST <<<"$STEPS"
for n in "${STEP_LIST[@]}"; do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 10000 ]] ||
        die "--steps: '$n' is not a whole number of calls from 1 to 10000"
done
[[ $MEASURE_S =~ ^[0-9]+$ && $MEASURE_S -ge 2 ]] || die "--measure must be a whole number >= 2"
[[ $RETRIES =~ ^[0-9]+$ ]] || die "--retries must be a whole number"
[[ -z $ONLY || $ONLY == pbx || $ONLY == rtpengine ]] || die "--only takes pbx or rtpengine"

MAX_STEP=$(printf '%s\n' "${STEP_LIST[@]}" | sort -n | tail -1)
# Each call is one caller and one callee of its own: 2 x the largest step users,
# all registered (Kamailio's table, like the shared one, holds 1000..20999).
USERS_N=$((2 * MAX_STEP))
RAMP_S=10         # the calls of a step are placed over about this many seconds ...
MIN_CPS=20        # ... at no less than this rate
SETTLE_S=3        # after the last call is up, before measuring
TRIM_S=2          # capture edges left out of the loss and jitter figures
LOSS_MAX=0.1      # %, a step is held below this ...
JITTER_MAX=10     # ... and the p99 of the jitter (ms) the relay added to its streams at most this
PBX_ADDR=127.0.0.1:5060
KAM_ADDR=127.0.0.1:5070
NG_ADDR=127.0.0.1:2223
UAS_PORT=5999
UAC_PORT=6001
UAS_MP=7000
UAC_MP=7100
PBX_PORTS=(10000 39999)
RTPENGINE_PORTS=(40000 59999)
PBX_TLS_ADDR=127.0.0.1:5061
GEN_SIP_PORT=6010 # srtp-load over UDP: callees on it, callers on the next one
GEN_UAC_IP=127.0.3.1
GEN_UAS_IP=127.0.3.2
# Callers offer AES_CM_128_HMAC_SHA1_80; callees take this line of the relay's offer.
CALLEE_SUITE=AES_CM_128_HMAC_SHA1_32
SIPP_INF=
SIPP_LIMIT=20000

# ---- preflight: every tool, file and port, before anything starts -------------
[[ $PLAIN == 0 ]] || need sipp "apt-get install -y sip-tester"
[[ $SRTP == 0 ]] || need openssl "apt-get install -y openssl"
need kamailio "apt-get install -y kamailio"
need rtpengine "apt-get install -y rtpengine-daemon"
need tcpdump "apt-get install -y tcpdump"
need taskset "util-linux"
need python3 "apt-get install -y python3"
need timeout "coreutils"
need ss "apt-get install -y iproute2"
[[ -n $PBX_BIN ]] || need cargo "install Rust"
[[ $(id -u) == 0 ]] || die "run as root: the loss and jitter figures come from a loopback capture"
[[ $PLAIN == 0 || $(sipp -v 2>&1 || true) == *RTPSTREAM* ]] ||
    die "this sipp has no rtp_stream support (Debian's sip-tester has)"
KAM_MODULES=/usr/lib/x86_64-linux-gnu/kamailio/modules
[[ -f $KAM_MODULES/rtpengine.so ]] || die "Kamailio's rtpengine module is missing ($KAM_MODULES/rtpengine.so)"
G711_PCAP=/usr/share/sip-tester/g711a.pcap
[[ -f $G711_PCAP ]] || die "$G711_PCAP not found (apt-get install -y sip-tester)"
for f in sipp/register.xml make_users.py; do
    [[ -f $SHARED/$f ]] || die "$SHARED/$f not found (set BENCH_SHARED to the shared bench folder)"
done
UDP_PORTS=(5060 5070 2223)
[[ $PLAIN == 0 ]] || UDP_PORTS+=("$UAS_PORT" "$UAC_PORT" "$UAS_MP" "$UAC_MP")
[[ $SRTP == 0 ]] || UDP_PORTS+=("$GEN_SIP_PORT" $((GEN_SIP_PORT + 1)))
# (Only sockets on 127.0.0.1 or a wildcard address get in the way of ours.)
OURS="( src 127.0.0.1 or src 0.0.0.0 or src [::] )"
for port in "${UDP_PORTS[@]}"; do
    if ss -Hlun "sport = :$port and $OURS" | grep -q .; then
        die "UDP port $port on this host is in use (an earlier run or another server?)"
    fi
done
if [[ $SRTP == 1 ]] && ss -Hltn "sport = :${PBX_TLS_ADDR##*:} and $OURS" | grep -q .; then
    die "TCP port ${PBX_TLS_ADDR##*:} on this host is in use (an earlier run or another server?)"
fi
# srtp-load's media addresses are its own: anything else there would be captured too.
for ip in $GEN_UAC_IP $GEN_UAS_IP; do
    if [[ $SRTP == 1 ]] && ss -Hlun "src $ip" | grep -q .; then
        die "something else has UDP sockets on $ip (srtp-load's media address)"
    fi
done
for c in $SERVER_CPUS $LOAD_CPUS; do
    taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU list '$c' (see --server-cpus, --load-cpus)"
done
LOAD_NCPU=$(python3 -c 'import sys
n = 0
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    n += int(b or a) - int(a) + 1
print(n)' "$LOAD_CPUS") || die "--load-cpus: '$LOAD_CPUS' is not a CPU list like 0 or 0,2-3"
# Thousands of calls hold thousands of relay sockets.
ulimit -n 200000 2>/dev/null || ulimit -n 65536 2>/dev/null || true

WORK=$(mktemp -d /tmp/pbx-media-bench.XXXXXX)
DATA=$WORK/data
mkdir -p "$DATA" "$WORK/sipp" "$WORK/capture"
log "work directory (logs): $WORK"

# ---- cleanup: stop everything we started, whatever happens ----------------------
PIDS=()
PBX_PID=
RTPE_PID=
UAS_PID=
KAM_PIDFILE=$WORK/kamailio.pid
KAM_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [[ -z $KAM_PID ]] || kill "$KAM_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do
        wait_gone "$pid"
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ -n $KAM_PID ]]; then
        local kp=$KAM_PID
        wait_gone "$kp"
        pkill -9 -P "$kp" 2>/dev/null || true
        kill -9 "$kp" 2>/dev/null || true
    fi
    if [[ $KEEP != 1 ]]; then rm -rf "$DATA" "$WORK/capture"; fi
    rm -rf "$WORK/tls" # the throwaway TLS key
    [[ $rc == 0 ]] || log "stopped with an error; logs are in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prefixes, not functions: a backgrounded function would leave $! naming a subshell.
ON_SERVER=(taskset -c "$SERVER_CPUS")
ON_LOAD=(taskset -c "$LOAD_CPUS")
kam_pids() { # Kamailio's main process and its children
    [[ -z $KAM_PID ]] || echo "$KAM_PID" "$(pgrep -P "$KAM_PID" | tr '\n' ' ')"
}
check_alive() {
    case $1 in
        PBX) kill -0 "$PBX_PID" 2>/dev/null || die "the PBX exited; see $WORK/pbx.log" ;;
        rtpengine)
            kill -0 "$RTPE_PID" 2>/dev/null || die "rtpengine exited; see $WORK/rtpengine.log"
            kill -0 "$KAM_PID" 2>/dev/null ||
                die "Kamailio exited; see $WORK/kamailio.log"
            ;;
    esac
    [[ -z $UAS_PID ]] || kill -0 "$UAS_PID" 2>/dev/null ||
        die "the answering sipp exited; see $WORK/sipp/uas.log"
}

# ---- 1. the PBX binary, the audio, the scenarios ------------------------------------
cd "$REPO"
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -z $PBX_BIN && $ONLY != rtpengine ]]; then
    log "building: cargo build --release -p pbx"
    cargo build --release -p pbx >"$WORK/build.log" 2>&1 || die "cargo build failed; see $WORK/build.log"
    PBX_BIN=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/pbx
fi
[[ $ONLY == rtpengine || -x $PBX_BIN ]] || die "no pbx binary at $PBX_BIN"
if [[ $SRTP == 1 && -z $SRTP_LOAD ]]; then
    log "building: cargo build --release -p srtp-load"
    cargo build --release -p srtp-load >"$WORK/build-srtp-load.log" 2>&1 ||
        die "cargo build failed; see $WORK/build-srtp-load.log"
    SRTP_LOAD=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/srtp-load
fi
[[ $SRTP == 0 || -x $SRTP_LOAD ]] || die "no srtp-load binary at $SRTP_LOAD"
# From here on, whatever this script runs itself (python, date, the PBX's CLI)
# runs on the load CPUs too: at a window's edges it would otherwise take the
# server's core from the server and show as jitter. The servers are started on
# their own CPUs explicitly.
taskset -pc "$LOAD_CPUS" $$ >/dev/null

# sipp's rtp_stream plays raw A-law in 160-byte (20 ms) packets, looped for the
# whole call: the payloads of sipp's own G.711 sample.
AUDIO=$WORK/g711a.alaw
AUDIO_S=$(python3 "$STATS" g711raw "$G711_PCAP" "$AUDIO")
for side in uac uas; do
    sed "s|@AUDIO@|$AUDIO|" "$HERE/media/$side.xml" >"$WORK/$side.xml"
done
TLS_ARGS=()
if [[ $SRTP == 1 ]]; then
    # A throwaway self-signed certificate for the PBX's TLS listener (srtp-load,
    # a loopback bench tool, does not verify it).
    mkdir -p "$WORK/tls" "$WORK/srtp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" >"$WORK/tls/openssl.log" 2>&1 ||
        die "openssl could not make the test certificate; see $WORK/tls/openssl.log"
    TLS_ARGS=(--sip-tls "$PBX_TLS_ADDR" --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem")
fi
python3 "$SHARED/make_users.py" bench.example 1000 "$USERS_N" >"$WORK/users.csv"
{
    echo "extension,password"
    seq 1000 $((1000 + USERS_N - 1)) | awk '{print $1 ",pw" $1}'
} >"$WORK/extensions.csv"

# ---- 2. start the servers (on the server CPUs) and the answering sipp -----------------
if [[ $ONLY != rtpengine ]]; then
    pbx() { "$PBX_BIN" --data-dir "$DATA" "$@"; }
    {
        pbx tenant add bench --domain bench.example
        pbx extension import bench "$WORK/extensions.csv"
        pbx tenant limits bench --max-concurrent 100000 --max-concurrent-extension 100 \
            --max-calls-per-second 100000
        pbx policy config set default-policy max-concurrent-calls 100000 --tenant bench
        pbx policy config set default-policy max-calls-per-minute 100000 --tenant bench
    } >"$WORK/provision.log" 2>&1 || die "provisioning failed; see $WORK/provision.log"
    cat >"$WORK/pbx.toml" <<TOML
[guard]
trusted = ["127.0.0.1"]

[media]
port_min = ${PBX_PORTS[0]}
port_max = ${PBX_PORTS[1]}
TOML
    log "starting pbx serve on $PBX_ADDR (CPUs $SERVER_CPUS)"
    "${ON_SERVER[@]}" "$PBX_BIN" --data-dir "$DATA" serve --config "$WORK/pbx.toml" --sip-udp "$PBX_ADDR" \
        "${TLS_ARGS[@]}" >"$WORK/pbx.log" 2>&1 &
    PBX_PID=$!
    PIDS+=("$PBX_PID")
    wait_sip "$PBX_ADDR"
    check_alive PBX
fi

if [[ $ONLY != pbx ]]; then
    log "starting rtpengine (userspace, --table=-1) with ng on $NG_ADDR (CPUs $SERVER_CPUS)"
    "${ON_SERVER[@]}" rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=4 \
        --interface=127.0.0.1 --listen-ng="$NG_ADDR" \
        --port-min="${RTPENGINE_PORTS[0]}" --port-max="${RTPENGINE_PORTS[1]}" \
        >"$WORK/rtpengine.log" 2>&1 &
    RTPE_PID=$!
    PIDS+=("$RTPE_PID")
    sleep 1
    kill -0 "$RTPE_PID" 2>/dev/null || die "rtpengine did not start; see $WORK/rtpengine.log"
    sed -e "s|@SIP_ADDR@|$KAM_ADDR|; s|@NG_ADDR@|$NG_ADDR|; s|@CTL@|$WORK/kamailio.ctl|" \
        -e "s|@RTP_FLAGS@||g" "$HERE/media/kamailio-rtpengine.cfg" >"$WORK/kamailio.cfg"
    log "starting kamailio on $KAM_ADDR (CPUs $SERVER_CPUS)"
    "${ON_SERVER[@]}" kamailio -f "$WORK/kamailio.cfg" -P "$KAM_PIDFILE" -w "$WORK" -m 1024 -M 64 \
        >"$WORK/kamailio.log" 2>&1 || die "kamailio did not start; see $WORK/kamailio.log"
    KAM_PID=$(cat "$KAM_PIDFILE")
    wait_sip "$KAM_ADDR"
fi

SIPP_INF=$WORK/users.csv
STEP_S=1
if [[ $PLAIN == 1 ]]; then
    log "starting the answering sipp on 127.0.0.1:$UAS_PORT, media :$UAS_MP (CPUs $LOAD_CPUS)"
    "${ON_LOAD[@]}" sipp -sf "$WORK/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -mi 127.0.0.1 -mp "$UAS_MP" \
        -l "$SIPP_LIMIT" -nostdin -trace_stat -stf "$WORK/sipp/uas.csv" -fd 5 >"$WORK/sipp/uas.log" 2>&1 &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    sleep 1
    kill -0 "$UAS_PID" 2>/dev/null || die "the answering sipp did not start; see $WORK/sipp/uas.log"
fi

# Every user registers its contact at the answering sipp (register.xml says :5999).
if [[ $PLAIN == 1 && $ONLY != rtpengine ]]; then
    log "PBX: registering $USERS_N users"
    run_sipp PBX-register "$SHARED/sipp/register.xml" "$PBX_ADDR" 1000 "$USERS_N"
    PBX_FILL="$R_OK ok, $R_FAILED failed"
    log "  $PBX_FILL"
fi
if [[ $PLAIN == 1 && $ONLY != pbx ]]; then
    log "Kamailio: registering $USERS_N users"
    run_sipp KAM-register "$SHARED/sipp/register.xml" "$KAM_ADDR" 1000 "$USERS_N"
    KAM_FILL="$R_OK ok, $R_FAILED failed"
    log "  $KAM_FILL"
fi

# ---- 3. one step: N concurrent calls, held, measured --------------------------------
: >"$WORK/steps.md"
: >"$WORK/srtp-steps.md"

# media_step SYSTEM TARGET N [srtp]: places N calls at about N/RAMP_S per second,
# each held until the last is up plus SETTLE_S + MEASURE_S; measures the server's
# CPU and captures the sampled streams over the MEASURE_S window. Sets S_HELD
# (yes/no) and the S_* figures, and appends a row to steps.md (plain RTP, sipp)
# or srtp-steps.md (SRTP on both legs, srtp-load; TARGET is then its address).
media_step() {
    local sys=$1 target=$2 n=$3 kind=${4:-plain}
    local rate=$(((n + RAMP_S - 1) / RAMP_S))
    ((rate >= MIN_CPS)) || rate=$MIN_CPS
    local ramp_s=$(((n + rate - 1) / rate))
    # Held long enough for the ramp, the settling, the window and a margin for a
    # ramp that runs late; a window that still overruns shows as calls gone.
    local hold_ms=$(((ramp_s + SETTLE_S + MEASURE_S + 8) * 1000))
    local label="$sys-$n"
    [[ $kind == plain ]] || label="$sys-srtp-$n"
    local stat="$WORK/sipp/$label.csv" cap="$WORK/capture/$label.pcap"
    local report="$WORK/srtp/$label.json" status="$WORK/srtp/$label.status.json"
    # Streams measured: about 128..256 of the 2N, those whose SSRC ends in BITS
    # zero bits (sipp numbers SSRCs in sequence; srtp-load gives both ends of
    # call k SSRC k+1, the callee's with the top bit set), so the capture stays small.
    local bits=0
    while (((2 * n) >> bits > 256)); do bits=$((bits + 1)); done
    # sipp: each side by its media port; srtp-load: each side by its address.
    local ends=("$UAC_MP" "$UAS_MP")
    local filter="udp and (port $UAS_MP or port $UAC_MP) and (udp[8] & 0xc0) = 0x80"
    if [[ $kind == srtp ]]; then
        ends=("$GEN_UAC_IP" "$GEN_UAS_IP")
        filter="udp and (host $GEN_UAC_IP or host $GEN_UAS_IP) and (udp[8] & 0xc0) = 0x80"
    fi
    ((bits == 0)) || filter+=" and (udp[19] & $(((1 << bits) - 1))) = 0"
    S_SAMPLE="1 in $((1 << bits))"
    local pids=() loaders=()
    if [[ $sys == PBX ]]; then pids=("$PBX_PID"); else read -r -a pids <<<"$RTPE_PID $(kam_pids)"; fi
    local what=$sys
    [[ $kind == plain ]] || what="$sys SRTP"
    log "$what: $n calls (placed at $rate/s, each held $((hold_ms / 1000)) s; streams sampled $S_SAMPLE)"
    local uac t_start wait_s
    if [[ $kind == plain ]]; then
        rm -f "$stat"
        SIPP_INF=$WORK/callers-$n.csv
        head -$((n + 1)) "$WORK/users.csv" >"$SIPP_INF" # callers 1000.., callees from the top
        "${ON_LOAD[@]}" timeout -k 5 $((hold_ms / 1000 + ramp_s + 60)) sipp -sf "$WORK/uac.xml" \
            -inf "$SIPP_INF" "$target" -i 127.0.0.1 -p "$UAC_PORT" -mi 127.0.0.1 -mp "$UAC_MP" \
            -r "$rate" -l "$n" -m "$n" -d "$hold_ms" -nostdin -trace_stat -stf "$stat" -fd 1 \
            >"$WORK/sipp/$label.log" 2>&1 &
        uac=$!
        wait_s=$((ramp_s + 8))
    else
        rm -f "$report" "$status"
        # The callees (1000 + the largest step ..) first drop the bindings the
        # plain ladder left at the answering sipp, then register their own.
        local transport=udp
        [[ $sys == PBX ]] && transport=tls
        "${ON_LOAD[@]}" timeout -k 5 $((hold_ms / 1000 + ramp_s + 150 + n / 50)) "$SRTP_LOAD" \
            --target "$target" --transport "$transport" --domain bench.example \
            --callers-from 1000 --callees-from $((1000 + MAX_STEP)) --password-prefix pw \
            --calls "$n" --rate "$rate" --hold $((hold_ms / 1000)) --local-ip 127.0.0.1 \
            --sip-port "$GEN_SIP_PORT" --uac-media-ip "$GEN_UAC_IP" --uas-media-ip "$GEN_UAS_IP" \
            --callee-suite "$CALLEE_SUITE" --audio "$AUDIO" --clear-bindings \
            --threads "$LOAD_NCPU" --report "$report" --status "$status" \
            --deadline $((hold_ms / 1000 + ramp_s + 120 + n / 50)) >"$WORK/srtp/$label.log" 2>&1 &
        uac=$!
        wait_s=$((ramp_s + 8 + 10 + n / 100)) # and the callees' registrations
    fi
    t_start=$SECONDS
    PIDS+=("$uac")
    up_now() {
        if [[ $kind == plain ]]; then python3 "$STATS" current "$stat"; else python3 "$STATS" loadstatus "$status"; fi
    }
    # Wait for every call to be up (both load generators write their counts every second).
    local up0=0 up1 cpu0 cpu1 load0 load1 t0 t1
    while ((SECONDS - t_start < wait_s)); do
        sleep 1
        up0=$(up_now)
        [[ $up0 != "$n" ]] || break
    done
    sleep "$SETTLE_S"
    # The load generator (a child of timeout), the answering sipp and the capture.
    read -r -a loaders <<<"$(pgrep -P "$uac" | tr '\n' ' ') ${UAS_PID:-}"
    "${ON_LOAD[@]}" tcpdump -i lo -n -s 64 -B 32768 -w "$cap" "$filter" >"$WORK/capture/$label.log" 2>&1 &
    local dump=$!
    PIDS+=("$dump")
    up0=$(up_now)
    t0=$(date +%s.%N)
    cpu0=$(python3 "$STATS" cpu "${pids[@]}")
    load0=$(python3 "$STATS" cpu "${loaders[@]}" "$dump")
    sleep "$MEASURE_S"
    t1=$(date +%s.%N)
    cpu1=$(python3 "$STATS" cpu "${pids[@]}")
    load1=$(python3 "$STATS" cpu "${loaders[@]}" "$dump")
    up1=$(up_now)
    kill -TERM "$dump" 2>/dev/null || true # (SIGINT is ignored in background jobs)
    wait "$dump" 2>/dev/null || true
    forget "$dump"
    wait "$uac" || true
    forget "$uac"
    check_alive "$sys"
    local g_auth=n/a g_rekey=n/a g_ssrc=n/a g_senderr=n/a g_loss=n/a g_jit=n/a g_why=
    if [[ $kind == plain ]]; then
        read -r R_OK R_FAILED _ _ < <(python3 "$STATS" sipp "$stat" "$n")
    else
        read -r R_OK R_FAILED g_auth g_rekey g_ssrc g_senderr g_loss g_jit g_why < <(python3 "$STATS" srtpload "$report")
        # Calls never reported (the generator was stopped) count as failures.
        [[ $R_OK =~ ^[0-9]+$ ]] || R_OK=0
        R_FAILED=$((n - R_OK))
    fi
    local dropped
    dropped=$(sed -n 's/^\([0-9]*\) packets* dropped by kernel.*/\1/p' "$WORK/capture/$label.log")
    read -r S_STREAMS S_MATCHED S_SENT S_LOST S_LOSS S_JIN50 S_JIN99 S_JOUT50 S_JOUT99 \
        S_D50 S_D99 S_DMAX S_ADD50 S_ADD99 < <(python3 "$STATS" rtp "$cap" "${ends[0]}" "${ends[1]}" "$TRIM_S")
    # CPU: share of one core over the window, and per call (µs of CPU per second
    # of a call: per 100 packets relayed).
    read -r S_CORE S_US_PER_CALL S_LOAD_CORE < <(python3 -c 'import sys
c0, c1, l0, l1, t0, t1, n = map(float, sys.argv[1:8])
w = t1 - t0
print(f"{(c1 - c0) / w * 100:.1f} {(c1 - c0) / w / n * 1e6:.0f} {(l1 - l0) / w * 100:.1f}")' \
        "$cpu0" "$cpu1" "$load0" "$load1" "$t0" "$t1" "$n")
    S_CDR="n/a"
    if [[ $sys == PBX ]]; then
        sleep 2 # the write-behind task stores the last records
        "$PBX_BIN" --data-dir "$DATA" cdr list bench --limit "$n" --format json \
            >"$WORK/$label.cdr.json" 2>"$WORK/$label.cdr.log" || true
        read -r c_n c_lost c_unfwd < <(python3 "$STATS" cdr "$WORK/$label.cdr.json" "$n")
        S_CDR="$c_lost% / $c_unfwd% ($c_n calls)"
    fi
    S_HELD=no
    local why=
    [[ $R_OK == "$n" && $R_FAILED == 0 ]] || why+=" calls: $R_OK ok, $R_FAILED failed;"
    [[ -z $g_why || $g_why == - ]] || why+=" failures: $g_why;"
    [[ $up0 == "$n" && $up1 == "$n" ]] || why+=" calls up while measured: $up0 then $up1;"
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' \
        "$S_LOSS" "$LOSS_MAX" 2>/dev/null || why+=" loss $S_LOSS%;"
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' \
        "$S_ADD99" "$JITTER_MAX" 2>/dev/null || why+=" added jitter p99 $S_ADD99 ms;"
    [[ ${dropped:-0} == 0 ]] || why+=" capture dropped $dropped;"
    if [[ $kind == srtp ]]; then
        [[ $g_auth == 0 ]] || why+=" SRTP auth failures $g_auth;"
        # The relay must key each leg itself: a callee given the caller's key (or
        # the reverse) means the relay passed SRTP through.
        [[ $g_rekey == 0 ]] || why+=" relay passed an end's own key to the other end ($g_rekey legs);"
    fi
    # A saturated load generator paces its streams late: the step says nothing of
    # the server then.
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 90 * int(sys.argv[2]) else 1)' \
        "$S_LOAD_CORE" "$LOAD_NCPU" 2>/dev/null || why+=" load CPUs saturated ($S_LOAD_CORE%);"
    [[ -n $why ]] || S_HELD=yes
    why=${why# }
    why=${why%;}
    log "  calls $R_OK ok / $R_FAILED failed, up $up0..$up1; streams $S_MATCHED/$S_STREAMS, loss $S_LOSS% ($S_LOST of $S_SENT), jitter out p50 $S_JOUT50 p99 $S_JOUT99 ms (in p99 $S_JIN99, added p99 $S_ADD99), delay p50 $S_D50 p99 $S_D99 ms; server ${S_CORE}% of a core, $S_US_PER_CALL µs/s per call; load ${S_LOAD_CORE}%${g_why:+; srtp-load: auth failures $g_auth, relay keys reused $g_rekey, other SSRC $g_ssrc, send errors $g_senderr, loss $g_loss%, jitter p99 $g_jit ms}; held=$S_HELD${why:+ ($why)}"
    if [[ $kind == plain ]]; then
        printf '| %s | %s | %s/s | %s / %s | %s / %s | %s | %s (%s of %s) | %s / %s | %s / %s | %s / %s | %s / %s / %s | %s%% | %s | %s | %s%% | %s | %s |\n' \
            "$sys" "$n" "$rate" "$R_OK" "$R_FAILED" "$up0" "$up1" "$S_MATCHED ($S_SAMPLE)" "$S_LOSS%" "$S_LOST" \
            "$S_SENT" "$S_ADD50" "$S_ADD99" "$S_JOUT50" "$S_JOUT99" "$S_JIN50" "$S_JIN99" "$S_D50" "$S_D99" "$S_DMAX" \
            "$S_CORE" "$S_US_PER_CALL" "$S_CDR" "$S_LOAD_CORE" "${dropped:-0}" \
            "$S_HELD${why:+: $why}" >>"$WORK/steps.md"
    else
        printf '| %s | %s | %s/s | %s / %s | %s / %s | %s | %s (%s of %s) | %s / %s | %s / %s | %s / %s | %s / %s / %s | %s%% | %s | %s | %s / %s | %s%% / %s ms | %s%% | %s | %s |\n' \
            "$sys" "$n" "$rate" "$R_OK" "$R_FAILED" "$up0" "$up1" "$S_MATCHED ($S_SAMPLE)" "$S_LOSS%" "$S_LOST" \
            "$S_SENT" "$S_ADD50" "$S_ADD99" "$S_JOUT50" "$S_JOUT99" "$S_JIN50" "$S_JIN99" "$S_D50" "$S_D99" "$S_DMAX" \
            "$S_CORE" "$S_US_PER_CALL" "$S_CDR" "$g_auth" "$g_rekey" "$g_loss" "$g_jit" "$S_LOAD_CORE" "${dropped:-0}" \
            "$S_HELD${why:+: $why}" >>"$WORK/srtp-steps.md"
    fi
}

# media_ladder SYSTEM TARGET [srtp]: climbs the steps until one is not held. Sets
# BEST (calls held, 0 if none), BEST_CORE and BEST_US (CPU at that step), and
# for plain RTP US_PBX[N] or US_RTPE[N] (CPU per call at every held step, to
# compare the two at equal load).
declare -A US_PBX=() US_RTPE=()
media_ladder() {
    local sys=$1 target=$2 kind=${3:-plain} n
    BEST=0
    BEST_CORE=n/a
    BEST_US=n/a
    local try
    for n in "${STEP_LIST[@]}"; do
        # A step not held is run once more before the ladder stops (a single
        # stall of a shared machine should not end it); both runs are reported.
        for try in $(seq 0 "$RETRIES"); do
            ((try == 0)) || sleep 3
            media_step "$sys" "$target" "$n" "$kind"
            [[ $S_HELD != yes ]] || break
        done
        [[ $S_HELD == yes ]] || break
        BEST=$n
        BEST_CORE=$S_CORE
        BEST_US=$S_US_PER_CALL
        if [[ $kind == plain && $sys == PBX ]]; then US_PBX[$n]=$S_US_PER_CALL; fi
        if [[ $kind == plain && $sys != PBX ]]; then US_RTPE[$n]=$S_US_PER_CALL; fi
        sleep 3 # the last step's calls are gone from both relays
    done
}

PBX_BEST=n/a PBX_CORE=n/a PBX_US=n/a RTPE_BEST=n/a RTPE_CORE=n/a RTPE_US=n/a
if [[ $PLAIN == 1 && $ONLY != rtpengine ]]; then
    media_ladder PBX "$PBX_ADDR"
    PBX_BEST=$BEST PBX_CORE=$BEST_CORE PBX_US=$BEST_US
fi
if [[ $PLAIN == 1 && $ONLY != pbx ]]; then
    media_ladder rtpengine "$KAM_ADDR"
    RTPE_BEST=$BEST RTPE_CORE=$BEST_CORE RTPE_US=$BEST_US
fi
# SRTP on both legs: the PBX over SIP/TLS, Kamailio over UDP (same media either way).
PBX_S_BEST=n/a PBX_S_CORE=n/a PBX_S_US=n/a RTPE_S_BEST=n/a RTPE_S_CORE=n/a RTPE_S_US=n/a
if [[ $SRTP == 1 && $ONLY != rtpengine ]]; then
    media_ladder PBX "$PBX_TLS_ADDR" srtp
    PBX_S_BEST=$BEST PBX_S_CORE=$BEST_CORE PBX_S_US=$BEST_US
fi
if [[ $SRTP == 1 && $ONLY != pbx ]]; then
    media_ladder rtpengine "$KAM_ADDR" srtp
    RTPE_S_BEST=$BEST RTPE_S_CORE=$BEST_CORE RTPE_S_US=$BEST_US
fi

# ---- 4. the section --------------------------------------------------------------------
HELD_RATIO=$(python3 "$STATS" ratio "$PBX_BEST" "$RTPE_BEST")
SRTP_RATIO=$(python3 "$STATS" ratio "$PBX_S_BEST" "$RTPE_S_BEST")
# CPU per call compared at the largest step both held (rtpengine / PBX: above 1.0
# the PBX spends less per call).
COMMON=
for n in "${STEP_LIST[@]}"; do
    [[ -n ${US_PBX[$n]:-} && -n ${US_RTPE[$n]:-} ]] && COMMON=$n
done
CPU_RATIO=n/a
[[ -z $COMMON ]] || CPU_RATIO=$(python3 "$STATS" ratio "${US_RTPE[$COMMON]}" "${US_PBX[$COMMON]}")
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//')
MODE=full
[[ $QUICK == 1 ]] && MODE="quick (smoke run: small steps, short holds; not representative)"
RTPE_VERSION=$(rtpengine --version 2>&1 | sed -n 's/^Version: *//p' | head -1)
KAM_VERSION=$(kamailio -v 2>/dev/null | head -1 | sed 's/^version: kamailio //; s/ *$//')
top_note() {
    if [[ $1 == "${STEP_LIST[-1]}" ]]; then
        echo " (top of the ladder)"
    elif [[ $1 == 0 ]]; then
        echo " (the first step was not held)"
    fi
}
cpu_cell() { # CORE_PCT US_PER_CALL
    [[ $1 != n/a ]] || {
        echo n/a
        return
    }
    echo "$1% of a core, $2 µs per call per second"
}
# Other work on the cores makes every figure noise: say so in the section.
BUSY_NOTE=$(python3 -c 'import sys
load = float(sys.argv[1].split()[0]); cores = int(sys.argv[2])
if load > 0.5 * cores:
    print(f"**The load average at start ({load:.1f} on {cores} cores) says other work shared "
          "the cores during this run: its figures are noise, not capacity.**")' "$LOAD_START" "$(nproc --all)")
verdict() {
    python3 -c 'import sys
try: v = float(sys.argv[1])
except ValueError: print("n/a"); sys.exit()
print("met" if v >= 1.0 else "missed")' "$1"
}

# Both at the top of the ladder: the ratio says only that the ladder was too short.
HELD_VERDICT=$(verdict "$HELD_RATIO")
if [[ $PBX_BEST == "${STEP_LIST[-1]}" && $RTPE_BEST == "${STEP_LIST[-1]}" ]]; then
    HELD_VERDICT="n/a (both held the top step; extend --steps)"
fi
SRTP_VERDICT=$(verdict "$SRTP_RATIO")
if [[ $PBX_S_BEST == "${STEP_LIST[-1]}" && $RTPE_S_BEST == "${STEP_LIST[-1]}" ]]; then
    SRTP_VERDICT="n/a (both held the top step; extend --steps)"
fi
if [[ $PLAIN == 0 ]]; then # --srtp-only
    PBX_BEST="not measured (\`--srtp-only\`)" RTPE_BEST=$PBX_BEST
fi
SIPP_VERSION=$(sipp -v 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1 || true)
if [[ $SRTP == 1 ]]; then
    SRTP_ROWS="| concurrent G.711 calls held, SRTP on both legs (SDES, re-keyed per leg; same criterion, and no SRTP authentication failure) | $PBX_S_BEST$(top_note "$PBX_S_BEST") | $RTPE_S_BEST$(top_note "$RTPE_S_BEST") | $SRTP_RATIO | ≥ 1.0: $SRTP_VERDICT |
| server CPU at that step, SRTP | $(cpu_cell "$PBX_S_CORE" "$PBX_S_US") | $(cpu_cell "$RTPE_S_CORE" "$RTPE_S_US") | | |"
else
    SRTP_ROWS="| SRTP on both legs | not measured (\`--srtp\`) | not measured (\`--srtp\`) | | see below |"
fi

SECTION=$WORK/media.md
cat >"$SECTION" <<EOF
## Media relay capacity

Generated by \`bench/media.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\` on $START_DATE. Mode: $MODE.

Machine: $(nproc --all) cores, $CPU_MODEL, Linux $(uname -r); load average at start
$LOAD_START, at end $LOAD_END. sipp $(sipp -v 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1),
Kamailio ${KAM_VERSION:-?}, rtpengine ${RTPE_VERSION:-?} (userspace forwarding,
\`--table=-1\`). Placement: the server under test (the PBX; or Kamailio and
rtpengine together) is pinned with \`taskset -c $SERVER_CPUS\`, the load generators
(both sipp) and the capture with \`taskset -c $LOAD_CPUS\`. Only one server is under
load at a time.${BUSY_NOTE:+

$BUSY_NOTE}

| measure | PBX | Kamailio + rtpengine | PBX / rtpengine | target |
| --- | --- | --- | --- | --- |
| concurrent G.711 calls held, plain RTP (< $LOSS_MAX% loss, added jitter p99 ≤ $JITTER_MAX ms) | $PBX_BEST$(top_note "$PBX_BEST") | $RTPE_BEST$(top_note "$RTPE_BEST") | $HELD_RATIO | ≥ 1.0: $HELD_VERDICT |
| server CPU at that step | $(cpu_cell "$PBX_CORE" "$PBX_US") | $(cpu_cell "$RTPE_CORE" "$RTPE_US") | | |
| CPU per relayed call at ${COMMON:-n/a} calls (both held), rtpengine / PBX | ${COMMON:+${US_PBX[$COMMON]} µs/s} | ${COMMON:+${US_RTPE[$COMMON]} µs/s} | $CPU_RATIO | ≥ 1.0: $(verdict "$CPU_RATIO") |
$SRTP_ROWS

A call here is one anchored call with G.711 A-law at 50 packets/s each way: the
calling sipp (\`media/uac.xml\`) and the answering sipp (\`media/uas.xml\`) each stream
sipp's G.711 sample ($AUDIO_S s, looped, 160-byte packets every 20 ms) with
\`rtp_stream\` from the ACK until the BYE, through the relay. Each step places its N
calls over about $RAMP_S s (authenticated INVITEs, registered callees), holds them
all, and measures for $MEASURE_S s once the last is up $SETTLE_S s. A step is held
when every call was set up and torn down without failure, all N were up through
the window, the sampled streams lost less than $LOSS_MAX% and the p99 over them of
the jitter the relay added (a stream's jitter at the relay's output minus its
jitter at the relay's input) is at most $JITTER_MAX ms. A step not held is run
again (up to $RETRIES more time(s), every run in the steps table) and the ladder
stops at the first step still not held. The criterion is the added jitter, not the jitter at the output,
because sipp's own pacing (\`rtp_stream\` sends on whole milliseconds from a few
threads) already has a p99 of several milliseconds at a few hundred calls, which
would otherwise stop both ladders at the load generator's limit; the output and
input figures are in the steps table.

Loss and jitter are measured the same way for both servers, from a loopback capture
(\`tcpdump -i lo\`; at larger steps a sample of about 128 to 256 of the 2N streams,
those whose SSRC ends in a number of zero bits, as sipp numbers them in sequence;
the steps table says which): a packet from a sipp's media port is one the relay received, one to
it a packet the relay sent on, matched by sender, SSRC and sequence number (both
relays keep them on plain RTP). Loss counts received packets never sent on
(the first and last $TRIM_S s of the window left out for packets in flight);
jitter is each stream's RFC 3550 interarrival jitter estimate at the relay's output
and at its input (sipp's own pacing), taken once a second over the same window, as
a receiver would report it, so that every stream's every second counts and the
p99 shows a stall that hits all streams for a second; added jitter is, per stream
and second, the output's minus the input's; delay is the time a packet spent in
the relay. (Runs before 2026-12-07 took each stream's estimate only at the
capture's last packet: one instant, the one at which the bench itself stops the
capture, and that instant decided the step.) This script runs its own helpers on
the load CPUs, so only the server under test runs on the server's. The PBX's own call records (\`pbx cdr list bench
--format json\`) give a second view for the PBX: packets missing from the sequence
numbers it received, and packets received on one leg but not sent on the other,
over the whole calls. CPU is user + system time of the server's processes
(\`/proc/PID/stat\`: the PBX; rtpengine and every Kamailio process) over the window,
as a share of one core and per call per second (one call-second is 100 relayed
packets). The load column is the CPU of both sipp and tcpdump (the capture filter
itself runs in the kernel, partly on the server's core: the same for both).

SRTP on both legs$([[ $SRTP == 1 ]] || echo ' (not measured in this run: `--srtp` adds it)') is
measured with \`bench/srtp-load\`, as Debian's sipp (${SIPP_VERSION:-?}) has neither
TLS nor SRTP. It plays both ends of every call in one process: the callees (users
$((1000 + MAX_STEP)) and up) clear their bindings (\`Contact: *\`), register with digest
and answer; the callers (1000..) send an INVITE with an \`RTP/SAVP\` PCMA offer
carrying one fresh \`AES_CM_128_HMAC_SHA1_80\` key per call (RFC 4568), answer the
407, ACK, hold the call and hang up; each callee answers with a fresh key of its
own. Each leg has its own UDP socket (callers on $GEN_UAC_IP, callees on
$GEN_UAS_IP, any port), and a few pacer tasks send one 160-byte A-law packet per
leg every 20 ms (sipp's sample, looped), protected with the leg's key; what comes
back is authenticated and decrypted with the key the relay put in its SDP, and
counted (authentication failures, sequence gaps, RFC 3550 jitter). The SSRCs of
both ends of call k are k+1 (the callee's with the top bit set), so the capture
samples streams by their low bits as for sipp, and tells the ends apart by
address; SRTP leaves SSRC and sequence number in clear, and both relays keep them,
so loss, jitter and delay come from the same matching as above. Signalling differs
because the servers do: the PBX takes SDES keys only on secure signalling, so
srtp-load reaches it over SIP/TLS ($PBX_TLS_ADDR, a certificate made for the run
and not verified: a loopback tool), while this Kamailio configuration is UDP only.
That changes the call set-up path, not the media: every figure is taken over the
window while all calls are up and no signalling flows. Both relays terminate SRTP on each leg and
encrypt with keys of their own: rtpengine ${RTPE_VERSION:-?}, when the answer picks
the suite of the offerer's key, hands that key to the other side too (its SRTP
passthrough, which none of the SDES flags this version documents turns off; its offer to the callee
still lists the caller's key on the \`AES_CM_128_HMAC_SHA1_80\` line), so the callees
take the relay's \`$CALLEE_SUITE\` line (the same AES-128 counter mode and
HMAC-SHA1, a 4-byte tag instead of 10) from both relays alike: caller legs 80-bit,
callee legs 32-bit tags, the same work for both. srtp-load checks every call (the
"keys reused" column: legs whose key from the relay is the other end's own) and a
step is held only when that and the SRTP authentication failures at both ends are 0,
on top of the plain RTP criterion. Kamailio calls rtpengine with the same flags as
for plain RTP (rtpengine keeps \`RTP/SAVP\` on both sides). The load column is then
the CPU of srtp-load and tcpdump.

Registration before the ladders ($USERS_N users, contacts at the answering sipp):
PBX ${PBX_FILL:-n/a}, Kamailio ${KAM_FILL:-n/a}. The PBX ran with \`[guard] trusted =
["127.0.0.1"]\`, relay ports ${PBX_PORTS[0]}-${PBX_PORTS[1]}, the tenant's call limits lifted
as in the signalling bench; rtpengine with ports ${RTPENGINE_PORTS[0]}-${RTPENGINE_PORTS[1]}
and its default threads; Kamailio with 2 UDP workers.

### Media steps

| system | calls | placed at | ok / failed | up at start / end of window | streams measured | loss (lost of sent) | added jitter p50 / p99 (ms) | jitter out p50 / p99 (ms) | jitter in p50 / p99 (ms) | delay in relay p50 / p99 / max (ms) | server CPU (one core) | µs per call per s | PBX records: lost / unforwarded | load CPU | capture drops | held |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(cat "$WORK/steps.md")
$(if [[ $SRTP == 1 ]]; then
    cat <<STEPS

### SRTP steps

| system | calls | placed at | ok / failed | up at start / end of window | streams measured | loss (lost of sent) | added jitter p50 / p99 (ms) | jitter out p50 / p99 (ms) | jitter in p50 / p99 (ms) | delay in relay p50 / p99 / max (ms) | server CPU (one core) | µs per call per s | PBX records: lost / unforwarded | SRTP auth failures / keys reused | srtp-load: loss / jitter p99 | load CPU | capture drops | held |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(cat "$WORK/srtp-steps.md")
STEPS
fi)

### Commands

Run from the repository root; the harness does all of this and stops what it started.

\`\`\`sh
cargo build --release -p pbx
$(provision_commands "${PBX_PORTS[0]}" "${PBX_PORTS[1]}" "1000..")
taskset -c $SERVER_CPUS pbx --data-dir D serve --config pbx.toml --sip-udp $PBX_ADDR
taskset -c $SERVER_CPUS rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=4 \\
    --interface=127.0.0.1 --listen-ng=$NG_ADDR --port-min=${RTPENGINE_PORTS[0]} --port-max=${RTPENGINE_PORTS[1]}
taskset -c $SERVER_CPUS kamailio -f bench/media/kamailio-rtpengine.cfg -P kam.pid -w D -m 1024 -M 64   # placeholders filled: $KAM_ADDR, ng $NG_ADDR
python3 bench/stats.py g711raw $G711_PCAP g711a.alaw     # and @AUDIO@ in media/*.xml
python3 ../shared/bench/make_users.py bench.example 1000 $USERS_N > users.csv
taskset -c $LOAD_CPUS sipp -sf bench/media/uas.xml -i 127.0.0.1 -p $UAS_PORT -mi 127.0.0.1 -mp $UAS_MP -l $SIPP_LIMIT -nostdin
sipp -sf ../shared/bench/sipp/register.xml -inf users.csv TARGET -i 127.0.0.1 -p $UAC_PORT -r 1000 -m $USERS_N -nostdin
# each step N (${STEP_LIST[*]}), for each TARGET ($PBX_ADDR, $KAM_ADDR):
taskset -c $LOAD_CPUS sipp -sf bench/media/uac.xml -inf callers.csv TARGET -i 127.0.0.1 -p $UAC_PORT -mi 127.0.0.1 -mp $UAC_MP \\
    -r max(N/$RAMP_S,$MIN_CPS) -l N -m N -d HOLD_MS -nostdin -trace_stat -stf stat.csv -fd 1
taskset -c $LOAD_CPUS tcpdump -i lo -n -s 64 -B 32768 -w step.pcap \\
    'udp and (port $UAS_MP or port $UAC_MP) and (udp[8] & 0xc0) = 0x80 and (udp[19] & (2^BITS - 1)) = 0'   # $MEASURE_S s
python3 bench/stats.py rtp step.pcap $UAC_MP $UAS_MP $TRIM_S
pbx --data-dir D cdr list bench --limit N --format json
# --srtp: the PBX also listens on TLS, with a throwaway certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \\
    -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem
taskset -c $SERVER_CPUS pbx --data-dir D serve --config pbx.toml --sip-udp $PBX_ADDR \\
    --sip-tls $PBX_TLS_ADDR --tls-cert cert.pem --tls-key key.pem
cargo build --release -p srtp-load
# each SRTP step N: --target $PBX_TLS_ADDR --transport tls, or --target $KAM_ADDR --transport udp
taskset -c $LOAD_CPUS srtp-load --target TARGET --transport T --domain bench.example --callers-from 1000 \\
    --callees-from $((1000 + MAX_STEP)) --calls N --rate max(N/$RAMP_S,$MIN_CPS) --hold HOLD_S --sip-port $GEN_SIP_PORT \\
    --uac-media-ip $GEN_UAC_IP --uas-media-ip $GEN_UAS_IP --callee-suite $CALLEE_SUITE --audio g711a.alaw \\
    --clear-bindings --threads $LOAD_NCPU --report step.json --status status.json
taskset -c $LOAD_CPUS tcpdump -i lo -n -s 64 -B 32768 -w step.pcap \\
    'udp and (host $GEN_UAC_IP or host $GEN_UAS_IP) and (udp[8] & 0xc0) = 0x80 and (udp[19] & (2^BITS - 1)) = 0'
python3 bench/stats.py rtp step.pcap $GEN_UAC_IP $GEN_UAS_IP $TRIM_S
python3 bench/stats.py srtpload step.json
\`\`\`
EOF
if [[ -n $OUT ]]; then cp "$SECTION" "$OUT"; else cat "$SECTION"; fi
log "wrote ${OUT:-$SECTION}"
log "held: PBX $PBX_BEST calls, rtpengine $RTPE_BEST calls, ratio $HELD_RATIO"
log "CPU per call at ${COMMON:-n/a} calls: rtpengine/PBX $CPU_RATIO"
[[ $SRTP == 0 ]] || log "SRTP held: PBX $PBX_S_BEST calls, rtpengine $RTPE_S_BEST calls, ratio $SRTP_RATIO"
