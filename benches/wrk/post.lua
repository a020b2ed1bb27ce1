-- wrk script for the 2018 challenge workload (used by benches/run.py, scenario "challenge").
--
-- Every request is a keep-alive POST of the challenge form
--   interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash
--   &parameterTypesString=Ljava%2Flang%2FString%3B&parameter=<s>
-- with <s> random alphanumeric, its length uniform in 0..1024 (as the challenge's consumer did).
-- Building a random string per request in Lua would make wrk itself the bottleneck, so each thread
-- builds POOL requests in init() and picks one at random for every request.
--
-- wrk does NOT check the answers (only the status: non-2xx/3xx are counted in errors.status); loadgen does.
-- At the end one line "WRKJSON {...}" is written to stdout (latencies in microseconds).

local prefix = "interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash"
  .. "&parameterTypesString=Ljava%2Flang%2FString%3B&parameter="
local alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local POOL = 2048
local MAX_LEN = 1024

local pool = {}
local thread_no = 0

function setup(thread)
  thread:set("id", thread_no)
  thread_no = thread_no + 1
end

function init(args)
  math.randomseed(2018 + (id or 0) * 7919)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  for i = 1, POOL do
    local n = math.random(0, MAX_LEN)
    local t = {}
    for j = 1, n do
      local k = math.random(1, #alnum)
      t[j] = string.sub(alnum, k, k)
    end
    pool[i] = wrk.format("POST", nil, headers, prefix .. table.concat(t))
  end
end

function request()
  return pool[math.random(1, POOL)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
