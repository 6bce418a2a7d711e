# Faults under load, the fast subset of bench/faults/run.sh (issue 5, item
# 3), with shorter durations: about 30 s. Each scenario runs nginx with the
# module against its own redis-server (started here on a free loopback port,
# so scenario 1 can kill it) and the suite's mock providers, puts wrk load on
# it (bench/faults/load.lua) and probes single requests from Perl. The
# scenarios and their checks live in bench/faults/lib/AstralformFaults.pm;
# each check is one ok() here, each scenario's figures one diag() line.
#
#   1 Redis SIGKILLed under load, restarted: every request answered, 503
#     store_unavailable within 1 s while down, 200 within 2 s after, no
#     nginx restart
#   2 DEBUG SLEEP 2 with timeout=300ms: JSON 503 at the timeout, GET
#     /v1/connectors on the same worker not stalled
#   3 provider reset / garbage / close without answer / 6 MB body / stall:
#     502 provider_error or 504 provider_timeout, no secret in any answer or
#     log, concurrent calls all 200
#   4 nginx -s reload every second (5 s), keep-alive then a connection per
#     request: zero failed requests (with keep-alive, only nginx's own close
#     of an old worker's keep-alive connections, at most one per connection
#     per reload)
#   5 SIGKILL to a worker under load: replaced, failures bounded by its
#     connections
#
# The 200k-call leak check is in bench/faults only (bash bench/faults/run.sh
# leak). FAULTS_STRICT=1 turns the TODO checks (a known module bug, below)
# into plain ones.

use strict;
use warnings;
use Test::More;
use lib 't/lib', 'bench/faults/lib';

my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';
# timing-based: memcheck slows nginx down tens of times (make asan runs it)
plan skip_all => 'timing-based, not under valgrind'
    if ($ENV{TEST_NGINX_SANITIZER} // '') eq 'valgrind';
for my $tool (qw(wrk redis-server)) {
    plan skip_all => "$tool not installed"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my ($module) = grep { /ngx_astralform_module\.so$/ } split ' ',
               $ENV{TEST_NGINX_LOAD_MODULES} // '';
plan skip_all => 'ngx_astralform_module.so not built' unless $module;

require AstralformFaults;

# t/run.sh stops a hanging file with SIGTERM: exit through END, which stops
# this file's nginx, redis-server, wrk and probes
$SIG{TERM} = $SIG{INT} = sub { exit 1 };

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $root = $ENV{TEST_NGINX_SERVROOT} || "$repo/t/servroot";
my $f = AstralformFaults->new(
    root => $repo, dir => "$root/faults", port => $ENV{TEST_NGINX_SERVER_PORT},
    mock_port => $mock, module => $module, copy => 0,
    nginx => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
    say => sub { note($_[0]) });
$f->start_redis;
$f->setup_data;

sub report {
    my ($r) = @_;
    for my $c (@{ $r->{checks} }) {
        my ($ok, $desc, $diag, $todo) = @$c;
        local our $TODO = $todo;
        ok($ok, "$r->{name}: $desc") or diag($diag);
    }
    diag("$r->{name}: $r->{summary}");
}

report($f->redis_kill(duration => 5, kill_at => 1.5, down => 2));
report($f->redis_slow(sleep => 2, at => 0.5, tail => 1, timeout_ms => 300));
report($f->provider_faults(parallel => 3, duration => 4));
# keep-alive: more requests in flight at each reload (and nginx's own close
# of keep-alive connections, bounded); then a connection per request: no
# connection error at all
report($f->reload(reloads => 5, conns => 8, todo => undef));
report($f->reload(reloads => 5, close => 1, conns => 16, todo => undef));
report($f->worker_kill(duration => 4, at => 1.5));

$f->mock('DELETE', '/__mock/behaviour');
$f->cleanup;
done_testing();
