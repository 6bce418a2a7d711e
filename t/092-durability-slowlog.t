# No long Redis stalls (DESIGN section 11): disabling a connector with a few
# thousand users, and draining its revocations, runs no Redis command over
# ~10 ms (SLOWLOG, logging every command over 1 ms).
#
# bench/disable.sh runs this file with 50 000 users and prints the figures:
#   ASTRALFORM_DISABLE_USERS=50000 ASTRALFORM_DISABLE_OLD=1 bash t/run.sh ..

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use Astralform::Seal;
use Time::HiRes qw(time sleep);

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $N = $ENV{ASTRALFORM_DISABLE_USERS} || 5000;
my $KEY = '4e' x 32;
my $cfg = oauth_config(prefix => 't092:', dir => 't/tmp/092', key => $KEY,
                       connectors => 0);

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2, worker_connections => 1024)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't092:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my ($st, $h, $res) = admin_api('POST', '/v1/projects/p1/connectors',
    { connector_slug => 'slack', oauth_client_id => 'slack-cid',
      oauth_client_secret => $SECRET });
is($st, 201, 'slack enabled');

# $N stored users (tokens the mock does not know: Slack answers
# invalid_auth, which counts as revoked)
my $t0 = time;
my @hset;
for my $i (1 .. $N) {
    my $user = "user-$i";
    push @hset, $user, seal_token($KEY, 'k1', 'p1', 'slack', $user,
        { type => 'oauth', access_token => sprintf('xoxp-bench-%08d-0123456789abcdef', $i),
          refresh_token => sprintf('xoxe-1-bench-%08d-0123456789abcdef', $i),
          expires_at => int(time) + 43200, obtained_at => int(time) });
    if (@hset >= 1000 || $i == $N) {
        redis_cmd('HSET', 't092:{p1}:tokens:slack', @hset);
        @hset = ();
    }
}
is(redis_cmd('HLEN', 't092:{p1}:tokens:slack'), $N, "$N users stored");
diag(sprintf('%d users stored in %.1fs', $N, time - $t0));

if ($ENV{ASTRALFORM_DISABLE_OLD}) {
    # what the one-script disable (HGETALL + DEL) cost, on a copy
    redis_cmd('EVAL', "redis.call('COPY', KEYS[1], KEYS[2]) return 1", 2,
              't092:{p1}:tokens:slack', 't092:{p1}:copy');
    my $s = time;
    redis_cmd('EVAL', "local t = redis.call('HGETALL', KEYS[1]) "
                      . "redis.call('DEL', KEYS[1]) return #t", 1, 't092:{p1}:copy');
    diag(sprintf('the former one-script disable (HGETALL + DEL): %.1f ms', (time - $s) * 1000));
}

redis_cmd('CONFIG', 'SET', 'slowlog-log-slower-than', 1000);
redis_cmd('CONFIG', 'SET', 'slowlog-max-len', 10000);
redis_cmd('SLOWLOG', 'RESET');

$t0 = time;
($st, $h, $res) = admin_api('DELETE', '/v1/projects/p1/connectors/slack');
my $answered = time - $t0;
is($st, 200, 'disable: 200');
is($res->{pending_revocations}, $N, "disable: $N pending");
diag(sprintf('disable answered in %.1f ms', $answered * 1000));

my $p;
my $until = time + ($N > 10000 ? 600 : 60);
while (time < $until) {
    (undef, undef, $p) = admin_api('GET', '/v1/projects/p1/connectors/slack/revocations');
    last if ref $p && $p->{pending} == 0;
    sleep 0.5;
}
is($p->{pending}, 0, sprintf('every revocation drained (%.1fs)', time - $t0));
is($p->{revoked}, $N, "$N revoked");

my $log = redis_cmd('SLOWLOG', 'GET', 10000) || [];
my ($max, $cmd) = (0, 'none');
for my $e (@$log) {
    my ($us, $args) = ($e->[2], $e->[3]);
    next if $args->[0] =~ /^(?:SLOWLOG|CONFIG)$/i;
    note(sprintf('%.2f ms: %s (%d arguments)', $us / 1000,
                 substr(join(' ', @$args[0, 1]), 0, 60) =~ s/\s+/ /gr, scalar @$args));
    if ($us > $max) {
        $max = $us;
        $cmd = $args->[0] eq 'EVAL' || $args->[0] eq 'EVALSHA'
             ? 'EVAL ' . (substr($args->[1] // '', 0, 48) =~ s/\s+/ /gr)
             : $args->[0];
    }
}
ok($max < 10000, sprintf('longest Redis command while disabling %d users: %.2f ms (%s)',
                         $N, $max / 1000, $cmd));
diag(sprintf('longest Redis command: %.2f ms (%s); %d commands over 1 ms',
             $max / 1000, $cmd, scalar @$log));
redis_cmd('CONFIG', 'SET', 'slowlog-log-slower-than', 10000);

stop_nginx();
done_testing();
