#!/usr/bin/env python3
"""Draws the scaling benchmarks' curves as small, self-contained SVG files.

  plot.py OUT.svg TITLE XLABEL YLABEL [--logx] SERIES...

Each SERIES is `name=x1:y1,x2:y2,...` (values that are not numbers are
skipped, so a failed measurement leaves a gap rather than breaking the plot).
No dependencies beyond the standard library: the SVG is written by hand, with
text as text, so it renders anywhere BENCHMARKS.md is read.
"""
import math
import sys

W, H = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 52, 52
COLOURS = ["#1f5fbf", "#d9822b", "#a4262c", "#2e8540"]


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_series(arg):
    name, _, points = arg.partition("=")
    out = []
    for pair in points.split(","):
        x, _, y = pair.partition(":")
        try:
            out.append((float(x), float(y)))
        except ValueError:
            continue
    return name, out


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step / 2:
        ticks.append(t)
        t += step
    return ticks


def label(v):
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:g}M"
    if abs(v) >= 1_000:
        return f"{v / 1_000:g}k"
    return f"{v:g}"


def main(argv):
    if len(argv) < 6:
        sys.exit(__doc__)
    out, title, xlabel, ylabel = argv[1:5]
    rest = argv[5:]
    logx = "--logx" in rest
    series = [parse_series(a) for a in rest if a != "--logx"]
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="#fff"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>',
    ]
    if not xs:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
        open(out, "w").write("\n".join(parts))
        return
    fx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    x_lo, x_hi = fx(min(xs)), fx(max(xs))
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_ticks = nice_ticks(0, max(ys) * 1.05 or 1)
    y_hi = y_ticks[-1]
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    px = lambda v: LEFT + (fx(v) - x_lo) / (x_hi - x_lo) * pw
    py = lambda v: TOP + ph - v / y_hi * ph
    # axes and grid
    for t in y_ticks:
        y = py(t)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e3e6eb"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label(t)}</text>')
    for v in sorted(set(xs)):
        x = px(v)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP + ph}" x2="{x:.1f}" y2="{TOP + ph + 4}" stroke="#555"/>')
        parts.append(f'<text x="{x:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{label(v)}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{W - RIGHT}" y2="{TOP + ph}" stroke="#555"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="#555"/>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">{esc(xlabel)}</text>')
    parts.append(
        f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + ph / 2})">{esc(ylabel)}</text>'
    )
    for i, (name, pts) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        pts = sorted(pts)
        if len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}">'
                         f'<title>{esc(name)}: {label(x)} → {y:g}</title></circle>')
        lx = LEFT + 10 + i * 150
        parts.append(f'<rect x="{lx}" y="{TOP - 22}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{TOP - 13}">{esc(name)}</text>')
    parts.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main(sys.argv)
