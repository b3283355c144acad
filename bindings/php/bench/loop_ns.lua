-- wrk script for fpm_cpu.sh: collects the bench page's X-Loop-Ns header (the wall time of its
-- loop of 10 events, with or without the evlog_log() calls, measured inside the page) and prints
-- one line at the end: "loop_ns P50 P99 P999 MAX COUNT" (ns). Used for one request at a time,
-- where wrk's extra work per response (this callback) does not change what is measured.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  samples = {}
end

function response(status, headers, body)
  local v = headers["X-Loop-Ns"]
  if v then
    samples[#samples + 1] = tonumber(v)
  end
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("samples")) do
      all[#all + 1] = v
    end
  end
  if #all == 0 then
    io.write("loop_ns 0 0 0 0 0\n")
    return
  end
  table.sort(all)
  local function pct(p)
    local i = math.ceil(p / 100 * #all)
    if i < 1 then i = 1 end
    return all[i]
  end
  io.write(string.format("loop_ns %d %d %d %d %d\n", pct(50), pct(99), pct(99.9), all[#all], #all))
end
