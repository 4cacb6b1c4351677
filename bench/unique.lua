-- wrk script for khproxy's load benchmark: every request's body is unique.
--
-- khproxy answers identical in-flight auto-keyed requests once, so a
-- benchmark that sent the same body on every connection would measure that,
-- not its speed. Each body is a JSON object with the wrk thread's id and a
-- per-thread counter, padded to exactly the size asked for:
--   {"thread":1,"n":000000000042,"pad":"xxx…"}
--
-- Arguments (after --): METHOD SIZE PATH. SIZE 0 sends no body.
-- done() prints one JSON line that khbench reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  method = args[1] or "GET"
  size = tonumber(args[2] or "0")
  path = args[3] or "/"
  counter = 0
  if size == 0 then
    fixed = wrk.format(method, path)
    return
  end
  headers = { ["Content-Type"] = "application/json" }
  local frame = #string.format('{"thread":%d,"n":%012d,"pad":"', id, 0) + 2
  if size < frame then
    error("body size " .. size .. " is below the " .. frame .. " bytes of the JSON frame")
  end
  pad = string.rep("x", size - frame)
end

function request()
  if fixed then
    return fixed
  end
  counter = counter + 1
  local body = string.format('{"thread":%d,"n":%012d,"pad":"', id, counter) .. pad .. '"}'
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p99_us":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
