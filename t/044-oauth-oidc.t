# The whole flow against a real OAuth 2.0 authorization server
# (oidc-provider, t/servers/oidc-server.mjs) described in the catalog as a
# generic connector (t/catalog/oidc.json): PKCE S256 (required there), the
# RFC 9207 iss, HTTP Basic client auth, rotating refresh tokens (a reused
# one revokes the whole grant, so a lost rotation or an uncollapsed
# refresh would show), RFC 7009 revocation on disconnect and on disable.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use Astralform::Seal;
use URI;
use Time::HiRes qw(time sleep);

$ENV{TEST_NGINX_OIDC_PORT} or plan skip_all => 'no oidc-provider server';
$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $KEY = '7c' x 32;
my $CID = 'astralform-test';
my $CSECRET = 'astralform-test-secret-0123456789';
my $O = "http://127.0.0.1:$ENV{TEST_NGINX_OIDC_PORT}";

my $cfg = oauth_config(prefix => 't044:', dir => 't/tmp/044', key => $KEY,
                       connectors => 0);
start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2, worker_connections => 512)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't044:*');
remember_secret($CSECRET);

sub oidc {
    my ($method, $path) = @_;
    my ($st, $h, $text) = http_req($method, $path, [], $method eq 'POST' ? '' : undef,
                                   { port => $ENV{TEST_NGINX_OIDC_PORT} });
    return eval { $JSON->decode($text) } // {};
}

sub grants { oidc('GET', '/__oidc/stats')->{token_by_grant_type}{$_[0]} // 0 }

sub call {
    my ($user) = @_;
    return api('POST', '/v1/projects/p1/tools/call',
               { name => 'oidc_userinfo', arguments => {} }, user => $user);
}

sub record {
    my ($user) = @_;
    my $blob = redis_cmd('HGET', 't044:{p1}:tokens:oidc_test', $user) // return undef;
    my $plain = open_blob($KEY, token_aad('p1', 'oidc_test', $user), $blob) // return undef;
    my $rec = $JSON->decode($plain);
    remember_secret($rec->{access_token}, $rec->{refresh_token});
    return $rec;
}

sub connect_user {
    my ($user) = @_;
    my $r = connect_flow(browser(), start_link('oidc_test', $user));
    is($r->{callback} && $r->{callback}->code, 200, "oidc: $user connected")
        or diag($r->{callback} ? $r->{callback}->decoded_content : 'no callback');
    return $r;
}

# the connector enabled through the API: its client secret is sealed
my ($st, $h, $res) = admin_api('POST', '/v1/projects/p1/connectors',
                               { connector_slug => 'oidc_test', oauth_client_id => $CID,
                                 oauth_client_secret => $CSECRET });
is($st, 201, 'oidc_test enabled through the API') or diag($JSON->encode($res));

# --- tool call -> auth_required -> consent -> callback -> tool call ---------

($st, $h, $res) = call('u1');
is($st, 401, 'before connecting: 401');
is($res->{error}, 'auth_required', 'before connecting: auth_required');

oidc('POST', '/__oidc/reset-stats');
my $r = connect_flow(browser(), $res->{authorization_url});
is($r->{callback}->code, 200, 'the flow completes against oidc-provider');
like($r->{callback}->decoded_content, qr/Connected to OIDC test provider/, 'connected page');
my $cbq = query_of($r->{callback_url});
is($cbq->{iss}, $O, 'the provider sent iss (RFC 9207), and it was accepted');

my $stats = oidc('GET', '/__oidc/stats');
is($stats->{last_authorization}{query}{code_challenge_method}, 'S256', 'PKCE S256 sent');
is($stats->{last_authorization}{query}{prompt}, 'consent', 'authorize_params sent');
is($stats->{last_token_request}{client_auth}, 'client_secret_basic', 'HTTP Basic client auth');
ok($stats->{last_token_request}{has_code_verifier}, 'code_verifier sent');
is($stats->{token_by_grant_type}{authorization_code}, 1, 'one code exchange');

my $rec = record('u1');
ok($rec->{refresh_token}, 'a refresh token stored (offline_access)');
is($rec->{scope}, 'openid offline_access profile', 'granted scopes stored');
ok($rec->{expires_at} > time + 3000, 'expiry stored');

($st, $h, $res) = call('u1');
is($st, 200, 'tool call after consent: 200') or diag($JSON->encode($res));
is($res->{result}{sub}, 'user-1', "the user's own account answered");

# --- a callback without iss is refused for this provider --------------------

my $b = browser();
$r = connect_flow($b, start_link('oidc_test', 'u9'), stop_before_callback => 1);
my $noiss = URI->new($r->{callback_url});
$noiss->query_param_delete('iss');
my $page = $b->get($noiss->as_string);
is($page->code, 400, 'no iss where the catalog says the provider sends it: 400');
like($page->decoded_content, qr/another service/, 'no iss: says why');
ok(!record('u9'), 'no iss: nothing stored');

# --- refresh before expiry, with rotation -------------------------------------

oidc('POST', '/__oidc/config?access_ttl=30');
connect_user('u2');
oidc('POST', '/__oidc/config?access_ttl=3600');
my $r2 = record('u2');
ok($r2->{expires_at} < time + 60, 'u2: token within the refresh skew');
# one that lived its normal life: the skew is capped at half the lifetime
$r2->{obtained_at} = $r2->{expires_at} - 3600;
redis_cmd('HSET', 't044:{p1}:tokens:oidc_test', 'u2',
          seal_token($KEY, 'k1', 'p1', 'oidc_test', 'u2', $r2));
$r2 = record('u2');
my $before = grants('refresh_token');
($st) = call('u2');
is($st, 200, 'u2: expiring token refreshed, call 200');
is(grants('refresh_token') - $before, 1, 'u2: one refresh');
my $r2b = record('u2');
isnt($r2b->{refresh_token}, $r2->{refresh_token}, 'u2: rotated refresh token stored');

# --- provider 401 -> refresh -> retry, twice: the rotated token is kept ----

for my $round (1, 2) {
    oidc('POST', '/__oidc/expire-access-tokens');
    $before = grants('refresh_token');
    ($st, $h, $res) = call('u1');
    is($st, 200, "provider 401, round $round: refreshed and retried")
        or diag($JSON->encode($res));
    is(grants('refresh_token') - $before, 1, "provider 401, round $round: one refresh");
}
is(oidc('GET', '/__oidc/stats')->{token_errors_by_code}{invalid_grant} // 0, 0,
   'no refresh token was ever reused (a reuse would revoke the grant)');

# --- concurrent calls collapse into one refresh --------------------------------

oidc('POST', '/__oidc/expire-access-tokens');
$before = grants('refresh_token');
my @st = parallel(40, sub { (call('u1'))[0] });
is(scalar(grep { $_ == 200 } @st), 40, '40 concurrent calls after the provider expired the token: all 200')
    or diag("@st");
is(grants('refresh_token') - $before, 1, '40 concurrent calls: one refresh at oidc-provider');
is(oidc('GET', '/__oidc/stats')->{token_errors_by_code}{invalid_grant} // 0, 0,
   'concurrent calls: no reused refresh token');

# --- access_denied -----------------------------------------------------------------

oidc('POST', '/__oidc/deny?on=1');
$r = connect_flow(browser(), start_link('oidc_test', 'u3'));
is($r->{callback}->code, 403, 'access_denied at oidc-provider: 403 page');
like($r->{callback}->decoded_content, qr/You did not allow access to OIDC test provider/,
     'access_denied: clear page');
oidc('POST', '/__oidc/deny?on=0');

# --- a dead grant: deleted, auth_required --------------------------------------

connect_user('u4');
oidc('POST', '/__oidc/revoke-refresh-tokens');
oidc('POST', '/__oidc/expire-access-tokens');
($st, $h, $res) = call('u4');
is($st, 401, 'dead grant: 401');
is($res->{error}, 'auth_required', 'dead grant: auth_required');
is(redis_cmd('HGET', 't044:{p1}:tokens:oidc_test', 'u4'), undef, 'dead grant: record deleted');

# --- disconnect: RFC 7009 revocation of the refresh token ---------------------

connect_user('u5');
my $r5 = record('u5');
oidc('POST', '/__oidc/reset-stats');
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/u5/connections/oidc_test');
is($st, 200, 'disconnect: 200');
ok($res->{disconnected}, 'disconnect: removed');
my $rev;
for (1 .. 40) {
    $rev = oidc('GET', '/__oidc/stats');
    last if $rev->{revocation_requests};
    sleep 0.05;
}
is($rev->{revocation_requests}, 1, 'disconnect: one revocation request at the provider');
my ($ist, $ih, $itext) = http_req('POST', '/token/introspection',
    [ Authorization => 'Basic ' . MIME::Base64::encode_base64("$CID:$CSECRET", ''),
      'Content-Type' => 'application/x-www-form-urlencoded' ],
    "token=$r5->{refresh_token}", { port => $ENV{TEST_NGINX_OIDC_PORT} });
like($itext, qr/"active":false/, 'disconnect: the refresh token is no longer active');

# --- disable the connector: every token revoked ---------------------------------

connect_user('u6');
connect_user('u7');
oidc('POST', '/__oidc/reset-stats');
my $live = scalar @{ redis_cmd('HKEYS', 't044:{p1}:tokens:oidc_test') };
($st, $h, $res) = admin_api('DELETE', '/v1/projects/p1/connectors/oidc_test');
is($st, 200, 'disable: 200');
is($res->{revoked_tokens}, $live, "disable: revoked_tokens = $live");
for (1 .. 40) {
    $rev = oidc('GET', '/__oidc/stats');
    last if ($rev->{revocation_requests} // 0) >= $live;
    sleep 0.05;
}
is($rev->{revocation_requests}, $live, 'disable: each token revoked at the provider');
is(redis_cmd('EXISTS', 't044:{p1}:tokens:oidc_test'), 0, 'disable: the tokens are gone here');

stop_nginx();
push @Astralform::OAuth::ExtraLogs,
     glob("$ENV{TEST_NGINX_REPO}/t/tmp/$ENV{TEST_NGINX_SERVER_PORT}/oidc-server.log");
scan_logs();
done_testing();

