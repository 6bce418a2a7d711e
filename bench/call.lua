-- wrk script for bench/run.sh: the same POST (body and headers) to every
-- peer, only the path differs. Counts every answer that is not 2xx (a peer
-- that fails fast must not look fast) and prints exact percentiles.
--   BENCH_PATH BENCH_BODY BENCH_AGENT_KEY BENCH_USER BENCH_AGENT
wrk.method = "POST"
wrk.path   = os.getenv("BENCH_PATH")
wrk.body   = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"]       = "application/json"
wrk.headers["Authorization"]      = "Bearer " .. os.getenv("BENCH_AGENT_KEY")
wrk.headers["X-Astralform-User"]  = os.getenv("BENCH_USER")
wrk.headers["X-Astralform-Agent"] = os.getenv("BENCH_AGENT")

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
