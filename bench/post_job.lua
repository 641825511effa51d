-- wrk script: submit the example wall with 3 teams (or BENCH_WALL's wall); prints
-- latency percentiles and how many POSTs were answered with a status other than 202.
-- Spread over several nodes with WRK_NODES (see nodes.lua).
dofile("bench/nodes.lua")
wrk.method = "POST"
-- BENCH_WALL names a wall in the text form (bench/make-wall.py) to send instead.
local wall = os.getenv("BENCH_WALL")
if wall and wall ~= "" then
  local file = assert(io.open(wall, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "text/plain"
else
  wrk.body = '{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 3}'
  wrk.headers["Content-Type"] = "application/json"
end

local refused = 0
response = function(status, headers, body)
  if status ~= 202 then refused = refused + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("post_p50_ms %.3f\npost_p99_ms %.3f\nposts %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests))
end
