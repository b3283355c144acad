#!/usr/bin/env bash
# The BigQuery sink's two APIs from the SDK's side, into the BigQuery test server (REST and gRPC
# in one server process): insertAll (gzip JSON), Storage Write on the _default stream, and Storage
# Write with exactly_once (committed streams, offsets). ~200-byte page_view events from one
# thread, 500 rows per batch, 4 workers, spool off. The variants alternate round after round; for
# each the median and spread (min–max) of events/s, the bytes the client process wrote per event
# (requests with their HTTP/1.1 or HTTP/2 framing: /proc/self/io wchar) and its CPU time per
# event (user + system, all its threads). The server shares the machine's cores, so events/s is
# partly the server's speed; bytes and CPU per event are the client's own.
#   bash tests/bench/bigquery_apis.sh [EVENTS [ROUNDS]]   defaults 200000 events, 5 rounds (release)
#   bash tests/bench/bigquery_apis.sh --smoke             5000 events, 1 round, debug build
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_ROOT"

profile=(--release)
events=200000
rounds=5
if [ "${1:-}" = --smoke ]; then
  profile=()
  events=5000
  rounds=1
else
  events="${1:-$events}"
  rounds="${2:-$rounds}"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "building the bq_api_bench example (${profile[*]:-debug})"
cargo build -q "${profile[@]}" -p evlog-tests --example bq_api_bench
bench="$CARGO_TARGET_DIR/$([ ${#profile[@]} -gt 0 ] && echo release || echo debug)/examples/bq_api_bench"

"$bench" serve > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
urls=""
deadline=$((SECONDS + 30))
while [ -z "$urls" ] && [ $SECONDS -lt $deadline ]; do
  urls="$(head -1 "$work/server.out" 2>/dev/null || true)"
  [ -n "$urls" ] || sleep 0.1
done
[ -n "$urls" ] || { echo "the test server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
read -r rest grpc <<< "$urls"
log "test server: REST $rest, gRPC $grpc; $events events, $rounds round(s)"

variants=(insert_all storage_write exactly_once)
: > "$work/results"
for r in $(seq 1 "$rounds"); do
  for v in 0 1 2; do
    out="$("$bench" run "$rest" "$grpc" "${variants[$v]}" "$events")"
    echo "$v $out" >> "$work/results"
  done
done

python3 - "$work/results" "$events" "$rounds" "${variants[@]}" <<'PY'
import statistics, sys
path, events, rounds, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
cols = {}
for line in open(path):
    v, eps, cpu, wire = line.split()
    cols.setdefault(int(v), []).append((float(eps), float(cpu), float(wire)))
print(f"\n{events} events per run, {rounds} round(s), variants alternating\n")
print("| API | events/s median | min – max | bytes written/event median | min – max | client CPU µs/event median | min – max |")
print("|---|---|---|---|---|---|---|")
for v, name in enumerate(names):
    rows = cols.get(v, [])
    eps = [r[0] for r in rows]; cpu = [r[1] for r in rows]; wire = [r[2] for r in rows]
    print(
        f"| {name} | {statistics.median(eps):,.0f} | {min(eps):,.0f} – {max(eps):,.0f} "
        f"| {statistics.median(wire):.1f} | {min(wire):.1f} – {max(wire):.1f} "
        f"| {statistics.median(cpu):.2f} | {min(cpu):.2f} – {max(cpu):.2f} |"
    )
PY
