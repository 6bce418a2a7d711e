# bench/lib.sh — shell helpers of bench/run.sh and bench/mock.sh (sourced).

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

free_ports() {    # free_ports N: N distinct free loopback ports (as t/run.sh)
    perl -MIO::Socket::INET -e '
        my ($n, %seen, @held) = ($ARGV[0]);
        while ($n > 0) {
            my $p = 20000 + int(rand(12000));
            next if $seen{$p}++;
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                        LocalPort => $p, Listen => 1, Proto => "tcp")
                or next;
            push @held, $s;
            print "$p\n";
            $n--;
        }' "$1"
}

CLK_TCK=$(getconf CLK_TCK)

cpu_ticks() {    # cpu_ticks PID...: their utime + stime, in clock ticks
    local p t=0 f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }
        set -- $f
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}

tmp_done() {    # on exit: the run's files go unless BENCH_KEEP=1 or it failed
    if [ -n "$TMP" ]; then
        if [ "$KEEP" = 1 ] || [ "$STATUS" != 0 ]; then
            log "files kept in ${TMP#$ROOT/}"
        else
            rm -rf "$TMP"
        fi
    fi
}
