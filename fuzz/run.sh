#!/usr/bin/env bash
# Runs the built harnesses one after the other (make fuzz calls this):
#   FUZZ_SECONDS=N  bash fuzz/run.sh NAME...
# Each runs N seconds (-max_total_time) from its seeds in fuzz/corpus/NAME
# (never written to) and a working corpus in $FUZZ_DIR/corpus/NAME; with
# N=0 the seeds are only replayed. Prints one line per harness and exits
# non-zero when a harness found something (the input is kept in
# $FUZZ_DIR/artifacts/NAME/, the report in $FUZZ_DIR/logs/NAME.log).
set -u

cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
FUZZ_FLAGS=${FUZZ_FLAGS:-}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# FUZZ_KNOWN=tag,...: look past findings reported and not fixed yet (the
# harnesses' oracles read the tags; UBSan reads fuzz/known.supp)
if [ -n "${FUZZ_KNOWN:-}" ]; then
    export FUZZ_KNOWN
    UBSAN_OPTIONS="$UBSAN_OPTIONS:suppressions=$PWD/fuzz/known.supp"
fi

# per harness: the longest input worth trying
declare -A MAX_LEN=([catalog]=16384 [sse]=16384 [provider]=16384
                    [redis]=8192 [body]=8192 [schema]=4096 [open]=4096
                    [token]=8192 [origin]=2048 [scrub]=4096 [jsonrpc]=8192
                    [record]=2048 [json_check]=8192)

status=0

printf '%-9s %7s %11s %9s %6s %7s  %s\n' harness seconds executions 'exec/s' \
       'new' corpus result

for name in "$@"; do
    bin=$FUZZ_DIR/fuzz_$name
    seeds=fuzz/corpus/$name
    work=$FUZZ_DIR/corpus/$name
    art=$FUZZ_DIR/artifacts/$name
    log=$FUZZ_DIR/logs/$name.log

    mkdir -p "$work" "$art" "$FUZZ_DIR/logs" "$seeds"

    opts=(-print_final_stats=1 -artifact_prefix="$art/" -timeout=10
          -rss_limit_mb=2048 -max_len="${MAX_LEN[$name]:-8192}")
    [ -f "fuzz/dict/$name.dict" ] && opts+=(-dict="fuzz/dict/$name.dict")

    if [ "$FUZZ_SECONDS" = 0 ]; then
        opts+=(-runs=0)
    else
        opts+=(-max_total_time="$FUZZ_SECONDS")
    fi

    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" "${opts[@]}" $FUZZ_FLAGS "$work" "$seeds" > "$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
    corpus=$(find "$work" "$seeds" -type f | wc -l)

    if [ $rc -eq 0 ]; then
        result=ok
    else
        status=1
        found=$(ls -t "$art" 2>/dev/null | head -1)
        why=$(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|==FUZZ== finding' "$log" \
              | sed 's/^==[0-9]*==//' | cut -c1-100)
        result="FOUND ${why:-exit $rc}: $art/$found (see $log)"
    fi

    printf '%-9s %7s %11s %9s %6s %7s  %s\n' "$name" "$secs" "${execs:-?}" \
           "${rate:-?}" "${new:-?}" "$corpus" "$result"
done

exit $status
