-- wrk script of bench/run.sh and bench/mock.sh, the same on every path so
-- the client does the same work for each. Counts every answer that is not
-- 2xx (a peer that fails fast must not look fast) and prints exact
-- percentiles from wrk's histogram.
--   BENCH_MODE=proxy  the request on the command line (GET)
--   BENCH_MODE=call   POST BENCH_BODY (default: the bench_echo call) to
--                     BENCH_PATH (default /v1/projects/BENCH_PROJECT/tools/call)
--                     with BENCH_AGENT_KEY, for end user BENCH_USER and, when
--                     set, agent BENCH_AGENT
local env = os.getenv

if env("BENCH_MODE") == "call" then
   wrk.method = "POST"
   wrk.path   = env("BENCH_PATH")
                or "/v1/projects/" .. (env("BENCH_PROJECT") or "p1")
                   .. "/tools/call"
   wrk.body   = env("BENCH_BODY") or '{"name":"bench_echo","arguments":{}}'
   wrk.headers["Content-Type"]       = "application/json"
   wrk.headers["Authorization"]      = "Bearer " .. (env("BENCH_AGENT_KEY") or "")
   wrk.headers["X-Astralform-User"]  = env("BENCH_USER") or "u1"
   wrk.headers["X-Astralform-Agent"] = env("BENCH_AGENT")
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok, bad, first_bad = 0, 0, nil
end

function response(status, headers, body)
   if status >= 200 and status <= 299 then
      ok = ok + 1
   else
      bad = bad + 1
      if first_bad == nil then
         first_bad = status .. " " .. string.sub(body or "", 1, 200)
      end
   end
end

function done(summary, latency, requests)
   local good, total, sample = 0, 0, nil
   for _, t in ipairs(threads) do
      good = good + t:get("ok")
      total = total + t:get("bad")
      sample = sample or t:get("first_bad")
   end
   local e = summary.errors
   io.write(string.format("lua_requests %d\nlua_2xx %d\nlua_non2xx %d\n",
                          summary.requests, good, total))
   io.write(string.format("lua_socket_errors %d\n",
                          e.connect + e.read + e.write + e.timeout))
   io.write(string.format("lua_duration_us %d\n", summary.duration))
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      io.write(string.format("lua_p%s_us %d\n", p, latency:percentile(p)))
   end
   io.write(string.format("lua_max_us %d\n", latency.max))
   if sample then
      io.write("lua_first_non2xx " .. sample .. "\n")
   end
end
