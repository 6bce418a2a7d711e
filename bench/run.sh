#!/usr/bin/env bash
# bench/run.sh — the gateway's tool call against the limit and an OpenResty
# peer, on one TLS provider (issue 12). bench/README.md explains the rows.
#
#   make && bash bench/run.sh
#
# In one run, loopback only, on free ports: a private redis-server; one TLS
# nginx, the "provider", answering Slack's conversations.list JSON (keep-alive,
# a CA and certificate generated per run, the Bearer token checked); three
# peers, each its own nginx (Debian's /usr/sbin/nginx, worker_processes 2),
# all verifying the provider's certificate against that CA:
#
#   (a) limit    POST /a: proxy_pass https (HTTP/1.1, upstream keepalive 64:
#                the idle connections libcurl keeps per worker) with the token
#                in the configuration
#   (b) lua      POST /b: bench/peer.lua (ngx_http_lua): agent key check, the
#                JSON body, HGET of the user's sealed token, AES-256-GCM
#                opening, ngx.location.capture of a keep-alive proxy_pass
#                with the Bearer token, the answer wrapped with cjson
#   (c) gateway  POST /v1/projects/p1/tools/call {"name":"slack_list_channels"}
#                with an agent key, X-Astralform-User and X-Astralform-Agent:
#                the catalog Slack connector pointed at the provider
#                (astralform_provider api_base=, astralform_http_ca_file)
#
# The same wrk POST (bench/wrk.lua: body, headers, -t/-c/-d) hits each after
# a warm-up. Per row: requests/s, p50/p99 (exact, from wrk's done() hook),
# worker CPU µs per request (utime+stime of that instance's workers from
# /proc), Redis commands per request (INFO commandstats), new TCP connections
# to the provider (its stub_status), and any non-2xx answer or socket error,
# which fails the row and the run (exit 2). Then the ratios c/a and c/b.
#
# Environment (defaults):
#   BENCH_CONNECTIONS=50 BENCH_THREADS=2 BENCH_DURATION=10s BENCH_WARMUP=2s
#   BENCH_WORKERS=2          worker_processes of each peer
#   BENCH_UPSTREAM_WORKERS=2 worker_processes of the provider
#   BENCH_CHANNELS=20        channels in the conversations.list answer
#   BENCH_UPSTREAM_HTTP2=0   1: the provider also offers HTTP/2 (ALPN); only
#                            the gateway (libcurl) can use it
#   BENCH_ROWS="a b c"       the rows to run
#   BENCH_HTTP_CLIENT=nginx  (c)'s astralform_http_client: curl measures
#                            the libcurl path side by side
#   BENCH_ROUNDS=1           rounds of the rows, interleaved (a b c a b c …);
#                            the summary takes the median of each figure
#   BENCH_CALLGRIND=0        1: also run (a) and (c) — and (b) — as a single
#                            process under valgrind --tool=callgrind for
#                            BENCH_CALLGRIND_REQUESTS=2000 requests each and
#                            print instructions per request
#   BENCH_KEEP=0             1: keep bench/tmp/tls.N (configs, logs)
#   NGINX=/usr/sbin/nginx    MODULE=./ngx_astralform_module.so
#
# Packages: wrk, redis-server, openssl, valgrind (BENCH_CALLGRIND) and, for
# (b), libnginx-mod-http-lua, lua-nginx-redis and lua-cjson: installed with
# apt-get when missing (once; as root).

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export PATH=$ROOT/t/node/node_modules/.bin:$PATH

CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-2}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
WORKERS=${BENCH_WORKERS:-2}
UP_WORKERS=${BENCH_UPSTREAM_WORKERS:-2}
CHANNELS=${BENCH_CHANNELS:-20}
HTTP2=${BENCH_UPSTREAM_HTTP2:-0}
ROWS=${BENCH_ROWS:-a b c}
HTTP_CLIENT=${BENCH_HTTP_CLIENT:-nginx}
ROUNDS=${BENCH_ROUNDS:-1}
CALLGRIND=${BENCH_CALLGRIND:-0}
CG_REQUESTS=${BENCH_CALLGRIND_REQUESTS:-2000}
KEEP=${BENCH_KEEP:-0}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${MODULE:-$ROOT/ngx_astralform_module.so}
LUA_MODULES=/usr/lib/nginx/modules

TMP=
PIDS=()
MASTERS=()
STATUS=1

# shellcheck source=bench/lib.sh
. bench/lib.sh

stop_pid() {    # stop_pid PID: TERM, wait up to 5 s, then KILL
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null
}

cleanup() {
    local pid
    for pid in "${MASTERS[@]}"; do
        stop_pid "$pid"
    done
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
        wait "$pid" 2>/dev/null
    done
    tmp_done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- packages ------------------------------------------------------------------
need_pkgs=()
for pair in wrk:wrk redis-server:redis-server redis-cli:redis-tools \
            openssl:openssl curl:curl perl:perl; do
    command -v "${pair%%:*}" >/dev/null || need_pkgs+=("${pair#*:}")
done
case " $ROWS " in *" b "*)
    [ -f "$LUA_MODULES/ngx_http_lua_module.so" ] \
        || need_pkgs+=(libnginx-mod-http-lua)
    [ -f /usr/share/lua/5.1/nginx/redis.lua ] || need_pkgs+=(lua-nginx-redis)
    [ -f /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] \
        || [ -n "$(find /usr/lib -path '*lua/5.1/cjson.so' 2>/dev/null)" ] \
        || need_pkgs+=(lua-cjson)
esac
[ "$CALLGRIND" = 1 ] && ! command -v valgrind >/dev/null && need_pkgs+=(valgrind)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]} (apt-get)"
    [ "$(id -u)" = 0 ] || die "need root to install ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
        --no-install-recommends "${need_pkgs[@]}" >/dev/null \
        || die "apt-get install ${need_pkgs[*]} failed"
fi
for tool in wrk redis-server redis-cli openssl curl perl node "$NGINX"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -f "$MODULE" ] || die "$MODULE not built: run make first"

read -r UP_PORT STAT_PORT REDIS_PORT PORT_a PORT_b PORT_c CG_a CG_b CG_c \
    < <(free_ports 9 | tr '\n' ' ')
[ -n "${CG_c:-}" ] || die "no free ports"

mkdir -p "$ROOT/bench/tmp"
TMP=$ROOT/bench/tmp/tls.$UP_PORT
rm -rf "$TMP"
mkdir -p "$TMP"/{pki,keys,redis,up}
chmod 755 "$TMP"

rand_hex() { openssl rand -hex "$1"; }

# --- the CA and the provider's certificate (fresh per run) --------------------
P=$TMP/pki
{
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 \
        -subj "/CN=astralform bench CA" -keyout "$P/ca.key" -out "$P/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign &&
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=slack.bench" \
        -keyout "$P/server.key" -out "$P/server.csr" &&
    printf '%s\n' 'subjectAltName=DNS:slack.bench,IP:127.0.0.1' \
        'basicConstraints=CA:FALSE' 'extendedKeyUsage=serverAuth' >"$P/ext" &&
    openssl x509 -req -in "$P/server.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$P/ext" -out "$P/server.pem"
} >"$P/openssl.log" 2>&1 || die "certificates: $(tail -3 "$P/openssl.log")"

# --- secrets ----------------------------------------------------------------------
KEY_HEX=$(rand_hex 32)
AGENT_KEY="bench-agent-$(rand_hex 16)"
TOKEN="xoxp-$(rand_hex 20)"
echo "$KEY_HEX" >"$TMP/keys/seal.key"
echo "bench-admin-$(rand_hex 16)" >"$TMP/keys/admin.keys"
echo "$AGENT_KEY" >"$TMP/keys/agent.keys"
echo "bench-client-secret-$(rand_hex 8)" >"$TMP/keys/client.secret"
BENCH_USER=u1
BENCH_AGENT=bench-bot
BODY='{"name":"slack_list_channels","arguments":{"limit":100}}'
QUERY='limit=100'    # what the gateway sends for those arguments

# --- the provider's answer: Slack's conversations.list shape -------------------
perl -MJSON::PP -e '
    my ($n) = @ARGV;
    my @ch = map { my $i = $_; {
        id => sprintf("C%010d", 4200000000 + $i), name => "channel-$i",
        name_normalized => "channel-$i", is_channel => JSON::PP::true,
        is_group => JSON::PP::false, is_im => JSON::PP::false,
        is_mpim => JSON::PP::false, is_private => JSON::PP::false,
        created => 1600000000 + $i * 3600, is_archived => JSON::PP::false,
        is_general => ($i == 1 ? JSON::PP::true : JSON::PP::false),
        unlinked => 0, is_shared => JSON::PP::false,
        is_org_shared => JSON::PP::false, is_ext_shared => JSON::PP::false,
        is_pending_ext_shared => JSON::PP::false, pending_shared => [],
        pending_connected_team_ids => [], shared_team_ids => ["T0123456789"],
        context_team_id => "T0123456789", updated => 1700000000000 + $i,
        parent_conversation => undef, creator => "U0123456789",
        is_member => JSON::PP::true, num_members => 3 + $i % 40,
        previous_names => ["old-channel-$i"],
        topic => { value => "Topic of channel $i: releases, \"quotes\" and \\\\ ünïcödé",
                   creator => "U0123456789", last_set => 1650000000 + $i },
        purpose => { value => "Purpose of channel $i, a sentence or two long so the answer has realistic text in it.",
                     creator => "U0123456789", last_set => 1650000000 + $i } }
    } 1 .. $n;
    print JSON::PP->new->canonical->utf8->encode({ ok => JSON::PP::true,
        channels => \@ch, response_metadata => { next_cursor => "" } });
' "$CHANNELS" >"$TMP/up/conversations.list.json" || die "fixture failed"
ANSWER_BYTES=$(stat -c %s "$TMP/up/conversations.list.json")
# a subrequest answer lives in one proxy buffer: room for the whole body
SUBREQ_BUF=$(( (ANSWER_BYTES / 4096 + 2) * 4 ))k

# --- redis and the user's sealed token ----------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$TMP/redis" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
R() { timeout 10 redis-cli -p "$REDIS_PORT" "$@"; }
for i in $(seq 100); do
    [ "$(R ping 2>/dev/null)" = PONG ] && break
    [ "$i" = 100 ] && die "redis-server did not start: $(tail -3 "$TMP/redis.log")"
    sleep 0.1
done
TOKEN_HASH='bench:{p1}:tokens:slack'
SEALED=$(perl -I t/lib -MAstralform::Seal -e '
    print seal_token($ARGV[0], "kb", "p1", "slack", $ARGV[2],
        { type => "oauth", access_token => $ARGV[1], scope => "channels:read",
          expires_at => 0, obtained_at => time() });' \
    "$KEY_HEX" "$TOKEN" "$BENCH_USER") \
    || die "sealing failed (Crypt::AuthEnc::GCM from libcryptx-perl?)"
[ "$(R HSET "$TOKEN_HASH" "$BENCH_USER" "$SEALED")" = 1 ] \
    || die "could not store the token"

# --- nginx instances ------------------------------------------------------------------
common_http() {    # the http{} preamble of every instance; $1 = its prefix
    cat <<EOF
    client_body_temp_path $1/temp/body;
    proxy_temp_path       $1/temp/proxy;
    fastcgi_temp_path     $1/temp/fastcgi;
    uwsgi_temp_path       $1/temp/uwsgi;
    scgi_temp_path        $1/temp/scgi;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
EOF
}

provider_block() {    # upstream + the proxy settings (a) and (b) share
    cat <<EOF
    upstream slack {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
EOF
}

proxy_settings() {    # $1 = the Authorization value
    cat <<EOF
            proxy_http_version 1.1;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_pass_request_headers off;
            proxy_set_header Host slack.bench;
            proxy_set_header Connection "";
            proxy_set_header Content-Length "";
            proxy_set_header Authorization $1;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_trusted_certificate $P/ca.pem;
            proxy_ssl_name slack.bench;
            proxy_ssl_session_reuse on;
EOF
}

# write_conf NAME DIR PORT PREAMBLE: DIR/nginx.conf for row NAME
write_conf() {
    local name=$1 dir=$2 port=$3 pre=$4
    mkdir -p "$dir"/{logs,temp}
    chmod 755 "$dir" "$dir/temp"
    {
        case $name in
        b) echo "load_module $LUA_MODULES/ndk_http_module.so;"
           echo "load_module $LUA_MODULES/ngx_http_lua_module.so;" ;;
        c) echo "load_module $MODULE;" ;;
        esac
        cat <<EOF
$pre
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
$(common_http "$dir")
EOF
        case $name in
        up) cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT ssl$([ "$HTTP2" = 1 ] && echo ' http2');
        ssl_certificate     $P/server.pem;
        ssl_certificate_key $P/server.key;
        location = /api/conversations.list {
            if (\$http_authorization != "Bearer $TOKEN") {
                return 401 '{"ok":false,"error":"invalid_auth"}';
            }
            default_type application/json;
            alias $TMP/up/conversations.list.json;
        }
    }
    server {
        listen 127.0.0.1:$STAT_PORT;
        location = /status { stub_status; }
    }
EOF
        ;;
        a) cat <<EOF
$(provider_block)
    server {
        listen 127.0.0.1:$port;
        location = /a {
$(proxy_settings "\"Bearer $TOKEN\"")
            proxy_pass https://slack/api/conversations.list?$QUERY;
        }
    }
EOF
        ;;
        b) cat <<EOF
    lua_package_path "$ROOT/bench/?.lua;;";
    init_by_lua_block {
        local f = assert(io.open("$TMP/keys/seal.key"))
        local hex = f:read("*l")
        f:close()
        require("peer").init({
            key = (hex:gsub("..", function (h)
                      return string.char(tonumber(h, 16)) end)),
            redis_port = $REDIS_PORT, hash = "$TOKEN_HASH", project = "p1",
            redis_timeout = $([ "${CG_CONF:-0}" = 1 ] && echo 30000 || echo 1000),
            auth = "Bearer $AGENT_KEY" })
    }
$(provider_block)
    server {
        listen 127.0.0.1:$port;
        location = /b {
            set \$bearer "";
            content_by_lua_block { require("peer").call() }
        }
        location = /_slack {
            internal;
$(proxy_settings '$bearer')
            proxy_buffer_size $SUBREQ_BUF;
            proxy_buffers 4 $SUBREQ_BUF;
            proxy_busy_buffers_size $SUBREQ_BUF;
            proxy_pass https://slack/api/conversations.list\$is_args\$args;
        }
    }
EOF
        ;;
        c) cat <<EOF
    astralform_redis        127.0.0.1:$REDIS_PORT$([ "${CG_CONF:-0}" = 1 ] \
                                && echo ' connect_timeout=10s timeout=30s');
    astralform_redis_prefix bench:;
    astralform_key          kb $TMP/keys/seal.key;
    astralform_public_url   http://127.0.0.1:$port;
    astralform_catalog      $ROOT/conf/connectors;
    astralform_provider     slack api_base=https://127.0.0.1:$UP_PORT/api/;
    astralform_http_ca_file $P/ca.pem;
    astralform_http_client  $HTTP_CLIENT;
    astralform_project      p1 admin_key_file=$TMP/keys/admin.keys
                            agent_key_file=$TMP/keys/agent.keys;
    astralform_connector    p1 slack client_id=bench-cid
                            client_secret_file=$TMP/keys/client.secret;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { astralform_api; }
    }
EOF
        ;;
        esac
        echo "}"
    } >"$dir/nginx.conf"
}

start_nginx() {    # start_nginx DIR -> master pid in $MASTER
    local dir=$1 i
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" -t -q \
        >"$dir/logs/test.log" 2>&1 \
        || die "nginx -t failed for ${dir#$ROOT/}: $(tail -3 "$dir/logs/test.log")"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        || die "nginx did not start in ${dir#$ROOT/}"
    for i in $(seq 50); do
        [ -s "$dir/logs/nginx.pid" ] && break
        sleep 0.1
    done
    MASTER=$(cat "$dir/logs/nginx.pid" 2>/dev/null)
    [ -n "$MASTER" ] || die "no pid file in ${dir#$ROOT/}"
    MASTERS+=("$MASTER")
}

declare -A DIR MASTER_OF PATH_OF
PATH_OF[a]=/a
PATH_OF[b]=/b
PATH_OF[c]=/v1/projects/p1/tools/call

write_conf up "$TMP/up" "$UP_PORT" "worker_processes $UP_WORKERS;"
start_nginx "$TMP/up"
UP_MASTER=$MASTER
for row in $ROWS; do
    DIR[$row]=$TMP/$row
    eval "port=\$PORT_$row"
    write_conf "$row" "${DIR[$row]}" "$port" "worker_processes $WORKERS;"
    start_nginx "${DIR[$row]}"
    MASTER_OF[$row]=$MASTER
done

post() {    # post URL -> "STATUS BODY" of one call, as wrk sends it
    curl -sS -m 10 -w ' %{http_code}' -X POST -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $AGENT_KEY" -H "X-Astralform-User: $BENCH_USER" \
        -H "X-Astralform-Agent: $BENCH_AGENT" -d "$BODY" "$1" 2>&1
}
for row in $ROWS; do
    eval "port=\$PORT_$row"
    for i in $(seq 100); do
        out=$(post "http://127.0.0.1:$port${PATH_OF[$row]}")
        [ "${out##* }" = 200 ] && break
        [ "$i" = 100 ] && die "row ($row) does not answer 200: ${out:0:300} $(tail -3 "${DIR[$row]}/logs/error.log")"
        sleep 0.1
    done
    # the answer carries the provider's channels (not an error made fast)
    grep -q '"channel-1"' <<<"$out" || die "row ($row) answer lacks the channels: ${out:0:300}"
done

# --- measuring ----------------------------------------------------------------------
workers() { pgrep -P "$1" | tr '\n' ' '; }
rss_kb() {    # summed VmRSS of PIDs, kB
    local p t=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
cmdstats() {    # "cmd calls" lines, INFO itself left out
    R info commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p' \
        | grep -v '^info '
}
accepts() { curl -fsS -m 5 "http://127.0.0.1:$STAT_PORT/status" | awk 'NR == 3 {print $1}'; }

run_wrk() {    # run_wrk ROW DURATION OUT
    local port secs
    eval "port=\$PORT_$1"
    secs=$(awk -v d="$2" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print int(n) + 60 }')
    BENCH_MODE=call BENCH_PATH=${PATH_OF[$1]} BENCH_BODY=$BODY BENCH_AGENT_KEY=$AGENT_KEY \
    BENCH_USER=$BENCH_USER BENCH_AGENT=$BENCH_AGENT \
        timeout "$secs" wrk -t "$THREADS" -c "$CONNS" -d "$2" --timeout 5s \
            -s bench/wrk.lua "http://127.0.0.1:$port" >"$3" 2>&1
}

declare -A RPS P50 P99 CPU OK IR
lv() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

redis_conns() { R info stats | tr -d '\r' | awk -F: '$1 == "total_connections_received" {print $2}'; }

measure() {    # measure ROW ROUND
    local row=$1 f=$TMP/wrk.$1.$2 wp up_wp n c0 c1 w0 w1 u0 u1 r0 r1 a0 a1 rss0 rss1
    local k0 k1
    wp=$(workers "${MASTER_OF[$row]}")
    up_wp=$(workers "$UP_MASTER")
    rss0=$(rss_kb $wp)
    run_wrk "$row" "$WARMUP" "$f.warmup"
    c0=$(cmdstats); a0=$(accepts); k0=$(redis_conns)
    w0=$(cpu_ticks $wp); u0=$(cpu_ticks $up_wp); r0=$(cpu_ticks "$REDIS_PID")
    run_wrk "$row" "$DURATION" "$f"
    w1=$(cpu_ticks $wp); u1=$(cpu_ticks $up_wp); r1=$(cpu_ticks "$REDIS_PID")
    c1=$(cmdstats); a1=$(accepts); k1=$(redis_conns)
    rss1=$(rss_kb $wp)
    n=$(lv lua_requests "$f")
    [ -n "$n" ] && [ "$n" -gt 0 ] || { log "row ($row): wrk failed: $(tail -3 "$f")"; OK[$row]=no; return; }
    local rps p50 p99 cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk -v u="$(lv lua_p50_us "$f")" 'BEGIN { printf "%.3f", u / 1000 }')
    p99=$(awk -v u="$(lv lua_p99_us "$f")" 'BEGIN { printf "%.3f", u / 1000 }')
    local k="1e6 / $CLK_TCK / $n"
    cpu=$(awk "BEGIN { printf \"%.1f\", ($w1 - $w0) * $k }")
    RPS[$row]+="$rps "; P50[$row]+="$p50 "; P99[$row]+="$p99 "; CPU[$row]+="$cpu "
    local ucpu rcpu redis_total redis_each
    ucpu=$(awk "BEGIN { printf \"%.1f\", ($u1 - $u0) * $k }")
    rcpu=$(awk "BEGIN { printf \"%.1f\", ($r1 - $r0) * $k }")
    read -r redis_total redis_each < <(join -a 2 -e 0 -o 0,1.2,2.2 \
        <(sort <<<"$c0") <(sort <<<"$c1") | awk -v n="$n" '
        { d = $3 - $2; if (d <= 0) next; t += d; if (d / n < 0.005) next
          s = s sprintf("%s%s=%.2f", s == "" ? "" : ",", $1, d / n) }
        END { printf "%.2f %s\n", t / n, s == "" ? "-" : s }')
    local bad sockerr
    bad=$(lv lua_non2xx "$f"); sockerr=$(lv lua_socket_errors "$f")
    [ "${bad:-1}" = 0 ] && [ "${sockerr:-1}" = 0 ] || OK[$row]=no
    : "${OK[$row]:=yes}"
    printf '(%s) %-7s rps=%s p50_ms=%s p99_ms=%s p99.9_ms=%s requests=%s non2xx=%s socket_errors=%s\n' \
        "$row" "$(case $row in a) echo limit;; b) echo lua;; c) echo gateway;; esac)" \
        "$rps" "$p50" "$p99" \
        "$(awk -v u="$(lv lua_p99.9_us "$f")" 'BEGIN { printf "%.3f", u / 1000 }')" \
        "$n" "${bad:-?}" "${sockerr:-?}"
    printf '            worker_cpu_us_per_req=%s (provider %s, redis %s) redis_cmds_per_req=%s (%s)\n' \
        "$cpu" "$ucpu" "$rcpu" "$redis_total" "$redis_each"
    printf '            new_tcp_connections provider=%s redis=%s | worker_rss_kb before=%s after=%s\n' \
        "$((a1 - a0 - 1))" "$((k1 - k0))" "$rss0" "$rss1"
    if [ "$bad" != 0 ] || [ "$sockerr" != 0 ]; then
        printf '            FAILED: %s non-2xx, %s socket errors; first: %s\n' \
            "${bad:-?}" "${sockerr:-?}" "$(sed -n 's/^lua_first_non2xx //p' "$f")"
    fi
}

echo "== astralform TLS benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc) cpu=\"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)\" load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //') $(openssl version | cut -d' ' -f1-2) | redis $(redis-server --version | awk '{print $3}' | tr -d v=) | $(wrk -v 2>&1 | head -1 | awk '{print "wrk", $2}')"
echo "wrk -t $THREADS -c $CONNS -d $DURATION (warm-up $WARMUP) | peers: worker_processes $WORKERS | provider: worker_processes $UP_WORKERS, TLS, $ANSWER_BYTES-byte answer ($CHANNELS channels), http2=$HTTP2 | gateway client: $HTTP_CLIENT"
echo "body: $BODY"
for r in $(seq "$ROUNDS"); do
    [ "$ROUNDS" = 1 ] || echo "-- round $r of $ROUNDS"
    for row in $ROWS; do
        measure "$row" "$r"
    done
done

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
          else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for row in $ROWS; do
    RPS[$row]=$(median <<<"${RPS[$row]:-}"); P50[$row]=$(median <<<"${P50[$row]:-}")
    P99[$row]=$(median <<<"${P99[$row]:-}"); CPU[$row]=$(median <<<"${CPU[$row]:-}")
done

echo "== summary$([ "$ROUNDS" = 1 ] || echo " (medians of $ROUNDS rounds, rows interleaved)")"
ratio() { awk -v x="${1:-0}" -v y="${2:-0}" 'BEGIN { if (y > 0) printf "%.3f", x / y; else print "nan" }'; }
diff_ms() { awk -v x="${1:-0}" -v y="${2:-0}" 'BEGIN { printf "%+.3f", x - y }'; }
printf '%-10s %10s %9s %9s %14s\n' row rps p50_ms p99_ms cpu_us_per_req
for row in $ROWS; do
    printf '%-10s %10.1f %9.3f %9.3f %14.1f%s\n' "($row)" "${RPS[$row]:-0}" "${P50[$row]:-0}" \
        "${P99[$row]:-0}" "${CPU[$row]:-0}" "$([ "${OK[$row]:-no}" = yes ] || echo '  FAILED')"
done
has_rows() { case " $ROWS " in *" $1 "*) case " $ROWS " in *" $2 "*) return 0;; esac;; esac; return 1; }
if has_rows a c; then
    echo "throughput c/a=$(ratio "${RPS[c]:-}" "${RPS[a]:-}")  cpu c/a=$(ratio "${CPU[c]:-}" "${CPU[a]:-}")  added p50 c-a=$(diff_ms "${P50[c]:-}" "${P50[a]:-}") ms  added p99 c-a=$(diff_ms "${P99[c]:-}" "${P99[a]:-}") ms"
fi
if has_rows b c; then
    echo "throughput c/b=$(ratio "${RPS[c]:-}" "${RPS[b]:-}")  cpu c/b=$(ratio "${CPU[c]:-}" "${CPU[b]:-}")  added p50 c-b=$(diff_ms "${P50[c]:-}" "${P50[b]:-}") ms  added p99 c-b=$(diff_ms "${P99[c]:-}" "${P99[b]:-}") ms"
fi

STATUS=0
for row in $ROWS; do
    [ "${OK[$row]:-no}" = yes ] || { STATUS=2; echo "FAILED row ($row): see above"; }
done

# --- callgrind: instructions per request, one process per row --------------------------
if [ "$CALLGRIND" = 1 ]; then
    command -v valgrind >/dev/null || die "valgrind not found"
    echo "== callgrind: user-space instructions per request (one nginx process, master_process off; syscalls and the provider excluded)"
    for row in $ROWS; do
        d=$TMP/cg-$row
        eval "port=\$CG_$row"
        CG_CONF=1 write_conf "$row" "$d" "$port" \
            "master_process off; daemon off; worker_processes 1;"
        timeout 900 valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.%p" \
            --dump-instr=no "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" \
            >"$d/valgrind.log" 2>&1 &
        CG_PID=$!
        PIDS+=("$CG_PID")
        for i in $(seq 300); do
            out=$(post "http://127.0.0.1:$port${PATH_OF[$row]}")
            [ "${out##* }" = 200 ] && break
            kill -0 "$CG_PID" 2>/dev/null || break
            sleep 0.2
        done
        if [ "${out##* }" != 200 ]; then
            echo "($row) callgrind: no 200 answer (${out:0:200}); see ${d#$ROOT/}"
            STATUS=2
            stop_pid "$CG_PID"
            continue
        fi
        batch() {    # batch N -> exactly N requests over 10 connections
            BENCH_BODY=$BODY BENCH_AGENT_KEY=$AGENT_KEY BENCH_USER=$BENCH_USER \
            BENCH_AGENT=$BENCH_AGENT timeout 900 node bench/fixed.js \
                "http://127.0.0.1:$port${PATH_OF[$row]}" "$1" 10 call
        }
        # the tool's own process (under timeout and valgrind's wrapper)
        vg=
        for p in $(pgrep -f -- "--callgrind-out-file=$d/"); do
            case $(readlink "/proc/$p/exe" 2>/dev/null) in
            *callgrind*) vg=$p ;;
            esac
        done
        batch 200 >"$d/load.warmup"
        timeout 60 callgrind_control -z "$vg" >"$d/control.log" 2>&1
        batch "$CG_REQUESTS" >"$d/load"
        timeout 60 callgrind_control -d "$vg" >>"$d/control.log" 2>&1
        stop_pid "$CG_PID"
        wait "$CG_PID" 2>/dev/null
        f=$(ls "$d"/callgrind.*.1 2>/dev/null | head -1)
        nreq=$(awk '/^requests/ {print $2}' "$d/load")
        nbad=$(awk '/^requests/ {print $4}' "$d/load")
        if [ -z "$f" ] || [ "${nbad:-1}" != 0 ]; then
            echo "($row) callgrind: no profile or non-2xx ($(cat "$d/load")); see ${d#$ROOT/}"
            STATUS=2
            continue
        fi
        ir=$(callgrind_annotate "$f" 2>/dev/null \
            | awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1; exit}')
        IR[$row]=$(awk -v i="$ir" -v n="$nreq" 'BEGIN { printf "%d", i / n }')
        printf '(%s) instructions_per_request=%s (requests %s); top functions, self:\n' \
            "$row" "${IR[$row]}" "$nreq"
        callgrind_annotate --threshold=100 "$f" 2>/dev/null | awk -v n="$nreq" '
            /^ *[0-9,]+ \( *[0-9.]+%\) / && !/PROGRAM TOTALS|\(100\.0%\)/ {
                ir = $1; gsub(/,/, "", ir)
                match($0, /\( *[0-9.]+%\)/); pct = substr($0, RSTART, RLENGTH)
                fn = substr($0, RSTART + RLENGTH); sub(/^ +/, "", fn)
                sub(/^[^ ]*:/, "", fn); sub(/\[.*\//, "[", fn)
                printf "      %9d Ir/req %8s  %s\n", ir / n, pct, fn
                if (++k == 8) exit }'
    done
    if has_rows a c; then
        [ -n "${IR[a]:-}" ] && [ -n "${IR[c]:-}" ] \
            && echo "instructions c/a=$(ratio "${IR[c]}" "${IR[a]}")$([ -n "${IR[b]:-}" ] && echo "  c/b=$(ratio "${IR[c]}" "${IR[b]}")")"
    fi
fi

exit "$STATUS"
