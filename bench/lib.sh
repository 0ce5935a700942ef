# Shell functions shared by bench/run.sh, bench/cluster.sh and bench/media.sh (sourced, not run).
# They use the caller's WORK (logs), STATS (stats.py), SIPP_INF (the sipp
# injection file), SIPP_LIMIT, STEP_S, PIDS (what cleanup stops) and
# SIPP_PORT (the load's local port, default 6001), and call its check_alive
# SYSTEM after each ladder step.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed ($2)"; }

# Waits up to 5 s for PID to exit (a SIGTERM lets the PBX write its call
# records); the caller insists with SIGKILL after.
wait_gone() {
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.5
    done
}

forget() { # drop a finished pid from the cleanup list
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo n/a; }
# rss_settled PID: VmRSS (KiB) once it has stopped moving. An allocator hands
# freed memory back to the system a while after it was freed, so a reading right
# after start-up or a load still counts memory that is already free. Reads every
# second until five readings in a row lie within 256 KiB of each other (at most
# 60 s), and prints the last.
rss_settled() {
    local i r lo= hi= window=()
    for ((i = 0; i < 60; i++)); do
        r=$(rss_kib "$1")
        [[ $r =~ ^[0-9]+$ ]] || { echo n/a; return; }
        window+=("$r")
        ((${#window[@]} > 5)) && window=("${window[@]:1}")
        if ((${#window[@]} == 5)); then
            lo=$(printf '%s\n' "${window[@]}" | sort -n | head -1)
            hi=$(printf '%s\n' "${window[@]}" | sort -n | tail -1)
            ((hi - lo <= 256)) && break
        fi
        sleep 1
    done
    echo "$r"
}
mib() { [[ $1 =~ ^[0-9]+$ ]] && awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}' || echo n/a; }
# Waits until something answers a SIP OPTIONS on ADDR (any response will do).
wait_sip() {
    python3 - "$1" <<'PY' || die "nothing answers SIP on $1"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.5)
lport = s.getsockname()[1]
for i in range(120):
    msg = (f"OPTIONS sip:ping@{host} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bKready{i}\r\n"
           f"From: <sip:ping@127.0.0.1>;tag=r{i}\r\nTo: <sip:ping@{host}>\r\n"
           f"Call-ID: ready{i}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
           "Content-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), (host, int(port)))
    try:
        if s.recv(4096).startswith(b"SIP/2.0"):
            sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(1)
PY
}

# run_sipp LABEL SCENARIO TARGET RATE TOTAL [PID_TO_SAMPLE]
# One sipp load at a fixed rate. Sets R_OK R_FAILED R_ACH R_ELAPSED, and, when a pid
# is given, R_RSS (its VmRSS in KiB) and R_CUR (calls in progress) half way through.
run_sipp() {
    local label=$1 sf=$2 target=$3 rate=$4 total=$5 sample=${6:-}
    local stat="$WORK/sipp/$label.csv" out="$WORK/sipp/$label.log"
    local secs=$(((total + rate - 1) / rate))
    rm -f "$stat"
    # Bounded: lost messages fail after sipp's UDP retransmissions (~32 s).
    timeout -k 5 $((secs + 60)) sipp -sf "$sf" -inf "$SIPP_INF" "$target" \
        -i 127.0.0.1 -p "${SIPP_PORT:-6001}" -mp 7100 -r "$rate" -l "$SIPP_LIMIT" -m "$total" \
        -nostdin -trace_stat -stf "$stat" -fd 1 >"$out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    R_RSS=n/a
    R_CUR=n/a
    if [[ -n $sample ]]; then
        sleep "$(awk -v s="$secs" 'BEGIN {printf "%.1f", s / 2 + 0.5}')"
        R_RSS=$(rss_kib "$sample")
        R_CUR=$(python3 "$STATS" current "$stat")
    fi
    wait "$pid" || true
    forget "$pid"
    read -r R_OK R_FAILED R_ACH R_ELAPSED < <(python3 "$STATS" sipp "$stat" "$total")
}

# ladder SYSTEM KIND SCENARIO TARGET RATE... : steps up while a step has at most
# 0.1% failures. Appends rows to $WORK/ladder.md; sets BEST_ACH (the highest rate
# sipp achieved in a step with no failure, 0 if none) and BEST (that step's asked
# rate), TOL_ACH/TOL (the same over steps with at most 0.1% failures), and for the
# PBX's call ladder BEST_RSS/BEST_CUR (sampled during the BEST step).
ladder() {
    local sys=$1 kind=$2 sf=$3 target=$4
    shift 4
    BEST=0
    BEST_ACH=0
    TOL=0
    TOL_ACH=0
    BEST_RSS=n/a
    BEST_CUR=n/a
    local rate sample held tolerable total
    for rate in "$@"; do
        sample=
        [[ $sys == "${SAMPLED_SYS:-PBX}" && $kind == call ]] && sample=${PBX_PID:-}
        total=$((rate * STEP_S))
        log "$sys $kind at $rate/s, $total attempts"
        run_sipp "${sys}-${kind}-${rate}" "$sf" "$target" "$rate" "$total" "$sample"
        held=no
        tolerable=no
        # Every attempt must have finished (succeeded or failed): none hung.
        if [[ $R_OK =~ ^[0-9]+$ && $R_FAILED =~ ^[0-9]+$ ]] && ((R_OK + R_FAILED == total)); then
            ((R_FAILED == 0)) && held=yes
            ((R_FAILED * 1000 <= total)) && tolerable=yes
        fi
        log "  ok=$R_OK failed=$R_FAILED achieved=$R_ACH/s elapsed=${R_ELAPSED}s held=$held"
        printf '| %s | %s | %s/s | %s | %s | %s | %s/s | %s | %s |\n' "$sys" "$kind" "$rate" \
            "$total" "$R_OK" "$R_FAILED" "$R_ACH" "$held" "$tolerable" >>"$WORK/ladder.md"
        check_alive "$sys"
        [[ $tolerable == yes ]] || break
        # A server (or sipp) that is saturated still "holds" a step, just slower:
        # the figure is the highest rate actually achieved.
        if [[ $held == yes ]] && ((R_ACH > BEST_ACH)); then
            BEST=$rate
            BEST_ACH=$R_ACH
            BEST_RSS=$R_RSS
            BEST_CUR=$R_CUR
        fi
        if ((R_ACH > TOL_ACH)); then
            TOL=$rate
            TOL_ACH=$R_ACH
        fi
    done
}

# pin_setup PIN SERVER_CPUS LOAD_CPUS BINDIR: fair placement. With PIN=1 (and at
# least two CPUs) the server under test runs under SERVER_PIN (taskset on
# SERVER_CPUS) and every sipp on LOAD_CPUS, through a wrapper first on the PATH
# so that it holds through `timeout` too; sets SERVER_PIN (an array, empty when
# unpinned) and PLACEMENT (a sentence for the report).
pin_setup() {
    local pin=$1 server=$2 load=$3 bindir=$4
    if [[ $pin == 1 && $(nproc) -lt 2 ]]; then
        log "one CPU only: running unpinned"
        pin=0
    fi
    if [[ $pin == 1 ]]; then
        need taskset "apt-get install -y util-linux"
        taskset -c "$server" true 2>/dev/null || die "cannot pin to CPU list '$server'"
        taskset -c "$load" true 2>/dev/null || die "cannot pin to CPU list '$load'"
        mkdir -p "$bindir"
        printf '#!/bin/sh\nexec taskset -c %s %s "$@"\n' "$load" "$(command -v sipp)" >"$bindir/sipp"
        chmod +x "$bindir/sipp"
        export PATH="$bindir:$PATH"
        SERVER_PIN=(taskset -c "$server")
        PLACEMENT="servers pinned to CPU $server, sipp to CPU $load (taskset)"
    else
        SERVER_PIN=()
        PLACEMENT="unpinned: servers and sipp share all $(nproc) CPUs"
    fi
}

# stop_started [PIDFILE]: stops every pid in PIDS, and the process (with its
# children) named in PIDFILE when given: SIGTERM first (the PBX writes its
# call records), then, after up to 5 s each, SIGKILL. Empties PIDS.
stop_started() {
    local pid kp=
    [[ -n ${1:-} && -s ${1:-} ]] && kp=$(cat "$1")
    for pid in "${PIDS[@]}" $kp; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" $kp; do
        wait_gone "$pid"
        # (An if, not `&&`: pkill finding no child is not a failure here.)
        if [[ $pid == "$kp" ]]; then pkill -9 -P "$pid" 2>/dev/null || true; fi
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ -n $kp ]]; then : >"$1"; fi
    PIDS=()
}

# provision_commands PORT_MIN PORT_MAX USERS: the commands a report lists for
# provisioning tenant `bench` and the PBX's configuration, as the benches run them.
provision_commands() {
    cat <<CMDS
pbx --data-dir D tenant add bench --domain bench.example
pbx --data-dir D extension import bench extensions.csv        # $3, password pw<user>
pbx --data-dir D tenant limits bench --max-concurrent 100000 --max-concurrent-extension 100 --max-calls-per-second 100000
pbx --data-dir D policy config set default-policy max-concurrent-calls 100000 --tenant bench
pbx --data-dir D policy config set default-policy max-calls-per-minute 100000 --tenant bench
printf '[guard]\ntrusted = ["127.0.0.1"]\n\n[media]\nport_min = $1\nport_max = $2\n' > pbx.toml
CMDS
}
