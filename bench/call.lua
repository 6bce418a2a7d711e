-- wrk script for the gateway side of bench/run.sh: POST a tool call with the
-- agent key and the end user, and count answers that are not 2xx.
--   env: BENCH_AGENT_KEY, BENCH_USER, BENCH_PROJECT
local key     = os.getenv("BENCH_AGENT_KEY") or "bench-agent-key"
local user    = os.getenv("BENCH_USER") or "u1"
local project = os.getenv("BENCH_PROJECT") or "p1"

wrk.method = "POST"
wrk.path   = "/v1/projects/" .. project .. "/tools/call"
wrk.body   = '{"name":"bench_echo","arguments":{}}'
wrk.headers["Content-Type"]      = "application/json"
wrk.headers["Authorization"]     = "Bearer " .. key
wrk.headers["X-Astralform-User"] = user

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   bad = 0
   first_bad = nil
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      bad = bad + 1
      if first_bad == nil then
         first_bad = status .. " " .. string.sub(body or "", 1, 200)
      end
   end
end

function done(summary, latency, requests)
   local total, sample = 0, nil
   for _, t in ipairs(threads) do
      total = total + t:get("bad")
      sample = sample or t:get("first_bad")
   end
   io.write(string.format("lua_non2xx %d\n", total))
   if sample then
      io.write("lua_first_non2xx " .. sample .. "\n")
   end
end
