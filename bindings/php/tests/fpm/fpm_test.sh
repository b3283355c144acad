#!/usr/bin/env bash
# End-to-end: nginx + php-fpm (pm.max_requests=20, so workers are recycled under load) serving a
# page that logs 10 events per request; 2000 requests via ab -> every event stored exactly once,
# per-worker counters reconcile with the stored rows, no worker crash in the fpm log.
#   bash fpm_test.sh EXT_SO [REQUESTS] [CONCURRENCY]
# Prints "fpm_test: PASS ..." or "fpm_test: FAIL ..." lines; exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/stack.sh"
ext=$1 requests=${2:-2000} concurrency=${3:-8}
trap 'stack_stop || true; [ -n "${STACK_DIR:-}" ] && [ -z "${KEEP:-}" ] && rm -rf "$STACK_DIR"' EXIT

stack_start "$ext" "$here/www" 4 20 -d "evlog.schema_dir=$here/schemas" -d evlog.batch_max_age=200ms
failures=0
check() { # check NAME CONDITION-RESULT DETAIL
  if [ "$2" = 0 ]; then echo "fpm_test: PASS $1 ($3)"; else echo "fpm_test: FAIL $1 ($3)"; failures=$((failures + 1)); fi
}

ab -q -n "$requests" -c "$concurrency" "http://127.0.0.1:$STACK_PORT/log.php?stats=1" > "$STACK_DIR/ab.txt" 2>&1 || true
complete=$(awk '/^Complete requests:/ {print $3}' "$STACK_DIR/ab.txt")
failed=$(awk '/^Failed requests:/ {print $3}' "$STACK_DIR/ab.txt")
non2xx=$(awk '/^Non-2xx responses:/ {print $3}' "$STACK_DIR/ab.txt"); non2xx=${non2xx:-0}
check "requests served" $([ "$complete" = "$requests" ] && [ "$failed" = 0 ] && [ "$non2xx" = 0 ]; echo $?) \
  "complete=$complete failed=$failed non2xx=$non2xx"

stack_stop
fpm_stopped=$?
check "php-fpm stopped gracefully" "$fpm_stopped" "SIGQUIT, workers ran MSHUTDOWN"

expected=$((requests * 10))
python3 - "$STACK_DIR" "$expected" > "$STACK_DIR/verify.txt" <<'PY' || true
import glob, json, os, sys
d, expected = sys.argv[1], int(sys.argv[2])
rows = []
for f in glob.glob(os.path.join(d, "data", "web", "hit*.ndjson")):
    with open(f) as fh:
        rows += [json.loads(l) for l in fh if l.strip()]
ids = [r["event_id"] for r in rows]
reqs = {}
for r in rows:
    reqs.setdefault(r["req"], set()).add(r["i"])
complete = sum(1 for s in reqs.values() if s == set(range(10)))
dead = glob.glob(os.path.join(d, "data", "*", "_evlog_rejected*.ndjson"))
acc = dlv = drop = rej = infl = 0
stats = glob.glob(os.path.join(d, "stats", "*.json"))
for f in stats:
    s = json.load(open(f))
    acc += s["evlog_events_accepted_total"]; dlv += s["evlog_events_delivered_total"]
    drop += sum(v for k, v in s.items() if k.startswith("evlog_events_dropped_total"))
    rej += sum(v for k, v in s.items() if k.startswith("evlog_events_rejected_total"))
print(f"rows {len(rows)} unique_ids {len(set(ids))} expected {expected} complete_requests {complete}")
print(f"dead_letter_files {len(dead)}")
print(f"workers {len(stats)} accepted {acc} delivered_at_last_request {dlv} dropped {drop} rejected {rej}")
ok = len(rows) == expected and len(set(ids)) == expected and complete * 10 == expected and not dead \
     and acc == expected and drop == 0 and rej == 0 and len(stats) >= expected // 10 // 20
print("OK" if ok else "MISMATCH")
PY
cat "$STACK_DIR/verify.txt"
check "every event stored exactly once" $(grep -qx OK "$STACK_DIR/verify.txt"; echo $?) "$(head -1 "$STACK_DIR/verify.txt")"
workers=$(awk '/^workers/ {print $2}' "$STACK_DIR/verify.txt")
exits=$(grep -c "exited with code 0" "$STACK_DIR/fpm.log" || true)
check "workers recycled under load" $([ "${workers:-0}" -ge $((requests / 20)) ]; echo $?) "$workers worker processes logged, $exits clean worker exits, for $requests requests at pm.max_requests=20"
crashes=$(grep -E -c "SIGSEGV|exited on signal|exited with code [1-9]|PHP Fatal|panicked" "$STACK_DIR/fpm.log" || true)
check "no worker crash in the fpm log" $([ "$crashes" = 0 ]; echo $?) "$crashes matching lines"
[ "$crashes" = 0 ] || grep -E "SIGSEGV|exited on signal|exited with code [1-9]|PHP Fatal|panicked" "$STACK_DIR/fpm.log" | head -5
echo "fpm_test: $failures failed"
[ "$failures" = 0 ]
