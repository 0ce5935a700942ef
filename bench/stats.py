#!/usr/bin/env python3
"""Parsers and arithmetic for bench/run.sh; each subcommand prints one line.

  stats.py sipp STAT.csv TOTAL        -> "ok failed achieved_per_s elapsed_s"
  stats.py current STAT.csv           -> calls in progress in the last stat row
  stats.py criterion LOG NAME         -> elements per second of a criterion bench
  stats.py latency LOG NAME           -> "p50_us p99_us" of a pbx-plugin latency line
  stats.py libsrtp LOG                -> "protect unprotect round_trip" packets per second
  stats.py soak SAMPLES.csv           -> "n first_kib last_kib max_kib slope_kib_per_min
                                          late_slope_kib_per_min" (the second: over the
                                          second half of the samples, after warm-up)
  stats.py ratio A B                  -> A/B with two decimals, or n/a

Anything missing or unreadable prints "n/a" fields instead of failing, so one
broken measurement never hides the others.
"""
import csv
import re
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
        print("0 n/a n/a n/a n/a n/a")
        return
    rss = [r for _, r in pts]
    slope = slope_per_min(pts)
    late = slope_per_min(pts[len(pts) // 2 :])
    print(f"{len(pts)} {rss[0]} {rss[-1]} {max(rss)} {slope:.0f} {late:.0f}")


def cmd_ratio(a, b):
    try:
        a, b = float(a), float(b)
    except ValueError:
        print("n/a")
        return
    print(f"{a / b:.2f}" if b > 0 else "n/a")


def main(argv):
    cmds = {
        "sipp": (cmd_sipp, 2),
        "current": (cmd_current, 1),
        "criterion": (cmd_criterion, 2),
        "latency": (cmd_latency, 2),
        "libsrtp": (cmd_libsrtp, 1),
        "soak": (cmd_soak, 1),
        "ratio": (cmd_ratio, 2),
    }
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    cmds[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
