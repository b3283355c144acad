-- wrk script for the bench pages' own timings, one request at a time: collects bench.php's
-- X-Loop-Ns (the wall time of its loop of 10 events, ns) and calls.php's X-Calls (each of its
-- 10 calls, ns, comma-separated) and prints at the end, for what it got:
--   loop_ns P50 P99 P999 MAX COUNT        (fpm_cpu.sh)
--   call I P50 P99 P999                   one line per call index (call_index.sh)
-- wrk copies a thread's table to the main state one level deep only: samples are kept flat.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  loops = {}
  calls = {}
end

function response(status, headers, body)
  local v = headers["X-Loop-Ns"]
  if v then
    loops[#loops + 1] = tonumber(v)
  end
  v = headers["X-Calls"]
  if v then
    for x in string.gmatch(v, "%d+") do
      calls[#calls + 1] = tonumber(x)
    end
  end
end

local function gather(name)
  local all = {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get(name)) do
      all[#all + 1] = v
    end
  end
  return all
end

-- The p-th percentile of sorted `a` (nearest rank).
local function pct(a, p)
  return a[math.max(1, math.ceil(p / 100 * #a))]
end

function done(summary, latency, requests)
  local loop = gather("loops")
  if #loop > 0 then
    table.sort(loop)
    io.write(string.format("loop_ns %d %d %d %d %d\n", pct(loop, 50), pct(loop, 99), pct(loop, 99.9), loop[#loop], #loop))
  end
  local flat = gather("calls")
  for i = 1, 10 do
    local a = {}
    for k = i, #flat, 10 do
      a[#a + 1] = flat[k]
    end
    if #a > 0 then
      table.sort(a)
      io.write(string.format("call %d %d %d %d\n", i, pct(a, 50), pct(a, 99), pct(a, 99.9)))
    end
  end
end
