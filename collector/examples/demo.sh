#!/usr/bin/env bash
# Starts the collector with the example config, sends a few events, stops it (SIGTERM drains),
# and shows where the events landed. Run from the repository root:
#   bash collector/examples/demo.sh
set -euo pipefail
if ! command -v curl >/dev/null; then
  source "$(dirname "${BASH_SOURCE[0]}")/../../tests/lib.sh"
  ensure_apt curl
fi
PORT="${PORT:-8080}"
echo "building evlog-collector (release; the first build takes a few minutes)" >&2
cargo build --release -q -p evlog-collector
bin="${CARGO_TARGET_DIR:-target}/release/evlog-collector"
"$bin" --config collector/examples/collector.toml --listen "127.0.0.1:$PORT" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

post() { echo "POST $1 $2"; curl -s -X POST "http://127.0.0.1:$PORT$1" -H 'content-type: application/json' -d "$2"; echo; }
post /v1/events '{"namespace":"events","type":"transaction","event":{"user_id":42,"amount":"9.99","currency":"EUR","items":[{"sku":"A-1","price":"9.99","qty":1}]}}'
post /v1/batch '[{"namespace":"events","type":"transaction","event":{"user_id":7,"amount":"120.00","coupon":"XMAS"}},
                 {"namespace":"events","type":"page_view","event":{"url":"/checkout","user_id":7}},
                 {"namespace":"events","type":"transaction","event":{"amount":"1.00"}},
                 {"namespace":"events","type":"no_such_table","event":{"x":1}}]'
kill -TERM "$pid"
wait "$pid"
trap - EXIT
echo
echo "== files written under evlog-data/ =="
find evlog-data -name '*.ndjson' -print | sort | while read -r f; do
  echo "-- $f"
  cat "$f"
done
