-- wrk script: HTTP/1.1 pipelining, DEPTH requests written back to back per round trip (the
-- TechEmpower plaintext style). Usage: wrk -s bench/peers/pipeline.lua URL -- DEPTH
local depth = 16
local batch

function init(args)
  depth = tonumber(args[1]) or depth
  local one = wrk.format("GET", wrk.path)
  batch = string.rep(one, depth)
end

function request()
  return batch
end
