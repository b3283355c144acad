#!/usr/bin/env bash
# Compares two builds of evlog on the benchmarks a refactor must not slow down, in one run,
# alternating old and new so that a shared machine's drift hits both alike:
#   - `log_latency` (core/benches/log_latency.rs): per-call median / p99 of log();
#   - `process` (core/benches/process.rs, criterion): validation + conversion per event;
#   - the collector (release binary, file sink, fsync=always) under wrk on loopback:
#     /v1/batch (500-event batches) events/s and /v1/events requests/s, with its CPU µs per request.
# Prints every round, then per benchmark the median and range of old and new and new/old.
#
#   bash tests/compare-builds.sh OLD_REV [ROUNDS]      e.g. bash tests/compare-builds.sh faeffc6 5
#
# OLD_REV is checked out into a temporary git worktree and built into target/compare-old (kept
# between runs, so a second run builds only what changed); the new build is the working tree.
# DURATION (default 5s) and CONNECTIONS (default 64) shape each wrk run. Installs wrk if missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
OLD_REV="${1:?usage: compare-builds.sh OLD_REV [ROUNDS]}"
ROUNDS="${2:-5}"
DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-64}"
command -v wrk >/dev/null || ensure_apt wrk

tmp="$(mktemp -d)"
old_tree="$tmp/old-tree"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  git worktree remove --force "$old_tree" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
git worktree add -q --detach "$old_tree" "$OLD_REV"

# bench_exe DIR TARGET_DIR NAME: builds core's bench NAME and prints its executable's path.
bench_exe() {
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -q -p evlog-core --bench "$3" --no-run \
    --message-format=json 2>/dev/null) | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$3"
}
# build DIR TARGET_DIR: prints "<log_latency exe> <process exe> <collector exe>".
build() {
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --release -q -p evlog-collector >&2)
  echo "$(bench_exe "$1" "$2" log_latency) $(bench_exe "$1" "$2" process) $2/release/evlog-collector"
}
log "building $OLD_REV (old) and the working tree (new)"
read -r old_lat old_proc old_coll < <(build "$old_tree" "$REPO_ROOT/target/compare-old")
read -r new_lat new_proc new_coll < <(build "$REPO_ROOT" "$CARGO_TARGET_DIR")

# Two collectors, same config but their port and directories.
start_collector() { # name bin port
  mkdir -p "$tmp/$1"
  cat > "$tmp/$1/collector.toml" <<TOML
[collector]
listen = "127.0.0.1:$3"
wal_dir = "$tmp/$1/wal"
fsync = "always"
high_watermark = "1GiB"
wal_max_bytes = "2GiB"
max_batch_events = 1000
[sink]
kind = "file"
[sink.file]
dir = "$tmp/$1/data"
[schemas]
dir = "collector/examples/schemas"
TOML
  "$2" --config "$tmp/$1/collector.toml" > "$tmp/$1/out.log" 2>&1 &
  pids+=($!)
  echo $! > "$tmp/$1/pid"
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$3/healthz" >/dev/null && return 0
    kill -0 "$!" 2>/dev/null || break
    sleep 0.1
  done
  echo "compare-builds: the $1 collector did not start on port $3:" >&2
  cat "$tmp/$1/out.log" >&2
  exit 1
}
start_collector old "$old_coll" 18090
start_collector new "$new_coll" 18091

python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
def ev(i):
    return {"namespace": "events", "type": "transaction",
            "event": {"user_id": i, "amount": "19.99", "currency": "EUR",
                      "items": [{"sku": "SKU-%d" % i, "price": "19.99", "qty": 1}]}}
for name, body in {"single": json.dumps(ev(1)), "batch": json.dumps([ev(i) for i in range(500)])}.items():
    with open(f"{tmp}/{name}.lua", "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = [==[" + body + "]==]\n")
PY

# wrk_run NAME PORT PATH SCRIPT: prints "<2xx per second> <collector CPU µs per 2xx request>".
wrk_run() {
  local pid t0 t1 out
  pid=$(cat "$tmp/$1/pid")
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t 2 -c "$CONNECTIONS" -d "$DURATION" -s "$4" "http://127.0.0.1:$2$3")
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  python3 - "$out" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
out, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
total = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"requests in ([\d.]+)(\w+)", out)
secs = float(m.group(1)) * {"s": 1, "ms": 1e-3, "m": 60}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
ok = total - (int(bad.group(1)) if bad else 0)
print(f"{ok / secs:.0f} {ticks / hz * 1e6 / max(ok, 1):.1f}")
PY
}

# log_latency prints "... median N ns ... p99 N ns ..." lines; keep the 1-thread line's numbers.
latency() { # exe
  "$1" 2>/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
m = re.search(r"1 thread.*?median\D*([\d.]+).*?p99\D*([\d.]+)", text, re.S)
print(m.group(1), m.group(2)) if m else print("nan nan")'
}
# process (criterion): the middle of "time: [low mid high]" for each event, summed per event kind.
process() { # exe
  "$1" --bench --warm-up-time 1 --measurement-time 3 --noplot 2>/dev/null | python3 -c '
import re, sys
vals = []
for m in re.finditer(r"time:\s+\[[\d.]+ \w+ ([\d.]+) (\w+)", sys.stdin.read()):
    vals.append(float(m.group(1)) * {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6}[m.group(2)])
print(" ".join(f"{v:.1f}" for v in vals) or "nan nan")'
}

results="$tmp/results"
: > "$results"
for r in $(seq "$ROUNDS"); do
  # Alternate which build goes first each round.
  if [ $((r % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for b in $order; do
    lat_exe=${b}_lat; proc_exe=${b}_proc
    port=$([ "$b" = old ] && echo 18090 || echo 18091)
    read -r med p99 < <(latency "${!lat_exe}")
    read -r p_tx p_pv < <(process "${!proc_exe}")
    read -r batch_rps batch_cpu < <(wrk_run "$b" "$port" /v1/batch "$tmp/batch.lua")
    read -r single_rps single_cpu < <(wrk_run "$b" "$port" /v1/events "$tmp/single.lua")
    line="$b log_median_ns=$med log_p99_ns=$p99 process_transaction_ns=$p_tx process_page_view_ns=$p_pv batch_events_per_s=$((batch_rps * 500)) batch_cpu_us_per_req=$batch_cpu single_req_per_s=$single_rps single_cpu_us_per_req=$single_cpu"
    echo "round $r: $line"
    echo "$line" >> "$results"
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {"old": [], "new": []}
for line in open(sys.argv[1]):
    b, *kv = line.split()
    rows[b].append({k: float(v) for k, v in (x.split("=") for x in kv)})
print()
print(f"{'benchmark':28} {'old median [range]':>28} {'new median [range]':>28} {'new/old':>8}")
for key in rows["old"][0]:
    o = [r[key] for r in rows["old"]]
    n = [r[key] for r in rows["new"]]
    mo, mn = statistics.median(o), statistics.median(n)
    fmt = lambda v, m: f"{m:.1f} [{min(v):.1f}, {max(v):.1f}]"
    print(f"{key:28} {fmt(o, mo):>28} {fmt(n, mn):>28} {mn / mo if mo else float('nan'):8.3f}")
PY
