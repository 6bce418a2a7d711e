# Token refresh: before expiry and after a provider 401, with and without
# rotation of the refresh token; a dead grant deletes the record
# (auth_required); 100 concurrent tool calls on an expired token make
# exactly one refresh request at the provider, across two workers; a lock
# whose holder died is taken over when its lease ends.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use Astralform::Seal;
use Time::HiRes qw(time sleep);

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $KEY = '6b' x 32;
my $cfg = oauth_config(prefix => 't043:', dir => 't/tmp/043', key => $KEY);

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2, worker_connections => 1024)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't043:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my %tool = (slack => [ slack_search_messages => { query => 'budget' } ],
            notion => [ notion_search => { query => 'Roadmap' } ],
            github => [ github_list_repos => { per_page => 1 } ]);

sub call {
    my ($conn, $user) = @_;
    my ($name, $args) = @{ $tool{$conn} };
    return api('POST', '/v1/projects/p1/tools/call',
               { name => $name, arguments => $args }, user => $user);
}

sub record {
    my ($conn, $user) = @_;
    my $blob = redis_cmd('HGET', "t043:{p1}:tokens:$conn", $user) // return undef;
    my $plain = open_blob($KEY, token_aad('p1', $conn, $user), $blob)
        // return undef;
    return $JSON->decode($plain);
}

sub stat_of {
    my ($kind, $key) = @_;
    return mock('GET', '/__mock/stats')->{$kind}{$key} // 0;
}

sub token_requests {
    my ($path) = @_;
    return grep { $_->{path} eq $path }
           @{ mock('GET', '/__mock/requests')->{requests} };
}

# connects $user to $conn with short-lived access tokens (expiring within
# astralform_refresh_skew), then puts the provider's normal lifetime back
sub connect_expiring {
    my ($conn, $user) = @_;
    mock('POST', '/__mock/config', { $conn => { access_ttl => 30 } });
    my $r = connect_flow(browser(), start_link($conn, $user));
    is($r->{callback} && $r->{callback}->code, 200, "$conn: $user connected");
    mock('POST', '/__mock/config',
         { $conn => { access_ttl => $conn eq 'github' ? 28800 : 43200 } });
    my $rec = record($conn, $user);
    ok($rec && $rec->{expires_at} - time < 60, "$conn: $user: the token expires within the skew");
    # a token that lived its normal life: the skew is capped at half the
    # lifetime, so a 30 s token would not look expiring yet
    $rec->{obtained_at} = $rec->{expires_at} - 28800;
    redis_cmd('HSET', "t043:{p1}:tokens:$conn", $user,
              seal_token($KEY, 'k1', 'p1', $conn, $user, $rec));
    return record($conn, $user);
}

# --- refresh before expiry, with rotation (Slack) -------------------------------

my $old = connect_expiring('slack', 'u1');
mock('POST', '/__mock/reset');

my ($st, $h, $res) = call('slack', 'u1');
is($st, 200, 'slack: call on an expiring token: 200') or diag($JSON->encode($res));
is(stat_of(grants => 'slack:refresh_token'), 1, 'slack: one refresh request');
is(stat_of(grants_ok => 'slack:refresh_token'), 1, 'slack: it succeeded');

my ($rq) = token_requests('/slack/api/oauth.v2.access');
is($rq->{form}{grant_type}, 'refresh_token', 'slack: grant_type=refresh_token');
is($rq->{form}{refresh_token}, $old->{refresh_token}, 'slack: the stored refresh token');
is($rq->{form}{client_id}, 'slack-cid', 'slack: client_id in the body');

my $new = record('slack', 'u1');
isnt($new->{access_token}, $old->{access_token}, 'slack: new access token stored');
isnt($new->{refresh_token}, $old->{refresh_token}, 'slack: rotated refresh token stored');
ok($new->{expires_at} > time + 40000, 'slack: expiry from the flat refresh answer');
is($new->{account_id}, $old->{account_id}, 'slack: account id kept');
is($new->{scope}, $old->{scope}, 'slack: scopes kept');
my $t = mock('GET', "/__mock/tokens?token=$old->{refresh_token}")->{tokens}[0];
is($t->{status}, 'used', 'slack: the old refresh token is spent at the provider');

my @api = grep { $_->{path} =~ /search\.messages/ }
          @{ mock('GET', '/__mock/requests')->{requests} };
is($api[-1]{headers}{authorization}, "Bearer $new->{access_token}",
   'slack: the call used the refreshed token');

mock('POST', '/__mock/reset');
($st) = call('slack', 'u1');
is($st, 200, 'slack: next call: 200');
is(stat_of(grants => 'slack:refresh_token'), 0, 'slack: no refresh while the token is fresh');

# provider 401: one refresh, one retry; the rotated refresh token is used
mock('POST', '/__mock/tokens/revoke', { token => $new->{access_token} });
mock('POST', '/__mock/reset');
($st, $h, $res) = call('slack', 'u1');
is($st, 200, 'slack: provider refuses the token: refreshed and retried')
    or diag($JSON->encode($res));
($rq) = token_requests('/slack/api/oauth.v2.access');
is($rq->{form}{refresh_token}, $new->{refresh_token},
   'slack: the rotated refresh token from the last refresh was used');
is(stat_of(grants => 'slack:refresh_token'), 1, 'slack: one refresh after the 401');

# --- refresh without rotation: the old refresh token stays -------------------

my $g = connect_expiring('github', 'u2');
mock('POST', '/__mock/reset');
mock('POST', '/__mock/tokens', { provider => 'github', token => 'ghu_norotate_0123456789abcdef',
                                 user => 'mock-user', scopes => ['repo', 'read:user'],
                                 expires_in => 28800 });
behave(prefix => '/github/login/oauth/access_token', count => 1, status => 200,
       body => { access_token => 'ghu_norotate_0123456789abcdef', expires_in => 28800,
                 token_type => 'bearer', scope => 'repo,read:user' });
($st, $h, $res) = call('github', 'u2');
is($st, 200, 'github: refresh answered without refresh_token: 200')
    or diag($JSON->encode($res));
my $g2 = record('github', 'u2');
is($g2->{access_token}, 'ghu_norotate_0123456789abcdef', 'github: new access token stored');
is($g2->{refresh_token}, $g->{refresh_token}, 'github: the old refresh token kept');

# the kept refresh token still works at the next refresh
mock('POST', '/__mock/tokens/revoke', { token => 'ghu_norotate_0123456789abcdef' });
mock('POST', '/__mock/reset');
($st) = call('github', 'u2');
is($st, 200, 'github: 401, then refresh with the kept token: 200');
($rq) = token_requests('/github/login/oauth/access_token');
is($rq->{form}{refresh_token}, $g->{refresh_token}, 'github: the kept refresh token was sent');
like($rq->{headers}{accept}, qr{application/json}, 'github: Accept: application/json');
isnt(record('github', 'u2')->{refresh_token}, $g->{refresh_token},
     'github: the rotation of that refresh stored');

# --- the grant is dead: deleted, auth_required --------------------------------

my $rn = connect_flow(browser(), start_link('notion', 'u3'));
is($rn->{callback}->code, 200, 'notion: connected');
my $n = record('notion', 'u3');
mock('POST', '/__mock/tokens/revoke', { token => $n->{access_token} });
mock('POST', '/__mock/tokens/revoke', { token => $n->{refresh_token} });
mock('POST', '/__mock/reset');
truncate_error_log();
($st, $h, $res) = call('notion', 'u3');
is($st, 401, 'notion: dead grant: 401');
is($res->{error}, 'auth_required', 'notion: dead grant: auth_required');
like($res->{authorization_url} // '', qr{/v1/connectors/oauth/authorize\?session=},
     'notion: dead grant: a new link');
is(redis_cmd('HGET', 't043:{p1}:tokens:notion', 'u3'), undef, 'notion: dead grant: record deleted');
like(error_log_text(), qr/token refresh with "127\.0\.0\.1:\d+" failed: HTTP 400 invalid_grant/,
     'notion: the refusal logged with its error code only');
like(error_log_text(), qr/the token of user "u3" for connector "notion" cannot be renewed; deleted/,
     'notion: the deletion logged');
my ($nq) = token_requests('/notion/v1/oauth/token');
like($nq->{headers}{authorization} // '', qr/^Basic /, 'notion: refresh with HTTP Basic');
is($nq->{json}{grant_type}, 'refresh_token', 'notion: JSON refresh request');

# a temporary failure keeps the record
my $g3 = connect_expiring('github', 'u6');
mock('POST', '/__mock/reset');
behave(prefix => '/github/login/oauth/access_token', count => 1, status => 503, body => 'busy');
($st, $h, $res) = call('github', 'u6');
is($st, 200, 'github: refresh failed for now, the token is still valid: the call goes');
ok(record('github', 'u6'), 'github: temporary failure: record kept');

# --- 100 concurrent calls, one refresh ---------------------------------------

connect_expiring('slack', 'u4');
mock('POST', '/__mock/reset');

my @st = parallel(100, sub { (call('slack', 'u4'))[0] });
is(scalar(grep { $_ == 200 } @st), 100, '100 concurrent calls on an expired token: all 200')
    or diag(join ' ', @st);
is(stat_of(grants => 'slack:refresh_token'), 1,
   '100 concurrent calls: exactly one refresh request reached the provider');
is(stat_of(grants_ok => 'slack:refresh_token'), 1, '100 concurrent calls: and it succeeded');
is_deeply([ redis_keys('{p1}:lock:*') ], [], 'the lock is released');

# the same against a provider whose refresh tokens die when reused: GitHub
connect_expiring('github', 'u7');
mock('POST', '/__mock/reset');
@st = parallel(60, sub { (call('github', 'u7'))[0] });
is(scalar(grep { $_ == 200 } @st), 60, 'github: 60 concurrent calls: all 200');
is(stat_of(grants => 'github:refresh_token'), 1, 'github: one refresh request');

# --- the lock holder died: its lease runs out, the next caller takes over ---

my $g5 = connect_expiring('github', 'u5');
redis_cmd('SET', 't043:{p1}:lock:github:u5', 'a-holder-that-died', 'PX', 1500);
mock('POST', '/__mock/reset');
my $t0 = time;
($st) = call('github', 'u5');
my $took = time - $t0;
is($st, 200, 'dead holder: the call succeeds');
ok($took >= 1.2 && $took < 5, sprintf('dead holder: waited for the lease (%.2fs)', $took));
is(stat_of(grants => 'github:refresh_token'), 1, 'dead holder: one refresh, by the next caller');
isnt(record('github', 'u5')->{access_token}, $g5->{access_token}, 'dead holder: new token stored');

# --- a sibling refreshed while we waited: its result is used ---------------------

my $g8 = connect_expiring('github', 'u8');
redis_cmd('SET', 't043:{p1}:lock:github:u8', 'a-sibling', 'PX', 3000);
mock('POST', '/__mock/reset');
my $pid = fork();
if ($pid == 0) {
    # the sibling: writes a fresh record, then lets go of the lock
    sleep 0.4;
    my $rec = { %$g8, access_token => 'ghu_sibling_0123456789abcdef',
                expires_at => int(time) + 28800 };
    redis_cmd('HSET', 't043:{p1}:tokens:github', 'u8',
              seal_token($KEY, 'k1', 'p1', 'github', 'u8', $rec));
    redis_cmd('DEL', 't043:{p1}:lock:github:u8');
    POSIX::_exit(0);
}
mock('POST', '/__mock/tokens', { provider => 'github', token => 'ghu_sibling_0123456789abcdef',
                                 user => 'mock-user', scopes => ['repo'] });
$t0 = time;
($st) = call('github', 'u8');
waitpid($pid, 0);
is($st, 200, 'sibling: the waiting call succeeds');
ok(time - $t0 < 2, 'sibling: no need to wait for the lease');
is(stat_of(grants => 'github:refresh_token'), 0, 'sibling: no refresh of our own');
my @calls = grep { $_->{path} =~ m{/user/repos} } @{ mock('GET', '/__mock/requests')->{requests} };
is($calls[-1]{headers}{authorization}, 'Bearer ghu_sibling_0123456789abcdef',
   "sibling: the sibling's token was used");

remember_secret($g->{refresh_token}, $old->{refresh_token}, 'ghu_norotate_0123456789abcdef',
                'ghu_sibling_0123456789abcdef', $KEY);
secrets_from_mock();
stop_nginx();
scan_logs();
done_testing();

