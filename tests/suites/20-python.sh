#!/usr/bin/env bash
# Python binding suite: builds the evlog wheel (maturin, debug profile, shared CARGO_TARGET_DIR)
# into the project-local .venv and runs bindings/python/tests with pytest: conversions and
# errors, threads, fork children, gunicorn --preload with 4 workers under load, interpreter exit,
# and every ```python block of the READMEs run as written in a fresh directory (test_readme.py).
#   bash tests/suites/20-python.sh setup   install Debian packages and venv tools only
#   bash tests/suites/20-python.sh         build the extension and run the tests
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$REPO_ROOT"

# python3-dev: libpython for linking the pyo3 library crate in `cargo test --workspace`.
ensure_apt python3-dev python3-venv
ensure_venv "maturin>=1.5,<2" "pytest>=7" "gunicorn>=21"
[ "${1:-}" = setup ] && exit 0

log "python: maturin develop (debug) into .venv"
( cd bindings/python/ext && maturin develop --quiet ) >&2

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
exit "$rc"
