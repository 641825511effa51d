-- wrk script: post_job.lua's POSTs, each with an Idempotency-Key of its own (a random
-- part per thread and a counter), so that every one makes a job and a record in the
-- key file.
dofile("bench/post_job.lua")

local counter = 0
local prefix = ""

init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("bench-%08x-", math.random(0, 0x7fffffff))
end

request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format()
end
