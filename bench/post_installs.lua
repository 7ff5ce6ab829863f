-- wrk script: POST a fixed number of installs, each with distinct inputs, then stop (bench/wrk.py: post_installs).
-- Arguments: <installs in all> <install path> <package id> <run prefix> <threads>. Run with one connection per thread
-- (-tN -cN): a thread then has at most one request in flight, so it sends exactly its share and stops.
-- wrk's main thread sleeps for the whole -d duration whatever its threads do: each thread prints
-- "ZONECAT thread done" when it stops, and the caller interrupts wrk (SIGINT) once every thread has.
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- Each thread runs in a Lua state of its own, where `threads` stays empty: the count comes as an argument.
  local total, count = tonumber(args[1]), tonumber(args[5])
  path, package_id, prefix = args[2], args[3], args[4]
  share = math.floor(total / count) + ((index < total % count) and 1 or 0)
  sent, accepted, refused, first_refusal = 0, 0, 0, ""
  -- Headers given to wrk.format replace wrk.headers (the -H Authorization) instead of adding to them.
  headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Content-Type"] = "application/json"
  if share == 0 then finish() end
end

function finish()
  wrk.thread:stop()
  io.write("ZONECAT thread done\n")
  io.flush()
end

function request()
  sent = sent + 1
  local body = string.format('{"package_id":"%s","inputs":{"run":"%s-%d-%d"}}', package_id, prefix, index, sent)
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  else
    refused = refused + 1
    if first_refusal == "" then first_refusal = status .. " " .. body end
  end
  if accepted + refused >= share then finish() end
end

function done(summary, latency, requests)
  local accepted_all, refused_all, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    accepted_all = accepted_all + thread:get("accepted")
    refused_all = refused_all + thread:get("refused")
    if first == "" then first = thread:get("first_refusal") end
  end
  io.write(string.format("ZONECAT accepted=%d refused=%d\n", accepted_all, refused_all))
  if first ~= "" then io.write("ZONECAT first refusal: " .. first .. "\n") end
end
