#!/usr/bin/env python3
"""Reads a Prometheus text exposition (format 0.0.4) the way a scraper's client library does.

Usage: check_metrics.py FILE EXPECT...
  FILE                   the text (`-` for stdin)
  FAMILY=TYPE            family FAMILY has type TYPE (counter, gauge, histogram) and samples;
                         FAMILY is prometheus_client's name, a counter's without `_total`
  FAMILY=TYPE?           the same, but it may have no samples (a labelled family with no series)
  SAMPLE{k=v,...}        a sample of that name with (at least) these labels

Parses with prometheus_client.parser.text_string_to_metric_families and checks that no family
is untyped or appears twice (what a family's samples placed away from its HELP/TYPE lines
produce), that each sample's name fits its family's type (counter NAME_total, gauge NAME,
histogram NAME_bucket/NAME_sum/NAME_count with a +Inf bucket equal to the count), and each
EXPECT. Prints the families and exits 1 with the problems on stderr.
"""
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[1] == "-" else open(argv[1], encoding="utf-8").read()
    problems = []
    families = {}
    for fam in text_string_to_metric_families(text):
        if fam.name in families:
            problems.append(f"family {fam.name} appears twice")
        families[fam.name] = fam
        if fam.type not in SUFFIXES:
            problems.append(f"family {fam.name} has type {fam.type}")
            continue
        names = {fam.name + s for s in SUFFIXES[fam.type]}
        for s in fam.samples:
            if s.name not in names:
                problems.append(f"sample {s.name} does not fit {fam.type} family {fam.name}")
        if fam.type == "histogram" and fam.samples:
            inf = [s.value for s in fam.samples if s.labels.get("le") == "+Inf"]
            count = [s.value for s in fam.samples if s.name == fam.name + "_count"]
            if len(inf) != 1 or inf != count:
                problems.append(f"histogram {fam.name}: +Inf bucket {inf} vs count {count}")
        print(f"{fam.name} {fam.type} {len(fam.samples)} samples")

    for want in argv[2:]:
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)=(\w+)(\??)", want)
        if m:
            name, kind, optional = m.groups()
            fam = families.get(name)
            if fam is None:
                problems.append(f"no family {name}")
            elif fam.type != kind:
                problems.append(f"family {name} has type {fam.type}, want {kind}")
            elif not fam.samples and not optional:
                problems.append(f"family {name} has no samples")
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", want)
        if not m:
            print(f"bad EXPECT {want!r}", file=sys.stderr)
            return 2
        name, labels = m.group(1), dict(
            kv.split("=", 1) for kv in m.group(2).split(",") if kv
        )
        found = any(
            s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            for fam in families.values()
            for s in fam.samples
        )
        if not found:
            problems.append(f"no sample {want}")

    for p in problems:
        print(f"check_metrics: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
