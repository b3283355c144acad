#!/usr/bin/env bash
# Runs every test of the workspace: lints, the Rust tests, then each suite in tests/suites/
# (C, Python, PHP, end-to-end), in name order. Installs what it needs on a fresh Debian machine:
# every suite is first called as `bash tests/suites/NN-name.sh setup` (install only: Debian
# packages, venv tools), before the lint step, because building the workspace needs them.
# Ends with one line "N passed, M failed"; exits non-zero if anything failed.
#   bash tests/run.sh            everything
#   bash tests/run.sh rust       only lints and Rust tests
#   bash tests/run.sh c python   only the named suites (tests/suites/*-NAME.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
mkdir -p "$CARGO_TARGET_DIR"
: > "$TEST_RESULTS"

want() { [ -z "$SELECTED" ] || [[ " $SELECTED " == *" $1 "* ]]; }
SELECTED="$*"
status=0

for suite in tests/suites/*.sh; do
  [ -e "$suite" ] || continue
  log "setup: $(basename "$suite" .sh)"
  bash "$suite" setup
done

if want rust; then
  ensure_rust_components
  log "lint: cargo fmt --check"
  cargo fmt --all -- --check || status=1
  log "lint: cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings || status=1
  # --no-fail-fast: a failing test binary must not hide the tests of the binaries after it (the
  # summary would count a fraction of the suite as "all").
  log "rust: cargo test --workspace --no-fail-fast"
  out="$CARGO_TARGET_DIR/rust-tests.log"
  cargo test --workspace --no-fail-fast 2>&1 | tee "$out" || status=1
  record_cargo_output rust "$out"
fi

for suite in tests/suites/*.sh; do
  [ -e "$suite" ] || continue
  name=$(basename "$suite" .sh)
  want "${name#*-}" || continue
  log "suite: $name"
  bash "$suite" || { echo "suite $name failed" >&2; status=1; }
done

log "every step done"
passed=$(awk '{s+=$2} END {print s+0}' "$TEST_RESULTS")
failed=$(awk '{s+=$3} END {print s+0}' "$TEST_RESULTS")
echo
column -t "$TEST_RESULTS" 2>/dev/null || cat "$TEST_RESULTS"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a step failed without a test count (lint, build or setup)
fi
echo "$passed passed, $failed failed"
exit "$status"
