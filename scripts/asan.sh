#!/usr/bin/env bash
# make asan: the Test::Nginx suite against the module built with
# AddressSanitizer + UndefinedBehaviorSanitizer (mk/asan.mk builds
# build/asan/ngx_astralform_module.so), then t/999-sanitizers.t fails the
# run on any sanitizer report.
#
#   scripts/asan.sh                      the whole suite
#   scripts/asan.sh t/050-tools.t ...    a subset (t/999 is always added)
#   scripts/asan.sh --deps               install the compiler and runtime
#   ASAN_CC=gcc ...                      gcc's runtimes (see below)
#   ASAN_OPTIONS_EXTRA=... UBSAN_OPTIONS_EXTRA=...   more options
#
# Why a preloaded runtime: Debian's nginx-dev ships nginx's headers and
# configure script but no .c files, so no sanitized nginx can be built from
# it.  The stock /usr/sbin/nginx runs the sanitized module instead, with the
# compiler's runtime in LD_PRELOAD (ASan must be the first DSO of a process;
# a dlopen()ed module that needs it aborts with "ASan runtime does not come
# first in initial library list").  nginx core stays uninstrumented: every
# malloc'ed block (jansson, hiredis, curl and OpenSSL objects, ngx_alloc,
# large pool allocations, the pool blocks themselves) is bounds- and
# use-after-free checked, as are the module's stack and globals, but an
# overflow from one small ngx_palloc() into its neighbour inside the same
# pool block is not seen (NGX_DEBUG_PALLOC, which mallocs each one, is a
# compile-time option of nginx itself).
#
# clang (the default) has one runtime for ASan, LSan and UBSan, so every
# report lands in $TEST_NGINX_SANITIZER_DIR/sanitizer.PID.  gcc splits it in
# libasan and libubsan; libubsan's reports then always go to stderr, which
# nginx points at its error log (t/999 scans the error logs, but the test
# runner truncates them between blocks, so only the last one is seen), and
# its log_path even steals libasan's.  Use gcc only to cross-check.
#
# The wrapper build/asan/bin/nginx sets the options and hands them to the
# workers with -g "env ...;" (nginx clears the environment of workers and of
# a binary upgrade except for "env" variables).  The report directory is
# per run under build/asan/logs/ and outlives the servroots (t/run.sh
# removes them on success, t/045 removes its second one).

set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
CC=${ASAN_CC:-clang}
NGINX=${TEST_NGINX_REAL_BINARY:-/usr/sbin/nginx}
MODULE=${ASAN_MODULE:-$ROOT/build/asan/ngx_astralform_module.so}
BIN=$(dirname "$MODULE")/bin

log() { printf 'scripts/asan.sh: %s\n' "$*" >&2; }

case $CC in
*clang*) PKGS="clang libclang-rt-14-dev" ;;
*)       PKGS="gcc" ;;
esac

if [ "${1:-}" = --deps ]; then
    missing=
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && exit 0
    log "installing:$missing"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends $missing >/dev/null
    exit
fi

[ -f "$MODULE" ] || { log "$MODULE missing: run make asan"; exit 1; }

case $CC in
*clang*)
    PRELOAD=$($CC -print-file-name=libclang_rt.asan-x86_64.so)
    ;;
*)
    PRELOAD="$($CC -print-file-name=libasan.so) $($CC -print-file-name=libubsan.so)"
    ;;
esac
PRELOAD_REAL=
for lib in $PRELOAD; do
    [ -f "$lib" ] || { log "no sanitizer runtime $lib for $CC"; exit 1; }
    PRELOAD_REAL="$PRELOAD_REAL${PRELOAD_REAL:+ }$(readlink -f "$lib")"
done

# ASAN_OPTIONS, each one a choice:
#   detect_leaks=1                  LeakSanitizer at every exit; an exiting
#                                   worker destroys its cycle pool, so what
#                                   is left is memory no pool owns
#                                   (t/lsan.supp and t/999 say what of it
#                                   is nginx core's)
#   detect_stack_use_after_return=1 a pointer to a stack frame kept in a
#                                   callback ctx is the classic async bug
#   fast_unwind_on_malloc=0         nginx and libc have no frame pointers;
#                                   the slow unwinder gives whole stacks
#   handle_abort=1                  a report for abort() and assert() too
#   check_printf=1                  printf-family arguments are checked
# No ASan check is turned off and halt_on_error stays 1: a bad access kills
# the worker (the master logs it and starts another), the report says why.
# UBSAN_OPTIONS: print_stacktrace=1, report_error_type=1 (the check's name)
# and halt_on_error=0: UBSan reports and carries on, t/999 fails the run.
ASAN_OPTS="detect_leaks=1:detect_stack_use_after_return=1"
ASAN_OPTS="$ASAN_OPTS:fast_unwind_on_malloc=0:handle_abort=1:check_printf=1"
UBSAN_OPTS="print_stacktrace=1:halt_on_error=0:report_error_type=1"
LSAN_OPTS="suppressions=$ROOT/t/lsan.supp:print_suppressions=0"

# A small preloaded library, right after the runtime (its definitions must
# come before the runtime's weak ones):
# - nginx overwrites its argv and environment block with the process title
#   (ngx_setproctitle), and the sanitizer runtimes read their options from
#   /proc/self/environ, which is that block: a runtime that reads them late
#   (gcc's libubsan, at its first report) finds none.  The hooks hand them
#   the options from libc's environ, which nginx keeps (the master copies it
#   away, workers rebuild it from "env" directives).
# - An exiting cycle dlclose()s the module before LeakSanitizer runs, and
#   the frames of an unmapped module print as "<unknown module>".  In nginx
#   the constructor opens the module once more with RTLD_NODELETE, which
#   keeps it mapped.  (Preloading the module itself would also do, but every
#   child the runtime starts, such as llvm-symbolizer, would inherit it and
#   fail on nginx's symbols.)
mkdir -p "$BIN"
cat >"$BIN/sanitizer_hooks.c" <<EOF
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__lsan_default_options(void);

static void keep_module(void) __attribute__((constructor));

static void
keep_module(void)
{
    if (strcmp(program_invocation_short_name, "nginx") == 0) {
        (void) dlopen("$MODULE", RTLD_LAZY | RTLD_NODELETE);
    }
}

const char *
__asan_default_options(void)
{
    const char  *s = getenv("ASAN_OPTIONS");

    return s != NULL ? s : "";
}

const char *
__ubsan_default_options(void)
{
    const char  *s = getenv("UBSAN_OPTIONS");

    return s != NULL ? s : "";
}

const char *
__lsan_default_options(void)
{
    const char  *s = getenv("LSAN_OPTIONS");

    return s != NULL ? s : "";
}
EOF
$CC -O1 -fPIC -shared -o "$BIN/sanitizer_hooks.so" "$BIN/sanitizer_hooks.c" \
    -ldl || exit 1

# the runtime symbolizes through a child (clang: llvm-symbolizer), which
# gets a clean environment: the runtime has no business in it
SYMBOLIZER=
if command -v llvm-symbolizer >/dev/null; then
    cat >"$BIN/llvm-symbolizer" <<EOF
#!/bin/sh
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
exec $(command -v llvm-symbolizer) "\$@"
EOF
    chmod +x "$BIN/llvm-symbolizer"
    SYMBOLIZER=:external_symbolizer_path=$BIN/llvm-symbolizer
fi
FIRST=${PRELOAD_REAL%% *}
HOOKED="$FIRST $BIN/sanitizer_hooks.so${PRELOAD_REAL#"$FIRST"}"

cat >"$BIN/nginx" <<EOF
#!/bin/sh
# Generated by scripts/asan.sh: $NGINX with the sanitizer runtime and
# its hooks preloaded.  Reports: \$TEST_NGINX_SANITIZER_DIR, else the
# prefix's logs/.
dir=\${TEST_NGINX_SANITIZER_DIR:-}
if [ -z "\$dir" ]; then
    prev=
    for a in "\$@"; do
        [ "\$prev" = -p ] && dir=\${a%/}/logs
        prev=\$a
    done
fi
dir=\${dir:-.}
mkdir -p "\$dir"
echo "\$\$ \$*" >>"\$dir/nginx.invocations"
# nginx -t, -T and -s return from main() with the configuration they
# parsed still allocated and no pointer left to it: every object of it
# would be reported as leaked (and LSan's exit status would fail the
# command).  The same configurations are leak checked when a test starts
# nginx with them or expects nginx to die on them.
leaks=
for a in "\$@"; do
    case \$a in -t|-T|-tq|-qt|-Tq|-qT|-s) leaks=:detect_leaks=0 ;; esac
done
export LD_PRELOAD="$HOOKED"
export ASAN_OPTIONS="log_path=\$dir/sanitizer:$ASAN_OPTS$SYMBOLIZER\$leaks\${ASAN_OPTIONS_EXTRA:+:\$ASAN_OPTIONS_EXTRA}"
export UBSAN_OPTIONS="log_path=\$dir/sanitizer:$UBSAN_OPTS$SYMBOLIZER\${UBSAN_OPTIONS_EXTRA:+:\$UBSAN_OPTIONS_EXTRA}"
export LSAN_OPTIONS="$LSAN_OPTS"
exec "$NGINX" -g 'env LD_PRELOAD; env ASAN_OPTIONS; env UBSAN_OPTIONS; env LSAN_OPTIONS;' "\$@"
EOF
chmod +x "$BIN/nginx"

RUN_LOGS=$(dirname "$MODULE")/logs/asan-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$RUN_LOGS"
export TEST_NGINX_SANITIZER_DIR=$RUN_LOGS
export TEST_NGINX_SANITIZER=asan
export TEST_NGINX_BINARY=$BIN/nginx
export TEST_NGINX_LOAD_MODULES=$MODULE

# a subset gets the check appended; no test file means every t/**/*.t
for a in "$@"; do
    if [ -e "$a" ]; then
        set -- "$@" t/999-sanitizers.t
        break
    fi
done

log "$CC runtime: $PRELOAD_REAL"
log "reports: ${RUN_LOGS#$ROOT/}"
start=$(date +%s)
bash t/run.sh "$@"
status=$?
log "suite exit status $status in $(( $(date +%s) - start )) s;" \
    "$(find "$RUN_LOGS" -name 'sanitizer.*' | wc -l) report file(s) in ${RUN_LOGS#$ROOT/}"
exit "$status"
