#!/usr/bin/env bash
# Python binding suite: builds the evlog wheel (maturin, debug profile, shared CARGO_TARGET_DIR)
# into the project-local .venv and runs bindings/python/tests with pytest: conversions and
# errors, threads, fork children, gunicorn --preload with 4 workers under load, interpreter exit,
# and every ```python block of the READMEs run as written in a fresh directory (test_readme.py),
# two destinations (the BigQuery test server and osmem-server) from the SDK and through a collector
# process (test_destinations_e2e.py), 100,000 events through nginx to 3 collector processes, one
# killed and restarted under load (test_fanout_nginx.py); then the installable wheel:
# build-wheel.sh (dev profile), installed alone into a fresh venv.
#   bash tests/suites/20-python.sh setup   install Debian packages (nginx too) and venv tools only (with
#                                          50-opensearch.sh's setup: osmem-server, opensearch-py)
#   bash tests/suites/20-python.sh         build the extension and run the tests
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_ROOT"

# python3-dev: libpython for linking the pyo3 library crate in `cargo test --workspace`; nginx:
# the load balancer of test_fanout_nginx.py.
ensure_apt python3-dev python3-venv nginx
# google-cloud-bigquery: tests/bq_python_client.py (the test server against the official client);
# google-cloud-bigquery-storage: tests/bq_grpc_python_client.py (its gRPC Storage Write side).
ensure_venv "maturin>=1.5,<2" "ziglang>=0.10,<0.14" "pytest>=7" "gunicorn>=21" \
  "google-cloud-bigquery>=3,<4" "google-cloud-bigquery-storage>=2,<3"
if [ "${1:-}" = setup ]; then
  # osmem-server and opensearch-py for test_destinations_e2e.py, whichever suites run.
  bash tests/suites/50-opensearch.sh setup
  exit 0
fi

log "python: maturin develop (debug) into .venv"
( cd bindings/python/ext && maturin develop --quiet ) >&2
# The servers test_destinations_e2e.py starts (debug, as `cargo test --workspace` builds them).
log "python: cargo build evlog-collector, bq-test-server"
cargo build -p evlog-collector --bin evlog-collector
cargo build -p evlog-tests --bin bq-test-server
export COLLECTOR_BIN="$CARGO_TARGET_DIR/debug/evlog-collector" BQ_SERVER_BIN="$CARGO_TARGET_DIR/debug/bq-test-server"

log "python: pytest bindings/python/tests"
out="$CARGO_TARGET_DIR/python-tests.log"
set +e
python -m pytest bindings/python/tests -q -p no:cacheprovider -rfE 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
# pytest's summary line, e.g. "90 passed, 2 failed in 14.78s" (grep finds nothing when all pass).
passed=$( (grep -Eo '[0-9]+ passed' "$out" || true) | tail -1 | awk '{print $1+0}')
failed=$( (grep -Eo '[0-9]+ (failed|error|errors)' "$out" || true) | awk '{s+=$1} END {print s+0}')
[ "$rc" -ne 0 ] && [ "${failed:-0}" -eq 0 ] && failed=1
record_counts python "${passed:-0}" "${failed:-0}"

# The wheel people install: build-wheel.sh's own command (zig, manylinux2014, its tag and glibc
# checks), with the dev profile to keep CI short, installed alone into a fresh venv (no network:
# the wheel has no dependencies) and used from there.
log "python: build-wheel.sh --profile dev, then install the wheel into a fresh venv"
wheel_dir="$CARGO_TARGET_DIR/wheel"
if bash bindings/python/build-wheel.sh --profile dev "$wheel_dir" &&
  rm -rf "$wheel_dir/venv" && python3 -m venv "$wheel_dir/venv" &&
  "$wheel_dir/venv/bin/pip" install --quiet --no-index "$wheel_dir"/evlog-*.whl &&
  (cd "$wheel_dir" && ./venv/bin/python "$REPO_ROOT/bindings/python/tests/wheel_smoke.py"); then
  record_counts python-wheel 1 0
else
  record_counts python-wheel 0 1
  rc=1
fi
exit "$rc"
