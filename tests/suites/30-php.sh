#!/usr/bin/env bash
# PHP extension (bindings/php): .phpt tests via PHP's run-tests.php (017: two destinations, the
# BigQuery test server and osmem-server, with routes, a sample and transforms), then nginx +
# php-fpm end to end in each mode (file, forward into a collector process, bigquery into the
# BigQuery test server, forward_down: forward with the default spool while the collector is down,
# then up, every event stored once).
#   bash tests/suites/30-php.sh setup   installs php8.2-dev/cli/fpm, libclang-dev, nginx, ab, wrk,
#                                       and 50-opensearch.sh's setup (osmem-server in .venv)
#   bash tests/suites/30-php.sh         builds the extension (debug) and runs the tests
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_ROOT"

if [ "${1:-}" = setup ]; then
  ensure_apt php8.2-dev php8.2-cli php8.2-fpm php8.2-curl libclang-dev nginx apache2-utils wrk curl
  # osmem-server for the destinations end-to-end test (017), whichever suites run.
  bash tests/suites/50-opensearch.sh setup
  exit 0
fi

# Debug profile, like the rest of the run, so CI builds core once (benchmarks build release).
log "php: cargo build -p evlog-php -p evlog-collector, bq-test-server"
cargo build -p evlog-php -p evlog-collector
cargo build -p evlog-tests --bin bq-test-server
ext="$CARGO_TARGET_DIR/debug/libevlog_php.so"
export COLLECTOR_BIN="$CARGO_TARGET_DIR/debug/evlog-collector" BQ_SERVER_BIN="$CARGO_TARGET_DIR/debug/bq-test-server"
ensure_venv
OSMEM_BIN=$(python -c 'import osmem_server; print(osmem_server.resolve_binary())') || {
  echo "osmem-server is not in .venv: run bash tests/suites/30-php.sh setup" >&2; exit 1; }
php_dir=bindings/php/tests/phpt
out="$CARGO_TARGET_DIR/php-phpt.log"

log "php: run-tests.php $php_dir"
run_tests=$(php-config --extension-dir)/build/run-tests.php
status=0
(cd "$php_dir" && PHPT_EVLOG_EXT="$ext" PHPT_EVLOG_COLLECTOR="$COLLECTOR_BIN" PHPT_EVLOG_BQ_SERVER="$BQ_SERVER_BIN" PHPT_EVLOG_OSMEM="$OSMEM_BIN" NO_INTERACTION=1 TEST_PHP_EXECUTABLE=$(command -v php8.2) \
  php8.2 "$run_tests" -q --show-diff -d "extension=$ext" .) 2>&1 | tee "$out" || status=1
rm -rf "$php_dir/out"
passed=$(awk '/^Tests passed/ {print $4}' "$out"); passed=${passed:-0}
failed=$(awk '/^Tests failed/ {print $4}' "$out"); failed=${failed:-0}
skipped=$(awk '/^Tests skipped/ {print $4}' "$out")
[ "${skipped:-0}" = 0 ] || { echo "phpt: $skipped tests skipped" >&2; failed=$((failed + skipped)); }
[ "$passed" -gt 0 ] && [ "$failed" = 0 ] || status=1

for mode in file forward bigquery forward_down; do
  log "php: nginx + php-fpm end to end, mode $mode"
  fpm_out="$CARGO_TARGET_DIR/php-fpm-test-$mode.log"
  bash bindings/php/tests/fpm/fpm_test.sh "$ext" 2000 8 "$mode" 2>&1 | tee "$fpm_out" || status=1
  passed=$((passed + $(grep -c '^fpm_test: PASS' "$fpm_out" || true)))
  failed=$((failed + $(grep -c '^fpm_test: FAIL' "$fpm_out" || true)))
  grep -q "^fpm_test: \[$mode\] 0 failed" "$fpm_out" || { status=1; [ "$failed" -gt 0 ] || failed=1; }
done

# The README's API example, as written, from a directory of its own with the example schemas
# (what the README tells a user to do), with this run's debug build of the extension.
log "php: the README's API example, as written"
readme_dir="$CARGO_TARGET_DIR/php-readme"
rm -rf "$readme_dir" && mkdir -p "$readme_dir"
cp -r collector/examples/schemas "$readme_dir/schemas"
if python3 tests/readme_block.py bindings/php/README.md "API" php > "$readme_dir/example.php" &&
  out="$(cd "$readme_dir" && php8.2 -d "extension=$ext" example.php 2>&1)" &&
  [ "$(printf '%s\n' "$out" | tr -s ' \n' ' ')" = "bool(true) bool(true) int(1) NULL " ] &&
  grep -q '"event_id":"order-1234"' "$readme_dir"/evlog-data/events/transaction20231114.ndjson; then
  passed=$((passed + 1))
else
  echo "php README example: ${out:-}" >&2
  failed=$((failed + 1)); status=1
fi

record_counts php "$passed" "$failed"
exit "$status"
