#!/usr/bin/env bash
# The collector's live page (GET /ui, /ui/feed) in a real browser: headless Chromium (Debian's
# `chromium`) driven by playwright-core (npm, installed into tests/ui/node_modules, git-ignored)
# loads the page while a load runs (tests/ui/page.test.mjs): numbers change and match /metrics,
# a logged event shows in the tail within 2 s, the filter works, a rejected event shows its
# reason, 401 without the admin key. It saves the screenshot the README shows (docs/ui.png).
# Then the monitoring files: promtool checks docs/prometheus-alerts.yml, and every metric
# docs/grafana-dashboard.json names exists in a live collector's /metrics
# (tests/ui/check_dashboard.py).
#   bash tests/suites/60-ui.sh setup   installs chromium, nodejs/npm, promtool (Debian), and
#                                      playwright-core into tests/ui/node_modules
#   bash tests/suites/60-ui.sh         runs the suite
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${1:-}" = setup ]; then
  ensure_apt chromium prometheus curl python3-dev python3-venv
  ensure_venv "maturin>=1.5,<2" "ziglang>=0.10,<0.14"
  ensure_npm tests/ui
  exit 0
fi

cd "$REPO_ROOT"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "not ok - $1" >&2; }

log "ui: building the collector"
cargo build --release -q -p evlog-collector
bin="$CARGO_TARGET_DIR/release/evlog-collector"

# The page shows an SDK-side drop: a Python process in forward mode whose queue overflows.
log "ui: the Python extension into .venv (maturin develop)"
ensure_venv
( cd bindings/python/ext && maturin develop --quiet ) >&2

log "ui: the live page in headless Chromium"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
if BIN="$bin" PYTHON="$REPO_ROOT/.venv/bin/python" SCHEMAS="$REPO_ROOT/collector/examples/schemas" SCREENSHOT="${UI_SCREENSHOT:-docs/ui.png}" \
  node tests/ui/page.test.mjs > "$out" 2>&1; then :; fi
cat "$out"
p=$(grep -c '^ok - ' "$out" || true)
f=$(grep -c '^not ok - ' "$out" || true)
grep -q '^passed [0-9]* failed 0$' "$out" || f=$((f + (f == 0)))
passed=$((passed + p))
failed=$((failed + f))

if [ -f docs/prometheus-alerts.yml ]; then
  log "ui: promtool check rules docs/prometheus-alerts.yml"
  if promtool check rules docs/prometheus-alerts.yml; then
    pass "promtool check rules docs/prometheus-alerts.yml"
  else
    fail "promtool check rules docs/prometheus-alerts.yml"
  fi
fi
if [ -f tests/ui/check_dashboard.sh ]; then
  log "ui: the dashboard names only metrics a live collector exports"
  if BIN="$bin" bash tests/ui/check_dashboard.sh; then
    pass "docs/grafana-dashboard.json is valid JSON and names only metrics /metrics has"
  else
    fail "docs/grafana-dashboard.json is valid JSON and names only metrics /metrics has"
  fi
fi

record_counts ui "$passed" "$failed"
[ "$failed" -eq 0 ]
