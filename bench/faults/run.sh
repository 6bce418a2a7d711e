#!/usr/bin/env bash
# bench/faults/run.sh — faults under load (issue 5, item 3).
#
#   make && bash bench/faults/run.sh            every scenario (about 3 min)
#   MODULE=path/to/other.so bash bench/faults/run.sh reload     another build
#   bash bench/faults/run.sh 1 3 reload         some of them (number or name)
#
# On free loopback ports, for this run only: a private redis-server (the one
# scenario 1 kills), the mock providers (t/mock/providers.js) and nginx with
# ngx_astralform_module.so under bench/faults/tmp/run.PORT/; load from wrk
# with bench/faults/load.lua, single-request probes from Perl
# (bench/faults/lib/AstralformFaults.pm, shared with t/070-faults.t).
#
#   1 redis-kill       Redis SIGKILLed during tool-call load, restarted 3 s
#                      later: every request answered, 503 store_unavailable
#                      within 1 s while down, 200 within 2 s of it being
#                      back, same nginx master and workers
#   2 redis-slow       DEBUG SLEEP 3 with timeout=300ms: tool calls answer a
#                      JSON 503 at the timeout; GET /v1/connectors on the
#                      same (single) worker is not stalled
#   3 provider-faults  the provider resets, sends garbage, closes without an
#                      answer, sends a 6 MB body (with and without
#                      Content-Length), stalls: 502 provider_error / 504
#                      provider_timeout; no token or secret in any answer or
#                      log (the probes are logged at debug level); the
#                      concurrent load all 200
#   4 reload           nginx -s reload every second for 10 s under load,
#                      keep-alive clients (with a plain-nginx control) and
#                      a connection per request: every answer 200
#   5 worker-kill      SIGKILL to a worker under load: replaced, only the
#                      requests on its connections fail
#   6 leak             worker VmRSS after 200k tool calls within 10 MB of
#                      after 20k (1 worker); leak-errors: the same over 100k
#                      calls the provider answers 500 (502 provider_error)
#
# Prints one PASS/FAIL line with figures per scenario, and exits non-zero
# if any failed (files then kept; FAULTS_KEEP=1 keeps them anyway).
# NGINX=/usr/sbin/nginx by default. Loopback only; every duration bounded.
set -u
cd "$(dirname "$0")/../.." || exit 1
for tool in wrk redis-server node perl "${NGINX:-/usr/sbin/nginx}"; do
    command -v "$tool" >/dev/null || { echo "faults: $tool not found (make deps)" >&2; exit 1; }
done
[ -f ngx_astralform_module.so ] || { echo "faults: ngx_astralform_module.so not built: run make" >&2; exit 1; }
exec perl bench/faults/faults.pl "$@"
