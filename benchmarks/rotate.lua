-- wrk script: POST a different CDS Hooks request each time, rotating through a file of bodies (one JSON per line),
-- and count every response whose status is not 2xx (wrk itself counts only status > 399).
--   wrk -t2 -c16 -d10s --latency -s benchmarks/rotate.lua http://127.0.0.1:8080/cds-services/<id> -- BODIES.jsonl
-- Prints one line: "rotate.lua: bodies=N responses=R non2xx=K".

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local file = assert(io.open(path or "", "r"), "rotate.lua: cannot open bodies file " .. tostring(path))
  local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
  bodies = {}
  for line in file:lines() do
    if #line > 0 then
      bodies[#bodies + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  file:close()
  n = #bodies
  assert(n > 0, "rotate.lua: no bodies in " .. path)
  -- threads start far apart in the list, so that no two send the same body at once
  i = ((id - 1) * 97) % n
  responses = 0
  non2xx = 0
end

function request()
  i = i % n + 1
  return bodies[i]
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local seen, bad, count = 0, 0, 0
  for _, t in ipairs(threads) do
    seen = seen + t:get("responses")
    bad = bad + t:get("non2xx")
    count = t:get("n")
  end
  io.write(string.format("rotate.lua: bodies=%d responses=%d non2xx=%d\n", count, seen, bad))
end
