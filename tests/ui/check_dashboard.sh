#!/usr/bin/env bash
# docs/grafana-dashboard.json is valid JSON, and every evlog_* metric it or
# docs/prometheus-alerts.yml names is a family of a live collector's /metrics (started from BIN
# on a free loopback port, after one batch with a delivered and a rejected event).
#   BIN=<evlog-collector> bash tests/ui/check_dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/c.toml" <<TOML
[collector]
listen = "127.0.0.1:0"
wal_dir = "$work/wal"
[sink]
kind = "file"
[sink.file]
dir = "$work/data"
[schemas]
dir = "collector/examples/schemas"
TOML
# The file exists before the background start opens it: the wait below reads it at once.
: > "$work/out"
"$BIN" --config "$work/c.toml" >> "$work/out" 2>&1 &
pid=$!
url=""
for _ in $(seq 300); do
  url="$(sed -n 's/^evlog-collector listening on /http:\/\//p' "$work/out")"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the collector did not start" >&2; cat "$work/out" >&2; exit 1; }
curl -sf -o /dev/null -X POST "$url/v1/batch" -d \
  '[{"namespace":"events","type":"page_view","event":{"url":"/","user_id":1}},
    {"namespace":"events","type":"transaction","event":{"amount":"1.00"}}]'
# Settled: the row delivered and the dead letter stored.
for _ in $(seq 300); do
  curl -sf "$url/metrics" -o "$work/metrics"
  grep -q '^evlog_events_delivered_by_table_total' "$work/metrics" &&
    grep -q '^evlog_events_rejected_total{reason="missing_required"} 1$' "$work/metrics" && break
  sleep 0.1
done
python3 - "$work/metrics" docs/grafana-dashboard.json docs/prometheus-alerts.yml <<'PY'
import json, re, sys
metrics, dashboard, alerts = sys.argv[1:]
types = dict(re.findall(r"^# TYPE (\S+) (\w+)", open(metrics).read(), re.M))
def known(name):
    if name in types:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and types.get(base) == "histogram":
            return True
    return False
d = json.load(open(dashboard))
exprs = []
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k in ("expr", "definition") and isinstance(x, str):
                exprs.append(x)
            elif k == "query" and isinstance(x, str):
                exprs.append(x)
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(d)
assert exprs, "the dashboard has no queries"
named = set()
for e in exprs + [open(alerts).read()]:
    named.update(re.findall(r"\bevlog_[a-z0-9_]+", e))
missing = sorted(n for n in named if not known(n))
print(f"{len(exprs)} dashboard queries; {len(named)} metrics named; missing from /metrics: {missing}")
sys.exit(1 if missing else 0)
PY
