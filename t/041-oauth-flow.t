# The end-user OAuth flow against mock Slack, Notion and GitHub, with each
# provider's quirks: tool call -> auth_required -> authorize -> consent ->
# callback -> the tool call succeeds with the user's own token. Then the
# connections API (list, authorize link, return_url, disconnect with
# revocation) and connector disable revoking every token.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $cfg = oauth_config(prefix => 't041:', dir => 't/tmp/041');

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config})
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't041:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my $PUB = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $CALLBACK = "$PUB/v1/connectors/oauth/callback";

my %flows = (
    slack => { tool => 'slack_search_messages', args => { query => 'budget' },
               user => 'u-slack' },
    notion => { tool => 'notion_search', args => { query => 'Roadmap' },
                user => 'u-notion' },
    github => { tool => 'github_list_repos', args => { per_page => 2 },
                user => 'u-github' },
);

for my $conn (qw(slack notion github)) {
    my $f = $flows{$conn};
    my $user = $f->{user};

    mock('POST', '/__mock/reset');

    # 1. the tool call without a connection: a single-purpose link
    my ($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                             { name => $f->{tool}, arguments => $f->{args} },
                             user => $user);
    is($st, 401, "$conn: tool call before connecting: 401");
    is($res->{error}, 'auth_required', "$conn: auth_required");
    my $link = $res->{authorization_url} // '';
    like($link, qr{^\Q$PUB\E/v1/connectors/oauth/authorize\?session=p1\.[\w-]{43}$},
         "$conn: authorization_url on the public URL");

    # 2. the browser follows it
    my $b = browser();
    my $r = connect_flow($b, $link, stop_before_callback => 1);

    is($r->{authorize}->code, 302, "$conn: authorize redirects");
    is($r->{authorize}->header('Referrer-Policy'), 'no-referrer',
       "$conn: authorize: Referrer-Policy");
    is($r->{authorize}->header('Cache-Control'), 'no-store',
       "$conn: authorize: Cache-Control");
    like($r->{authorize}->header('Set-Cookie') // '',
         qr{^astralform_oauth_[\w-]{12}=[\w-]{22}; Path=/v1/connectors/oauth/callback; Max-Age=\d+; HttpOnly; SameSite=Lax$},
         "$conn: authorize: browser binding cookie");

    my $q = query_of($r->{provider_url});
    is($q->{redirect_uri}, $CALLBACK, "$conn: redirect_uri exactly");
    is($q->{response_type}, 'code', "$conn: response_type=code");
    like($q->{state}, qr/^p1\.[\w-]{43}$/, "$conn: state is project + 256 bits");
    like($r->{callback_url} // '', qr{^\Q$CALLBACK\E\?code=},
         "$conn: the provider sent the browser back");

    if ($conn eq 'slack') {
        is($q->{client_id}, 'slack-cid', 'slack: client_id');
        is($q->{user_scope}, 'channels:read,groups:read,chat:write,search:read',
           'slack: user scopes in user_scope, comma-separated');
        ok(!defined $q->{scope}, 'slack: no bot scopes');
        ok(!defined $q->{code_challenge}, 'slack: no PKCE (catalog: pkce false)');
    } elsif ($conn eq 'notion') {
        is($q->{owner}, 'user', 'notion: owner=user');
        ok(!defined $q->{code_challenge}, 'notion: no PKCE');
    } else {
        is($q->{scope}, 'repo read:user', 'github: scopes space-separated');
        is($q->{code_challenge_method}, 'S256', 'github: PKCE S256');
        like($q->{code_challenge}, qr/^[\w-]{43}$/, 'github: code_challenge');
    }

    # the session link is single-purpose
    my $again = browser()->get($link);
    is($again->code, 400, "$conn: the link works once");
    like($again->decoded_content, qr/expired or was already used/,
         "$conn: second use: clear page");

    # 3. the callback
    my $cb = $b->get($r->{callback_url});
    is($cb->code, 200, "$conn: callback: 200");
    like($cb->header('Content-Type'), qr{^text/html}, "$conn: callback: HTML");
    my $name = { slack => 'Slack', notion => 'Notion', github => 'GitHub' }->{$conn};
    like($cb->decoded_content,
         qr/Connected to \Q$name\E \x{2014} you can close this window/,
         "$conn: callback: the connected page");
    is($cb->header('Referrer-Policy'), 'no-referrer', "$conn: callback: Referrer-Policy");
    is($cb->header('Cache-Control'), 'no-store', "$conn: callback: no-store");
    like($cb->header('Set-Cookie') // '', qr/Max-Age=0/,
         "$conn: callback: binding cookie cleared");
    my $code = query_of($r->{callback_url})->{code};
    unlike($cb->decoded_content, qr/\Q$code\E/, "$conn: code not echoed");

    # what reached the token endpoint
    my $reqs = mock('GET', '/__mock/requests')->{requests};
    my ($tokreq) = grep { $_->{path} =~ m{oauth\.v2\.access|oauth/token|access_token} } @$reqs;
    ok($tokreq, "$conn: token endpoint called");
    my $form = $tokreq->{form} || $tokreq->{json} || {};
    is($form->{code}, $code, "$conn: the code exchanged");
    is($form->{redirect_uri}, $CALLBACK, "$conn: redirect_uri at the token endpoint");

    if ($conn eq 'slack') {
        is($form->{client_secret}, $SECRET, 'slack: client secret in the body');
        like($tokreq->{headers}{'content-type'}, qr/x-www-form-urlencoded/, 'slack: form');
    } elsif ($conn eq 'notion') {
        like($tokreq->{headers}{authorization} // '', qr/^Basic /, 'notion: HTTP Basic');
        ok(!defined $form->{client_secret}, 'notion: no secret in the body');
        like($tokreq->{headers}{'content-type'}, qr{application/json}, 'notion: JSON body');
        is($form->{grant_type}, 'authorization_code', 'notion: grant_type');
    } else {
        like($tokreq->{headers}{accept}, qr{application/json}, 'github: Accept JSON');
        like($form->{code_verifier} // '', qr/^[\w-]{43}$/, 'github: code_verifier sent');
        remember_secret($form->{code_verifier});
    }

    # 4. the record is sealed in Redis
    my $blob = redis_cmd('HGET', "t041:{p1}:tokens:$conn", $user);
    like($blob // '', qr/^v1\.k1\.[\w-]+$/, "$conn: sealed record stored");
    my $toks = mock('GET', "/__mock/tokens?provider=$conn")->{tokens};
    my @user_tokens = grep { $_->{kind} eq 'access' } @$toks;
    for my $t (@$toks) {
        unlike($blob, qr/\Q$t->{token}\E/, "$conn: no token in clear in Redis");
    }
    is_deeply([ redis_keys('{p1}:state:*') ], [], "$conn: state consumed");

    # 5. the tool call now succeeds with the user's token
    mock('POST', '/__mock/reset');
    ($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                          { name => $f->{tool}, arguments => $f->{args} },
                          user => $user);
    is($st, 200, "$conn: tool call after consent: 200")
        or diag($JSON->encode($res));

    $reqs = mock('GET', '/__mock/requests')->{requests};
    my $auth = $reqs->[-1]{headers}{authorization} // '';
    my ($used) = $auth =~ /^Bearer (.+)/;
    my ($rec) = grep { $_->{token} eq ($used // '') } @$toks;
    ok($rec, "$conn: the API call carried a token the provider issued");
    if ($conn eq 'slack') {
        is($rec && $rec->{token_type}, 'user',
           'slack: the user token (authed_user), not the bot token');
    }

    # 6. the connections list
    ($st, $h, $res) = api('GET', "/v1/projects/p1/users/$user/connections");
    is($st, 200, "$conn: connections list");
    my ($row) = grep { $_->{connector} eq $conn } @{ $res->{connections} };
    is($row->{status}, 'connected', "$conn: connected");
    my ($other) = grep { $_->{connector} ne $conn } @{ $res->{connections} };
    is($other->{status}, 'missing', "$conn: the others missing");
    if ($conn eq 'slack') {
        is_deeply($row->{scopes}, [qw(channels:read groups:read chat:write search:read)],
                  'slack: granted scopes as an array');
        ok($row->{expires_at} > time + 40000, 'slack: expires_at from expires_in');
        is($row->{account_id}, 'U0MOCKUSER1', 'slack: account id (authed_user.id)');
        ok($row->{refreshable}, 'slack: refreshable (rotation)');
    } elsif ($conn eq 'notion') {
        is($row->{expires_at}, undef, 'notion: no expiry');
        ok($row->{account_id}, 'notion: account id (owner.user.id)');
    } else {
        is_deeply($row->{scopes}, ['repo', 'read:user'],
                  'github: comma-separated answer scopes split');
    }
}

unlike(error_log_text(), qr/\[(?:error|crit|alert|emerg)\]/,
       'three complete flows: nothing logged at error level');

# --- provider-specific details -----------------------------------------------

# Slack: the user's refresh token is kept (authed_user.refresh_token)
my $toks = mock('GET', '/__mock/tokens?provider=slack')->{tokens};
ok((grep { $_->{kind} eq 'refresh' && $_->{user} eq 'U0MOCKUSER1' } @$toks),
   'slack: a user refresh token was issued');

# --- connections API ----------------------------------------------------------

my ($st, $h, $res) = api('POST', '/v1/projects/p1/users/u9/connections/slack/authorize', {});
is($st, 200, 'authorize link: 200');
like($res->{authorization_url}, qr{/v1/connectors/oauth/authorize\?session=p1\.},
     'authorize link: URL');
ok($res->{expires_in} > 0, 'authorize link: expires_in');

($st, $h, $res) = api('POST', '/v1/projects/p1/users/u9/connections/slack/authorize',
                      { return_url => 'https://evil.example/x' });
is($st, 400, 'authorize link: foreign return_url: 400');
is($res->{error}, 'invalid_return_url', 'authorize link: invalid_return_url');

($st, $h, $res) = api('POST', '/v1/projects/p1/users/u9/connections/nope/authorize', {});
is($st, 404, 'authorize link: unknown connector: 404');
is($res->{error}, 'connector_not_found', 'unknown connector: code');

($st, $h, $res) = api('GET', '/v1/projects/p1/users/bad%20user/connections');
is($st, 400, 'bad user id in the path: 400');
is($res->{error}, 'invalid_user', 'bad user id: code');

($st, $h, $res) = api('PUT', '/v1/projects/p1/users/u9/connections/slack',
                      { api_key => 'k-0123456789' });
is($st, 400, 'PUT api_key on an OAuth connector: 400');
is($res->{error}, 'not_api_key', 'PUT api_key on OAuth: code');

($st, $h, $res) = api('GET', '/v1/projects/p1/users/u9/connections', undef,
                      key => 'no-such-key-0123456789');
is($st, 401, 'connections without a valid key: 401');

# return_url: the callback sends the browser back to an allowed origin
my $link = start_link('github', 'u-ret',
                      body => { return_url => 'https://app.example.com/done?x=1' });
my $b = browser();
my $r = connect_flow($b, $link);
is($r->{callback}->code, 302, 'return_url: callback redirects');
is($r->{callback}->header('Location'), 'https://app.example.com/done?x=1',
   'return_url: to the allowed return_url exactly');
is($r->{callback}->header('Referrer-Policy'), 'no-referrer', 'return_url: no referrer');

# an api_key connector: end users' own keys
($st) = admin_api('POST', '/v1/projects/p1/connectors',
                  { connector_slug => 'openweather', api_key => 'svc-weather-key-0123' });
is($st, 201, 'openweather enabled');
remember_secret('svc-weather-key-0123', 'user-weather-key-0123');

($st, $h, $res) = api('GET', '/v1/projects/p1/users/u-w/connections');
my ($w) = grep { $_->{connector} eq 'openweather' } @{ $res->{connections} };
is($w->{status}, 'connected', 'api_key connector with a project key: connected');
is($w->{credential}, 'project', 'api_key connector: the project credential');

($st, $h, $res) = api('PUT', '/v1/projects/p1/users/u-w/connections/openweather',
                      { api_key => 'user-weather-key-0123' });
is($st, 200, 'PUT api_key: 200');
is($res->{status}, 'connected', 'PUT api_key: connected');
is($res->{credential}, 'user', 'PUT api_key: the user credential');
like(redis_cmd('HGET', 't041:{p1}:tokens:openweather', 'u-w'), qr/^v1\.k1\./,
     'PUT api_key: sealed');

($st, $h, $res) = api('PUT', '/v1/projects/p1/users/u-w/connections/openweather',
                      { api_key => '' });
is($st, 400, 'PUT empty api_key: 400');

($st, $h, $res) = api('POST', '/v1/projects/p1/users/u-w/connections/openweather/authorize', {});
is($res->{error}, 'not_oauth', 'authorize on an api_key connector: not_oauth');

($st) = admin_api('PATCH', '/v1/projects/p1/connectors/openweather',
                  { allow_end_user_auth => JSON::PP::false });
($st, $h, $res) = api('PUT', '/v1/projects/p1/users/u-w/connections/openweather',
                      { api_key => 'user-weather-key-0123' });
is($st, 403, 'PUT api_key with allow_end_user_auth off: 403');
is($res->{error}, 'end_user_auth_disabled', 'allow_end_user_auth off: code');

# --- disconnect: deleted here, revoked at the provider -------------------------

mock('POST', '/__mock/reset');
my $slack_blob = redis_cmd('HGET', 't041:{p1}:tokens:slack', 'u-slack');
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/u-slack/connections/slack');
is($st, 200, 'disconnect: 200');
ok($res->{disconnected}, 'disconnect: something was removed');
is(redis_cmd('HGET', 't041:{p1}:tokens:slack', 'u-slack'), undef, 'disconnect: deleted');

my $revoked = wait_for(sub {
    grep { $_->{path} eq '/slack/api/auth.revoke' }
        @{ mock('GET', '/__mock/requests')->{requests} } });
ok($revoked, 'disconnect: auth.revoke called at Slack');
my ($slack_user_tok) = grep { $_->{kind} eq 'access' && $_->{token_type} eq 'user' }
                       @{ mock('GET', '/__mock/tokens?provider=slack')->{tokens} };
is($slack_user_tok->{status}, 'revoked', 'disconnect: the user token is revoked at Slack');

($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/u-slack/connections/slack');
is($st, 200, 'disconnect again: 200');
ok(!$res->{disconnected}, 'disconnect again: nothing to remove');

($st, $h, $res) = api('GET', '/v1/projects/p1/users/u-slack/connections');
my ($srow) = grep { $_->{connector} eq 'slack' } @{ $res->{connections} };
is($srow->{status}, 'missing', 'after disconnect: missing');

# a slow revocation endpoint does not hold the answer
mock('POST', '/__mock/reset');
behave(prefix => '/github/api/applications/', hang => JSON::PP::true);
my $t0 = Time::HiRes::time();
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/u-github/connections/github');
my $took = Time::HiRes::time() - $t0;
is($st, 200, 'disconnect with a hanging provider: 200');
ok($took < 0.5, sprintf('disconnect does not wait for the provider (%.3fs)', $took));
Time::HiRes::sleep(1.5);
like(error_log_text(), qr/upstream request to "127\.0\.0\.1:\d+" failed: .*timed out/,
     'the hanging revocation timed out (astralform_revoke_timeout)');
mock('DELETE', '/__mock/behaviour');

# --- connector disable (t/044 revokes at a real server) ------------------------

# config connectors are nginx.conf's: the API cannot disable them
($st, $h, $res) = admin_api('DELETE', '/v1/projects/p1/connectors/notion');
is($st, 409, 'disable a config connector: refused');
ok(redis_cmd('HEXISTS', 't041:{p1}:tokens:notion', 'u-notion'),
   'disable refused: the tokens stay');


done_testing_with_scan();

sub wait_for {
    my ($cb, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs || 3);
    while (Time::HiRes::time() < $deadline) {
        my @r = $cb->();
        return $r[0] if @r;
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

sub done_testing_with_scan {
    secrets_from_mock();
    stop_nginx();
    scan_logs();
    done_testing();
}
