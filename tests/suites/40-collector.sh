#!/usr/bin/env bash
# Collector: runs the README's main job (collector/examples/demo.sh: the binary on the example
# config with the file sink, a few events sent with curl, SIGTERM, the files shown) on a free
# loopback port and checks where the events landed. The collector's Rust tests (HTTP, auth,
# limits, TLS, kill -9, SIGTERM, forward end to end) run in the runner's `cargo test --workspace`;
# setup installs what they need (openssl for the TLS test's certificate).
#   bash tests/suites/40-collector.sh setup   installs curl, openssl
#   bash tests/suites/40-collector.sh         runs the suite
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${1:-}" = setup ]; then
  ensure_apt curl openssl
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

record_counts collector "$passed" "$failed"
[ "$failed" -eq 0 ]
