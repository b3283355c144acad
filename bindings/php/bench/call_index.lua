-- wrk script for call_index.sh: collects the calls.php page's X-Calls header (each of its 10
-- calls' wall time, ns) and prints one line per call index at the end:
-- "call I P50 P99 P999" (ns). One request at a time.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  -- Flat (index 1..10 repeating): wrk copies a thread's table to the main state only one level deep.
  samples = {}
end

function response(status, headers, body)
  local v = headers["X-Calls"]
  if v then
    for x in string.gmatch(v, "%d+") do
      samples[#samples + 1] = tonumber(x)
    end
  end
end

function done(summary, latency, requests)
  local flat = {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("samples")) do
      flat[#flat + 1] = v
    end
  end
  for i = 1, 10 do
    local a = {}
    for k = i, #flat, 10 do
      a[#a + 1] = flat[k]
    end
    table.sort(a)
    local n = #a
    if n > 0 then
      local function pct(p)
        return a[math.max(1, math.ceil(p / 100 * n))]
      end
      io.write(string.format("call %d %d %d %d\n", i, pct(50), pct(99), pct(99.9)))
    end
  end
end
