# A refresh that reached the provider always finishes and is stored
# (DESIGN section 11), against a provider whose refresh tokens die when
# reused (GitHub) or rotate (Slack):
#
#   - the client goes away while the provider answers
#   - the token endpoint is slower than astralform_http_timeout
#   - Redis stalls (CLIENT PAUSE) while the refresh is at the provider
#   - a token lives shorter than astralform_refresh_skew
#
# each ends with the user still connected and exactly one refresh request
# seen at the mock provider; waiters wake when the holder finishes (or
# fails), not at the lease.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use Astralform::Seal;
use POSIX ();
use Time::Local ();
use Time::HiRes qw(time sleep);

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $KEY = '7c' x 32;
my $cfg = oauth_config(prefix => 't090:', dir => 't/tmp/090', key => $KEY);

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2, worker_connections => 1024)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't090:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my %tool = (slack => [ slack_search_messages => { query => 'budget' } ],
            github => [ github_list_repos => { per_page => 1 } ]);
my %token_path = (slack => '/slack/api/oauth.v2.access',
                  github => '/github/login/oauth/access_token');

sub call {
    my ($conn, $user, %o) = @_;
    my ($name, $args) = @{ $tool{$conn} };
    return api('POST', '/v1/projects/p1/tools/call',
               { name => $name, arguments => $args }, user => $user, %o);
}

sub record {
    my ($conn, $user) = @_;
    my $blob = redis_cmd('HGET', "t090:{p1}:tokens:$conn", $user) // return undef;
    my $plain = open_blob($KEY, token_aad('p1', $conn, $user), $blob)
        // return undef;
    return $JSON->decode($plain);
}

sub store {
    my ($conn, $user, $rec) = @_;
    redis_cmd('HSET', "t090:{p1}:tokens:$conn", $user,
              seal_token($KEY, 'k1', 'p1', $conn, $user, $rec));
}

sub refreshes {
    my ($conn) = @_;
    return mock('GET', '/__mock/stats')->{grants}{"$conn:refresh_token"} // 0;
}

sub status_at_mock {
    my ($token) = @_;
    return mock('GET', "/__mock/tokens?token=$token")->{tokens}[0]{status} // 'unknown';
}

# connects $user; the record then looks like a token near the end of a
# normal life (expiring within the skew)
sub connect_expiring {
    my ($conn, $user) = @_;
    my $r = connect_flow(browser(), start_link($conn, $user));
    is($r->{callback} && $r->{callback}->code, 200, "$conn: $user connected");
    my $rec = record($conn, $user);
    $rec->{expires_at} = int(time) + 30;
    $rec->{obtained_at} = $rec->{expires_at} - 28800;
    store($conn, $user, $rec);
    mock('POST', '/__mock/reset');
    return $rec;
}

sub wait_for {
    my ($what, $secs) = @_;
    my $until = time + $secs;
    while (time < $until) {
        return 1 if $what->();
        sleep 0.05;
    }
    return 0;
}

# the user is still connected: a stored record whose refresh token the
# provider still honours, and a call that works without a new refresh
sub still_connected {
    my ($conn, $user, $old, $label) = @_;
    my $rec = record($conn, $user);
    ok($rec, "$label: the record is kept");
    isnt($rec && $rec->{access_token}, $old->{access_token},
         "$label: the new access token is stored");
    is(status_at_mock($rec->{refresh_token}), 'active',
       "$label: the stored refresh token is the live one at the provider");
    is(status_at_mock($old->{refresh_token}), 'used',
       "$label: the old refresh token was spent");
    is_deeply([ redis_keys("{p1}:lock:*") ], [], "$label: no lock left");
    my $n = refreshes($conn);
    my ($st) = call($conn, $user);
    is($st, 200, "$label: the next call: 200");
    is(refreshes($conn), $n, "$label: without another refresh");
}

# --- the client goes away during the refresh ---------------------------------

my $old = connect_expiring('github', 'd1');
behave(prefix => $token_path{github}, count => 1, delay_ms => 1200);
my $t0 = time;
my ($st) = call('github', 'd1', timeout => 0.3);
ok(time - $t0 < 1, 'client gone: the client gave up before the provider answered');
ok(wait_for(sub { (record('github', 'd1') // {})->{access_token} ne $old->{access_token} }, 5),
   'client gone: the refresh finished on its own');
is(refreshes('github'), 1, 'client gone: one refresh request at the provider');
still_connected('github', 'd1', $old, 'client gone');
like(error_log_text(), qr/refreshed the token of user "d1" for connector "github"/,
     'client gone: the stored refresh logged');

# --- the token endpoint is slower than astralform_http_timeout (2s) ---------

$old = connect_expiring('github', 'd2');
behave(prefix => $token_path{github}, count => 1, delay_ms => 2600);
$t0 = time;
my @st = parallel(20, sub { (call('github', 'd2'))[0] });
my $took = time - $t0;
sleep 3.2 - $took if $took < 3.2;    # every request the mock held has run
is(scalar(grep { $_ == 200 } @st), 20, 'slow provider: 20 concurrent calls: all 200')
    or diag(join ' ', @st);
is(refreshes('github'), 1, 'slow provider: one refresh request');
ok($took < 4.5, sprintf('slow provider: the waiters woke when the holder stored (%.2fs)', $took));
still_connected('github', 'd2', $old, 'slow provider');

# --- Redis stalls while the refresh is at the provider ----------------------

$old = connect_expiring('github', 'd3');
behave(prefix => $token_path{github}, count => 1, delay_ms => 800);
my $pid = fork();
if ($pid == 0) {
    sleep 0.3;
    redis_cmd('CLIENT', 'PAUSE', 3000, 'ALL');
    POSIX::_exit(0);
}
$t0 = time;
($st) = call('github', 'd3', timeout => 20);
waitpid($pid, 0);
is($st, 200, 'redis stall: the call succeeds once Redis answers again');
ok(time - $t0 > 2.5, sprintf('redis stall: it did stall (%.2fs)', time - $t0));
is(refreshes('github'), 1, 'redis stall: one refresh request');
still_connected('github', 'd3', $old, 'redis stall');

# --- a token that lives shorter than the skew (60s) -------------------------

# the mock's request log, seconds since the epoch of each request to $path
sub request_times {
    my ($path) = @_;
    return map { my ($y, $mo, $d, $h, $mi, $sec) = $_->{time} =~
                     /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):([\d.]+)Z$/;
                 Time::Local::timegm(0, $mi, $h, $d, $mo - 1, $y) + $sec }
           grep { $_->{path} eq $path }
           @{ mock('GET', '/__mock/requests')->{requests} };
}

# 40 s: a skew of 20 s, the second half of its life; the calls of a loaded
# machine fit well in the first half
mock('POST', '/__mock/config', { slack => { access_ttl => 40 } });
my $r = connect_flow(browser(), start_link('slack', 'd4'));
is($r->{callback}->code, 200, 'short-lived: connected');
$old = record('slack', 'd4');
is($old->{expires_at} - $old->{obtained_at}, 40, 'short-lived: a 40 s token');
$old->{obtained_at} = int(time) - 25;
$old->{expires_at} = $old->{obtained_at} + 40;
store('slack', 'd4', $old);
mock('POST', '/__mock/reset');
@st = parallel(60, sub { (call('slack', 'd4'))[0] });
is(scalar(grep { $_ == 200 } @st), 60, 'short-lived: 60 concurrent calls: all 200')
    or diag(join ' ', @st);
is(refreshes('slack'), 1, 'short-lived: exactly one refresh for 60 calls');
my $new = record('slack', 'd4');
isnt($new->{access_token}, $old->{access_token}, 'short-lived: renewed once');
my $from = time;
@st = parallel(30, sub { (call('slack', 'd4'))[0] });
is(scalar(grep { $_ == 200 } @st), 30, 'short-lived: 30 more calls: all 200');
# renewing it in its second half is right: only the first half counts
my $half = ($new->{obtained_at} + $new->{expires_at}) / 2;
my $early = grep { $_ >= $from && $_ < $half }
            request_times('/slack/api/search.messages');
ok($early >= 1, "short-lived: $early of the 30 calls in the fresh token's first half");
is(scalar(grep { $_ < $half } request_times($token_path{slack})), 1,
   'short-lived: the fresh 40 s token is not renewed again in its first half');
mock('POST', '/__mock/config', { slack => { access_ttl => 43200 } });

# --- the holder fails: its waiters give up at once, no second request --------

$old = connect_expiring('github', 'd5');
behave(prefix => $token_path{github}, count => 100, delay_ms => 500, status => 503,
       body => 'busy');
$t0 = time;
@st = parallel(20, sub { (call('github', 'd5'))[0] });
$took = time - $t0;
my $hits = grep { $_->{path} eq $token_path{github} }
           @{ mock('GET', '/__mock/requests')->{requests} };
is(scalar(grep { $_ == 200 } @st), 20,
   'holder failed: the still valid token serves all 20 calls') or diag(join ' ', @st);
is($hits, 1, 'holder failed: one request at the provider, not one per waiter');
ok($took < 2.5, sprintf('holder failed: the waiters did not sit out the lease (%.2fs)', $took));
is(redis_cmd('GET', 't090:{p1}:refresh_failures:github:d5'), 1,
   'holder failed: one failure in a row counted');
# a call after the holder let go, within the backoff, does not ask again
($st) = call('github', 'd5');
my $backoff = redis_cmd('PTTL', 't090:{p1}:refresh_failed:github:d5');
is($st, 200, 'holder failed: a later call is served by the still valid token');
ok($backoff > 0 && $backoff <= 5000, "holder failed: the backoff still runs ($backoff ms left)");
is(scalar(request_times($token_path{github})), 1, 'holder failed: the later call did not ask again');
mock('POST', '/__mock/reset');
is(record('github', 'd5')->{refresh_token}, $old->{refresh_token}, 'holder failed: record kept');

remember_secret($KEY);
secrets_from_mock();
stop_nginx();
scan_logs();
done_testing();

