#!/usr/bin/env bash
# End to end, everything on this machine: an SDK process in forward mode (THREADS logging threads)
# -> a collector process (write-ahead log fsynced per group, `fsync = "always"`) -> the BigQuery
# test server (REST + gRPC, one process), with the collector's destination on insertAll or on the
# Storage Write API's default stream, alternating round after round. Per run: EVENTS page_view
# events (~200 bytes) logged as fast as the SDK takes them; the clock runs from the SDK's start
# until the collector counts every event delivered, and the server must then hold every id exactly
# once: the collector counts every event delivered and none dropped or rejected, and the server
# stored exactly as many rows (0 lost, 0 duplicates). Prints per API the median and spread (min–max) of end-to-end
# events/s, the CPU time per event of each process (SDK, collector, server), and the share of the
# CPU the hypervisor gave to other guests during the runs (steal: on a shared host the runs with
# steal are the slow ones, so read the figures beside it).
#   bash tests/bench/bigquery_e2e.sh [EVENTS [ROUNDS [THREADS]]]   defaults 500000, 3, 2 (release)
#   bash tests/bench/bigquery_e2e.sh --smoke                        20000 events, 1 round, debug
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_ROOT"

profile=(--release)
events=500000
rounds=3
threads=2
if [ "${1:-}" = --smoke ]; then
  profile=()
  events=20000
  rounds=1
else
  events="${1:-$events}"
  rounds="${2:-$rounds}"
  threads="${3:-$threads}"
fi
bin="$CARGO_TARGET_DIR/$([ ${#profile[@]} -gt 0 ] && echo release || echo debug)"

work="$(mktemp -d)"
server_pid="" collector_pid=""
cleanup() {
  [ -n "$collector_pid" ] && kill "$collector_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "building evlog-collector, bq-test-server and the bq_e2e_bench example (${profile[*]:-debug})"
cargo build -q "${profile[@]}" -p evlog-collector
cargo build -q "${profile[@]}" -p evlog-tests --bin bq-test-server --example bq_e2e_bench

# wait_line FILE PATTERN: the first line of FILE matching PATTERN, waiting up to 30 s.
wait_line() {
  local line="" deadline=$((SECONDS + 30))
  while [ -z "$line" ] && [ $SECONDS -lt $deadline ]; do
    line="$(grep -m1 "$2" "$1" 2>/dev/null || true)"
    [ -n "$line" ] || sleep 0.1
  done
  [ -n "$line" ] || { echo "no '$2' in $1:" >&2; cat "$1" "$1.err" >&2 2>/dev/null; exit 1; }
  echo "$line"
}
# steal: the machine's CPU ticks so far, and those stolen by the hypervisor (other guests on the
# host), from /proc/stat: "total steal". A run with steal had less than 2 cores.
steal() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9; exit }' /proc/stat; }
# cpu PID: user + system CPU seconds of a process (all its threads).
cpu() { awk '{ split($0, a, ") "); split(a[2], f, " "); printf "%.2f\n", (f[12] + f[13]) / 100 }' "/proc/$1/stat"; }
metric() { curl -fsS "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
# stored REST: rows the server stored, through insertAll and through the Storage Write API.
stored() {
  curl -fsS "$1/_stats" |
    python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["rows_stored"] + s.get("grpc", {}).get("rows_stored", 0))'
}

"$bin/bq-test-server" --port 0 --grpc-port 0 --schemas core/tests/data/schemas --project bench \
  > "$work/server.out" 2> "$work/server.out.err" &
server_pid=$!
rest="$(wait_line "$work/server.out" '^listening on' | awk '{print $3}')"
grpc="$(wait_line "$work/server.out" '^grpc listening on' | awk '{print $4}')"
log "test server: REST $rest, gRPC $grpc; $events events per run from $threads threads, $rounds round(s)"

apis=(insert_all storage_write)
: > "$work/results"
first=0
for r in $(seq 1 "$rounds"); do
  for v in 0 1; do
    api="${apis[$v]}"
    dir="$work/run-$r-$v"
    mkdir -p "$dir"
    cat > "$dir/collector.toml" <<TOML
[collector]
listen = "127.0.0.1:0"
wal_dir = "$dir/wal"
fsync = "always"
shutdown_deadline = "30s"
[sink]
kind = "bigquery"
[sink.bigquery]
project = "bench"
auth = "none"
base_url = "$rest/bigquery/v2"
api = "$api"
storage_url = "$grpc"
workers = 4
[batch]
max_rows = 500
max_age = "100ms"
[schemas]
dir = "core/tests/data/schemas"
TOML
    "$bin/evlog-collector" --config "$dir/collector.toml" > "$dir/collector.out" 2> "$dir/collector.out.err" &
    collector_pid=$!
    url="http://$(wait_line "$dir/collector.out" 'listening on' | awk '{print $NF}' | sed 's|^http://||')"
    before="$(stored "$rest")"
    server_cpu0="$(cpu "$server_pid")"
    t0="$(date +%s.%N)"
    steal0="$(steal)"
    sdk="$("$bin/examples/bq_e2e_bench" "$url" "$events" "$threads" "$first")"
    deadline=$((SECONDS + 600))
    until [ "$(metric "$url" evlog_events_delivered_total)" = "$events" ]; do
      [ $SECONDS -lt $deadline ] || { echo "$api: not every event delivered in 600 s" >&2; exit 1; }
      sleep 0.2  # each poll forks curl and awk: every 50 ms cost ~5 % of a core
    done
    t1="$(date +%s.%N)"
    steal1="$(steal)"
    after="$(stored "$rest")"
    lost="$(curl -fsS "$url/metrics" | awk '/^evlog_events_(dropped|rejected)_total\{/ { n += $2 } END { print n + 0 }')"
    [ "$lost" = 0 ] || { echo "$api: the collector dropped or rejected $lost events" >&2; exit 1; }
    collector_cpu="$(cpu "$collector_pid")"
    server_cpu="$(cpu "$server_pid")"
    [ "$((after - before))" = "$events" ] ||
      { echo "$api: the server stored $((after - before)) rows for $events events" >&2; exit 1; }
    kill -TERM "$collector_pid"; wait "$collector_pid" || true; collector_pid=""
    python3 - "$v" "$events" "$t0" "$t1" "$sdk" "$collector_cpu" "$server_cpu0" "$server_cpu" "$steal0" "$steal1" >> "$work/results" <<'PY'
import sys
v, n, t0, t1, sdk, ccpu, s0, s1, st0, st1 = sys.argv[1:]
n = int(n)
sdk_eps, sdk_cpu = sdk.split()
(tot0, stl0), (tot1, stl1) = (map(int, st0.split()), map(int, st1.split()))
steal = 100 * (stl1 - stl0) / max(1, tot1 - tot0)
print(v, n / (float(t1) - float(t0)), sdk_eps, sdk_cpu, float(ccpu) * 1e6 / n, (float(s1) - float(s0)) * 1e6 / n, steal)
PY
    tail -1 "$work/results" | awk -v api="$api" '{ printf "  round '"$r"' %-13s %8.0f events/s end to end (SDK alone %s/s), %.0f %% of the CPU stolen by the host\n", api, $2, $3, $7 }'
    first=$((first + events))
  done
done

python3 - "$work/results" "$events" "$rounds" "$threads" "${apis[@]}" <<'PY'
import statistics, sys
path, events, rounds, threads, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
cols = {}
for line in open(path):
    v, *xs = line.split()
    cols.setdefault(int(v), []).append([float(x) for x in xs])
print(f"\n{events} events per run from {threads} SDK threads, {rounds} round(s), APIs alternating; "
      "SDK -> collector (fsync always) -> BigQuery test server, all on this machine\n")
print("| collector destination | end-to-end events/s median | min – max | SDK CPU µs/event | collector CPU µs/event | server CPU µs/event | CPU stolen by the host, median (max) |")
print("|---|---|---|---|---|---|---|")
for v, name in enumerate(names):
    rows = cols.get(v, [])
    col = lambda i: [r[i] for r in rows]
    med = lambda i: statistics.median(col(i))
    print(f"| {name} | {med(0):,.0f} | {min(col(0)):,.0f} – {max(col(0)):,.0f} "
          f"| {med(2):.2f} | {med(3):.2f} | {med(4):.2f} | {med(5):.0f} % ({max(col(5)):.0f} %) |")
PY
