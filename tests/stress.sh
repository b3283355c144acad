#!/usr/bin/env bash
# Runs the test suites N times in a row while every CPU is kept busy by a spinning process
# beside them, to find tests that only pass on an idle machine (CI runs on a shared one).
#   bash tests/stress.sh N              the whole suite (tests/run.sh) N times
#   bash tests/stress.sh N rust         only the named parts, as tests/run.sh takes them
#   LOAD=1 bash tests/stress.sh N       one busy loop instead of one per CPU
#   ONLY='cargo test -p evlog-collector --test http' bash tests/stress.sh 10
#                                       any command instead of tests/run.sh
# The first run builds what the suites need (the busy loops start only after it, so a cold build
# is not what is measured); every run's output is kept in target/stress/run-K.log. Prints one line
# per run and a summary; exits non-zero if any run failed. It does not stop at the first failure:
# the record of all N runs is the point.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

runs="${1:-}"
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash tests/stress.sh N [suite...]   (N: how many runs, at least 1)" >&2
  exit 2
fi
shift
load="${LOAD:-$(nproc)}"
out_dir="$CARGO_TARGET_DIR/stress"
mkdir -p "$out_dir"

if [ -n "${ONLY:-}" ]; then
  cmd=(bash -c "$ONLY")
else
  cmd=(bash tests/run.sh "$@")
fi

busy=()
stop_load() {
  for p in "${busy[@]}"; do kill "$p" 2>/dev/null; done
  wait "${busy[@]}" 2>/dev/null
  busy=()
}
trap stop_load EXIT
# Interrupted: stop the busy loops and the run in progress, and end (a trap alone would go on).
trap 'trap - INT TERM EXIT; stop_load; kill 0 2>/dev/null; exit 130' INT TERM

log "warm-up run (builds; not under load, not counted): ${cmd[*]}"
# Each run is a background child the shell `wait`s for, so an interrupt is handled at once (bash
# runs traps only after a foreground command ends).
run_logged() { "${cmd[@]}" > "$1" 2>&1 & wait $!; }
run_logged "$out_dir/warmup.log" ||
  echo "warm-up run failed (see $out_dir/warmup.log); counting runs anyway" >&2

for _ in $(seq "$load"); do
  # A plain spinning shell loop: one full CPU each, no I/O.
  bash -c 'while :; do :; done' &
  busy+=("$!")
done
log "$load busy loop(s) started; $runs run(s) of: ${cmd[*]}"

ok=0
bad=0
for k in $(seq "$runs"); do
  start=$(date +%s)
  if TEST_RESULTS="$out_dir/results-$k.txt" run_logged "$out_dir/run-$k.log"; then
    ok=$((ok + 1))
    verdict=passed
  else
    bad=$((bad + 1))
    verdict=FAILED
  fi
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out_dir/run-$k.log" | tail -n 1)
  printf 'run %d/%d: %s in %ds%s (log: %s)\n' "$k" "$runs" "$verdict" "$(($(date +%s) - start))" \
    "${summary:+ — $summary}" "$out_dir/run-$k.log"
  if [ "$verdict" = FAILED ]; then
    # Name what failed, so the record says which test flaked.
    grep -E '^test .* FAILED$|^not ok|^FAILED |^---- .* stdout ----$|^suite .* failed' \
      "$out_dir/run-$k.log" | head -n 20 | sed 's/^/    /'
  fi
done
stop_load
echo "stress: $ok of $runs run(s) passed with $load busy loop(s)"
[ "$bad" -eq 0 ]
