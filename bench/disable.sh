#!/usr/bin/env bash
# bench/disable.sh — how long Redis is held when a connector with many
# users is disabled (issue 9).
#
#   make && bash bench/disable.sh            # 50 000 users
#   BENCH_USERS=200000 bash bench/disable.sh
#
# Runs t/092-durability-slowlog.t through t/run.sh (its own Redis, mock
# providers and nginx on free loopback ports) with that many stored users:
# it prints what the former one-script disable (HGETALL + DEL) costs on a
# copy of the hash, how fast the DELETE answers, how long draining the
# revocations takes, and the longest Redis command SLOWLOG saw meanwhile.

set -u
cd "$(dirname "$0")/.." || exit 1

ASTRALFORM_DISABLE_USERS=${BENCH_USERS:-50000} ASTRALFORM_DISABLE_OLD=1 \
    exec bash t/run.sh -v t/092-durability-slowlog.t
