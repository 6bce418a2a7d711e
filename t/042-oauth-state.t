# OAuth state and callback defences: replayed, forged, expired and
# cross-session state; the RFC 9207 issuer check and a code for another
# provider (mix-up); open redirects; access_denied; a token endpoint that
# fails (500, timeout, garbage, errors inside a 200).

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use URI;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $cfg = oauth_config(prefix => 't042:', dir => 't/tmp/042',
                       extra => "    astralform_state_ttl 3s;\n"
                                . "    astralform_session_ttl 3s;\n");

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config})
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't042:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my $PUB = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";

sub stored { redis_cmd('HGET', "t042:{p1}:tokens:$_[0]", $_[1]) }

sub grants {
    my $s = mock('GET', '/__mock/stats');
    my $n = 0;
    $n += $_ for values %{ $s->{grants} || {} };
    return $n;
}

sub page_ok {
    my ($res, $code, $re, $name) = @_;
    is($res->code, $code, "$name: $code");
    like($res->header('Content-Type') // '', qr{^text/html}, "$name: an HTML page");
    is($res->header('Cache-Control'), 'no-store', "$name: no-store");
    is($res->header('Referrer-Policy'), 'no-referrer', "$name: no referrer");
    like($res->decoded_content, $re, "$name: says why");
}

# --- replay -------------------------------------------------------------------

my $b = browser();
my $r = connect_flow($b, start_link('github', 'u1'));
is($r->{callback}->code, 200, 'a first flow completes');
my $first = stored('github', 'u1');
ok($first, 'stored');
my $n = grants();

my $again = $b->get($r->{callback_url});
page_ok($again, 400, qr/expired or was already completed/, 'replayed callback');
is(grants(), $n, 'replayed callback: the token endpoint is not called');
is(stored('github', 'u1'), $first, 'replayed callback: record unchanged');

# --- forged and malformed state ---------------------------------------------

my $forged = 'p1.' . ('A' x 43);
page_ok($b->get("$PUB/v1/connectors/oauth/callback?code=x1234567&state=$forged"),
        400, qr/expired or was already completed/, 'forged state');
page_ok($b->get("$PUB/v1/connectors/oauth/callback?code=x1234567&state=garbage"),
        400, qr/incomplete or damaged/, 'malformed state');
page_ok($b->get("$PUB/v1/connectors/oauth/callback?code=x1234567"),
        400, qr/incomplete or damaged/, 'no state');
page_ok($b->get("$PUB/v1/connectors/oauth/callback?code=x1234567&state=p9." . ('A' x 43)),
        400, qr/incomplete or damaged/, 'state of an unknown project');
page_ok($b->get("$PUB/v1/connectors/oauth/authorize?session=p1." . ('B' x 43)),
        400, qr/expired or was already used/, 'forged session');
page_ok($b->get("$PUB/v1/connectors/oauth/authorize?session=nope"),
        400, qr/incomplete or damaged/, 'malformed session');
page_ok($b->get("$PUB/v1/connectors/oauth/authorize"),
        400, qr/incomplete or damaged/, 'no session');
is(grants(), $n, 'forged states: the token endpoint is never called');

# --- expired state and session ---------------------------------------------

my $bx = browser();
$r = connect_flow($bx, start_link('github', 'u2'), stop_before_callback => 1);
ok($r->{callback_url}, 'a flow up to the callback');
my ($state_key) = redis_keys('{p1}:state:*');
my $ttl = redis_cmd('PTTL', $state_key);
ok($ttl > 0 && $ttl <= 3000, "state stored with astralform_state_ttl ($ttl ms)");
my $plain = redis_cmd('GET', $state_key);
like($plain, qr/^v1\.k1\./, 'the state record is sealed (it holds the PKCE verifier)');
Time::HiRes::sleep(3.3);
page_ok($bx->get($r->{callback_url}), 400,
        qr/expired or was already completed/, 'expired state');
ok(!stored('github', 'u2'), 'expired state: nothing stored');

my $link = start_link('github', 'u3');
Time::HiRes::sleep(3.3);
page_ok(browser()->get($link), 400, qr/expired or was already used/, 'expired session link');

# --- cross-session state: the callback must come from the browser that
# started the flow ---------------------------------------------------------------

my $alice = browser();
$r = connect_flow($alice, start_link('github', 'u4'), stop_before_callback => 1);
my $mallory = browser();
page_ok($mallory->get($r->{callback_url}), 400, qr/started in another browser/,
        'callback from another browser');
ok(!stored('github', 'u4'), 'cross-session: nothing stored');
# the stranger did not burn the sign-in (issue 8): the real browser's
# callback still succeeds, once
page_ok($alice->get($r->{callback_url}), 200, qr/Connected to GitHub/,
        'cross-session: the real browser still connects');
ok(stored('github', 'u4'), 'cross-session: stored for the real browser');
page_ok($alice->get($r->{callback_url}), 400, qr/expired or was already completed/,
        'cross-session: then the state is spent');
like(error_log_text(), qr/came from another browser than the one that started it/,
     'cross-session: logged');

# two flows, each browser with the other one's callback
my ($ba, $bb) = (browser(), browser());
my $ra = connect_flow($ba, start_link('github', 'u5'), stop_before_callback => 1);
my $rb = connect_flow($bb, start_link('github', 'u6'), stop_before_callback => 1);
page_ok($ba->get($rb->{callback_url}), 400, qr/started in another browser/,
        'swapped callbacks refused');
ok(!stored('github', 'u5') && !stored('github', 'u6'), 'swapped: nothing stored');

# two flows in one browser work side by side
my $bc = browser();
my $r1 = connect_flow($bc, start_link('github', 'u7'), stop_before_callback => 1);
my $r2 = connect_flow($bc, start_link('notion', 'u7'), stop_before_callback => 1);
is($bc->get($r2->{callback_url})->code, 200, 'two flows in one browser: second');
is($bc->get($r1->{callback_url})->code, 200, 'two flows in one browser: first');

# --- mix-up: RFC 9207 iss, and a code meant for another provider ------------

$n = grants();
$b = browser();
$r = connect_flow($b, start_link('slack', 'u8'), stop_before_callback => 1);
my $evil = URI->new($r->{callback_url});
$evil->query_param(iss => 'https://evil.example');
page_ok($b->get($evil->as_string), 400, qr/another service/, 'iss of another issuer');
is(grants(), $n, 'iss mismatch: the code is not sent anywhere');
ok(!stored('slack', 'u8'), 'iss mismatch: nothing stored');

$b = browser();
$r = connect_flow($b, start_link('slack', 'u8'), stop_before_callback => 1);
my $ok = URI->new($r->{callback_url});
$ok->query_param(iss => "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}");
is($b->get($ok->as_string)->code, 200, 'iss naming the provider sent to: accepted');

# a GitHub code delivered with a Slack state goes to Slack, which refuses it
my $gh = connect_flow(browser(), start_link('github', 'u9'), stop_before_callback => 1);
my $gh_code = query_of($gh->{callback_url})->{code};
$b = browser();
$r = connect_flow($b, start_link('slack', 'u9'), stop_before_callback => 1);
my $mixed = URI->new($r->{callback_url});
$mixed->query_param(code => $gh_code);
my $before = mock('GET', '/__mock/requests')->{requests};
page_ok($b->get($mixed->as_string), 502, qr/did not accept the sign-in/,
        'a code of another provider');
my $after = mock('GET', '/__mock/requests')->{requests};
my @new = @{$after}[scalar(@$before) .. $#$after];
ok(!(grep { $_->{path} =~ m{^/github/} } @new),
   'the GitHub code never went to GitHub with the Slack flow');
ok(!stored('slack', 'u9'), 'mix-up: nothing stored');
like(error_log_text(), qr/token exchange with "127\.0\.0\.1:\d+" failed: HTTP 200 invalid_code/,
     'mix-up: the provider error code is logged');

# --- open redirects -----------------------------------------------------------

my @bad = ('//evil.example/', 'https:%2f%2fevil.example', 'javascript:alert(1)',
           'https://app.example.com@evil.example/',
           'https://app.example.com.evil.example/', 'https://app.example.com:8443/',
           'https://evil.example/?https://app.example.com',
           'https://app.example.com\\@evil.example', 'http://app.example.com/',
           'https://app.example.com/%2f%2fevil.example', ' https://app.example.com/',
           "https://app.example.com/\r\nSet-Cookie: x=1", 'https:/app.example.com/',
           'https://user:pw@app.example.com/', 'data:text/html,hi',
           'https://app.example.com%2f@evil.example', 'app.example.com/x');
for my $u (@bad) {
    my ($st, $h, $res) = api('POST', '/v1/projects/p1/users/u10/connections/github/authorize',
                             { return_url => $u });
    is($res->{error}, 'invalid_return_url', "return_url refused: $u");
}
for my $u ('https://app.example.com', 'https://app.example.com/x?y=1#z',
           'http://localhost:3000/cb', 'HTTPS://APP.EXAMPLE.COM/ok') {
    my ($st) = api('POST', '/v1/projects/p1/users/u10/connections/github/authorize',
                   { return_url => $u });
    is($st, 200, "return_url allowed: $u");
}

# a session tampered with in Redis still cannot redirect anywhere else
my $sid = 'T' x 43;
redis_cmd('SET', "t042:{p1}:session:$sid",
          '{"connector":"github","user":"u11","return_url":"https://evil.example/","agent":null}',
          'PX', 60000);
$r = connect_flow(browser(), "$PUB/v1/connectors/oauth/authorize?session=p1.$sid");
is($r->{callback}->code, 200, 'tampered return_url: the connected page, no redirect');
ok(!$r->{callback}->header('Location'), 'tampered return_url: no Location');

# --- access_denied ------------------------------------------------------------

truncate_error_log();
redis_cmd('DEL', $_) for redis_keys('{p1}:state:*');    # left by the tests above
for my $conn (qw(slack notion github)) {
    behave(prefix => "/$conn/", deny => JSON::PP::true, count => 1);
    $b = browser();
    $r = connect_flow($b, start_link($conn, 'u12'));
    my $name = { slack => 'Slack', notion => 'Notion', github => 'GitHub' }->{$conn};
    page_ok($r->{callback}, 403, qr/You did not allow access to \Q$name\E/,
            "$conn: access_denied");
    ok(!stored($conn, 'u12'), "$conn: access_denied: nothing stored");
    is_deeply([ redis_keys('{p1}:state:*') ], [], "$conn: access_denied: state consumed");
}
unlike(error_log_text(), qr/\[(?:error|crit|alert)\]/, 'access_denied: no error logged');
mock('DELETE', '/__mock/behaviour');

# --- the token endpoint fails -------------------------------------------------

my @failures = (
    [ '500', { status => 500, body => 'oops' }, 502, qr/HTTP 500/ ],
    [ 'timeout', { hang => JSON::PP::true }, 504, qr/timed out/ ],
    [ 'garbage', { garbage => 'NOT HTTP AT ALL' }, 502, qr/upstream request to .* failed/ ],
    [ 'HTML in a 200', { status => 200, body => '<html>busy</html>',
                         headers => { 'Content-Type' => 'text/html' } },
      502, qr/neither JSON nor a form/ ],
    [ 'an error inside a 200', { status => 200,
                                 body => { error => 'bad_verification_code',
                                           error_description => 'The code passed is incorrect or expired.' } },
      502, qr/HTTP 200 bad_verification_code/ ],
    [ '200 without a token', { status => 200, body => { token_type => 'bearer' } },
      502, qr/without an access token/ ],
);

for my $f (@failures) {
    my ($what, $rule, $code, $log) = @$f;
    truncate_error_log();
    behave(prefix => '/github/login/oauth/access_token', count => 1, %$rule);
    $b = browser();
    my $t0 = Time::HiRes::time();
    $r = connect_flow($b, start_link('github', 'u13'));
    page_ok($r->{callback}, $code, qr/did not accept the sign-in, or could not be reached/,
            "token endpoint $what");
    ok(!stored('github', 'u13'), "token endpoint $what: nothing stored");
    like(error_log_text(), $log, "token endpoint $what: logged");
    if ($what eq 'timeout') {
        ok(Time::HiRes::time() - $t0 < 4, 'timeout: bounded by astralform_http_timeout');
    }
}
mock('DELETE', '/__mock/behaviour');

# Slack: errors come as 200 + ok:false
behave(prefix => '/slack/api/oauth.v2.access', count => 1, status => 200,
       body => { ok => JSON::PP::false, error => 'invalid_client_id' });
$r = connect_flow(browser(), start_link('slack', 'u14'));
is($r->{callback}->code, 502, 'slack ok:false: 502');
like(error_log_text(), qr/HTTP 200 invalid_client_id/, 'slack ok:false: the error code logged');
ok(!stored('slack', 'u14'), 'slack ok:false: nothing stored');

secrets_from_mock();
stop_nginx();
scan_logs();
done_testing();
