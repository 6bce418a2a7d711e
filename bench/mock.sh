#!/usr/bin/env bash
# bench/mock.sh — gateway overhead against the node mock (issue 3, item 8).
# The TLS three-peer benchmark (issue 12) is bench/run.sh.
#
#   make && bash bench/mock.sh
#
# In one run, on free loopback ports: a private redis-server, the mock
# providers (t/mock/providers.js) and one nginx (/usr/sbin/nginx, private
# prefix under bench/tmp/) with ngx_astralform_module.so; then with wrk:
#
#   (a) proxy  GET /bench/echo → proxy_pass to the mock's /bench/echo
#              (proxy_http_version 1.1, upstream keepalive: the fair baseline)
#   (b) call   POST /v1/projects/p1/tools/call {"name":"bench_echo"} for end
#              user u1: agent key check, Redis token lookup, AES-256-GCM
#              unsealing, the same GET /bench/echo through libcurl, the answer
#              wrapped in the gateway's JSON
#
# Each: a warm-up, the mock's stats reset, the measured run; it prints
# requests/s, p50/p99, non-2xx answers (counted by bench/wrk.lua) and the TCP
# connections the mock saw; then the ratio b/a and the added p99 against the
# target (ratio >= 0.8, added p99 <= 1 ms). Short of the target (or
# BENCH_PROFILE=1) it profiles the gateway path: perf record on the worker
# when perf works, and callgrind on a single-process nginx (instructions per
# request for both paths, and the top functions).
#
# Environment (defaults):
#   BENCH_CONNECTIONS=50 BENCH_THREADS=2 BENCH_DURATION=10s BENCH_WARMUP=3s
#   BENCH_WORKERS=1        nginx worker_processes
#   BENCH_ACCESS_LOG=0     1: an access log line per request on both paths
#   BENCH_UNLOADED=3s      also one connection (-c 1) per path for this long
#                          (latency without queueing); 0: skip
#   BENCH_PROFILE=auto     auto (when short of target) | 1 | 0
#   BENCH_CALLGRIND_REQUESTS=2000
#   BENCH_KEEP=0           1: keep bench/tmp/run.N (configs, logs, profiles)
#   BENCH_HOLD=0           1: only start everything, print ports and keys, and
#                          wait until interrupted (for poking by hand)
#   NGINX=/usr/sbin/nginx  MODULE=./ngx_astralform_module.so

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-2}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
WORKERS=${BENCH_WORKERS:-1}
ACCESS_LOG=${BENCH_ACCESS_LOG:-0}
PROFILE=${BENCH_PROFILE:-auto}
UNLOADED=${BENCH_UNLOADED:-3s}
CG_REQUESTS=${BENCH_CALLGRIND_REQUESTS:-2000}
KEEP=${BENCH_KEEP:-0}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${MODULE:-$ROOT/ngx_astralform_module.so}

TMP=
PIDS=()
NGINX_PID_FILE=
CG_PID=
STATUS=1

# shellcheck source=bench/lib.sh
. bench/lib.sh

cleanup() {
    local pid
    if [ -n "$NGINX_PID_FILE" ] && [ -f "$NGINX_PID_FILE" ]; then
        pid=$(cat "$NGINX_PID_FILE" 2>/dev/null)
        if [ -n "$pid" ] && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null; then
            kill "$pid" 2>/dev/null
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    fi
    if [ -n "$CG_PID" ]; then
        kill "$CG_PID" 2>/dev/null
        wait "$CG_PID" 2>/dev/null
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    tmp_done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in wrk redis-server redis-cli node curl jq perl "$NGINX"; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps)"
done
[ -f "$MODULE" ] || die "$MODULE not built: run make first"

wait_http() {    # wait_http URL PID NAME
    for _ in $(seq 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    log "$3 did not come up ($1)"
    return 1
}

read -r NGX_PORT REDIS_PORT MOCK_PORT CG_PORT < <(free_ports 4 | tr '\n' ' ')
[ -n "${CG_PORT:-}" ] || die "no free ports"

mkdir -p "$ROOT/bench/tmp"
TMP=$ROOT/bench/tmp/run.$NGX_PORT
rm -rf "$TMP"
mkdir -p "$TMP"/{logs,temp,redis,keys,cg/logs}
chmod 755 "$TMP" "$TMP/temp"

# --- keys and secrets (fresh per run) ---------------------------------------
KEY_HEX=$(perl -e 'open my $r, "<", "/dev/urandom" or die; read $r, my $b, 32;
                   print unpack "H*", $b')
AGENT_KEY="bench-agent-$(perl -e 'printf "%08x%08x", rand 2**32, rand 2**32')"
echo "$KEY_HEX" > "$TMP/keys/seal.key"
echo "bench-admin-$(perl -e 'printf "%08x", rand 2**32')" > "$TMP/keys/admin.keys"
echo "$AGENT_KEY" > "$TMP/keys/agent.keys"
echo "bench-client-secret" > "$TMP/keys/client.secret"

# --- redis ------------------------------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$TMP/redis" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for i in $(seq 100); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    [ "$i" = 100 ] && die "redis-server did not start: $(tail -3 "$TMP/redis.log")"
    sleep 0.1
done

# --- mock providers -----------------------------------------------------------
node t/mock/providers.js --port "$MOCK_PORT" >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
M=http://127.0.0.1:$MOCK_PORT
wait_http "$M/__mock/health" "$MOCK_PID" mock || die "mock failed: $(tail -3 "$TMP/mock.log")"

# --- the end user's sealed token, planted in Redis ---------------------------
BENCH_TOKEN="bench-token-$(perl -e 'printf "%08x", rand 2**32')"
SEALED=$(perl -I t/lib -MAstralform::Seal -e '
    print seal_token($ARGV[0], "kb", "p1", "bench", "u1",
        { type => "oauth", access_token => $ARGV[1],
          expires_at => 0, obtained_at => time() });' "$KEY_HEX" "$BENCH_TOKEN") \
    || die "sealing failed (Crypt::AuthEnc::GCM from libcryptx-perl?)"
[ "$(redis-cli -p "$REDIS_PORT" HSET 'bench:{p1}:tokens:bench' u1 "$SEALED")" = 1 ] \
    || die "could not plant the token"

# --- nginx ----------------------------------------------------------------------
# write_conf FILE PORT PREAMBLE
write_conf() {
    local log_line="access_log off;"
    [ "$ACCESS_LOG" = 1 ] && log_line="access_log logs/access.log audit;"
    cat >"$1" <<EOF
load_module $MODULE;
$3
pid logs/nginx.pid;
error_log logs/error.log warn;

events { worker_connections 4096; }

http {
    client_body_temp_path $TMP/temp/body;
    proxy_temp_path       $TMP/temp/proxy;
    fastcgi_temp_path     $TMP/temp/fastcgi;
    uwsgi_temp_path       $TMP/temp/uwsgi;
    scgi_temp_path        $TMP/temp/scgi;

    log_format audit '\$remote_addr "\$request" \$status \$request_time '
                     'tool=\$astralform_tool user=\$astralform_user '
                     'provider_status=\$astralform_provider_status '
                     'error=\$astralform_error';
    $log_line
    keepalive_requests 1000000;

    upstream mock {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }

    astralform_redis       127.0.0.1:$REDIS_PORT;
    astralform_redis_prefix bench:;
    astralform_key         kb $TMP/keys/seal.key;
    astralform_public_url  http://127.0.0.1:$2;
    astralform_catalog     $ROOT/conf/connectors;
    astralform_catalog     $ROOT/bench/bench.json;
    astralform_provider    bench api_base=$M/bench/;
    astralform_project     p1 admin_key_file=$TMP/keys/admin.keys
                           agent_key_file=$TMP/keys/agent.keys;
    astralform_connector   p1 bench client_id=bench-cid
                           client_secret_file=$TMP/keys/client.secret;

    server {
        listen 127.0.0.1:$2;

        # (a) the baseline: nginx's own upstream machinery, keep-alive
        location = /bench/echo {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        # (b) the gateway
        location /v1/ {
            astralform_api;
        }
    }
}
EOF
}

write_conf "$TMP/nginx.conf" "$NGX_PORT" "worker_processes $WORKERS;"
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/logs/error.log" -t -q \
    || die "nginx -t failed"
NGINX_PID_FILE=$TMP/logs/nginx.pid
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/logs/error.log" \
    || die "nginx did not start"
G=http://127.0.0.1:$NGX_PORT
wait_http "$G/v1/health" "$(cat "$NGINX_PID_FILE" 2>/dev/null || echo 0)" nginx \
    || die "nginx not answering: $(tail -3 "$TMP/logs/error.log")"

if [ "${BENCH_HOLD:-0}" = 1 ]; then
    echo "holding (Ctrl-C or kill $$ stops everything; files in ${TMP#$ROOT/}):"
    echo "  G=$G M=$M REDIS_PORT=$REDIS_PORT AGENT_KEY=$AGENT_KEY"
    echo "  worker pids: $(pgrep -P "$(cat "$NGINX_PID_FILE")" | tr '\n' ' ')"
    STATUS=0
    while :; do sleep 1; done
fi

# --- helpers ------------------------------------------------------------------
to_ms() {     # wrk latency (123.45us, 1.23ms, 1.02s, 1.00m) -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000;
        else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

mock_reset() { curl -fsS -X POST "$M/__mock/reset" -o /dev/null; }

sanity() {    # sanity NAME -> prints status and body of one request
    local out
    if [ "$1" = proxy ]; then
        out=$(curl -sS -w ' %{http_code}' "$G/bench/echo")
    else
        out=$(curl -sS -w ' %{http_code}' -X POST \
            -H "Authorization: Bearer $AGENT_KEY" -H 'X-Astralform-User: u1' \
            -H 'Content-Type: application/json' \
            -d '{"name":"bench_echo","arguments":{}}' \
            "$G/v1/projects/p1/tools/call")
    fi
    printf '%s\n' "${out//$'\n'/}"
}

# run_wrk NAME URL DURATION -> wrk output in $TMP/wrk.NAME
run_wrk() {
    local mode=proxy
    [ "$1" = call ] || [ "$1" = call-warmup ] && mode=call
    BENCH_MODE=$mode BENCH_AGENT_KEY=$AGENT_KEY BENCH_USER=u1 BENCH_PROJECT=p1 \
        wrk -t "$THREADS" -c "$CONNS" -d "$3" --latency --timeout 5s \
            -s bench/wrk.lua "$2" >"$TMP/wrk.$1" 2>&1
}

declare -A RPS P50 P99 NON2XX SOCKERR MCONN MREQ CPU WCPU RCMD

redis_cmds() {
    redis-cli -p "$REDIS_PORT" info stats \
        | awk -F: '/^total_commands_processed:/ {print $2 + 0}'
}
worker_pids() { pgrep -P "$(cat "$NGINX_PID_FILE")" | tr '\n' ' '; }

measure() {   # measure NAME URL
    local name=$1 url=$2 f stats
    run_wrk "$name-warmup" "$url" "$WARMUP"
    mock_reset
    local w0 m0 r0 w1 m1 r1 wp
    wp=$(worker_pids)
    local c0 c1 n
    c0=$(redis_cmds)
    w0=$(cpu_ticks $wp); m0=$(cpu_ticks "$MOCK_PID"); r0=$(cpu_ticks "$REDIS_PID")
    run_wrk "$name" "$url" "$DURATION"
    w1=$(cpu_ticks $wp); m1=$(cpu_ticks "$MOCK_PID"); r1=$(cpu_ticks "$REDIS_PID")
    c1=$(redis_cmds)
    f=$TMP/wrk.$name
    stats=$(curl -fsS "$M/__mock/stats")
    RPS[$name]=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
    NON2XX[$name]=$(awk '/^lua_non2xx/ {print $2}' "$f")
    SOCKERR[$name]=$(awk '/^  Socket errors:/ {
        gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$f")
    MCONN[$name]=$(jq -r '.connections_by_prefix.bench // 0' <<<"$stats")
    MREQ[$name]=$(jq -r '.requests_by_prefix.bench // 0' <<<"$stats")
    n=$(awk '/requests in/ {print $1}' "$f")
    # CPU microseconds per request: nginx worker(s), mock, redis
    WCPU[$name]=$(awk -v n="$n" -v hz="$CLK_TCK" -v w=$((w1 - w0)) \
        'BEGIN { printf "%.1f", w * 1e6 / hz / (n > 0 ? n : 1) }')
    RCMD[$name]=$(awk -v n="$n" -v c=$((c1 - c0 - 1)) \
        'BEGIN { printf "%.2f", c / (n > 0 ? n : 1) }')
    CPU[$name]=$(awk -v n="$n" -v hz="$CLK_TCK" \
        -v w=$((w1 - w0)) -v m=$((m1 - m0)) -v r=$((r1 - r0)) 'BEGIN {
        k = 1e6 / hz / (n > 0 ? n : 1)
        printf "nginx=%.1f mock=%.1f redis=%.1f", w * k, m * k, r * k }')
    printf '%-6s rps=%s p50_ms=%s p99_ms=%s requests=%s non2xx=%s socket_errors=%s mock_tcp_connections=%s mock_requests=%s\n' \
        "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" \
        "$(awk '/requests in/ {print $1}' "$f")" "${NON2XX[$name]:-?}" \
        "${SOCKERR[$name]:-0}" "${MCONN[$name]}" "${MREQ[$name]}"
    printf '       cpu_us_per_request %s | redis_commands_per_request=%s\n' \
        "${CPU[$name]}" "${RCMD[$name]}"
    if grep -q '^lua_first_non2xx' "$f"; then
        grep '^lua_first_non2xx' "$f" | sed 's/^/       /'
    fi
}

# --- the run ------------------------------------------------------------------
echo "== astralform gateway benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc) cpu=\"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)\""
echo "nginx: $("$NGINX" -V 2>&1 | head -1)  module: $(basename "$MODULE")"
echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}') -t $THREADS -c $CONNS -d $DURATION (warm-up $WARMUP) | workers=$WORKERS access_log=$ACCESS_LOG | redis $(redis-server --version | awk '{print $3}' | tr -d v=) | node $(node --version)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine skew the figures)"
echo "sanity proxy: $(sanity proxy)"
echo "sanity call:  $(sanity call)"

measure proxy "$G/bench/echo"
measure call "$G/v1/projects/p1/tools/call"

# one connection, no queueing: the latency the gateway adds to a single call
declare -A U50 U99 URPS
unloaded() {  # unloaded NAME URL
    local mode=proxy f=$TMP/wrk.$1-c1
    [ "$1" = call ] && mode=call
    BENCH_MODE=$mode BENCH_AGENT_KEY=$AGENT_KEY BENCH_USER=u1 BENCH_PROJECT=p1 \
        wrk -t 1 -c 1 -d "$UNLOADED" --latency -s bench/wrk.lua "$2" >"$f" 2>&1
    URPS[$1]=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    U50[$1]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
    U99[$1]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
    printf '%-6s c=1 rps=%s p50_ms=%s p99_ms=%s non2xx=%s\n' "$1" "${URPS[$1]}" \
        "${U50[$1]}" "${U99[$1]}" "$(awk '/^lua_non2xx/ {print $2}' "$f")"
}
if [ "$UNLOADED" != 0 ]; then
    unloaded proxy "$G/bench/echo"
    unloaded call "$G/v1/projects/p1/tools/call"
fi

FINAL_CALL=$(sanity call)
echo "sanity call after run: $FINAL_CALL"

RATIO=$(awk -v b="${RPS[call]}" -v a="${RPS[proxy]}" \
    'BEGIN { if (a > 0) printf "%.3f", b / a; else print "nan" }')
ADDED=$(awk -v b="${P99[call]}" -v a="${P99[proxy]}" \
    'BEGIN { printf "%.3f", b - a }')
ADDED50=$(awk -v b="${P50[call]}" -v a="${P50[proxy]}" \
    'BEGIN { printf "%.3f", b - a }')
WRATIO=$(awk -v b="${WCPU[call]}" -v a="${WCPU[proxy]}" \
    'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }')
MEETS=$(awk -v r="$RATIO" -v d="$ADDED" \
    'BEGIN { print (r >= 0.8 && d <= 1.0) ? "yes" : "no" }')
ALL_OK=yes
[ "${NON2XX[call]:-1}" = 0 ] && [ "${NON2XX[proxy]:-1}" = 0 ] \
    && [ "${SOCKERR[call]:-0}" = 0 ] && [ "${SOCKERR[proxy]:-0}" = 0 ] \
    && [ "${FINAL_CALL##* }" = 200 ] || ALL_OK=no

cat <<EOF
== summary
connections=$CONNS threads=$THREADS duration=$DURATION workers=$WORKERS nproc=$(nproc)
proxy_rps=${RPS[proxy]} proxy_p50_ms=${P50[proxy]} proxy_p99_ms=${P99[proxy]} proxy_mock_tcp_connections=${MCONN[proxy]}
call_rps=${RPS[call]} call_p50_ms=${P50[call]} call_p99_ms=${P99[call]} call_mock_tcp_connections=${MCONN[call]}
ratio_b_over_a=$RATIO added_p50_ms=$ADDED50 added_p99_ms=$ADDED
$([ "$UNLOADED" != 0 ] && awk -v a50="${U50[proxy]}" -v b50="${U50[call]}" \
    -v a99="${U99[proxy]}" -v b99="${U99[call]}" 'BEGIN {
    printf "c1_proxy_p50_ms=%.3f c1_call_p50_ms=%.3f c1_added_p50_ms=%.3f c1_added_p99_ms=%.3f", a50, b50, b50 - a50, b99 - a99 }')
cpu_us_per_request proxy: ${CPU[proxy]} | call: ${CPU[call]}
worker_cpu_ratio_a_over_b=$WRATIO (the b/a a lone, CPU-bound nginx worker would reach)
redis_commands_per_request proxy=${RCMD[proxy]} call=${RCMD[call]}
gateway_all_200=$ALL_OK (non2xx proxy=${NON2XX[proxy]:-?} call=${NON2XX[call]:-?})
target: ratio>=0.8 added_p99<=1ms -> $MEETS
EOF

STATUS=0
[ "$ALL_OK" = yes ] || STATUS=2

# --- where the time goes ------------------------------------------------------
if [ "$PROFILE" = 0 ] || { [ "$PROFILE" = auto ] && [ "$MEETS" = yes ]; }; then
    exit "$STATUS"
fi

echo "== profile (gateway path)"

# perf: sample the worker(s) during a gateway run
if command -v perf >/dev/null \
    && perf stat -e task-clock true >/dev/null 2>&1
then
    WPIDS=$(pgrep -d, -P "$(cat "$NGINX_PID_FILE")")
    (BENCH_MODE=call BENCH_AGENT_KEY=$AGENT_KEY BENCH_USER=u1 BENCH_PROJECT=p1 \
        wrk -t "$THREADS" -c "$CONNS" -d 6s -s bench/wrk.lua \
        "$G/v1/projects/p1/tools/call" >"$TMP/wrk.perf" 2>&1) &
    WRK_BG=$!
    sleep 1
    if perf record -e cpu-clock -F 1999 -p "$WPIDS" -o "$TMP/perf.data" \
        -- sleep 4 >"$TMP/perf.log" 2>&1
    then
        echo "perf: cpu-clock samples of the nginx worker during a gateway run, self time"
        perf report -i "$TMP/perf.data" --stdio --no-children \
            --sort dso,symbol -g none --percent-limit 0.7 2>/dev/null \
            | awk '/^ +[0-9.]+%/ { printf "  %7s  %-45s %s\n", $1, $4, $2 }' | head -20
        echo "perf: by shared object"
        perf report -i "$TMP/perf.data" --stdio --no-children --sort dso \
            -g none 2>/dev/null | awk '/^ +[0-9.]+%/ { printf "  %7s  %s\n", $1, $2 }' | head -10
    else
        echo "perf record failed: $(tail -2 "$TMP/perf.log")"
    fi
    wait "$WRK_BG"
fi

# callgrind: one nginx process (master_process off, daemon off), a fixed
# number of requests on each path; instructions per request and top functions
if command -v valgrind >/dev/null && [ "$CG_REQUESTS" -gt 0 ]; then
    write_conf "$TMP/cg/nginx.conf" "$CG_PORT" \
        "master_process off; daemon off; worker_processes 1;"
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg/callgrind.%p" \
        --dump-instr=no \
        "$NGINX" -p "$TMP/cg" -c "$TMP/cg/nginx.conf" -e "$TMP/cg/logs/error.log" \
        >"$TMP/cg/valgrind.log" 2>&1 &
    CG_PID=$!
    C=http://127.0.0.1:$CG_PORT
    if wait_http "$C/v1/health" "$CG_PID" nginx-callgrind; then
        cg_batch() {  # cg_batch MODE URL -> exactly CG_REQUESTS requests
            BENCH_AGENT_KEY=$AGENT_KEY BENCH_USER=u1 timeout 600 \
                node bench/fixed.js "$2" "$CG_REQUESTS" 10 "$1" \
                >"$TMP/cg/load.$1" 2>&1
        }
        dump() { callgrind_control -d "$1" "$CG_PID" >/dev/null 2>&1; sleep 0.5; }
        cg_batch proxy "$C/bench/echo"            # warm both paths
        cg_batch call "$C/v1/projects/p1/tools/call"
        callgrind_control -z "$CG_PID" >/dev/null 2>&1
        cg_batch proxy "$C/bench/echo"
        dump proxy
        cg_batch call "$C/v1/projects/p1/tools/call"
        dump call
        kill "$CG_PID" 2>/dev/null
        wait "$CG_PID" 2>/dev/null
        CG_PID=
        NP=$(awk '/^requests/ {print $2}' "$TMP/cg/load.proxy")
        NC=$(awk '/^requests/ {print $2}' "$TMP/cg/load.call")
        FP=$(ls "$TMP"/cg/callgrind.*.1 2>/dev/null | head -1)
        FC=$(ls "$TMP"/cg/callgrind.*.2 2>/dev/null | head -1)
        if [ -n "$FP" ] && [ -n "$FC" ]; then
            total_ir() { callgrind_annotate "$1" 2>/dev/null \
                | awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1; exit}'; }
            IP=$(total_ir "$FP"); IC=$(total_ir "$FC")
            echo "callgrind: user-space instructions per request (nginx process, syscalls excluded):"
            awk -v ip="$IP" -v ic="$IC" -v np="$NP" -v nc="$NC" 'BEGIN {
                a = ip / np; b = ic / nc
                printf "  proxy=%d call=%d ratio=%.2f (requests: proxy %d, call %d)\n", a, b, b / a, np, nc }'
            cg_top() {    # cg_top FILE N FILTER [--inclusive=yes]
                callgrind_annotate --threshold=100 ${4:-} "$1" 2>/dev/null \
                | awk -v n="$NC" -v max="$2" -v re="$3" '
                    /^ *[0-9,]+ \( *[0-9.]+%\) / && !/100\.0%|PROGRAM TOTALS/ {
                        ir = $1; gsub(/,/, "", ir); rest = $0
                        sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "", rest)
                        if (rest !~ /\[/ || rest !~ re) next
                        sub(/\[.*\//, "[", rest); sub(/^[^ ]*src\//, "", rest)
                        sub(/^\?\?\?:/, "", rest); sub(/^\.\/[^:]*:/, "", rest)
                        printf "  %7.0f Ir/req %5.1f%%  %s\n", ir / n, 100 * ir / n / tot, rest
                        if (++k == max) exit }' tot="$(awk -v i="$IC" -v n="$NC" 'BEGIN {print i / n}')"
            }
            echo "callgrind: call path, top functions by self instructions"
            cg_top "$FC" 20 .
            echo "callgrind: call path, inclusive: module steps and library entry points"
            cg_top "$FC" 30 'astralform|curl_|json_(loadb|dumps|pack|delete)|EVP_|redisAsync|ngx_http_(read_client|core_run|finalize)' --inclusive=yes
        else
            echo "callgrind: no profile dumped (see ${TMP#$ROOT/}/cg/valgrind.log)"
        fi
    fi
fi

exit "$STATUS"
