#!/usr/bin/env bash
# `make run`: start a private Redis (127.0.0.1:6380) and nginx with
# conf/nginx.conf on http://127.0.0.1:8080, creating demo keys on first run.
# `make stop` (scripts/run.sh stop) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
run=$repo/run
nginx=/usr/sbin/nginx

# stop one daemon by pid file and wait until it is gone
stop_pid() {
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$1"
}

stop() {
    stop_pid "$run/logs/nginx.pid"
    stop_pid "$run/redis.pid"
}

if [ "${1:-}" = stop ]; then
    stop
    echo "stopped"
    exit 0
fi

stop
mkdir -p "$run"/{keys,logs,tmp,redis}
chmod 700 "$run/keys"
umask 077
[ -s "$run/keys/master.key" ] || openssl rand -hex 32 > "$run/keys/master.key"
[ -s "$run/keys/demo-admin.keys" ] || echo "af_admin_$(openssl rand -hex 16)" > "$run/keys/demo-admin.keys"
[ -s "$run/keys/demo-agent.keys" ] || echo "af_agent_$(openssl rand -hex 16)" > "$run/keys/demo-agent.keys"
[ -s "$run/keys/github-client.secret" ] || echo "replace-with-your-github-oauth-app-secret" > "$run/keys/github-client.secret"

# data kept between runs: an append-only file under run/redis/
redis-server --port 6380 --bind 127.0.0.1 --appendonly yes --save 60 1 \
    --dir "$run/redis" --daemonize yes --pidfile "$run/redis.pid" \
    --logfile "$run/redis/redis.log"
for _ in $(seq 50); do
    redis-cli -p 6380 ping >/dev/null 2>&1 && break
    sleep 0.1
done

$nginx -p "$run" -c "$repo/conf/nginx.conf" -t -q
$nginx -p "$run" -c "$repo/conf/nginx.conf"

for _ in $(seq 50); do
    curl -fsS http://127.0.0.1:8080/v1/health >/dev/null 2>&1 && break
    sleep 0.1
done

cat <<MSG
astralform gateway: http://127.0.0.1:8080/v1/   (logs in run/logs/, stop with: make stop)
  dashboard: http://127.0.0.1:8080/dashboard/   (project: demo, key: the admin key below)
  API description: http://127.0.0.1:8080/v1/openapi.json
  health:   $(curl -sS http://127.0.0.1:8080/v1/health)
  admin key: $(head -1 "$run/keys/demo-admin.keys")   agent key: $(head -1 "$run/keys/demo-agent.keys")
  try:      curl -H "Authorization: Bearer \$(head -1 run/keys/demo-admin.keys)" http://127.0.0.1:8080/v1/projects/demo/connectors
MSG
