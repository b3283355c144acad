"""Reads cpu_by_symbol.sh's per-run `perf report` tables (DIR/{without,with}-N.txt, samples at
10 kHz of cpu-clock, and DIR/...-N.rps, requests/s during the run) and prints the µs per request
that the page with its calls adds, by (thread, library) and by function, one column per pair:
a sample is 100 µs of CPU, a run's 5 s window served 5 × requests/s pages.
    python3 cpu_by_symbol.py DIR PAIRS"""
import collections
import re
import sys

SAMPLE_US = 100.0  # perf record -F 10000
WINDOW_S = 5.0


def load(path, rps_path):
    per = collections.Counter()
    for line in open(path):
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        n, comm, dso, sym = int(parts[0]), parts[1], parts[2], parts[3].strip()
        sym = re.sub(r"^\[[.k]\]\s*", "", sym)
        thread = "flush" if comm.startswith("evlog") else "php"
        dso = "kernel" if dso == "[kernel.kallsyms]" else dso
        per[(thread, dso, sym[:90])] += n
    requests = float(open(rps_path).read().strip() or 0) * WINDOW_S
    return {k: v * SAMPLE_US / requests for k, v in per.items()} if requests else {}


def main():
    d, pairs = sys.argv[1], int(sys.argv[2])
    added, withs = collections.defaultdict(lambda: [0.0] * pairs), []
    for i in range(pairs):
        a = load(f"{d}/without-{i + 1}.txt", f"{d}/without-{i + 1}.rps")
        b = load(f"{d}/with-{i + 1}.txt", f"{d}/with-{i + 1}.rps")
        withs.append(b)
        for k in set(a) | set(b):
            added[k][i] = b.get(k, 0.0) - a.get(k, 0.0)
    cols = " | ".join(f"pair {i + 1}" for i in range(pairs))
    sep = "|---" * (pairs + 2) + "|"

    def table(title, rows, limit):
        print(f"\n### {title}\n\n| thread | where | {cols} |\n{sep}")
        for k, v in sorted(rows.items(), key=lambda kv: -sum(kv[1]))[:limit]:
            print(f"| {k[0]} | {' '.join(k[1:])} | " + " | ".join(f"{x:+.2f}" for x in v) + " |")

    by_dso = collections.defaultdict(lambda: [0.0] * pairs)
    for k, v in added.items():
        for i, x in enumerate(v):
            by_dso[(k[0], k[1])][i] += x
    table("µs per request added, by thread and library", by_dso, 12)
    table("µs per request added, PHP threads, by function", {k: v for k, v in added.items() if k[0] == "php"}, 25)
    flush = collections.defaultdict(lambda: [0.0] * pairs)
    for i, b in enumerate(withs):
        for k, x in b.items():
            if k[0] == "flush":
                flush[k][i] = x
    table("µs per request, flush threads, by function (the page with its calls)", flush, 25)


main()
