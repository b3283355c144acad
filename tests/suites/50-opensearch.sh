#!/usr/bin/env bash
# OpenSearch sink suite. Setup installs osmem-server (an in-memory OpenSearch-compatible server,
# a static binary in a PyPI wheel) and opensearch-py (the official client) into the project's
# .venv: the Rust tests that need them (tests/tests/opensearch_sink.rs, the sink;
# tests/tests/destinations_outage.rs, OpenSearch down for 20 s beside BigQuery in one pipeline;
# both run by the runner's `cargo test --workspace`) start osmem-server on a loopback port behind
# a fault-injecting proxy and check the documents with opensearch-py
# (tests/opensearch/check_docs.py). The suite itself then runs the benchmark script in its smoke
# mode (tests/bench/opensearch.sh --smoke): both the sink and opensearch-py's helpers.bulk index
# the same documents into osmem-server, and each must have stored all of them.
#   bash tests/suites/50-opensearch.sh setup   installs osmem-server, opensearch-py (.venv) and
#                                              openssl (the TLS test's certificates)
#   bash tests/suites/50-opensearch.sh         runs the benchmark smoke test
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if [ "${1:-}" = setup ]; then
  ensure_apt openssl
  ensure_venv "osmem-server==0.1.6" "opensearch-py>=2.4,<4"
  exit 0
fi

cd "$REPO_ROOT"
ensure_venv
log "opensearch: benchmark smoke run (sink and helpers.bulk into osmem-server)"
if bash tests/bench/opensearch.sh --smoke; then
  record_counts opensearch 1 0
else
  record_counts opensearch 0 1
  exit 1
fi
