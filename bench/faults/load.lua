-- wrk script for bench/faults (and t/070-faults.t): one request type,
-- answers counted by status and error code, optionally a per-thread log of
-- "epoch_ms status[ code]" lines (LuaJIT ffi clock) so the driver can split
-- a run into phases (before/while/after a fault), and an optional quota.
--
-- Environment:
--   FAULTS_METHOD  GET | POST (default POST)
--   FAULTS_PATH    request path (default /v1/projects/p1/tools/call)
--   FAULTS_BODY    request body for POST
--   FAULTS_KEY     Bearer key;   FAULTS_USER  X-Astralform-User
--   FAULTS_CLOSE   1: "Connection: close" (a new connection per request)
--   FAULTS_LOG     path prefix: each thread writes PREFIX.<n>
--   FAULTS_QUOTA   requests per thread, then the run ends (see response())
--   FAULTS_SECRET  a string that must never appear in an answer
--
-- done() prints lines the driver parses:
--   faults_count <status>[ <error code>] <n>
--   faults_leaks <n>             answers containing FAULTS_SECRET
--   faults_sample <status> <first 200 bytes of the first non-200 body>

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } faults_timeval_t;
int gettimeofday(faults_timeval_t *tv, void *tz);
int getpid(void);
int kill(int pid, int sig);
]]
local tv = ffi.new("faults_timeval_t")
local function now_ms()
   ffi.C.gettimeofday(tv, nil)
   return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

wrk.method = os.getenv("FAULTS_METHOD") or "POST"
wrk.path   = os.getenv("FAULTS_PATH") or "/v1/projects/p1/tools/call"
local body = os.getenv("FAULTS_BODY")
if wrk.method == "POST" then
   wrk.body = body or '{"name":"faults_echo","arguments":{}}'
   wrk.headers["Content-Type"] = "application/json"
end
local key = os.getenv("FAULTS_KEY")
if key then wrk.headers["Authorization"] = "Bearer " .. key end
local user = os.getenv("FAULTS_USER")
if user then wrk.headers["X-Astralform-User"] = user end
if os.getenv("FAULTS_CLOSE") == "1" then
   wrk.headers["Connection"] = "close"
end

local log_prefix = os.getenv("FAULTS_LOG")
local quota = tonumber(os.getenv("FAULTS_QUOTA") or "")
local secret = os.getenv("FAULTS_SECRET")

local threads = {}
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
   leaks = 0
   sample = nil
   done_n = 0
   pending = 0
   if log_prefix then
      logf = io.open(log_prefix .. "." .. tostring(tid), "w")
   end
end

function response(status, headers, body)
   done_n = done_n + 1
   local k = tostring(status)
   if status ~= 200 then
      local code = body and string.match(body, '"error"%s*:%s*"([%w_]+)"')
      k = k .. " " .. (code or "no_json_error")
      if sample == nil then
         sample = k .. " " .. string.sub(string.gsub(body or "", "%s+", " "), 1, 200)
      end
   end
   counts[k] = (counts[k] or 0) + 1
   if secret and body and string.find(body, secret, 1, true) then
      leaks = leaks + 1
   end
   if logf then
      logf:write(now_ms(), " ", k, "\n")
      pending = pending + 1
      if pending >= 64 then logf:flush(); pending = 0 end
   end
   if quota and done_n >= quota and not stopped then
      -- wrk's main thread sleeps for -d: SIGINT ends that sleep, then wrk
      -- stops every thread and prints its summary (use -t 1 for an exact
      -- count: the first thread at its quota ends the run)
      stopped = true
      if logf then logf:flush() end
      wrk.thread:stop()
      ffi.C.kill(ffi.C.getpid(), 2)
   end
end

function done(summary, latency, requests)
   local total, nleaks, first = {}, 0, nil
   for _, t in ipairs(threads) do
      local c = t:get("counts") or {}
      for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
      nleaks = nleaks + (t:get("leaks") or 0)
      first = first or t:get("sample")
   end
   for k, v in pairs(total) do
      io.write(string.format("faults_count %s %d\n", k, v))
   end
   io.write(string.format("faults_leaks %d\n", nleaks))
   io.write(string.format("faults_latency_max_us %d\n", latency.max))
   io.write(string.format("faults_latency_p99_us %d\n", latency:percentile(99)))
   io.write(string.format("faults_latency_p50_us %d\n", latency:percentile(50)))
   if first then io.write("faults_sample " .. first .. "\n") end
end
