#!/usr/bin/env bash
# Run the Test::Nginx suite (used by `make test`).
#
#   t/run.sh                      every t/**/*.t
#   t/run.sh t/010-foo.t          a subset; prove options pass through:
#   t/run.sh -v t/000-runner.t
#
# Starts on free loopback ports, for this run only: a private redis-server,
# and the Node test servers whose files exist (t/mock/providers.js,
# t/servers/mcp-server.mjs, t/servers/oidc-server.mjs), then runs prove with
# TEST_NGINX_{REDIS,MOCK,MCP,OIDC,SERVER}_PORT, TEST_NGINX_BINARY,
# TEST_NGINX_LOAD_MODULES (when ngx_astralform_module.so exists) and
# TEST_NGINX_REPO exported.  nginx runs from t/servroot_PORT, the servers log
# to t/tmp/PORT/ (both kept when a test fails).  Everything started here is
# stopped on exit; the exit status is prove's.
#
# t/lib is put on @INC for Astralform::Test; its Test::Nginx::Socket defers
# to openresty's when that is installed (TEST_NGINX_COMPAT=1 forces ours).

set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

PIDS=()
STATUS=1
RUN_TMP=
SERVROOT=
KEEP_SERVROOT=
PROVE_PID=

log() { printf 't/run.sh: %s\n' "$*" >&2; }

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local pid

    if [ -n "$PROVE_PID" ]; then
        pkill -TERM -P "$PROVE_PID" 2>/dev/null    # the running test file
        kill "$PROVE_PID" 2>/dev/null
        wait "$PROVE_PID" 2>/dev/null
    fi

    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done

    # an nginx left behind by an interrupted test file
    if [ -n "$SERVROOT" ] && [ -f "$SERVROOT/logs/nginx.pid" ]; then
        pid=$(cat "$SERVROOT/logs/nginx.pid" 2>/dev/null)
        if [ -n "$pid" ] && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null
        then
            kill "$pid" 2>/dev/null
        fi
    fi

    if [ "$STATUS" = 0 ]; then
        [ -n "$RUN_TMP" ] && rm -rf "$RUN_TMP"
        [ -n "$SERVROOT" ] && [ -z "$KEEP_SERVROOT" ] && rm -rf "$SERVROOT"
    elif [ -n "$RUN_TMP" ]; then
        log "logs kept in ${RUN_TMP#"$ROOT"/} and ${SERVROOT#"$ROOT"/}"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# N distinct ports free on the wildcard address (nginx's "listen PORT" binds
# it; that also proves them free on 127.0.0.1), below the ephemeral range.
free_ports() {
    perl -MIO::Socket::INET -e '
        my ($n, %seen, @held) = ($ARGV[0]);
        while ($n > 0) {
            my $p = 20000 + int(rand(12000));
            next if $seen{$p}++;
            my $s = IO::Socket::INET->new(LocalAddr => "0.0.0.0",
                        LocalPort => $p, Listen => 1, Proto => "tcp")
                or next;
            push @held, $s;
            print "$p\n";
            $n--;
        }' "$1"
}

port_open() {
    perl -MIO::Socket::INET -e '
        exit(IO::Socket::INET->new(PeerAddr => "127.0.0.1",
             PeerPort => $ARGV[0], Proto => "tcp", Timeout => 1) ? 0 : 1)' "$1"
}

# wait_port NAME PID PORT: until PORT accepts, PID dies, or 20 s pass
wait_port() {
    local i
    for i in $(seq 1 200); do
        if port_open "$3"; then
            return 0
        fi
        if ! kill -0 "$2" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    log "$1 did not come up on port $3; last lines of its log:"
    tail -n 20 "$RUN_TMP/$1.log" >&2
    return 1
}

redis_ping() {
    if command -v redis-cli >/dev/null; then
        [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
    else
        perl -MIO::Socket::INET -e '
            my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
                    PeerPort => $ARGV[0], Timeout => 1) or exit 1;
            print $s "PING\r\n"; my $l = <$s>;
            exit($l && $l =~ /^\+PONG/ ? 0 : 1)' "$1"
    fi
}

# A real server or client that cannot be installed or started fails the run:
# a suite that quietly skips them says PASS for what it never tested.
# ASTRALFORM_TEST_ALLOW_SKIP=1 (documented in the README) turns that into a
# warning, and the test files that need the missing part skip themselves.
need() {
    if [ "${ASTRALFORM_TEST_ALLOW_SKIP:-0}" = 1 ]; then
        log "$1 (ASTRALFORM_TEST_ALLOW_SKIP=1: the tests that need it skip)"
        return 0
    fi
    log "$1; set ASTRALFORM_TEST_ALLOW_SKIP=1 to run the rest anyway"
    exit 1
}

npm_install() {
    local dir=$1
    [ -f "$dir/package.json" ] && [ ! -d "$dir/node_modules" ] || return 0
    log "installing node modules in $dir"
    if [ -f "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund) >&2
    else
        (cd "$dir" && npm install --no-audit --no-fund) >&2
    fi || { rm -rf "$dir/node_modules"; need "npm failed in $dir"; }
}

# Every JavaScript part of the suite runs on the Node the project installs
# from npm (t/node, Node 22): Debian 12's own is 18, too old for the MCP SDK,
# the conformance suite and Claude Code.
use_project_node() {
    npm_install t/node
    if [ -x t/node/node_modules/.bin/node ]; then
        export PATH=$ROOT/t/node/node_modules/.bin:$PATH
    fi
    local v
    v=$(node --version 2>/dev/null)
    case $v in
    v2[2-9].*|v[3-9][0-9].*) log "node $v" ;;
    *) need "Node >= 22 is needed, found '${v:-none}' (t/node did not install)" ;;
    esac
}

# start_node NAME ENVVAR PORT SCRIPT [ARGS...]
start_node() {
    local name=$1 var=$2 port=$3
    shift 3
    node "$@" --port "$port" >"$RUN_TMP/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    if wait_port "$name" "$pid" "$port"; then
        export "$var=$port"
    else
        need "the test server $name did not start"
    fi
}

read -r SERVER_PORT REDIS_PORT MOCK_PORT MCP_PORT OIDC_PORT \
    < <(free_ports 5 | tr '\n' ' ')
if [ -z "${OIDC_PORT:-}" ]; then
    log "could not find free ports"
    exit 1
fi
export TEST_NGINX_SERVER_PORT=${TEST_NGINX_SERVER_PORT:-$SERVER_PORT}

RUN_TMP=$ROOT/t/tmp/$TEST_NGINX_SERVER_PORT
if [ -n "${TEST_NGINX_SERVROOT:-}" ]; then
    KEEP_SERVROOT=1
    SERVROOT=$TEST_NGINX_SERVROOT
else
    KEEP_SERVROOT=
    SERVROOT=$ROOT/t/servroot_$TEST_NGINX_SERVER_PORT
fi
export TEST_NGINX_SERVROOT=$SERVROOT
rm -rf "$RUN_TMP"
mkdir -p "$RUN_TMP/redis"

# Redis
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --dir "$RUN_TMP/redis" \
    >"$RUN_TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for i in $(seq 1 100); do
    redis_ping "$REDIS_PORT" && break
    if ! kill -0 "$REDIS_PID" 2>/dev/null || [ "$i" = 100 ]; then
        log "redis-server did not start; last lines of its log:"
        tail -n 20 "$RUN_TMP/redis.log" >&2
        exit 1
    fi
    sleep 0.1
done
export TEST_NGINX_REDIS_PORT=$REDIS_PORT

# Node test servers, when they exist
use_project_node
if [ -f t/mock/providers.js ]; then
    npm_install t/mock
    start_node providers TEST_NGINX_MOCK_PORT "$MOCK_PORT" \
        t/mock/providers.js
fi
if [ -f t/servers/mcp-server.mjs ] || [ -f t/servers/oidc-server.mjs ]; then
    npm_install t/servers
fi
if [ -f t/servers/mcp-server.mjs ]; then
    start_node mcp-server TEST_NGINX_MCP_PORT "$MCP_PORT" \
        t/servers/mcp-server.mjs
fi
if [ -f t/servers/oidc-server.mjs ]; then
    start_node oidc-server TEST_NGINX_OIDC_PORT "$OIDC_PORT" \
        t/servers/oidc-server.mjs --redirect-uri \
        "http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v1/connectors/oauth/callback"
fi

# every API answer of the run, for t/098-openapi.t
export TEST_NGINX_ANSWERS=${TEST_NGINX_ANSWERS:-$RUN_TMP/answers.jsonl}
npm_install t/browser
# real MCP clients: the SDK client, the conformance suite, Claude Code
npm_install t/clients

export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
export TEST_NGINX_REPO=$ROOT
export TEST_NGINX_MASTER_PROCESS=${TEST_NGINX_MASTER_PROCESS:-on}
if [ -z "${TEST_NGINX_LOAD_MODULES:-}" ] \
    && [ -f "$ROOT/ngx_astralform_module.so" ]
then
    export TEST_NGINX_LOAD_MODULES=$ROOT/ngx_astralform_module.so
fi
if [ -z "${TEST_NGINX_LOAD_MODULES:-}" ]; then
    log "ngx_astralform_module.so not built; running without it"
fi

if [ -z "${TEST_NGINX_COMPAT:-}" ] \
    && perl -MTest::Nginx::Socket -e1 2>/dev/null
then
    log "using the installed Test::Nginx::Socket"
else
    log "using the bundled Test::Nginx::Socket (t/lib)"
fi

# default: every test file (prove -r t/ would also walk node_modules)
have_tests=
for a in "$@"; do
    if [ -e "$a" ]; then
        have_tests=1
    fi
done
if [ -z "$have_tests" ]; then
    mapfile -t files < <(find t -name '*.t' -not -path '*/node_modules/*' \
        -not -path 't/servroot*' -not -path 't/tmp/*' | sort)
    set -- "$@" "${files[@]}"
fi

log "nginx :$TEST_NGINX_SERVER_PORT, redis :$TEST_NGINX_REDIS_PORT," \
    "mock :${TEST_NGINX_MOCK_PORT:--}, mcp :${TEST_NGINX_MCP_PORT:--}," \
    "oidc :${TEST_NGINX_OIDC_PORT:--}"

# in the background, so that a signal is handled at once, not when prove
# (maybe stuck in a hanging test) returns
prove -I t/lib "$@" &
PROVE_PID=$!
wait "$PROVE_PID"
STATUS=$?
PROVE_PID=
exit "$STATUS"
