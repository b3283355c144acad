# A local evlog collector for the PHP benchmarks (null sink, log not fsynced: what is measured is
# the web host, not the collector's disk), or a stand-in for one on another host. Source, do not
# run; needs stack.sh (stack_wait).
#   collector_start SCHEMA_DIR   -> sets coll_pid, coll_dir and url (needs COLLECTOR_BIN)
#   standin_start                -> the same for tests/examples/collector_standin.rs (needs
#                                   STANDIN_BIN): it answers /v1/batch as a collector that took
#                                   every event, at a few µs per request, so the web host's own
#                                   cost in forward mode is measured without a collector's beside it
#   standin_build_start ROOT     -> standin_start, building the stand-in first (release, in
#                                   CARGO_TARGET_DIR) unless STANDIN_BIN is given
#   collector_stop               -> SIGTERM, waits, removes its directory
collector_start() {
  [ -x "${COLLECTOR_BIN:-}" ] || { echo "forward mode needs COLLECTOR_BIN (the evlog-collector binary)" >&2; return 1; }
  coll_dir=$(mktemp -d "${TMPDIR:-/tmp}/evlog-coll.XXXXXX")
  printf '[collector]\nwal_dir = "%s/wal"\nfsync = "never"\n[sink]\nkind = "null"\n[schemas]\ndir = "%s"\n' \
    "$coll_dir" "$1" > "$coll_dir/collector.toml"
  "$COLLECTOR_BIN" --config "$coll_dir/collector.toml" --listen 127.0.0.1:0 \
    > "$coll_dir/out" 2> "$coll_dir/err" &
  coll_pid=$!
  stack_wait 30 grep -q "listening on" "$coll_dir/out" || { cat "$coll_dir/err" >&2; return 1; }
  url=$(sed -n 's/.*listening on \(http:\/\/\)\{0,1\}\([^ ]*\).*/http:\/\/\2/p' "$coll_dir/out" | head -1)
}

standin_start() {
  [ -x "${STANDIN_BIN:-}" ] || { echo "forward-remote mode needs STANDIN_BIN (the collector_standin example)" >&2; return 1; }
  coll_dir=$(mktemp -d "${TMPDIR:-/tmp}/evlog-standin.XXXXXX")
  "$STANDIN_BIN" 127.0.0.1:0 > "$coll_dir/out" 2> "$coll_dir/err" &
  coll_pid=$!
  stack_wait 30 grep -q "listening on" "$coll_dir/out" || { cat "$coll_dir/err" >&2; return 1; }
  url=$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$coll_dir/out" | head -1)
}

standin_build_start() {
  if [ -z "${STANDIN_BIN:-}" ]; then
    (cd "$1" && cargo build --release -q -p evlog-tests --example collector_standin)
    export STANDIN_BIN="$CARGO_TARGET_DIR/release/examples/collector_standin"
  fi
  standin_start
}

collector_stop() {
  if [ -n "${coll_pid:-}" ]; then kill -TERM "$coll_pid" 2>/dev/null; wait "$coll_pid" 2>/dev/null || true; fi
  [ -n "${coll_dir:-}" ] && rm -rf "$coll_dir"
  coll_pid="" coll_dir=""
}
