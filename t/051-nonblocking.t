# A slow provider must not slow anyone else: with one worker, a tool call
# whose provider stalls for 5 s is in flight while 100 other tool calls go
# through the same worker, each answered well under a second.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::Seal;
use JSON::PP;
use File::Path qw(make_path);
use Time::HiRes qw(time sleep);

my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $json = JSON::PP->new;
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/051";
make_path($dir);

my $KEY = '5a' x 32;
my $AGENT = 'p1-agent-key-nonblocking';
spew("$dir/k.key", "$KEY\n");
spew("$dir/admin.keys", "p1-admin-key-nonblocking\n");
spew("$dir/agent.keys", "$AGENT\n");
spew("$dir/secret", "client-secret-nonblocking\n");

my $M = "http://127.0.0.1:$mock";
my $wkey = mock('POST', '/__mock/tokens', { provider => 'openweather' })
           ->{access_token};
spew("$dir/ow.key", "$wkey\n");

start_nginx(workers => 1, http_config => <<"_EOC_", config => <<'_EOC_')
    astralform_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix t051:;
    astralform_key k $dir/k.key;
    astralform_public_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT;
    astralform_catalog \$TEST_NGINX_REPO/conf/connectors;
    astralform_http_timeout 10s;
    astralform_provider github api_base=$M/github/api/;
    astralform_provider openweather api_base=$M/openweather/data/2.5/;
    astralform_project p1 admin_key_file=$dir/admin.keys agent_key_file=$dir/agent.keys;
    astralform_connector p1 github client_id=cid client_secret_file=$dir/secret;
    astralform_connector p1 openweather api_key_file=$dir/ow.key;
_EOC_
    location /v1/ { astralform_api; }
_EOC_
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $gh = mock('POST', '/__mock/tokens', { provider => 'github' });
redis_cmd('HSET', 't051:{p1}:tokens:github', 'u1',
          seal_token($KEY, 'k', 'p1', 'github', 'u1',
                     { type => 'oauth', access_token => $gh->{access_token},
                       expires_at => 0, obtained_at => time() }));

mock('POST', '/__mock/behaviour', { prefix => '/github/api/search/issues',
                                    hang_ms => 5000 });

# the stalled call, in a child process
my $t0 = time;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my ($st) = call('github_search_issues', { q => 'stall' }, 'u1');
    exit($st eq '' ? 1 : 0);
}
sleep 0.3;

# 100 calls from 10 concurrent clients while it stalls
my @kids;
pipe(my $rd, my $wr) or die "pipe: $!";
for my $k (1 .. 10) {
    my $p = fork // die "fork: $!";
    if ($p == 0) {
        close $rd;
        for (1 .. 10) {
            my $s = time;
            my ($st) = call('openweather_current', { q => 'London' });
            printf $wr "%s %.4f\n", $st, time - $s;
        }
        exit 0;
    }
    push @kids, $p;
}
close $wr;
my @lat;
my $ok = 0;
while (my $line = <$rd>) {
    my ($st, $secs) = split ' ', $line;
    $ok++ if $st eq '200';
    push @lat, $secs;
}
waitpid($_, 0) for @kids;
my $busy = time - $t0;

is($ok, 100, '100 tool calls answered 200 while a provider stalls');
my @sorted = sort { $a <=> $b } @lat;
my $max = $sorted[-1] // 99;
ok($max < 1.0, 'every one well under a second')
    or diag("slowest: $max s");
diag(sprintf 'latency p50 %.1f ms, max %.1f ms; all done %.2f s after the '
             . 'stalled call started', 1000 * $sorted[@sorted / 2],
             1000 * $max, $busy);
ok($busy < 5, 'they all finished before the stalled call could');

waitpid($pid, 0);
is($? >> 8, 0, 'the stalled call got an answer too');
ok(time - $t0 >= 4.5, 'the stalled call really stalled');

stop_nginx();
done_testing();

sub spew { my ($f, $t) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $t; close $fh }

sub mock {
    my ($method, $path, $body) = @_;
    my ($st, $h, $b) = http_req($method, $path,
                                [ 'Content-Type' => 'application/json' ],
                                defined $body ? $json->encode($body) : undef,
                                { port => $mock });
    return $json->decode($b);
}

sub call {
    my ($name, $args, $user) = @_;
    my @h = (Authorization => "Bearer $AGENT",
             'Content-Type' => 'application/json');
    push @h, 'X-Astralform-User' => $user if $user;
    return http_req('POST', '/v1/projects/p1/tools/call', \@h,
                    $json->encode({ name => $name, arguments => $args }),
                    { timeout => 15 });
}
