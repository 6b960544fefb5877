#!/usr/bin/env python3
"""The performance targets' ratios from a bench/run.sh peers.tsv: for each
round, a row of one peer divided by another peer's row of the same round,
concurrency and loader; printed as the median [min-max] over the rounds.

Usage: bench/ratios.py bench/results/peers-final/peers.tsv
"""

import csv
import statistics
import sys

# (numerator, denominator, column): conn/s, CPU and p99 against the
# in-process server; conn/s against each peer a user would pick instead.
PAIRS = [
    ("wasinetd", "native", "conn_per_s"),
    ("wasinetd-std", "native", "conn_per_s"),
    ("wasinetd", "native", "cpu_us_per_conn"),
    ("wasinetd-std", "native", "cpu_us_per_conn"),
    ("wasinetd", "native", "p99_ms"),
    ("wasinetd-std", "native", "p99_ms"),
    ("wasinetd", "xinetd", "conn_per_s"),
    ("wasinetd", "xinetd-wasmtime", "conn_per_s"),
    ("wasinetd", "wasmtime-serve", "conn_per_s"),
    ("wasinetd-std", "wasmtime-serve", "conn_per_s"),
]


def main(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    by = {(r["peer"], r["c"], r["run"]): r for r in rows}
    runs = sorted({r["run"] for r in rows})
    print("| row | c | column | against | median [range] over rounds |")
    print("|---|--:|---|---|--:|")
    for loader in ("", "@wrk"):
        for c in sorted({r["c"] for r in rows}, key=int):
            for top, bottom, column in PAIRS:
                ratios = [
                    float(by[(top + loader, c, run)][column])
                    / float(by[(bottom + loader, c, run)][column])
                    for run in runs
                    if (top + loader, c, run) in by and (bottom + loader, c, run) in by
                ]
                if ratios:
                    print(
                        f"| {top + loader} | {c} | {column} | {bottom} | "
                        f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] |"
                    )


if __name__ == "__main__":
    main(sys.argv[1])
