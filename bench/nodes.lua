-- wrk: with WRK_NODES="127.0.0.1:PORT 127.0.0.1:PORT ..." (bench/cluster.sh), wrk's
-- threads are spread round-robin over those nodes (thread i to node i mod n), each
-- thread with its share of the connections; without it, every thread goes to the URL.
local nodes = {}
for host, port in string.gmatch(os.getenv("WRK_NODES") or "", "([^%s:]+):(%d+)") do
  table.insert(nodes, wrk.lookup(host, port)[1])
end
local threads = 0

setup = function(thread)
  if #nodes > 0 then
    thread.addr = nodes[threads % #nodes + 1]
    threads = threads + 1
  end
end
