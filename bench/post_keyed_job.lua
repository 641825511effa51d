-- wrk script: as post_job.lua, each POST with an Idempotency-Key of its own (the
-- thread, a counter and a random part), so that every one makes a job and a record in
-- the key file; prints latency percentiles and the answers that were not 202.
wrk.method = "POST"
wrk.body = '{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 3}'
wrk.headers["Content-Type"] = "application/json"

local counter = 0
local prefix = ""
local refused = 0

init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("bench-%08x-", math.random(0, 0x7fffffff))
end

request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format()
end

response = function(status, headers, body)
  if status ~= 202 then refused = refused + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("post_p50_ms %.3f\npost_p99_ms %.3f\nposts %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests))
end
