#!/usr/bin/env bash
# End-to-end: nginx + php-fpm (pm.max_requests=20, so workers are recycled under load) serving a
# page that logs 10 events per request; REQUESTS requests via ab -> every event stored exactly
# once, per-worker counters reconcile with what the sink's side counted, no worker crash in the
# fpm log. MODE picks the sink, configured by php.ini directives only (php-fpm -d):
#   file      the file sink writes NDJSON under the test's temp dir
#   forward   into a real collector process (COLLECTOR_BIN, open: no API keys; file sink behind it);
#             the workers also report their counters (app fpm-test), which must match
#   bigquery  into the BigQuery test server (BQ_SERVER_BIN), auth "none"
#   forward_down  forward with the default spool (no spool directive), the workers running as
#             www-data (when started as root): the first half of the requests is served while
#             the collector is down (workers recycle and exit with their events spooled in the
#             default directory), then the collector comes up on the same address and the rest of
#             the requests (and more, until the spool is empty) make the workers replay.
#   bash fpm_test.sh EXT_SO [REQUESTS] [CONCURRENCY] [MODE]
# Prints "fpm_test: PASS ..." or "fpm_test: FAIL ..." lines; exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/stack.sh"
ext=$1 requests=${2:-2000} concurrency=${3:-8} mode=${4:-file}
backend_dir=$(mktemp -d "${TMPDIR:-/tmp}/evlog-fpm-backend.XXXXXX")
backend_pid=""
backend_stop() { # SIGTERM (graceful: the collector streams its log, then exits), waits
  [ -n "$backend_pid" ] || return 0
  kill -TERM "$backend_pid" 2>/dev/null || true
  stack_wait 60 bash -c "! kill -0 $backend_pid 2>/dev/null" || kill -KILL "$backend_pid" 2>/dev/null || true
  local rc=0; wait "$backend_pid" 2>/dev/null || rc=$?
  backend_pid=""
  return $rc
}
trap 'stack_stop || true; backend_stop || true; [ -z "${KEEP:-}" ] && rm -rf "${STACK_DIR:-}" "$backend_dir" ${spool_dir:+"$spool_dir"}' EXIT
failures=0
check() { # check NAME CONDITION-RESULT DETAIL
  if [ "$2" = 0 ]; then echo "fpm_test: PASS [$mode] $1 ($3)"; else echo "fpm_test: FAIL [$mode] $1 ($3)"; failures=$((failures + 1)); fi
}
# backend_start CMD...: runs a server that prints "listening on [http://]ADDR" and sets backend_url.
backend_start() {
  "$@" > "$backend_dir/backend.out" 2> "$backend_dir/backend.err" &
  backend_pid=$!
  stack_wait 60 grep -q "listening on" "$backend_dir/backend.out" || { cat "$backend_dir/backend.err" >&2; return 1; }
  backend_url=$(sed -n 's/.*listening on \(http:\/\/\)\{0,1\}\([^ ]*\).*/http:\/\/\2/p' "$backend_dir/backend.out" | head -1)
}

sink_args=()
case "$mode" in
  file) ;;
  forward|forward_down)
    cat > "$backend_dir/collector.toml" <<TOML
[collector]
wal_dir = "$backend_dir/wal"
fsync = "never"
shutdown_deadline = "30s"
[sink]
kind = "file"
[sink.file]
dir = "$backend_dir/data"
[schemas]
dir = "$here/schemas"
[batch]
max_age = "200ms"
TOML
    if [ "$mode" = forward ]; then
      backend_start "${COLLECTOR_BIN:?COLLECTOR_BIN: the evlog-collector binary}" --config "$backend_dir/collector.toml" --listen 127.0.0.1:0
    else
      # Down for now: an address nothing listens on, where the collector starts later.
      : "${COLLECTOR_BIN:?COLLECTOR_BIN: the evlog-collector binary}"
      down_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      backend_url="http://127.0.0.1:$down_port"
      # php-fpm's usual unprivileged user: the default spool directory must work for it.
      if [ "$(id -u)" -eq 0 ]; then export STACK_POOL_EXTRA="user = www-data
group = www-data"; fi
    fi
    sink_args=(-d evlog.mode=forward -d "evlog.forward_url=$backend_url")
    # Each worker reports its own counters to the collector (and a last time at exit).
    [ "$mode" = forward ] && sink_args+=(-d evlog.forward_app=fpm-test -d evlog.forward_report_interval=1s)
    ;;
  bigquery)
    backend_start "${BQ_SERVER_BIN:?BQ_SERVER_BIN: the bq-test-server binary}" --port 0 --schemas "$here/schemas" --project evlog-fpm
    # Quoted: a bare none is "" to PHP's ini parser.
    sink_args=(-d evlog.mode=bigquery -d evlog.bigquery_project=evlog-fpm -d 'evlog.bigquery_auth="none"'
               -d "evlog.bigquery_base_url=$backend_url/bigquery/v2")
    ;;
  *) echo "fpm_test: unknown mode $mode (file, forward, bigquery, forward_down)" >&2; exit 2 ;;
esac

stack_start "$ext" "$here/www" 4 20 -d "evlog.schema_dir=$here/schemas" -d evlog.batch_max_age=200ms "${sink_args[@]}"
if [ -n "${STACK_POOL_EXTRA:-}" ]; then
  # The workers (www-data) write their counters under the stack's directory.
  chmod 755 "$STACK_DIR"; chmod 1777 "$STACK_DIR/stats" "$STACK_DIR/data"
fi

serve() { # serve N: N requests, checked
  ab -q -n "$1" -c "$concurrency" "http://127.0.0.1:$STACK_PORT/log.php?stats=1" > "$STACK_DIR/ab.txt" 2>&1 || true
  local complete failed non2xx
  complete=$(awk '/^Complete requests:/ {print $3}' "$STACK_DIR/ab.txt")
  failed=$(awk '/^Failed requests:/ {print $3}' "$STACK_DIR/ab.txt")
  non2xx=$(awk '/^Non-2xx responses:/ {print $3}' "$STACK_DIR/ab.txt"); non2xx=${non2xx:-0}
  check "requests served${2:+ ($2)}" $([ "$complete" = "$1" ] && [ "$failed" = 0 ] && [ "$non2xx" = 0 ]; echo $?) \
    "complete=$complete failed=$failed non2xx=$non2xx"
}

if [ "$mode" = forward_down ]; then
  # The default spool directory of this configuration (core's config.rs default_spool_dir):
  # /var/tmp/evlog-<uid>/forward-<first 8 bytes of sha256("default\nforward\n<url>"), hex>.
  worker_uid=$(id -u); [ -n "${STACK_POOL_EXTRA:-}" ] && worker_uid=$(id -u www-data)
  spool_dir=/var/tmp/evlog-$worker_uid/forward-$(printf 'default\nforward\n%s' "$backend_url" | sha256sum | cut -c1-16)
  rm -rf "$spool_dir"
  half=$((requests / 2))
  serve "$half" "collector down"
  segments() { find "$spool_dir" -name 'seg-*.evs' 2>/dev/null | wc -l; }
  spooled_segments=$(segments)
  owner=$(stat -c '%U %a' "$spool_dir" 2>/dev/null || echo "missing")
  check "collector down: events kept in the default spool" $([ "$spooled_segments" -gt 0 ] && [ "$owner" = "$(id -nu "$worker_uid") 700" ]; echo $?) \
    "$spooled_segments segments in $spool_dir, owner and mode: $owner"
  backend_start "$COLLECTOR_BIN" --config "$backend_dir/collector.toml" --listen "127.0.0.1:$down_port"
  serve "$((requests - half))" "collector up"
  # Workers replay when they start and then every few seconds: keep serving (recycling them)
  # until no segment is left, with a deadline.
  extra=0
  replay_deadline=$((SECONDS + 90))
  while [ "$(segments)" -gt 0 ] && [ $SECONDS -lt $replay_deadline ]; do
    serve 20 "driving replay" > /dev/null; extra=$((extra + 20))
  done
  check "spool replayed" $([ "$(segments)" = 0 ]; echo $?) "$(segments) segments left after $extra more requests"
  requests=$((requests + extra))
else
  serve "$requests"
fi

fpm_stopped=0; stack_stop || fpm_stopped=$?
check "php-fpm stopped gracefully" "$fpm_stopped" "SIGQUIT, workers ran MSHUTDOWN"

expected=$((requests * 10))
if [ "$mode" = forward ] || [ "$mode" = forward_down ]; then
  # Every worker's MSHUTDOWN has had its batches acknowledged (in the collector's log); wait until
  # the collector has streamed them to its sink, then stop it (graceful: exit code 0).
  stack_wait 60 bash -c "[ \"\$(curl -fsS '$backend_url/metrics' | awk '/^evlog_events_delivered_total / {print \$2}')\" -ge $expected ]" || true
  if [ "$mode" = forward ]; then
    # The workers' reports: every worker's last one (at exit) is in, so no process is live.
    stack_wait 30 bash -c "curl -fsS '$backend_url/metrics' | awk '/^evlog_sdk_events_accepted_total\\{app=\"fpm-test\"/ {a += \$2} /^evlog_sdk_processes\\{app=\"fpm-test\"/ {p += \$2} END {exit !(a >= $expected && p == 0)}'" || true
  fi
  curl -fsS "$backend_url/metrics" > "$backend_dir/metrics.txt" || true
  collector_stopped=0; backend_stop || collector_stopped=$?
  check "collector stopped gracefully" "$collector_stopped" "SIGTERM, exit code $collector_stopped"
elif [ "$mode" = bigquery ]; then
  curl -fsS "$backend_url/_stats" > "$backend_dir/stats.json" || true
fi

python3 - "$mode" "$STACK_DIR" "$backend_dir" "${backend_url:-}" "$expected" > "$STACK_DIR/verify.txt" <<'PY' || true
import glob, json, os, sys, urllib.parse, urllib.request
mode, d, bd, url, expected = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def ndjson(pattern):
    rows = []
    for f in glob.glob(pattern):
        with open(f) as fh:
            rows += [json.loads(l) for l in fh if l.strip()]
    return rows

def get(path):
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return json.load(r)

backend_ok, backend = True, ""
if mode == "bigquery":
    # Read the rows back through tabledata.list (day-sharded tables hit<YYYYMMDD>).
    api = "/bigquery/v2/projects/evlog-fpm/datasets/web/tables"
    rows, tables = [], get(api).get("tables", [])
    for t in tables:
        table = t["tableReference"]["tableId"]
        if not (table.startswith("hit") and table[3:].isdigit()):
            continue
        names = [f["name"] for f in get(f"{api}/{table}")["schema"]["fields"]]
        token = ""
        while True:
            page = get(f"{api}/{table}/data?maxResults=10000" + (f"&pageToken={urllib.parse.quote(token)}" if token else ""))
            rows += [{n: c["v"] for n, c in zip(names, r["f"])} for r in page.get("rows", [])]
            token = page.get("pageToken", "")
            if not token:
                break
    dead = [t for t in tables if "_evlog_rejected" in t["tableReference"]["tableId"]]
    s = json.load(open(os.path.join(bd, "stats.json")))
    backend = f"bq server: rows_stored {s['rows_stored']} rows_invalid {s['rows_invalid']} duplicates_dropped {s['duplicates_dropped']} insertAll requests {s['insert_all_requests']}"
    backend_ok = s["rows_stored"] == expected and s["rows_invalid"] == 0
else:
    data = os.path.join(bd if mode.startswith("forward") else d, "data")
    rows = ndjson(os.path.join(data, "web", "hit*.ndjson"))
    dead = glob.glob(os.path.join(data, "*", "_evlog_rejected*.ndjson"))
    if mode.startswith("forward"):
        m = {}
        for line in open(os.path.join(bd, "metrics.txt")):
            if line and not line.startswith("#") and " " in line:
                k, v = line.rsplit(" ", 1)
                base = k.split("{")[0]
                m[base] = m.get(base, 0) + float(v)
        a, dl = int(m.get("evlog_events_accepted_total", 0)), int(m.get("evlog_events_delivered_total", 0))
        rj, dr = int(m.get("evlog_events_rejected_total", 0)), int(m.get("evlog_events_dropped_total", 0))
        backend = f"collector: accepted {a} delivered {dl} rejected {rj} dropped {dr}"
        backend_ok = a == expected and dl == expected and rj == 0 and dr == 0
        if mode == "forward":
            # What the workers reported (/v1/report), summed by the collector for app fpm-test.
            sdk = {}
            for line in open(os.path.join(bd, "metrics.txt")):
                if line.startswith("evlog_sdk_") and 'app="fpm-test"' in line:
                    k, v = line.rsplit(" ", 1)
                    base = k.split("{")[0]
                    sdk[base] = sdk.get(base, 0) + float(v)
            sa, sd = int(sdk.get("evlog_sdk_events_accepted_total", 0)), int(sdk.get("evlog_sdk_events_delivered_total", 0))
            sdr, sp = int(sdk.get("evlog_sdk_events_dropped_total", 0)), int(sdk.get("evlog_sdk_processes", 0))
            backend += f"; workers reported: accepted {sa} delivered {sd} dropped {sdr} live processes {sp}"
            backend_ok = backend_ok and sa == expected and sd == expected and sdr == 0 and sp == 0
ids = [r["event_id"] for r in rows]
reqs = {}
for r in rows:
    reqs.setdefault(r["req"], set()).add(int(r["i"]))
complete = sum(1 for s in reqs.values() if s == set(range(10)))
acc = dlv = drop = rej = spooled = 0
stats = glob.glob(os.path.join(d, "stats", "*.json"))
for f in stats:
    s = json.load(open(f))
    acc += s["evlog_events_accepted_total"]; dlv += s["evlog_events_delivered_total"]
    drop += sum(v for k, v in s.items() if k.startswith("evlog_events_dropped_total"))
    rej += sum(v for k, v in s.items() if k.startswith("evlog_events_rejected_total"))
    spooled += s.get("evlog_events_spooled_total", 0)
print(f"rows {len(rows)} unique_ids {len(set(ids))} expected {expected} complete_requests {complete} dead_letter_tables {len(dead)}")
print(f"workers {len(stats)} accepted {acc} delivered_at_last_request {dlv} dropped {drop} rejected {rej} spooled {spooled}")
if backend:
    print(backend)
stored = len(rows) == expected and len(set(ids)) == expected and complete * 10 == expected and not dead
# With the collector down, a worker that replays another's spooled events counts them accepted
# too (core: replay), so the workers' accepted total exceeds what the pages logged; the
# collector's side must still match it exactly.
acc_ok = acc >= expected if mode == "forward_down" else acc == expected
counters = acc_ok and drop == 0 and rej == 0 and len(stats) >= expected // 10 // 20 and backend_ok
print("STORED" if stored else "STORED MISMATCH")
print("COUNTERS" if counters else "COUNTERS MISMATCH")
PY
cat "$STACK_DIR/verify.txt"
check "every event stored exactly once" $(grep -qx STORED "$STACK_DIR/verify.txt"; echo $?) "$(head -1 "$STACK_DIR/verify.txt")"
check "counters reconcile (php workers and the sink's side)" $(grep -qx COUNTERS "$STACK_DIR/verify.txt"; echo $?) \
  "$(sed -n 2p "$STACK_DIR/verify.txt")${backend_url:+; $(sed -n 3p "$STACK_DIR/verify.txt")}"
workers=$(awk '/^workers/ {print $2}' "$STACK_DIR/verify.txt")
exits=$(grep -c "exited with code 0" "$STACK_DIR/fpm.log" || true)
check "workers recycled under load" $([ "${workers:-0}" -ge $((requests / 20)) ]; echo $?) "$workers worker processes logged, $exits clean worker exits, for $requests requests at pm.max_requests=20"
crashes=$(grep -E -c "SIGSEGV|exited on signal|exited with code [1-9]|PHP Fatal|panicked" "$STACK_DIR/fpm.log" || true)
check "no worker crash in the fpm log" $([ "$crashes" = 0 ]; echo $?) "$crashes matching lines"
[ "$crashes" = 0 ] || grep -E "SIGSEGV|exited on signal|exited with code [1-9]|PHP Fatal|panicked" "$STACK_DIR/fpm.log" | head -5
echo "fpm_test: [$mode] $failures failed"
[ "$failures" = 0 ]
