#!/usr/bin/env python3
"""Turns bench/run.sh's TSV into a markdown table of ratios and an SVG chart.

Usage: report.py peers.tsv chart.svg  (markdown on stdout)

For every (peer, c) the median run by conn/s is kept; ratios are taken
against xinetd and against the in-process server *of the same run*, which is
what survives this machine's drift. With several rounds (REPEAT), a second
table gives each peer's ratios to every other peer's in the same round
(`base` first, if there is one): median and range over the rounds.
Standard library only.
"""

import csv
import statistics
import sys
from collections import defaultdict


def rows_of(path):
    rows = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows[(r["peer"], int(r["c"]))].append(r)
    return rows


def load(path):
    rows = rows_of(path)
    picked = {}
    for key, runs in rows.items():
        runs.sort(key=lambda r: float(r["conn_per_s"] or 0))
        picked[key] = runs[(len(runs) - 1) // 2]
    return picked


def num(r, k):
    try:
        return float(r[k])
    except (ValueError, KeyError):
        return float("nan")


def loader(p):
    """The loader suffix of a row's name (`@wrk`), or nothing (loadgen)."""
    return p[p.index("@"):] if "@" in p else ""


def table(picked):
    peers = []
    for p, _ in picked:
        if p not in peers:
            peers.append(p)
    cs = sorted({c for _, c in picked})
    out = [
        "| peer | c | conn/s | × xinetd | × native | p50 ms | p99 ms | errors | server CPU µs/conn | CPU × native |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in peers:
        for c in cs:
            r = picked.get((p, c))
            if not r:
                continue
            # Ratios within one loader's rows.
            x = picked.get(("xinetd" + loader(p), c))
            n = picked.get(("native" + loader(p), c))
            ratio = lambda a, b, k: (f"{num(a, k) / num(b, k):.2f}" if b and num(b, k) > 0 else "–")
            out.append(
                f"| {p} | {c} | {num(r, 'conn_per_s'):.0f} | {ratio(r, x, 'conn_per_s')} | "
                f"{ratio(r, n, 'conn_per_s')} | {num(r, 'p50_ms'):.2f} | {num(r, 'p99_ms'):.2f} | "
                f"{r['errors']} | {r['cpu_us_per_conn']} | {ratio(r, n, 'cpu_us_per_conn')} |"
            )
    return "\n".join(out), peers, cs


def chart(picked, peers, cs, path):
    """Two grouped bar panels: conn/s and server CPU µs per connection."""
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"]
    panels = [("connections/s (higher is better)", "conn_per_s"),
              ("server CPU µs per connection (lower is better)", "cpu_us_per_conn")]
    w, ph, left, top = 760, 260, 70, 40
    h = top + len(panels) * (ph + 70) + 30
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w/2}" y="20" text-anchor="middle" font-size="15">wasinetd vs peers, hello-world, one connection per request (same run)</text>']
    for pi, (title, key) in enumerate(panels):
        y0 = top + pi * (ph + 70) + 20
        vals = [num(picked[(p, c)], key) for p in peers for c in cs if (p, c) in picked]
        vmax = max([v for v in vals if v == v] or [1]) * 1.1
        svg.append(f'<text x="{left}" y="{y0 - 6}" font-size="13">{title}</text>')
        svg.append(f'<line x1="{left}" y1="{y0 + ph}" x2="{w - 20}" y2="{y0 + ph}" stroke="black"/>')
        group_w = (w - left - 40) / max(len(cs), 1)
        bar_w = group_w * 0.8 / max(len(peers), 1)
        for ci, c in enumerate(cs):
            gx = left + ci * group_w + group_w * 0.1
            svg.append(f'<text x="{gx + group_w * 0.4}" y="{y0 + ph + 16}" text-anchor="middle">c = {c}</text>')
            for i, p in enumerate(peers):
                r = picked.get((p, c))
                if not r:
                    continue
                v = num(r, key)
                if v != v:
                    continue
                bh = ph * v / vmax
                x = gx + i * bar_w
                svg.append(f'<rect x="{x:.1f}" y="{y0 + ph - bh:.1f}" width="{bar_w * 0.9:.1f}" height="{bh:.1f}" fill="{colors[i % len(colors)]}"/>')
                svg.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{y0 + ph - bh - 3:.1f}" text-anchor="middle" font-size="10">{v:.0f}</text>')
        for i, p in enumerate(peers):
            lx = left + i * 120
            ly = y0 + ph + 32
            svg.append(f'<rect x="{lx}" y="{ly - 10}" width="10" height="10" fill="{colors[i % len(colors)]}"/>')
            svg.append(f'<text x="{lx + 14}" y="{ly}">{p}</text>')
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def rounds(path, peers, cs):
    """Per-round ratios of each peer to a reference peer of the same round:
    conn/s and server CPU per connection, median [min-max] over rounds."""
    rows = rows_of(path)
    if max((len(v) for v in rows.values()), default=0) < 2:
        return ""
    ref = "base" if "base" in peers else peers[0].split("@")[0]
    out = [
        f"\nPer-round ratios to `{ref}` of the same loader (median [range] over rounds):\n",
        f"| peer | c | rounds | conn/s × {ref} | CPU/conn × {ref} | conn/s median [range] | CPU µs/conn median [range] |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    fmt = lambda xs, f: f"{statistics.median(xs):{f}} [{min(xs):{f}}-{max(xs):{f}}]"
    for p in peers:
        for c in cs:
            mine = {r["run"]: r for r in rows.get((p, c), [])}
            base = {r["run"]: r for r in rows.get((ref + loader(p), c), [])}
            both = [k for k in mine if k in base]
            if not both:
                continue
            speed = [num(mine[k], "conn_per_s") / num(base[k], "conn_per_s") for k in both]
            cpu = [num(mine[k], "cpu_us_per_conn") / num(base[k], "cpu_us_per_conn") for k in both]
            out.append(
                f"| {p} | {c} | {len(both)} | {fmt(speed, '.2f')} | {fmt(cpu, '.2f')} | "
                f"{fmt([num(mine[k], 'conn_per_s') for k in both], '.0f')} | "
                f"{fmt([num(mine[k], 'cpu_us_per_conn') for k in both], '.0f')} |"
            )
    return "\n".join(out)


def main():
    picked = load(sys.argv[1])
    md, peers, cs = table(picked)
    chart(picked, peers, cs, sys.argv[2])
    print(md)
    extra = rounds(sys.argv[1], peers, cs)
    if extra:
        print(extra)


if __name__ == "__main__":
    main()
