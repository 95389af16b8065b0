-- wrk script used for every workload of bench/run.
--
-- Environment (set by bench/run):
--   BENCH_METHOD        GET (default) or POST
--   BENCH_BODY          request body for POST
--   BENCH_CONTENT_TYPE  content type of the body (default application/json)
--   BENCH_EXACT_STATUS  "1": count every non-2xx response through response() (exact, but
--                       costs the load generator CPU); otherwise wrk's own counter is used,
--                       which counts responses with status >= 400 (none of the benchmarked
--                       endpoints answers 1xx or 3xx, and bench/run checks every stack's
--                       answers before loading it).
--
-- done() prints one line: "BENCH_RESULT {json}" with the totals and latency percentiles (in
-- microseconds) that bench/run records.

local method = os.getenv("BENCH_METHOD") or "GET"
wrk.method = method
if method == "POST" then
  wrk.body = os.getenv("BENCH_BODY") or "{}"
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end

local exact = os.getenv("BENCH_EXACT_STATUS") == "1"
local threads = {}

function setup(thread)
  thread:set("non2xx", 0)
  table.insert(threads, thread)
end

if exact then
  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    end
  end
end

function done(summary, latency, requests)
  local non2xx_total
  if exact then
    non2xx_total = 0
    for _, t in ipairs(threads) do
      non2xx_total = non2xx_total + t:get("non2xx")
    end
  else
    non2xx_total = summary.errors.status
  end
  -- Latency samples: wrk records no latency for a response slower than --timeout (it counts
  -- a timeout instead, and also counts connections found waiting past it), so the samples
  -- tell exactly how many completed responses were too slow to be recorded.
  local samples = summary.requests
  if summary.errors.timeout > 0 then
    samples = 0
    for i = 1, #latency do
      local _, count = latency(i)
      samples = samples + count
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d,"latency_samples":%d,"non2xx":%d,"non2xx_exact":%s,' ..
    '"latency_mean_us":%.1f,"latency_stdev_us":%.1f,"latency_min_us":%d,' ..
    '"latency_p50_us":%d,"latency_p90_us":%d,"latency_p99_us":%d,"latency_p999_us":%d,' ..
    '"latency_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, samples, non2xx_total, tostring(exact),
    latency.mean, latency.stdev, latency.min,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
