#!/usr/bin/env bash
# Collector benchmark on loopback, bounded in time: events/s for /v1/batch (500-event batches) and
# requests/s for single-event /v1/events, each beside nginx answering `return 204` on the same
# machine in the same run. Installs nginx and wrk from Debian when missing.
#
#   bash collector/bench/run.sh            # DURATION=5s CONNECTIONS=64 THREADS=2 FSYNC=always
#
# Only 2xx answers count (429s under overload are reported separately). The collector's CPU time
# per request (user + system, all its threads, streaming included) is printed too: on a shared
# machine it varies less than requests/s.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
FSYNC="${FSYNC:-always}"
CPORT=18080
NPORT=18081

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

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

# nginx: return 204, no access log.
cat > "$tmp/nginx.conf" <<NGINX
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:$NPORT;
    location / { return 204; }
  }
}
NGINX
"$NGINX" -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
pids+=($!)

cat > "$tmp/collector.toml" <<TOML
[collector]
listen = "127.0.0.1:$CPORT"
wal_dir = "$tmp/wal"
fsync = "$FSYNC"
high_watermark = "1GiB"
wal_max_bytes = "2GiB"
max_batch_events = 1000
[sink]
kind = "${SINK:-file}"
[sink.file]
dir = "$tmp/data"
[schemas]
dir = "collector/examples/schemas"
TOML
"$BIN" --config "$tmp/collector.toml" > "$tmp/collector.out" &
cpid=$!
pids+=($cpid)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$CPORT/healthz" >/dev/null && curl -sf -o /dev/null "http://127.0.0.1:$NPORT/" && break
  sleep 0.1
done

# Request bodies and wrk scripts.
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
def ev(i):
    return {"namespace": "events", "type": "transaction",
            "event": {"user_id": i, "amount": "19.99", "currency": "EUR",
                      "items": [{"sku": "SKU-%d" % i, "price": "19.99", "qty": 1}]}}
bodies = {"single": json.dumps(ev(1)), "batch": json.dumps([ev(i) for i in range(500)])}
for name, body in bodies.items():
    with open(f"{tmp}/{name}.lua", "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = [==[" + body + "]==]\n")
PY

# CPU ticks (user + system) the collector process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$cpid/stat"; }
TICK="$(getconf CLK_TCK)"

# Runs wrk; prints "<2xx requests/s> <non-2xx count> <collector CPU µs per 2xx request>".
bench() { # url script
  local out t0 t1
  t0="$(ticks)"
  out="$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$2" "$1")"
  t1="$(ticks)"
  echo "$out" >> "$tmp/wrk.log"
  python3 - "$out" "$DURATION" "$((t1 - t0))" "$TICK" <<'PY'
import re, sys
out, dur, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
m = re.search(r"([\d.]+)(\w+)\s*$", re.search(r"requests in ([\d.]+\w+)", out).group(1))
secs = float(m.group(1)) * {"s": 1, "ms": 1e-3, "m": 60}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
bad = int(bad.group(1)) if bad else 0
print(f"{(total - bad) / secs:.0f} {bad} {ticks / hz * 1e6 / max(total - bad, 1):.1f}")
PY
}

read -r nginx_single _ _ < <(bench "http://127.0.0.1:$NPORT/v1/events" "$tmp/single.lua")
read -r coll_single bad_single cpu_single < <(bench "http://127.0.0.1:$CPORT/v1/events" "$tmp/single.lua")
# The HTTP stack's own ceiling: GET /healthz (no body, no log), same load.
printf 'wrk.method = "GET"\n' > "$tmp/get.lua"
read -r coll_health _ cpu_health < <(bench "http://127.0.0.1:$CPORT/healthz" "$tmp/get.lua")
read -r nginx_batch _ _ < <(bench "http://127.0.0.1:$NPORT/v1/batch" "$tmp/batch.lua")
read -r coll_batch bad_batch cpu_batch < <(bench "http://127.0.0.1:$CPORT/v1/batch" "$tmp/batch.lua")

metrics="$(curl -s "http://127.0.0.1:$CPORT/metrics")"
stored="$(echo "$metrics" | awk '/^evlog_events_accepted_total/ {print $2}')"
delivered="$(echo "$metrics" | awk '/^evlog_events_delivered_total/ {print $2}')"
python3 - <<PY
ns, cs, nb, cb = $nginx_single, $coll_single, $nginx_batch, $coll_batch
print(f"machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t $THREADS -c $CONNECTIONS -d $DURATION; WAL fsync = $FSYNC")
print(f"single event  /v1/events: collector {cs:>10,.0f} req/s   nginx return 204 {ns:>10,.0f} req/s   ratio {cs/ns:.2f}  collector CPU {$cpu_single:.1f} us/request  (non-2xx: $bad_single)")
print(f"GET /healthz (HTTP stack only, no body, no log): collector {$coll_health:>10,.0f} req/s  (/ nginx's figure above: {$coll_health/ns:.2f})  collector CPU {$cpu_health:.1f} us/request")
print(f"500-event     /v1/batch : collector {cb*500:>10,.0f} events/s ({cb:,.0f} req/s)   nginx {nb:,.0f} req/s   collector CPU {$cpu_batch/500:.2f} us/event  (non-2xx: $bad_batch)")
print(f"events accepted into the WAL during the run: {float('${stored:-0}'):,.0f}; delivered by the file sink when it ended: {float('${delivered:-0}'):,.0f}")
PY
