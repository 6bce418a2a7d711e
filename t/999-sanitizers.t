# The sanitizer and valgrind verdict of a run.  It sorts last, so t/run.sh
# runs it after every other file; scripts/asan.sh and scripts/valgrind.sh
# append it to a subset.  It stops the nginx the last file left running, so
# that every process has exited and written its LeakSanitizer or memcheck
# summary, then fails on
#   - any ASan, LSan or UBSan report: the files sanitizer.PID in
#     $TEST_NGINX_SANITIZER_DIR (make asan sets their log_path there), and
#     the same reports in the logs of this run's servroots (without a
#     log_path they go to stderr, which nginx points at its error log);
#   - any memcheck error (invalid read/write/free, uninitialised value,
#     definite leak): valgrind.PID.log files whose ERROR SUMMARY is not 0,
#     or that hold an error block but no summary (a killed process).
# Outside make asan / make valgrind only the servroot logs are scanned.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use Astralform::Test qw(stop_nginx);
use Time::HiRes ();

my $dir = $ENV{TEST_NGINX_SANITIZER_DIR};
my $root = $Astralform::Test::ServRoot;

stop_nginx();

my $san_re = qr/ERROR: (?:Address|Leak)Sanitizer|==\d+==ERROR: |(?::\d+:\d+|<unknown>): runtime error: /;
my $vg_re = qr/^==\d+== (?:Invalid (?:read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|Syscall param|Source and destination overlap|Argument '\w+' of function|Process terminating|\S.* are definitely lost)/m;

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

sub excerpt {
    my ($text, $n) = @_;
    my @l = split /\n/, $text;
    return join("\n", @l > $n ? (@l[0 .. $n - 1], '...') : @l) . "\n";
}

# The reports of one sanitizer.PID file that count.  LeakSanitizer
# runs at every exit; nginx core never frees some memory it owns (the
# connection and event arrays ngx_event_process_init() mallocs in each
# worker, the init_cycle pool of main() when the configuration fails), and
# Debian's stripped binary leaves those frames nameless, so no LSan
# suppression could target them without also hiding the module's leaks
# (every worker allocation has ngx_spawn_process() below it).  Instead a
# leak counts when a frame of its allocation stack is in the module, which
# every leak of the module's own or of a library it called has.  Every other
# report (ASan errors, UBSan) counts.
my $ignored_leaks = 0;

sub reports {
    my ($text) = @_;
    my @bad;
    for my $rep (split /^={20,}\n/m, $text) {
        next unless $rep =~ /\S/;
        if ($rep !~ /ERROR: LeakSanitizer/) {
            push @bad, $rep;
            next;
        }
        for my $leak (split /\n(?=(?:Direct|Indirect) leak of )/, $rep) {
            next unless $leak =~ /^(?:Direct|Indirect) leak of /;
            if ($leak =~ /ngx_astralform/) {
                push @bad, $leak;
            } else {
                $ignored_leaks++;
            }
        }
    }
    return @bad;
}

# a valgrind log is complete once its process has gone
sub wait_gone {
    my ($pid) = @_;
    my $deadline = Time::HiRes::time() + 60;
    while (kill(0, $pid) && Time::HiRes::time() < $deadline) {
        Time::HiRes::sleep(0.1);
    }
}

my ($files, $incomplete) = (0, 0);

if (defined $dir && -d $dir) {
    for my $f (sort glob("$dir/sanitizer.* $dir/asan.* $dir/ubsan.*")) {
        $files++;
        my @bad = reports(slurp($f));
        ok(!@bad, "no sanitizer report in $f")
            or diag(excerpt(join("\n", @bad), 150));
    }

    for my $f (sort glob("$dir/valgrind.*.log")) {
        $files++;
        wait_gone($1) if $f =~ /valgrind\.(\d+)\.log$/;
        my $text = slurp($f);
        my ($errors) = $text =~ /ERROR SUMMARY: (\d+) errors/;
        if (!defined $errors) {
            $incomplete++;
            ok($text !~ $vg_re, "no memcheck error in $f (no summary: "
                                . "the process was killed)")
                or diag(excerpt($text, 200));
            next;
        }
        is($errors, 0, "memcheck: no error in $f")
            or diag(excerpt($text, 200));
    }
}

# every servroot of this run: t/servroot_PORT and t/servroot_PORT-*
for my $sr (grep { -d } $root, glob("$root-*")) {
    for my $f (grep { -f && !/\.pid$/ } glob("$sr/logs/*")) {
        next if defined $dir && $f =~ m{^\Q$dir\E/};
        my @hits = grep { /$san_re/ } split /\n/, slurp($f);
        ok(!@hits, "no sanitizer report in $f")
            or diag(excerpt(join("\n", @hits), 40));
    }
}

# a sanitizer run whose nginx did not go through its wrapper checks nothing
if (my $mode = $ENV{TEST_NGINX_SANITIZER}) {
    my @runs = $mode eq 'valgrind' ? glob("$dir/valgrind.*.log")
                                   : grep { -s } "$dir/nginx.invocations";
    ok(@runs, "nginx ran under $mode");
}

diag("$incomplete valgrind log(s) without a summary") if $incomplete;
note("$ignored_leaks leak record(s) of nginx core alone") if $ignored_leaks;
note(defined $dir ? "$files report file(s) in $dir" : 'no sanitizer run');

if (Test::More->builder->current_test == 0) {
    plan(skip_all => 'no servroot and no sanitizer run to check');
}
done_testing();
