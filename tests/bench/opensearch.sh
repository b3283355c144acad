#!/usr/bin/env bash
# The OpenSearch sink's events/s into osmem-server beside opensearch-py's helpers.bulk of the same
# documents (~330-byte page_view rows, create actions by id, 500 per request), alternating the
# three variants round after round, each into a fresh index deleted after it; prints the median
# and the spread (min–max) of events/s and of the client's own CPU time per event. osmem-server
# and opensearch-py come from the project's .venv (bash tests/suites/50-opensearch.sh setup).
# Clients and server share this machine's cores, and osmem-server indexes slowly, so events/s
# mostly measures osmem; the CPU time per event is what each client costs.
#   bash tests/bench/opensearch.sh [DOCS [ROUNDS]]   defaults 20000 documents, 5 rounds (release)
#   bash tests/bench/opensearch.sh --smoke           2000 documents, 1 round, debug build: checks
#                                                    that both paths store every document
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_ROOT"

profile=(--release)
docs=20000
rounds=5
if [ "${1:-}" = --smoke ]; then
  profile=()
  docs=2000
  rounds=1
else
  docs="${1:-$docs}"
  rounds="${2:-$rounds}"
fi
py="$REPO_ROOT/.venv/bin/python"
[ -x "$py" ] || { echo "no .venv: run bash tests/suites/50-opensearch.sh setup" >&2; exit 1; }

work="$(mktemp -d)"
osmem_pid=""
cleanup() {
  [ -n "$osmem_pid" ] && kill "$osmem_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "building the os_bench example (${profile[*]:-debug})"
cargo build -q "${profile[@]}" -p evlog-tests --example os_bench
bench="$CARGO_TARGET_DIR/$([ ${#profile[@]} -gt 0 ] && echo release || echo debug)/examples/os_bench"

bin="$("$py" -c 'import osmem_server; print(osmem_server.resolve_binary())')"
"$bin" --addr 127.0.0.1:0 --no-ja --no-stdin-watch > "$work/osmem.out" 2> "$work/osmem.err" &
osmem_pid=$!
url=""
deadline=$((SECONDS + 30))
while [ -z "$url" ] && [ $SECONDS -lt $deadline ]; do
  url="$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$work/osmem.out" 2>/dev/null | head -1)"
  [ -n "$url" ] || sleep 0.1
done
[ -n "$url" ] || { echo "osmem-server did not start:" >&2; cat "$work/osmem.err" >&2; exit 1; }
log "osmem-server $("$bin" --version 2>&1 | head -1) at $url; $docs documents, $rounds round(s)"

"$bench" gen "$docs" "$work/docs.ndjson"
delete() { "$py" -c 'import sys,urllib.request as u; u.urlopen(u.Request(sys.argv[1], method="DELETE")).read()' "$url/$1" >/dev/null; }
count() { "$py" -c 'import sys,json,urllib.request as u; print(json.load(u.urlopen(sys.argv[1]))["count"])' "$url/$1/_count"; }

variants=("sink, 2 workers, gzip (defaults)" "sink, 1 worker, no gzip" "opensearch-py helpers.bulk")
: > "$work/results"
for r in $(seq 1 "$rounds"); do
  for v in 0 1 2; do
    index="bench-$r-$v"
    case $v in
      0) out="$("$bench" run "$url" "$work/docs.ndjson" "$index" 2 true)" ;;
      1) out="$("$bench" run "$url" "$work/docs.ndjson" "$index" 1 false)" ;;
      2) out="$("$py" tests/opensearch/bench_bulk.py "$url" "$work/docs.ndjson" "$index")" ;;
    esac
    n="$(count "$index")"
    if [ "$n" != "$docs" ]; then
      echo "variant '${variants[$v]}' round $r: $n documents stored, not $docs" >&2
      exit 1
    fi
    echo "$v $(echo "$out" | awk '{print $2, $4}')" >> "$work/results"
    delete "$index"
  done
done

"$py" - "$work/results" "$docs" "$rounds" "${variants[@]}" <<'PY'
import statistics, sys
path, docs, rounds, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
runs, cpus = {}, {}
for line in open(path):
    v, eps, cpu = line.split()
    runs.setdefault(int(v), []).append(float(eps))
    cpus.setdefault(int(v), []).append(float(cpu))
print(f"\n{docs} documents per run, {rounds} round(s), variants alternating\n")
print("| client | events/s median | min – max | client CPU µs/event median | min – max |")
print("|---|---|---|---|---|")
for v, name in enumerate(names):
    xs, cs = runs.get(v, []), cpus.get(v, [])
    print(
        f"| {name} | {statistics.median(xs):,.0f} | {min(xs):,.0f} – {max(xs):,.0f} "
        f"| {statistics.median(cs):.1f} | {min(cs):.1f} – {max(cs):.1f} |"
    )
PY
