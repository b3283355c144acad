#!/usr/bin/env bash
# Benchmark: evlog.log() vs analytics-python track() vs posthog capture(), release build.
#   bash bindings/python/bench/run.sh [--rounds N] [--batch N]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../../tests/lib.sh"
cd "$REPO_ROOT"
ensure_venv "maturin>=1.5,<2" segment-analytics-python posthog
( cd bindings/python/ext && maturin develop --release --quiet ) >&2
python bindings/python/bench/bench.py "$@"
