#!/usr/bin/env bash
# The cost of routing and transforms in the collector, on the batch bench's load: wrk posts
# 500-event /v1/batch requests on loopback to three collectors started side by side, measured
# in turn within each round (so a shared VM's drift hits all three alike):
#
#   plain       one destination ([sink], file), no routes, no transforms: today's default
#   routes      two file destinations; [[routes]]: every transaction to `main`, and to `audit`
#               those with currency = "EUR" sampled at 50% (by event id)
#   transforms  the same routes plus a typical rule set: for every copy rename + drop + set,
#               for the `audit` copy only hash (HMAC-SHA256) + mask + redact
#
# Prints per round and a summary (median, min–max over rounds) of events/s and of the
# collector's CPU time per event (user + system, all threads: ingest, log and streaming to
# every destination), the figure that shows the cost on a machine whose speed drifts.
#
#   bash collector/bench/routing.sh      # DURATION=5s CONNECTIONS=32 THREADS=2 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
VARIANTS=(plain routes transforms)
BASE_PORT=18090

command -v wrk >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
}
cargo build --release -q -p evlog-collector
BIN="${CARGO_TARGET_DIR:-target}/release/evlog-collector"

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The destinations, routes and rules of each variant (after a common [collector] section).
sinks_plain() { printf '[sink]\nkind = "file"\n[sink.file]\ndir = "%s"\n' "$1/data"; }
sinks_routes() {
  cat <<TOML
[destinations.main]
kind = "file"
dir = "$1/main"
[destinations.audit]
kind = "file"
dir = "$1/audit"
[[routes]]
tables = ["events.*"]
to = ["main"]
[[routes]]
tables = ["events.transaction"]
to = ["audit"]
where = { field = "currency", equals = "EUR" }
sample = 0.5
TOML
}
sinks_transforms() {
  sinks_routes "$1"
  cat <<'TOML'
[[transforms]]
tables = ["events.transaction"]
rename = { "ref" = "referrer_code" }
set = { "meta.source" = "bench" }
drop = ["debug"]
[[transforms]]
tables = ["events.transaction"]
destinations = ["audit"]
hash = ["email"]
hash_key = "bench-only-key-0123456789"
mask = { "card" = 4 }
redact = { "note" = ["email", "ipv4"] }
TOML
}

for k in "${!VARIANTS[@]}"; do
  v="${VARIANTS[$k]}"
  port=$((BASE_PORT + k))
  mkdir -p "$tmp/$v"
  {
    cat <<TOML
[collector]
listen = "127.0.0.1:$port"
wal_dir = "$tmp/$v/wal"
high_watermark = "1GiB"
wal_max_bytes = "2GiB"
max_batch_events = 1000
[schemas]
dir = "collector/examples/schemas"
TOML
    "sinks_$v" "$tmp/$v"
  } > "$tmp/$v.toml"
  "$BIN" --config "$tmp/$v.toml" > "$tmp/$v.out" 2>&1 &
  pids+=($!)
done
for k in "${!VARIANTS[@]}"; do
  port=$((BASE_PORT + k))
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    kill -0 "${pids[$k]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "${pids[$k]}" 2>/dev/null || {
    echo "bench: collector ${VARIANTS[$k]} did not start (port $port in use?):" >&2
    cat "$tmp/${VARIANTS[$k]}.out" >&2
    exit 1
  }
done

# One 500-event batch: the batch bench's transaction plus the fields the rules act on.
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
def ev(i):
    return {"namespace": "events", "type": "transaction",
            "event": {"user_id": i, "amount": "19.99", "currency": "EUR" if i % 4 else "USD",
                      "items": [{"sku": "SKU-%d" % i, "price": "19.99", "qty": 1}],
                      "email": "user%d@example.com" % i, "card": "4111111111111111",
                      "ref": "newsletter", "debug": {"trace": i},
                      "note": "call me at me%d@example.org from 10.0.0.%d" % (i, i % 250)}}
with open(f"{tmp}/batch.lua", "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("wrk.body = [==[" + json.dumps([ev(i) for i in range(500)]) + "]==]\n")
PY

TICK="$(getconf CLK_TCK)"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk against variant k; prints "<events/s> <non-2xx> <collector CPU µs per event>".
bench() { # k
  local port=$((BASE_PORT + $1)) pid="${pids[$1]}" out t0 t1
  t0="$(ticks "$pid")"
  out="$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$tmp/batch.lua" "http://127.0.0.1:$port/v1/batch")"
  # Wait for the streamers to deliver what was accepted, so their CPU time counts too.
  for _ in $(seq 600); do
    local m
    m="$(curl -s "http://127.0.0.1:$port/metrics")"
    awk '/^evlog_events_accepted_total / {a = $2} /^evlog_events_delivered_total / {d = $2}
      /^evlog_events_dropped_total\{reason="unrouted"\}/ {u = $2}
      /^evlog_events_fanned_out_total / {f = $2}
      END {exit !(a > 0 && d >= a + f - u)}' <<<"$m" && break
    sleep 0.1
  done
  t1="$(ticks "$pid")"
  python3 - "$out" "$((t1 - t0))" "$TICK" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
total = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"requests in ([\d.]+)(\w+)", out)
secs = float(m.group(1)) * {"s": 1, "ms": 1e-3, "m": 60}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
bad = int(bad.group(1)) if bad else 0
events = (total - bad) * 500
print(f"{events / secs:.0f} {bad} {ticks / hz * 1e6 / max(events, 1):.3f}")
PY
}

for r in $(seq "$ROUNDS"); do
  line="$r"
  for k in "${!VARIANTS[@]}"; do
    line="$line $(bench "$k")"
  done
  echo "$line" >> "$tmp/rounds"
done

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t $THREADS -c $CONNECTIONS -d $DURATION; $ROUNDS rounds, variants alternating"
# What each variant did with what it accepted: delivered copies, and nothing rejected or lost.
for k in "${!VARIANTS[@]}"; do
  curl -s "http://127.0.0.1:$((BASE_PORT + k))/metrics" | awk -v v="${VARIANTS[$k]}" '
    /^evlog_events_accepted_total / {a = $2} /^evlog_events_delivered_total / {d = $2}
    /^evlog_events_fanned_out_total / {f = $2}
    /^evlog_events_rejected_total\{reason/ {r += $2} /^evlog_events_dropped_total\{reason/ {x += $2}
    /^evlog_transform_skipped_total\{reason/ {s += $2}
    END {printf "%s: accepted %d, copies delivered %d (fanned out %d), rejected %d, dropped %d, transform skips %d\n", v, a, d, f, r, x, s}'
done
python3 - "$tmp/rounds" "${VARIANTS[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
names = sys.argv[2:]
for row in rows:
    parts = [f"{n} {float(row[1 + 3 * k]):,.0f} ev/s {float(row[3 + 3 * k]):.2f} us/ev (non-2xx {row[2 + 3 * k]})"
             for k, n in enumerate(names)]
    print(f"round {row[0]}: " + "; ".join(parts))
print()
print("| collector | events/s median | min – max | CPU µs/event median | min – max |")
print("|---|---|---|---|---|")
for k, n in enumerate(names):
    eps = [float(r[1 + 3 * k]) for r in rows]
    cpu = [float(r[3 + 3 * k]) for r in rows]
    print(f"| {n} | {statistics.median(eps):,.0f} | {min(eps):,.0f} – {max(eps):,.0f} | "
          f"{statistics.median(cpu):.2f} | {min(cpu):.2f} – {max(cpu):.2f} |")
base = statistics.median(float(r[3]) for r in rows)
for k, n in enumerate(names[1:], 1):
    d = [float(r[3 + 3 * k]) - float(r[3]) for r in rows]
    print(f"{n}: +{statistics.median(d):.2f} µs of CPU per event over plain (per-round differences "
          f"{min(d):+.2f} to {max(d):+.2f})")
PY
