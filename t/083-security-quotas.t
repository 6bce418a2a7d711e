# One tenant cannot fill the shared Redis: per project, the stored end-user
# credentials (astralform_max_credentials) and the pending connect sessions
# (astralform_max_pending_sessions) are bounded, counted in Redis so that
# a burst spread over two instances stops at exactly the bound (429
# quota_exceeded naming the directive); per value, an end user's API key
# and a return_url are bounded (astralform_max_value_size, 413
# value_too_large). Another project keeps working; the defaults refuse a
# 4 KB API key.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::OAuth;
use POSIX ();

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $P1 = $ENV{TEST_NGINX_SERVER_PORT};
my $P2 = free_port();
my $root2 = "$ENV{TEST_NGINX_REPO}/t/servroot_$P1-b";
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/083";
my $P2_ADMIN = 'p2-admin-key-quota-9d1c7b3e5f0a2468';
my $P2_AGENT = 'p2-agent-key-quota-4e6a8c0b2d1f3579';

my $limits = <<"_EOC_";
    astralform_connector p1 openweather;
    astralform_project p2 admin_key_file=$dir/p2-admin.keys agent_key_file=$dir/p2-agent.keys;
    astralform_connector p2 openweather;
    astralform_connector p2 slack client_id=slack-p2 client_secret_file=$dir/client.secret;
    astralform_max_credentials 5;
    astralform_max_pending_sessions 4;
    astralform_max_value_size 256;
_EOC_
my $cfg = oauth_config(prefix => 't083:', dir => 't/tmp/083', extra => $limits);
spew("$dir/p2-admin.keys", "$P2_ADMIN\n");
spew("$dir/p2-agent.keys", "$P2_AGENT\n");
remember_secret($P2_ADMIN, $P2_AGENT);

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config})
    or BAIL_OUT("nginx 1: $Astralform::Test::StartError");
second(sub {
    start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
                port => $P2)
        or BAIL_OUT("nginx 2: $Astralform::Test::StartError");
});

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't083:*');

# $n requests at once, alternating between the instances: their statuses
sub burst {
    my ($n, $make) = @_;
    my @kids;
    for my $i (1 .. $n) {
        pipe(my $rd, my $wr) or die;
        my $pid = fork() // die;
        if ($pid == 0) {
            close $rd;
            my ($st, $h, $res) = $make->($i, $i % 2 ? $P1 : $P2);
            print $wr "$st " . (ref $res ? $JSON->encode($res) : '');
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [$pid, $rd];
    }
    my @out;
    for my $k (@kids) {
        my $fh = $k->[1];
        local $/;
        my $line = <$fh>;
        waitpid($k->[0], 0);
        my ($st, $json) = split / /, $line, 2;
        push @out, [$st, $json ? $JSON->decode($json) : undef];
    }
    return @out;
}

sub statuses {
    my %n;
    $n{$_->[0]}++ for @_;
    return join ' ', map { "$_:$n{$_}" } sort keys %n;
}


# --- stored credentials ------------------------------------------------------

my @r = burst(12, sub {
    my ($i, $port) = @_;
    api('PUT', "/v1/projects/p1/users/u$i/connections/openweather",
        { api_key => "owm-key-$i" }, port => $port);
});
is(statuses(@r), '200:5 429:7',
   '12 users\' keys at once on two instances: 5 stored, 7 refused');
my ($q) = grep { $_->[0] == 429 } @r;
is($q->[1]{error}, 'quota_exceeded', '429 quota_exceeded');
like($q->[1]{message}, qr/"astralform_max_credentials"/,
     'the message names the directive to raise');
is($q->[1]{limit}, 'astralform_max_credentials', 'limit names the directive');
is($q->[1]{max}, 5, 'max is the bound');

is(redis_cmd('HLEN', 't083:{p1}:tokens:openweather'), 5,
   'Redis holds exactly 5 credentials');

# a user who has one may replace it; removing one frees a place
my ($user) = redis_cmd('HKEYS', 't083:{p1}:tokens:openweather')->[0];
my ($st, $h, $res) = api('PUT', "/v1/projects/p1/users/$user/connections/openweather",
                         { api_key => 'owm-key-replaced' });
is($st, 200, 'at the bound, a user replaces their own key');

($st, $h, $res) = api('PUT', '/v1/projects/p1/users/late/connections/openweather',
                      { api_key => 'owm-key-late' }, port => $P2);
is($st, 429, 'at the bound, a new user is refused');

($st) = api('DELETE', "/v1/projects/p1/users/$user/connections/openweather");
is($st, 200, 'one user disconnects');
($st, $h, $res) = api('PUT', '/v1/projects/p1/users/late/connections/openweather',
                      { api_key => 'owm-key-late' }, port => $P2);
is($st, 200, 'the freed place is taken by a new user');

# another project is not affected
($st, $h, $res) = api('PUT', '/v1/projects/p2/users/u1/connections/openweather',
                      { api_key => 'owm-key-p2' }, key => $P2_AGENT);
is($st, 200, 'project p2 still stores credentials') or diag explain $res;


# --- pending connect sessions ------------------------------------------------

@r = burst(10, sub {
    my ($i, $port) = @_;
    api('POST', "/v1/projects/p1/users/s$i/connections/slack/authorize", {},
        port => $port);
});
is(statuses(@r), '200:4 429:6',
   '10 connect links at once on two instances: 4 made, 6 refused');
($q) = grep { $_->[0] == 429 } @r;
is($q->[1]{error}, 'quota_exceeded', '429 quota_exceeded');
like($q->[1]{message}, qr/"astralform_max_pending_sessions"/,
     'the message names the directive to raise');
is(redis_cmd('ZCARD', 't083:{p1}:sessions'), 4, '4 sessions pending');

# a tool call that would hand out a link is refused the same way
($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                      { name => 'github_list_repos', arguments => {} },
                      user => 'nobody');
is($st, 429, 'auth_required at the bound: 429');
is($res->{error}, 'quota_exceeded', 'quota_exceeded, not a link');

# opening a link frees its place
my ($ok) = grep { $_->[0] == 200 } @r;
my $b = browser();
my $page = $b->get($ok->[1]{authorization_url});
is($page->code, 200, 'a pending link shows its confirmation page');
is(redis_cmd('ZCARD', 't083:{p1}:sessions'), 4, 'the page alone spends nothing');
$page = confirm($b, $page);
is($page->code, 302, 'the confirmed link is opened');
is(redis_cmd('ZCARD', 't083:{p1}:sessions'), 3, 'it no longer counts');
($st) = api('POST', '/v1/projects/p1/users/again/connections/slack/authorize', {},
            port => $P2);
is($st, 200, 'a new link fits again');

# p2 has its own count
($st, $h, $res) = api('POST', '/v1/projects/p2/users/u1/connections/slack/authorize',
                      {}, key => $P2_AGENT);
is($st, 200, 'project p2 still makes connect links') or diag explain $res;

# sessions expire: the set lives no longer than the session TTL
my $ttl = redis_cmd('PTTL', 't083:{p1}:sessions');
ok($ttl > 0 && $ttl <= 600000, 'the session set expires with the sessions');


# --- value sizes -------------------------------------------------------------

($st, $h, $res) = api('PUT', '/v1/projects/p2/users/u9/connections/openweather',
                      { api_key => 'k' x 257 }, key => $P2_AGENT);
is($st, 413, 'an API key over astralform_max_value_size: 413');
is($res->{error}, 'value_too_large', 'value_too_large');
like($res->{message}, qr/"api_key".*astralform_max_value_size/,
     'the message names the member and the directive');
($st, $h, $res) = api('PUT', '/v1/projects/p2/users/u9/connections/openweather',
                      { api_key => 'k' x 256 }, key => $P2_AGENT);
is($st, 200, 'an API key of exactly the bound is stored');

($st, $h, $res) = api('POST', '/v1/projects/p2/users/u9/connections/slack/authorize',
                      { return_url => 'https://app.example.com/' . ('r' x 260) },
                      key => $P2_AGENT);
is($st, 413, 'a return_url over astralform_max_value_size: 413');
is($res->{error}, 'value_too_large', 'value_too_large');

second(sub { stop_nginx() });
stop_nginx();


# --- the defaults --------------------------------------------------------------

$cfg = oauth_config(prefix => 't083:', dir => 't/tmp/083',
                    extra => "    astralform_connector p1 openweather;\n");
start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config})
    or BAIL_OUT("nginx 3: $Astralform::Test::StartError");
($st, $h, $res) = api('PUT', '/v1/projects/p1/users/big/connections/openweather',
                      { api_key => 'k' x 4096 });
is($st, 413, 'by default, a 4 KB end-user API key is refused');
($st, $h, $res) = api('PUT', '/v1/projects/p1/users/big/connections/openweather',
                      { api_key => 'k' x 2048 });
is($st, 200, 'by default, a 2 KB one is stored');
stop_nginx();

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't083:*');
secrets_from_mock();
push @Astralform::OAuth::ExtraLogs, glob("$root2/logs/*");
scan_logs(map({ "owm-key-$_" } 1 .. 12), 'owm-key-replaced', 'owm-key-late',
          'owm-key-p2');
File::Path::remove_tree($root2) if Test::More->builder->is_passing;
done_testing();

# runs $code with Astralform::Test pointed at the second instance
sub second { in_servroot($root2, @_) }
