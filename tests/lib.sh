# Shared helpers for tests/run.sh and tests/suites/*.sh. Source, do not run.
# Everything a suite needs is installed here on demand, so a fresh Debian machine needs nothing
# set up by hand: Debian packages via apt-get, Python tools into the project-local .venv.

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export REPO_ROOT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Counts collected by record_counts, summed by tests/run.sh.
TEST_RESULTS="${TEST_RESULTS:-$CARGO_TARGET_DIR/test-results.txt}"
export TEST_RESULTS

# When the run started (seconds since the epoch), shared with the suites, so every step's line
# shows how far into the run it began: CI's time budget is read off these. Not EVLOG_*: the
# collector and the SDKs refuse unknown EVLOG_ variables (they are settings).
RUN_TESTS_STARTED_AT="${RUN_TESTS_STARTED_AT:-$(date +%s)}"
export RUN_TESTS_STARTED_AT

log() {
  local t=$(($(date +%s) - RUN_TESTS_STARTED_AT))
  printf '\n==> [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}

_apt_updated=0
# ensure_apt PKG...: installs the Debian packages that are not installed yet.
ensure_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ $_apt_updated -eq 0 ]; then
    log "apt-get update"
    $sudo apt-get update -qq >&2
    _apt_updated=1
  fi
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ensure_venv [PIP_PACKAGE...]: creates .venv (project-local) and installs the packages into it.
ensure_venv() {
  local venv="$REPO_ROOT/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv" >&2 || { ensure_apt python3-venv; python3 -m venv "$venv" >&2; }
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
  fi
  if [ $# -gt 0 ]; then
    "$venv/bin/python" -m pip install -q "$@" >&2
  fi
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
}

# ensure_npm DIR: installs the npm packages of DIR/package.json into DIR/node_modules
# (project-local, git-ignored), with nodejs and npm from Debian when missing.
ensure_npm() {
  local dir="$REPO_ROOT/$1"
  command -v npm >/dev/null || ensure_apt nodejs npm
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package.json" -nt "$dir/node_modules" ]; then
    log "npm install in $1"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
    touch "$dir/node_modules"
  fi
}

# ensure_rust_components: rustfmt and clippy for the lint step.
ensure_rust_components() {
  command -v cargo >/dev/null || { echo "cargo is required (rustup)" >&2; return 1; }
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt >&2
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy >&2
}

# record_counts SUITE PASSED FAILED: adds a suite's counts to the run's summary.
record_counts() {
  printf '%s %s %s\n' "$1" "$2" "$3" >> "$TEST_RESULTS"
}

# record_cargo_output SUITE FILE: sums cargo's "test result:" lines from FILE.
record_cargo_output() {
  local passed failed
  passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$2" | awk '{s+=$4} END {print s+0}')
  failed=$(grep -Eo '[0-9]+ failed;' "$2" | awk '{s+=$1} END {print s+0}')
  record_counts "$1" "$passed" "$failed"
}
