#!/usr/bin/env bash
# Collector: runs the README's main job (collector/examples/demo.sh: the binary on the example
# config with the file sink, a few events sent with curl, SIGTERM, the files shown) on a free
# loopback port and checks where the events landed. The collector's Rust tests (HTTP, auth,
# limits, TLS, kill -9, SIGTERM, forward end to end) run in the runner's `cargo test --workspace`;
# setup installs what they need (openssl for the TLS test's certificate). Then a live collector's
# /metrics, after delivered, rejected and per-table events, must pass `promtool check metrics` and
# parse with prometheus_client into the right family types (tests/check_metrics.py).
#   bash tests/suites/40-collector.sh setup   installs curl, openssl, promtool (Debian's
#                                             prometheus), prometheus_client (.venv)
#   bash tests/suites/40-collector.sh         runs the suite
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${1:-}" = setup ]; then
  ensure_apt curl openssl prometheus
  ensure_venv "prometheus_client>=0.17"
  exit 0
fi

cd "$REPO_ROOT"
passed=0
failed=0
work="$(mktemp -d)"
# The demo writes evlog-data/ and evlog-wal/ in the working directory (the repository root).
rm -rf evlog-data evlog-wal
trap 'rm -rf "$work" evlog-data evlog-wal' EXIT
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "not ok - $1" >&2; }

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log "collector: README main job (collector/examples/demo.sh) on port $port"
if PORT="$port" bash collector/examples/demo.sh > "$work/demo.log" 2>&1; then
  pass "demo runs and exits after SIGTERM"
else
  fail "demo runs and exits after SIGTERM"
fi
cat "$work/demo.log"
count() { cat "$@" 2>/dev/null | wc -l; }
tx=$(count evlog-data/events/transaction*.ndjson)
pv=$(count evlog-data/events/page_view*.ndjson)
dl=$(count evlog-data/events/_evlog_rejected.ndjson)
[ "$tx" -eq 2 ] && pass "2 transactions stored" || fail "2 transactions stored (got $tx)"
[ "$pv" -eq 1 ] && pass "1 page view stored" || fail "1 page view stored (got $pv)"
[ "$dl" -eq 2 ] && pass "2 dead letters (missing REQUIRED field, unknown table)" \
  || fail "2 dead letters (got $dl)"
grep -q '"reason":"missing_required"' evlog-data/events/_evlog_rejected.ndjson 2>/dev/null \
  && pass "dead letter names the reason" || fail "dead letter names the reason"
if ls evlog-wal/*.evs >/dev/null 2>&1; then fail "write-ahead log drained"; else pass "write-ahead log drained"; fi

# The binary the demo built, on its own port, directories and config.
bin="$CARGO_TARGET_DIR/release/evlog-collector"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
log "collector: /metrics of a live collector on port $port through promtool and prometheus_client"
cat > "$work/metrics.toml" <<TOML
[collector]
wal_dir = "$work/wal"
[sink]
kind = "file"
[sink.file]
dir = "$work/data"
[schemas]
dir = "$REPO_ROOT/collector/examples/schemas"
TOML
"$bin" --config "$work/metrics.toml" --listen "127.0.0.1:$port" > "$work/metrics-collector.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work" evlog-data evlog-wal' EXIT
# wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds or SECONDS have passed.
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}
wait_until 30 curl -sf "$url/healthz" -o /dev/null || true
curl -s -o /dev/null -X POST "$url/v1/batch" -H 'content-type: application/json' -d \
  '[{"namespace":"events","type":"transaction","event":{"user_id":7,"amount":"120.00"}},
    {"namespace":"events","type":"page_view","event":{"url":"/checkout","user_id":7}},
    {"namespace":"events","type":"transaction","event":{"amount":"1.00"}},
    {"namespace":"events","type":"no_such_table","event":{"x":1}}]' || true
curl -s -o /dev/null "$url/no-such-endpoint" || true
# Settled: both tables' deliveries and both dead letters are counted.
settled() {
  curl -sf "$url/metrics" -o "$work/metrics.prom" &&
    grep -q '^evlog_events_delivered_by_table_total{dataset="events",table="page_view"} 1$' "$work/metrics.prom" &&
    grep -q '^evlog_events_delivered_by_table_total{dataset="events",table="transaction"} 1$' "$work/metrics.prom" &&
    grep -q '^evlog_events_rejected_total{reason="missing_required"} 1$' "$work/metrics.prom" &&
    grep -q '^evlog_events_rejected_total{reason="unknown_table"} 1$' "$work/metrics.prom"
}
touch "$work/metrics.prom"
if wait_until 30 settled; then
  pass "/metrics counts the events (per table, rejected by reason)"
else
  fail "/metrics counts the events (per table, rejected by reason)"
  cat "$work/metrics.prom" "$work/metrics-collector.log" >&2 || true
fi
ensure_venv
if promtool check metrics < "$work/metrics.prom"; then
  pass "/metrics passes promtool check metrics"
else
  fail "/metrics passes promtool check metrics"
fi
if python tests/check_metrics.py "$work/metrics.prom" \
  evlog_events_accepted=counter evlog_events_delivered=counter \
  evlog_events_rejected=counter 'evlog_events_dropped=counter?' \
  evlog_events_retried=counter evlog_events_spooled=counter evlog_queue_events=gauge \
  'evlog_sink_errors=counter?' evlog_dead_letters_waiting=gauge evlog_flush_seconds=histogram \
  evlog_collector_wal_pending_bytes=gauge evlog_collector_body_bytes_in_flight=gauge \
  evlog_collector_sink_healthy=gauge evlog_collector_http_responses=counter \
  evlog_collector_wal_write_seconds=histogram evlog_collector_wal_appends=counter \
  evlog_events_delivered_by_table=counter \
  'evlog_events_delivered_by_table_total{dataset=events,table=page_view}' \
  'evlog_events_rejected_total{reason=unknown_table}' \
  'evlog_collector_http_responses_total{path=other,code=404}'; then
  pass "/metrics parses with prometheus_client into typed families"
else
  fail "/metrics parses with prometheus_client into typed families"
fi
kill -TERM "$pid" 2>/dev/null || true
if wait "$pid"; then
  pass "metrics collector exits cleanly after SIGTERM"
else
  fail "metrics collector exits cleanly after SIGTERM"
fi

record_counts collector "$passed" "$failed"
[ "$failed" -eq 0 ]
