# Two nginx instances sharing one Redis: the connect link made by one, the
# authorize step on it, the callback landing on the other, tool calls on
# both; concurrent calls spread over both instances on an expired token
# still make one refresh request at the provider.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::OAuth;
use Astralform::Seal;
use IO::Socket::INET;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $P1 = $ENV{TEST_NGINX_SERVER_PORT};
my $P2 = free_port();
my $root2 = "$ENV{TEST_NGINX_REPO}/t/servroot_$P1-b";

# both instances: the same public URL, key ring, prefix and Redis
my $cfg = oauth_config(prefix => 't045:', dir => 't/tmp/045');

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config})
    or BAIL_OUT("nginx 1: $Astralform::Test::StartError");
second(sub {
    start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
                port => $P2)
        or BAIL_OUT("nginx 2: $Astralform::Test::StartError");
});

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't045:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

# the link from instance 1, the consent started there, the callback on 2
my ($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                         { name => 'github_list_repos', arguments => {} },
                         user => 'u1');
is($res->{error}, 'auth_required', 'instance 1: auth_required');

my $b = browser();
my $r = connect_flow($b, $res->{authorization_url}, callback_port => $P2,
                     stop_before_callback => 1);
is($r->{authorize}->code, 302, 'instance 1: authorize');
like($r->{callback_url}, qr{^http://127\.0\.0\.1:$P2/}, 'the callback goes to instance 2');
my $cb = $b->get($r->{callback_url});
is($cb->code, 200, 'instance 2: callback completes the flow started on 1')
    or diag($cb->decoded_content);

($st) = api('POST', '/v1/projects/p1/tools/call',
            { name => 'github_list_repos', arguments => {} }, user => 'u1', port => $P2);
is($st, 200, 'instance 2: tool call');
($st) = api('POST', '/v1/projects/p1/tools/call',
            { name => 'github_list_repos', arguments => {} }, user => 'u1');
is($st, 200, 'instance 1: tool call');

# a link made on instance 2 is consumed on 1
my $link = start_link('notion', 'u2', port => $P2);
$r = connect_flow(browser(), $link);
is($r->{callback} && $r->{callback}->code, 200, 'link from instance 2, flow on 1');

# concurrent refresh across instances
mock('POST', '/__mock/config', { github => { access_ttl => 30 } });
$r = connect_flow(browser(), start_link('github', 'u3'));
is($r->{callback}->code, 200, 'u3 connected with an expiring token');
mock('POST', '/__mock/config', { github => { access_ttl => 28800 } });
# a token at the end of a normal life (the skew is capped at half of it)
my $KEY = '5a' x 32;
my $rec = $JSON->decode(open_blob($KEY, token_aad('p1', 'github', 'u3'),
                                  redis_cmd('HGET', 't045:{p1}:tokens:github', 'u3')));
$rec->{obtained_at} = $rec->{expires_at} - 28800;
redis_cmd('HSET', 't045:{p1}:tokens:github', 'u3',
          seal_token($KEY, 'k1', 'p1', 'github', 'u3', $rec));
mock('POST', '/__mock/reset');

my @kids;
for my $i (1 .. 40) {
    pipe(my $rd, my $wr) or die;
    my $pid = fork() // die;
    if ($pid == 0) {
        close $rd;
        my ($s) = api('POST', '/v1/projects/p1/tools/call',
                      { name => 'github_list_repos', arguments => {} },
                      user => 'u3', port => $i % 2 ? $P1 : $P2);
        print $wr $s;
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    push @kids, [ $pid, $rd ];
}
my @st = map { my $rd = $_->[1]; local $/; my $s = <$rd>; waitpid($_->[0], 0); $s } @kids;
is(scalar(grep { $_ eq '200' } @st), 40, '40 calls over both instances: all 200') or diag("@st");
is(mock('GET', '/__mock/stats')->{grants}{'github:refresh_token'}, 1,
   'both instances: one refresh request at the provider');

secrets_from_mock();
second(sub { stop_nginx() });
stop_nginx();
push @Astralform::OAuth::ExtraLogs, glob("$root2/logs/*");
scan_logs();
File::Path::remove_tree($root2) if Test::More->builder->is_passing;
done_testing();

# runs $code with Astralform::Test pointed at the second instance
sub second { in_servroot($root2, @_) }
