#!/usr/bin/env bash
# The live page's cost to ingest, on the batch bench's load: wrk posts 500-event /v1/batch
# requests on loopback to one collector (file sink), alternating within each round
#
#   closed   nobody watches: ingest pays one relaxed atomic load per request for the page
#   open     one subscriber reads GET /ui/feed (curl, all tables, no filter): every request's
#            rows are captured for the tail (its last 32 rows per table), sent as SSE events,
#            and a snapshot is built every second
#
# and prints, per round and as a summary (median, min-max over rounds), events/s and the
# collector's CPU time per event (user + system, all threads), and the ratio open/closed.
# curl stands for the page: a browser drawing it would also take CPU on this machine, which
# is the browser's cost, not the collector's.
#
#   bash collector/bench/ui.sh      # DURATION=5s CONNECTIONS=32 THREADS=2 ROUNDS=5
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-5}"
PORT="${PORT:-18096}"
KEY="bench-admin-key-0123456789"

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

cat > "$tmp/c.toml" <<TOML
[collector]
listen = "127.0.0.1:$PORT"
wal_dir = "$tmp/wal"
high_watermark = "1GiB"
wal_max_bytes = "2GiB"
max_batch_events = 1000
admin_keys = ["$KEY"]
[sink]
kind = "file"
[sink.file]
dir = "$tmp/data"
[schemas]
dir = "collector/examples/schemas"
TOML
"$BIN" --config "$tmp/c.toml" > "$tmp/collector.out" 2>&1 &
cpid=$!
pids+=("$cpid")
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
kill -0 "$cpid" 2>/dev/null || { echo "bench: the collector did not start (port $PORT in use?)" >&2; exit 1; }

python3 - "$tmp" <<'PY'
import json, sys
def ev(i):
    return {"namespace": "events", "type": "transaction",
            "event": {"user_id": i, "amount": "19.99", "currency": "EUR",
                      "items": [{"sku": "SKU-%d" % i, "price": "19.99", "qty": 1}]}}
with open(sys.argv[1] + "/batch.lua", "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("wrk.body = [==[" + json.dumps([ev(i) for i in range(500)]) + "]==]\n")
PY

ticks() { awk '{print $14 + $15}' "/proc/$cpid/stat"; }
TICK="$(getconf CLK_TCK)"
# Prints "<events/s> <CPU µs per event>" for one wrk run (2xx answers only).
run() {
  local t0 t1 out
  t0="$(ticks)"
  out="$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$tmp/batch.lua" "http://127.0.0.1:$PORT/v1/batch")"
  t1="$(ticks)"
  python3 - "$out" "$((t1 - t0))" "$TICK" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
total = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"requests in ([\d.]+)(\w+)", out)
secs = float(m.group(1)) * {"s": 1, "ms": 1e-3, "m": 60}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
ok = total - (int(bad.group(1)) if bad else 0)
print(f"{ok * 500 / secs:.0f} {ticks / hz * 1e6 / max(ok * 500, 1):.3f}")
PY
}

echo "round  closed ev/s  open ev/s  ratio   closed µs/ev  open µs/ev"
for r in $(seq "$ROUNDS"); do
  read -r c_ev c_cpu < <(run)
  curl -sN -u "x:$KEY" "http://127.0.0.1:$PORT/ui/feed" > "$tmp/feed.out" &
  fpid=$!
  pids+=("$fpid")
  for _ in $(seq 50); do [ -s "$tmp/feed.out" ] && break; sleep 0.1; done
  read -r o_ev o_cpu < <(run)
  kill "$fpid" 2>/dev/null || true
  wait "$fpid" 2>/dev/null || true
  grep -q '^event: tail' "$tmp/feed.out" || { echo "bench: the subscriber got no tail" >&2; exit 1; }
  printf '%5s  %11s  %9s  %5.3f  %12s  %10s\n' "$r" "$c_ev" "$o_ev" \
    "$(python3 -c "print($o_ev / $c_ev)")" "$c_cpu" "$o_cpu"
  echo "$c_ev $o_ev $c_cpu $o_cpu" >> "$tmp/rounds"
done
python3 - "$tmp/rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
col = lambda i: [r[i] for r in rows]
ratio = [r[1] / r[0] for r in rows]
cpu = [r[3] / r[2] for r in rows]
print(f"median: closed {statistics.median(col(0)):.0f} ev/s, open {statistics.median(col(1)):.0f} ev/s; "
      f"ratio open/closed {statistics.median(ratio):.3f} (range {min(ratio):.3f}-{max(ratio):.3f}); "
      f"CPU per event open/closed {statistics.median(cpu):.3f} (range {min(cpu):.3f}-{max(cpu):.3f})")
PY
