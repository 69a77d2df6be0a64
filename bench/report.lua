-- wrk script: POST a fresh report (new UUID each time) as a field app would.
local token = os.getenv("BENCH_TOKEN") or "bench-reporter"
local area = os.getenv("BENCH_AREA") or "a0"
local path = os.getenv("BENCH_PATH") or "/v1/reports"
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

local function uuid()
  local t = "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"
  return (string.gsub(t, "[xy]", function(c)
    local v = (c == "x") and math.random(0, 0xf) or math.random(8, 0xb)
    return string.format("%x", v)
  end))
end

function request()
  counter = counter + 1
  local body = '{"report_id":"' .. uuid() .. '","area_id":"' .. area .. '","checklist":"est-standard@1",' ..
    '"answers":{"klotter":{"value":2,"places":["torget"]},"skadegorelse":{"value":' .. (counter % 5) .. '}}}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer " .. token}, body)
end
