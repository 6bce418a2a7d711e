#!/usr/bin/env perl
# bench/faults/faults.pl — the driver behind bench/faults/run.sh (see there).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../../t/lib";
use Cwd ();
use File::Path qw(remove_tree);
use AstralformFaults;

my $root = Cwd::abs_path("$FindBin::Bin/../..");
chdir $root or die "$root: $!\n";
$| = 1;

my %scen = (
    1 => [ 'redis-kill'      => sub { $_[0]->redis_kill(duration => 10, kill_at => 3, down => 3) } ],
    2 => [ 'redis-slow'      => sub { $_[0]->redis_slow(sleep => 3, timeout_ms => 300) } ],
    3 => [ 'provider-faults' => sub { $_[0]->provider_faults(parallel => 4) } ],
    4 => [ 'reload'          => sub { ($_[0]->reload(reloads => 10, control => 1),
                                       $_[0]->reload(reloads => 10, close => 1)) } ],
    5 => [ 'worker-kill'     => sub { $_[0]->worker_kill(duration => 8, at => 3) } ],
    6 => [ 'leak'            => sub { ($_[0]->leak(step => 20000, steps => 10),
                                       $_[0]->leak(step => 10000, steps => 10, errors => 1)) } ],
);
my %by_name = map { $scen{$_}[0] => $_ } keys %scen;
my @want;
for my $a (@ARGV ? @ARGV : sort keys %scen) {
    my $n = $scen{$a} ? $a : $by_name{$a};
    die "unknown scenario '$a' (1-6 or: @{[ map { $scen{$_}[0] } sort keys %scen ]})\n"
        unless $n;
    push @want, $n;
}

my ($port) = AstralformFaults::free_ports(1);
my $dir = "$root/bench/faults/tmp/run.$port";
remove_tree($dir);
my $f = AstralformFaults->new(root => $root, dir => $dir, port => $port,
                              module => $ENV{MODULE},
                              say => sub { print STDERR "faults: $_[0]\n" });
$SIG{INT} = sub { exit 130 };
$SIG{TERM} = sub { exit 143 };

$f->start_mock;
$f->start_redis;
$f->setup_data;

chomp(my $nginx_v = `$f->{nginx} -v 2>&1`);
chomp(my $wrk_v = `wrk -v 2>&1 | head -1`);
chomp(my $redis_v = `redis-server --version`);
my ($cpu) = `grep -m1 '^model name' /proc/cpuinfo` =~ /:\s*(.*)/;
my $load = (split ' ', `cat /proc/loadavg`)[0 .. 2];
printf "== astralform faults under load %s\n", scalar gmtime;
printf "machine: nproc=%s cpu=\"%s\" load=%s\n", `nproc` =~ s/\s+//r, $cpu // '?',
    join(' ', (split ' ', `cat /proc/loadavg`)[0 .. 2]);
printf "%s | %s | %s | node %s\n", $nginx_v, $wrk_v =~ s/ Copyright.*//r,
    (split ' ', $redis_v)[2], `node --version` =~ s/\s+//r;
chomp(my $head = `git -C '$root' log -1 --format=%h 2>/dev/null` || '?');
my $dirty = `git -C '$root' status --porcelain -- src config 2>/dev/null` ? ', src/ modified' : '';
printf "module: %s (built %s UTC; HEAD %s%s)\n", $ENV{MODULE} || 'ngx_astralform_module.so',
    scalar(gmtime((stat($ENV{MODULE} || "$root/ngx_astralform_module.so"))[9])), $head, $dirty;
printf "nginx :%d redis :%d mock :%d, files in %s\n", $port, $f->{redis_port},
    $f->{mock_port}, $dir =~ s{^\Q$root\E/}{}r;

my ($pass, $total) = (0, 0);
for my $n (@want) {
    my @res = $scen{$n}[1]->($f);
    for my $r (@res) {
        $total++;
        $pass++ if $r->{pass};
        printf "%s %d %-16s %s\n", $r->{pass} ? 'PASS' : 'FAIL', $r->{id},
            $r->{name}, $r->{summary} // '';
        print "       $r->{title}\n";
        print "       $_\n" for @{ $r->{details} };
        for my $c (@{ $r->{checks} }) {
            next if $c->[0];
            print "       failed: $c->[1]: $c->[2]\n";
        }
    }
}
printf "== %d of %d scenarios passed\n", $pass, $total;
$f->cleanup;
if ($pass == $total && !$ENV{FAULTS_KEEP}) {
    remove_tree($dir);
} else {
    print STDERR "faults: files kept in ", $dir =~ s{^\Q$root\E/}{}r, "\n";
}
exit($pass == $total ? 0 : 1);
