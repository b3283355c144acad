#!/usr/bin/env bash
# Collector benchmark on loopback, bounded in time: events/s for /v1/batch (500-event batches) and
# requests/s for single-event /v1/events, each beside nginx answering `return 204` on the same
# machine in the same run. Installs nginx and wrk from Debian when missing.
#
#   bash collector/bench/run.sh            # DURATION=5s CONNECTIONS=64 THREADS=2 FSYNC=always ROUNDS=3
#
# Each round runs every case once (nginx and the collector alternating); the summary gives the
# median and range over the rounds, because a shared VM's speed drifts by 15% between runs.
#
# Beside them, the durable floor of this machine: collector/bench/floor.c, a minimal C server that
# only reads the request, appends its body to a file, fdatasyncs (group commit, like the
# collector's log) and answers 202, with no parsing, validation or streaming. Its ratio to nginx
# is the most any durable server reaches here; "prewritten" is the same into a file of zeros
# written beforehand (fdatasync then has no metadata to journal).
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
ROUNDS="${ROUNDS:-3}"
CPORT=18080
NPORT=18081
FPORT=18082

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v gcc >/dev/null || need+=(gcc)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

cargo build --release -q -p evlog-collector
BIN="${CARGO_TARGET_DIR:-target}/release/evlog-collector"

tmp="$(mktemp -d)"
gcc -O2 -Wall -pthread -o "$tmp/floor" collector/bench/floor.c
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "^$tmp/floor " 2>/dev/null || true
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
npid=$!
pids+=($npid)

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
# Whatever answers must be our own processes (not something else already on the ports).
for p in "$npid" "$cpid"; do
  kill -0 "$p" 2>/dev/null || { echo "bench: nginx or the collector did not start (ports $NPORT/$CPORT in use?)" >&2; exit 1; }
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

# Context switches (voluntary + involuntary) of all the collector's threads so far.
switches() { cat /proc/"$cpid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }

# The collector's log so far: "<group commits> <their write+fsync seconds> <appends>".
wal_stats() {
  curl -s "http://127.0.0.1:$CPORT/metrics" | awk '
    /^evlog_collector_wal_write_seconds_count / {c = $2}
    /^evlog_collector_wal_write_seconds_sum / {s = $2}
    /^evlog_collector_wal_appends_total / {a = $2}
    END {print c + 0, s + 0, a + 0}'
}

# Runs wrk; prints "<2xx requests/s> <non-2xx count> <collector CPU µs per 2xx request>
# <collector context switches per 2xx request>".
bench() { # url script
  local out t0 t1 s0 s1
  t0="$(ticks)"
  s0="$(switches)"
  out="$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -s "$2" "$1")"
  t1="$(ticks)"
  s1="$(switches)"
  echo "$out" >> "$tmp/wrk.log"
  python3 - "$out" "$DURATION" "$((t1 - t0))" "$TICK" "$((s1 - s0))" <<'PY'
import re, sys
out, dur, ticks, hz, cs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
m = re.search(r"([\d.]+)(\w+)\s*$", re.search(r"requests in ([\d.]+\w+)", out).group(1))
secs = float(m.group(1)) * {"s": 1, "ms": 1e-3, "m": 60}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
bad = int(bad.group(1)) if bad else 0
print(f"{(total - bad) / secs:.0f} {bad} {ticks / hz * 1e6 / max(total - bad, 1):.1f} {cs / max(total - bad, 1):.3f}")
PY
}

# The floor server in one mode (always, prewritten or never) for one wrk run; prints bench's line.
floor() { # mode
  local fpid out
  rm -f "$tmp/floor.log"
  "$tmp/floor" "$FPORT" "$tmp/floor.log" "$1" 2 &
  fpid=$!
  # (Writing the prewritten file's zeros takes a few seconds.)
  for _ in $(seq 600); do
    curl -sf -o /dev/null -X POST -d '{}' "http://127.0.0.1:$FPORT/" && break
    kill -0 "$fpid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$fpid" 2>/dev/null || { echo "bench: the floor server did not start (port $FPORT in use?)" >&2; exit 1; }
  out="$(bench "http://127.0.0.1:$FPORT/v1/events" "$tmp/single.lua")"
  kill "$fpid"
  wait "$fpid" 2>/dev/null || true
  echo "$out"
}
# The floor's fsync mode matching the collector's (interval has no floor of its own: always).
case "$FSYNC" in never) FLOOR=never ;; *) FLOOR=always ;; esac

printf 'wrk.method = "GET"\n' > "$tmp/get.lua"
for _ in $(seq "$ROUNDS"); do
  # (nginx's own switches are not counted: $cpid is the collector.)
  read -r nginx_single _ _ _ < <(bench "http://127.0.0.1:$NPORT/v1/events" "$tmp/single.lua")
  read -r g0 w0 a0 < <(wal_stats)
  read -r coll_single bad_single cpu_single cs_single < <(bench "http://127.0.0.1:$CPORT/v1/events" "$tmp/single.lua")
  read -r g1 w1 a1 < <(wal_stats)
  # Per group commit during the single-event run: requests, and write+fsync milliseconds.
  read -r group_reqs group_ms < <(python3 -c "g = $g1 - $g0; print(($a1 - $a0) / max(g, 1), ($w1 - $w0) * 1e3 / max(g, 1))")
  # The HTTP stack's own ceiling: GET /healthz (no body, no log), same load.
  read -r coll_health _ cpu_health cs_health < <(bench "http://127.0.0.1:$CPORT/healthz" "$tmp/get.lua")
  read -r floor_single _ _ _ < <(floor "$FLOOR")
  [ -n "${floor_single:-}" ] || exit 1
  if [ "$FLOOR" = always ]; then
    read -r floor_pre _ _ _ < <(floor prewritten)
    [ -n "${floor_pre:-}" ] || exit 1
  else
    floor_pre=0
  fi
  read -r nginx_batch _ _ _ < <(bench "http://127.0.0.1:$NPORT/v1/batch" "$tmp/batch.lua")
  read -r coll_batch bad_batch cpu_batch _ < <(bench "http://127.0.0.1:$CPORT/v1/batch" "$tmp/batch.lua")
  echo "$nginx_single $coll_single $bad_single $cpu_single $coll_health $cpu_health $nginx_batch $coll_batch $bad_batch $cpu_batch $cs_single $cs_health $floor_single $floor_pre $group_reqs $group_ms" >> "$tmp/rounds"
done

metrics="$(curl -s "http://127.0.0.1:$CPORT/metrics")"
stored="$(echo "$metrics" | awk '/^evlog_events_accepted_total/ {print $2}')"
delivered="$(echo "$metrics" | awk '/^evlog_events_delivered_total/ {print $2}')"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t $THREADS -c $CONNECTIONS -d $DURATION; WAL fsync = $FSYNC; $ROUNDS rounds"
python3 - "$tmp/rounds" <<'PY'
import statistics, sys
rows = [[float(x) for x in line.split()] for line in open(sys.argv[1])]
for i, (ns, cs, bs, cpus, ch, cpuh, nb, cb, bb, cpub, sws, swh, fs, fp, gr, gms) in enumerate(rows, 1):
    print(f"round {i}:")
    print(f"  single event  /v1/events: collector {cs:>10,.0f} req/s   nginx return 204 {ns:>10,.0f} req/s   ratio {cs/ns:.2f}  collector CPU {cpus:.1f} us/request, {sws:.2f} context switches/request  (non-2xx: {bs:.0f})")
    print(f"                            its log: {gr:.1f} requests per group commit, {gms:.3f} ms per group's write and fsync (mean)")
    pre = f"; into a prewritten file {fp:,.0f} req/s, ratio {fp/ns:.2f}" if fp else ""
    print(f"  durable floor (floor.c: read, append, fdatasync per group, answer): {fs:>10,.0f} req/s  ratio {fs/ns:.2f}{pre}")
    print(f"  GET /healthz (HTTP stack only, no body, no log): collector {ch:>10,.0f} req/s  (/ nginx's figure above: {ch/ns:.2f})  collector CPU {cpuh:.1f} us/request, {swh:.2f} context switches/request")
    print(f"  500-event     /v1/batch : collector {cb*500:>10,.0f} events/s ({cb:,.0f} req/s)   nginx {nb:,.0f} req/s   collector CPU {cpub/500:.2f} us/event  (non-2xx: {bb:.0f})")
def summary(name, values, fmt):
    return f"  {name}: median {fmt(statistics.median(values))} (range {fmt(min(values))} to {fmt(max(values))})"
print("summary over rounds:")
print(summary("single-event ratio to nginx", [r[1] / r[0] for r in rows], lambda v: f"{v:.2f}"))
print(summary("single-event req/s", [r[1] for r in rows], lambda v: f"{v:,.0f}"))
print(summary("durable floor's ratio to nginx", [r[12] / r[0] for r in rows], lambda v: f"{v:.2f}"))
if rows[0][13]:
    print(summary("durable floor's ratio, prewritten file", [r[13] / r[0] for r in rows], lambda v: f"{v:.2f}"))
print(summary("collector's share of the floor", [r[1] / r[12] for r in rows], lambda v: f"{v:.2f}"))
print(summary("/healthz ratio to nginx", [r[4] / r[0] for r in rows], lambda v: f"{v:.2f}"))
print(summary("batched events/s", [r[7] * 500 for r in rows], lambda v: f"{v:,.0f}"))
print(summary("collector CPU per single event (us)", [r[3] for r in rows], lambda v: f"{v:.1f}"))
print(summary("requests per group commit (single events)", [r[14] for r in rows], lambda v: f"{v:.1f}"))
print(summary("ms per group's write and fsync (single events)", [r[15] for r in rows], lambda v: f"{v:.3f}"))
print(summary("collector context switches per single event", [r[10] for r in rows], lambda v: f"{v:.2f}"))
print(summary("collector CPU per batched event (us)", [r[9] / 500 for r in rows], lambda v: f"{v:.2f}"))
PY
echo "events accepted into the WAL during the run: ${stored:-0}; delivered by the file sink when it ended: ${delivered:-0}"
