-- wrk script: counts responses by status across all threads (wrk itself only counts >= 400 as
-- errors, so a 3xx would pass unnoticed) and prints one machine-readable summary line. For
-- floods, the request's method and JSON body may come from the environment (FLOOD_METHOD,
-- FLOOD_BODY_FILE); without them it sends wrk's default GET.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- At the top level: wrk formats the request from these after loading the script.
wrk.method = os.getenv("FLOOD_METHOD") or wrk.method
local file = os.getenv("FLOOD_BODY_FILE")
if file then
  local f = assert(io.open(file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function init(args)
  ok = 0
  non2xx = 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local o, n = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    n = n + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"ok":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, o, n, e.connect, e.read, e.write, e.status, e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
