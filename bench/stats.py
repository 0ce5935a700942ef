#!/usr/bin/env python3
"""Parsers and arithmetic for bench/run.sh, cluster.sh and media.sh; each
subcommand prints one line.

  stats.py sipp STAT.csv TOTAL        -> "ok failed achieved_per_s elapsed_s"
  stats.py current STAT.csv           -> calls in progress in the last stat row
  stats.py criterion LOG NAME         -> elements per second of a criterion bench
  stats.py latency LOG NAME           -> "p50_us p99_us" of a pbx-plugin latency line
  stats.py libsrtp LOG                -> "protect unprotect round_trip" packets per second
  stats.py soak SAMPLES.csv           -> "n first_kib last_kib max_kib slope_kib_per_min
                                          late_slope_kib_per_min after1_slope_kib_per_min"
                                          (over the second half of the samples, and over
                                          those from the first minute on)
  stats.py ratio A B                  -> A/B with two decimals, or n/a
  stats.py g711raw IN.pcap OUT.raw    -> writes the RTP payloads of a pcap (sipp's
                                          g711a.pcap) as one raw A-law file; prints
                                          its length in seconds
  stats.py rtp CAPTURE.pcap PORT_A PORT_B TRIM_S
                                       -> "streams matched sent lost loss_pct
                                          jitter_in_p50 jitter_in_p99 jitter_out_p50
                                          jitter_out_p99 delay_p50 delay_p99 delay_max
                                          added_p50 added_p99" of RTP captured on
                                          loopback between the two load generators'
                                          media ports and a relay (jitter: the RFC 3550
                                          estimates of every stream, once a second
                                          away from the capture's first and last
                                          TRIM_S seconds; added: per stream and second,
                                          jitter out minus jitter in; see rtp_streams);
                                          PORT_A and PORT_B may instead be IPv4
                                          addresses (srtp-load: one address per side,
                                          a socket per leg)
  stats.py srtpload REPORT.json       -> "ok failed auth_failures rekey_missing
                                          other_ssrc send_errors gen_loss_pct
                                          gen_jitter_p99 failures" of srtp-load's summary
                                          (both sides summed; failures: reasons, or -)
  stats.py loadstatus STATUS.json     -> calls up in srtp-load's status file
  stats.py cdr CDRS.json N            -> "calls lost_pct unforwarded_pct" over the N
                                          newest answered records of `pbx cdr list
                                          --format json`
  stats.py cpu PID...                 -> CPU seconds (user + system) used so far

Anything missing or unreadable prints "n/a" fields instead of failing, so one
broken measurement never hides the others.
"""
import csv
import json
import math
import os
import re
import struct
import sys


def sipp_rows(path):
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return None, None
    if len(rows) < 2:
        return None, None
    return rows[0], rows[-1]


def seconds(text):
    parts = text.split(":")
    try:
        h, m, s = int(parts[0]), int(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        return 0.0
    return h * 3600 + m * 60 + s


def cmd_sipp(path, total):
    head, last = sipp_rows(path)
    if head is None:
        print(f"0 {total} 0 0")
        return
    get = lambda k: last[head.index(k)] if k in head else "0"
    ok = int(float(get("SuccessfulCall(C)")))
    failed = int(float(get("FailedCall(C)")))
    elapsed = seconds(get("ElapsedTime(C)"))
    # Attempts that never finished (the run was cut short) count as failures.
    failed += max(0, int(total) - ok - failed)
    achieved = float(get("CallRate(C)"))
    print(f"{ok} {failed} {achieved:.0f} {elapsed:.1f}")


def cmd_current(path):
    head, last = sipp_rows(path)
    if head is None or "CurrentCall" not in head:
        print("n/a")
        return
    print(last[head.index("CurrentCall")])


UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


def cmd_criterion(path, name):
    try:
        lines = open(path, errors="replace").read().replace("\r", "\n").splitlines()
    except OSError:
        print("n/a")
        return
    start = None
    for i, line in enumerate(lines):
        if line.strip().startswith(name) and "Benchmarking" not in line:
            start = i
    if start is None:
        print("n/a")
        return
    for line in lines[start : start + 6]:
        m = re.search(r"thrpt:\s*\[\S+ \S+ (\S+) ([KMG]?)elem/s", line)
        if m:
            print(f"{float(m.group(1)) * UNITS[m.group(2)]:.0f}")
            return
    print("n/a")


def cmd_latency(path, name):
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        print("n/a n/a")
        return
    for line in lines:
        # The name is padded to 32 columns; match it exactly.
        if line[:32].rstrip() == name:
            p50 = re.search(r"p50\s+([\d.]+)", line)
            p99 = re.search(r"p99\s+([\d.]+)", line)
            if p50 and p99:
                print(f"{p50.group(1)} {p99.group(1)}")
                return
    print("n/a n/a")


def cmd_libsrtp(path):
    try:
        text = open(path, errors="replace").read()
    except OSError:
        text = ""
    m = re.search(
        r"protect (\d+) pkt/s, unprotect (\d+) pkt/s, round trip (\d+) pkt/s", text
    )
    print(" ".join(m.groups()) if m else "n/a n/a n/a")


def slope_per_min(pts):
    """Least-squares slope of (seconds, KiB) points, in KiB per minute."""
    if len(pts) < 2:
        return 0.0
    mt = sum(t for t, _ in pts) / len(pts)
    mr = sum(r for _, r in pts) / len(pts)
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (r - mr) for t, r in pts) / var * 60.0


def cmd_soak(path):
    pts = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    pts.append((float(parts[0]), int(parts[1])))
    except OSError:
        pass
    if not pts:
        print("0 n/a n/a n/a n/a n/a n/a")
        return
    rss = [r for _, r in pts]
    slope = slope_per_min(pts)
    late = slope_per_min(pts[len(pts) // 2 :])
    after1 = slope_per_min([p for p in pts if p[0] >= 60.0])
    print(f"{len(pts)} {rss[0]} {rss[-1]} {max(rss)} {slope:.0f} {late:.0f} {after1:.0f}")


def cmd_ratio(a, b):
    try:
        a, b = float(a), float(b)
    except ValueError:
        print("n/a")
        return
    print(f"{a / b:.2f}" if b > 0 else "n/a")


def pcap_packets(path):
    """(time, ip payload bytes) of each IPv4 packet of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        end = "<"
    else:
        end = ">"
        magic = struct.unpack(">I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    link = struct.unpack(end + "I", data[20:24])[0]
    # Ethernet (tcpdump on lo), Linux cooked v1/v2, raw IP.
    skip = {1: 14, 113: 16, 276: 20, 101: 0, 12: 0}.get(link)
    if skip is None:
        return
    off = 24
    while off + 16 <= len(data):
        sec, frac, cap, _ = struct.unpack(end + "IIII", data[off : off + 16])
        pkt = data[off + 16 : off + 16 + cap]
        off += 16 + cap
        t = sec + frac / (1e9 if nano else 1e6)
        ip = pkt[skip:]
        if len(ip) >= 20 and ip[0] >> 4 == 4:
            yield t, ip


def udp_of(ip):
    """(sport, dport, udp payload) of an IPv4 UDP packet, or None."""
    if ip[9] != 17:
        return None
    ihl = (ip[0] & 0x0F) * 4
    if len(ip) < ihl + 8:
        return None
    sport, dport = struct.unpack(">HH", ip[ihl : ihl + 4])
    return sport, dport, ip[ihl + 8 :]


def cmd_g711raw(src, dst):
    out = bytearray()
    for _, ip in pcap_packets(src):
        u = udp_of(ip)
        if not u or len(u[2]) < 12 or u[2][0] >> 6 != 2:
            continue
        rtp = u[2]
        start = 12 + 4 * (rtp[0] & 0x0F)
        out += rtp[start:]
    with open(dst, "wb") as f:
        f.write(out)
    print(f"{len(out) / 8000:.1f}")


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def endpoint_of(ip, sport, dport, by_addr):
    """(source, destination) of a packet: UDP ports, or IPv4 addresses when the
    generators are told apart by address."""
    if by_addr:
        return ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    return sport, dport


def rtp_streams(path, port_a, port_b, trim):
    """Reads a loopback capture of RTP between two load generators (media ports
    PORT_A and PORT_B, or their addresses when both are dotted IPv4 addresses)
    and a relay. A packet from a generator's port is one the
    relay received; a packet to a generator's port is one it sent. A stream is
    named by the generator that sent it and its SSRC (each sipp numbers its
    streams' SSRCs from one base, so the sender's side tells them apart); the
    relays measured here keep SSRC and sequence numbers on plain RTP.

    Loss: packets the relay received (in the capture, away from its first and
    last TRIM seconds, so that packets in flight at the edges are not counted)
    with no packet of the same stream and sequence number sent on. Jitter: the
    RFC 3550 interarrival jitter of each stream, at the relay's input (the load
    generator's own) and at its output, once a second over the same window
    (jitter_samples). Delay: per packet, output time minus
    input time."""
    by_addr = isinstance(port_a, str)
    side = {port_a: "a", port_b: "b"}
    other = {"a": "b", "b": "a"}
    ins, outs = {}, {}
    t_first = t_last = None
    for t, ip in pcap_packets(path):
        u = udp_of(ip)
        if not u:
            continue
        sport, dport, rtp = u
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        sport, dport = endpoint_of(ip, sport, dport, by_addr)
        seq, ts, ssrc = struct.unpack(">HII", rtp[2:12])
        if sport in side:
            key, table = (side[sport], ssrc), ins
        elif dport in side:
            key, table = (other[side[dport]], ssrc), outs
        else:
            continue
        table.setdefault(key, []).append((t, seq, ts))
        t_first = t if t_first is None else t_first
        t_last = t
    return ins, outs, t_first, t_last


def jitter_samples(pkts, lo, hi):
    """The RFC 3550 interarrival jitter estimate (8 kHz clock) of one stream's
    packets in arrival order, as a receiver would report it once a second: its
    value at each whole second from LO to HI (ms), keyed by that second. The
    estimate runs over every packet, so it has settled before LO."""
    j = 0.0
    prev = None
    out = {}
    tick = math.ceil(lo)
    for t, _, ts in pkts:
        while tick <= hi and tick <= t:
            if prev is not None:
                out[tick] = j * 1000.0
            tick += 1
        if prev is not None:
            dts = ((ts - prev[1] + 2**31) % 2**32) - 2**31  # signed, across wrap
            d = (t - prev[0]) - dts / 8000.0
            j += (abs(d) - j) / 16.0
        prev = (t, ts)
    return out


def endpoint_arg(text):
    """A generator's media port, or its IPv4 address (kept as text)."""
    return text if "." in text else int(text)


def cmd_rtp(path, port_a, port_b, trim):
    na = " ".join(["n/a"] * 14)
    try:
        a, b = endpoint_arg(port_a), endpoint_arg(port_b)
        if isinstance(a, str) != isinstance(b, str):
            raise ValueError("two ports or two addresses")
        ins, outs, t0, t1 = rtp_streams(path, a, b, float(trim))
    except (OSError, ValueError):
        print(na)
        return
    if t0 is None:
        print(na)
        return
    lo, hi = t0 + float(trim), t1 - float(trim)
    sent = lost = matched_streams = 0
    delays = []
    for key, pkts in ins.items():
        got = {seq: t for t, seq, _ in outs.get(key, [])}
        if got:
            matched_streams += 1
        for t, seq, _ in pkts:
            if not lo <= t <= hi:
                continue
            sent += 1
            t_out = got.get(seq)
            if t_out is None:
                lost += 1
            else:
                delays.append((t_out - t) * 1000.0)
    # Jitter as receivers would report it, once a second over the window (not
    # at the capture's edges, where the bench itself starts and stops things):
    # every stream's every report counts, so a stall that hits all streams for
    # a second shows in the p99 of a 30 s window.
    j_in = {k: jitter_samples(p, lo, hi) for k, p in ins.items()}
    j_out = {k: jitter_samples(p, lo, hi) for k, p in outs.items()}
    # What the relay added: per stream and second, jitter out minus jitter in.
    added = [
        v - j_in[k][tick] for k, per in j_out.items() if k in j_in for tick, v in per.items()
        if tick in j_in[k]
    ]
    j_in = [v for per in j_in.values() for v in per.values()]
    j_out = [v for per in j_out.values() for v in per.values()]

    def f(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    loss = lost * 100.0 / sent if sent and matched_streams else None
    print(
        f"{len(ins)} {matched_streams} {sent} {lost if matched_streams else 'n/a'} "
        f"{f(loss, '{:.3f}')} {f(pct(j_in, 50))} {f(pct(j_in, 99))} "
        f"{f(pct(j_out, 50))} {f(pct(j_out, 99))} {f(pct(delays, 50), '{:.3f}')} "
        f"{f(pct(delays, 99), '{:.3f}')} {f(max(delays) if delays else None, '{:.3f}')} "
        f"{f(pct(added, 50))} {f(pct(added, 99))}"
    )


def cmd_srtpload(path):
    try:
        with open(path) as f:
            r = json.load(f)
        calls, sides = r["calls"], (r["uac"], r["uas"])
    except (OSError, ValueError, KeyError, TypeError):
        print("0 n/a n/a n/a n/a n/a n/a n/a n/a")
        return
    total = lambda k: sum(int(s.get(k) or 0) for s in sides)
    lost, got = total("packets_lost"), total("packets_received")
    loss = f"{lost * 100.0 / (lost + got):.3f}" if lost + got else "n/a"
    jit = [s.get("jitter_p99_ms") for s in sides if s.get("jitter_p99_ms") is not None]
    reasons = dict(calls.get("failures") or {})
    for why, n in (calls.get("callee_failures") or {}).items():
        reasons[f"callee: {why}"] = reasons.get(f"callee: {why}", 0) + n
    why = ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items())) or "-"
    print(
        f"{calls.get('ok', 0)} {calls.get('failed', 0)} {total('auth_failures')} "
        f"{total('peer_key_in_sdp')} {total('other_ssrc')} {total('send_errors')} "
        f"{loss} {max(jit) if jit else 'n/a'} {why}"
    )


def cmd_loadstatus(path):
    try:
        with open(path) as f:
            print(int(json.load(f)["up"]))
    except (OSError, ValueError, KeyError, TypeError):
        print("n/a")


def cmd_cdr(path, n):
    try:
        text = open(path).read().strip()
        if text.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError):
        print("0 n/a n/a")
        return
    rows = [r for r in rows if r.get("disposition") == "answered"][: int(n)]
    got = lost = unforwarded = 0
    for r in rows:
        m = r.get("media") or {}
        a, b = m.get("caller") or {}, m.get("callee") or {}
        for src, dst in ((a, b), (b, a)):
            got += src.get("packets_in", 0) + src.get("packets_lost", 0)
            lost += src.get("packets_lost", 0)
            unforwarded += max(0, src.get("packets_in", 0) - dst.get("packets_out", 0))
    if not rows or got == 0:
        print(f"{len(rows)} n/a n/a")
        return
    print(f"{len(rows)} {lost * 100.0 / got:.3f} {unforwarded * 100.0 / got:.3f}")


def cmd_cpu(*pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    print(f"{total / tick:.2f}")


def main(argv):
    cmds = {
        "sipp": (cmd_sipp, 2),
        "current": (cmd_current, 1),
        "criterion": (cmd_criterion, 2),
        "latency": (cmd_latency, 2),
        "libsrtp": (cmd_libsrtp, 1),
        "soak": (cmd_soak, 1),
        "ratio": (cmd_ratio, 2),
        "g711raw": (cmd_g711raw, 2),
        "rtp": (cmd_rtp, 4),
        "cdr": (cmd_cdr, 2),
        "srtpload": (cmd_srtpload, 1),
        "loadstatus": (cmd_loadstatus, 1),
        "cpu": (cmd_cpu, None),  # any number of pids
    }
    if (
        len(argv) < 2
        or argv[1] not in cmds
        or cmds[argv[1]][1] not in (None, len(argv) - 2)
    ):
        sys.stderr.write(__doc__)
        return 2
    cmds[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
