# The rows the dashboard and the admin MCP tools need: the project's agents
# (GET /v1/projects/{pid}/agents) and the troubleshooting checks
# (GET /v1/projects/{pid}/diagnose?connector=&agent=&user=), every check
# with its ok and hint, for each way a check passes or fails.

use strict;
use warnings;

use Test::More;
use JSON::PP ();
use Astralform::Test;
use Astralform::Seal;

BEGIN {
    my $repo = $ENV{TEST_NGINX_REPO} || '.';
    unshift @INC, "$repo/t/fixtures";
    $ENV{TEST_NGINX_CATALOG} = "$repo/conf/connectors";
}

use Fixtures;

$ENV{TEST_NGINX_FIXTURES} = fixture_dir();

my $ADMIN = fixture_line('p1-admin.keys');
my $AGENT = fixture_line('p1-agent.keys');
my $P2 = fixture_line('p2-admin.keys');
my $KEY = fixture_line('master.key');

my $http_config = <<'_EOC_';
    astralform_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys
                       agent_key_file=$TEST_NGINX_FIXTURES/p1-agent.keys;
    astralform_project p2 admin_key_file=$TEST_NGINX_FIXTURES/p2-admin.keys;
    astralform_connector p1 notion client_id=test-notion-client
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret
                         agents=cfg-a,both;
    astralform_connector p1 openweather
                         api_key_file=$TEST_NGINX_FIXTURES/service-api.key
                         agents=cfg-a;
_EOC_

for my $k (@{ redis_cmd('KEYS', 'astralform:{p*') }) {
    redis_cmd('DEL', $k);
}

start_nginx(http_config => $http_config,
            config => 'location /v1/ { astralform_api; }')
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $json = JSON::PP->new->canonical;

sub api {
    my ($method, $path, $body, $key) = @_;
    my ($s, $h, $b) = http_req($method, $path,
        ['Authorization' => 'Bearer ' . ($key // $ADMIN),
         'Content-Type' => 'application/json'],
        defined $body ? $json->encode($body) : undef);
    my $d = eval { $json->decode($b) };
    return ($s, $d, $b);
}

my ($s, $d, $b);

# --- agents ----------------------------------------------------------------

($s, $d) = api('GET', '/v1/projects/p1/agents');
is($s, 200, 'agents: 200');
is_deeply($d, { agents => [
    { id => 'both', connectors => ['notion'], source => 'config' },
    { id => 'cfg-a', connectors => ['notion', 'openweather'],
      source => 'config' } ] },
    'agents: the config ones, sorted, with the connectors naming them');

($s, $d) = api('POST', '/v1/projects/p1/connectors',
               { connector_slug => 'github', oauth_client_id => 'gh-client',
                 oauth_client_secret => 'diagnose-gh-secret-0c3a9e' });
is($s, 201, 'github enabled');

api('PUT', '/v1/projects/p1/agents/api-b/connectors',
    { connectors => ['github'] });
api('PUT', '/v1/projects/p1/agents/both/connectors', { connectors => [] });

($s, $d) = api('GET', '/v1/projects/p1/agents');
is_deeply($d, { agents => [
    { id => 'api-b', connectors => ['github'], source => 'api' },
    { id => 'both', connectors => [], source => 'api' },
    { id => 'cfg-a', connectors => ['notion', 'openweather'],
      source => 'config' } ] },
    'agents: a Redis assignment wins over agents=');

($s, $d) = api('GET', '/v1/projects/p1/agents', undef, $AGENT);
is($s, 403, 'agents with an agent key: 403');
is($d->{error}, 'admin_required', 'agents with an agent key: admin_required');

($s, $d) = api('GET', '/v1/projects/p1/agents', undef, $P2);
is($s, 404, "agents of another project: 404");

($s, $d) = api('POST', '/v1/projects/p1/agents', {});
is($s, 405, 'agents: POST 405');

# --- diagnose --------------------------------------------------------------

sub diagnose {
    my ($q, $key) = @_;
    return api('GET', "/v1/projects/p1/diagnose?$q", undef, $key);
}

sub checks {
    my ($d) = @_;
    return join ' ', map {
        my $ok = $d->{checks}{$_}{ok};
        "$_=" . (!defined $ok ? 'null' : $ok ? 'ok' : 'no')
    } qw(is_enabled assigned authenticated);
}

($s, $d) = diagnose('agent=x');
is($s, 400, 'diagnose without connector: 400');
is($d->{error}, 'invalid_request', 'diagnose without connector: code');

($s, $d) = diagnose('connector=github&user=a%20b');
is($s, 400, 'diagnose with a bad user id: 400');

($s, $d) = diagnose('connector=github', $AGENT);
is($s, 403, 'diagnose with an agent key: 403');

($s, $d) = diagnose('connector=slack&agent=api-b&user=u1');
is($s, 200, 'diagnose of a connector not enabled: 200');
is(checks($d), 'is_enabled=no assigned=null authenticated=null',
   'not enabled: the later checks are not run');
ok(!$d->{ok}, 'not enabled: ok false');
like($d->{checks}{is_enabled}{hint}, qr{POST /v1/projects/p1/connectors},
     'not enabled: the hint says how to enable');

($s, $d) = diagnose('connector=github');
is(checks($d), 'is_enabled=ok assigned=null authenticated=null',
   'no agent, no user: only is_enabled');
ok($d->{ok}, 'no agent, no user: ok');
is($d->{checks}{authenticated}{require_auth}, JSON::PP::true,
   'require_auth reported');

($s, $d) = diagnose('connector=github&agent=cfg-a&user=u1');
is(checks($d), 'is_enabled=ok assigned=no authenticated=no',
   'agent not assigned, user not connected');
like($d->{checks}{assigned}{hint},
     qr{PUT /v1/projects/p1/agents/cfg-a/connectors},
     'not assigned: the hint names the row');
like($d->{checks}{authenticated}{hint}, qr{/users/u1/connections/github/authorize},
     'not connected: the hint names the authorize row');
is($d->{checks}{authenticated}{status}, 'missing', 'status missing');
is($d->{agent}, 'cfg-a', 'agent echoed');
is($d->{user}, 'u1', 'user echoed');

($s, $d) = diagnose('connector=github&agent=nobody');
is(checks($d), 'is_enabled=ok assigned=ok authenticated=null',
   'an agent without assignment sees everything');
like($d->{checks}{assigned}{hint}, qr/no assignment/, 'hint: no assignment');

($s, $d) = diagnose('connector=notion&agent=cfg-a');
like($d->{checks}{assigned}{hint}, qr/source "config"/,
     'assigned by agents=');

# a connected user, then an expired one
my $now = time;
redis_cmd('HSET', 'astralform:{p1}:tokens:github', 'u2',
          seal_token($KEY, 'k1', 'p1', 'github', 'u2',
                     { type => 'oauth', access_token => 'diag-at-1',
                       expires_at => $now + 3600, obtained_at => $now }));
redis_cmd('HSET', 'astralform:{p1}:tokens:github', 'u3',
          seal_token($KEY, 'k1', 'p1', 'github', 'u3',
                     { type => 'oauth', access_token => 'diag-at-2',
                       expires_at => $now - 60, obtained_at => $now - 7200 }));

($s, $d, $b) = diagnose('connector=github&agent=api-b&user=u2');
is(checks($d), 'is_enabled=ok assigned=ok authenticated=ok',
   'connected user, assigned agent');
ok($d->{ok}, 'all ok');
is($d->{checks}{authenticated}{expires_at}, $now + 3600, 'token expiry');
unlike($b, qr/diag-at-1/, 'no token in the answer');

($s, $d, $b) = diagnose('connector=github&user=u3');
is(checks($d), 'is_enabled=ok assigned=null authenticated=no',
   'expired user');
is($d->{checks}{authenticated}{status}, 'expired', 'status expired');

# api_key with the project's key: nothing needed from the user
($s, $d) = diagnose('connector=openweather&user=u9');
is(checks($d), 'is_enabled=ok assigned=null authenticated=ok',
   'api_key connector with the project key');

# require_auth off
api('PATCH', '/v1/projects/p1/connectors/github', { require_auth => JSON::PP::false });
($s, $d) = diagnose('connector=github&user=u1');
is(checks($d), 'is_enabled=ok assigned=null authenticated=ok',
   'require_auth off: a missing token is not a failure');
like($d->{checks}{authenticated}{hint}, qr/require_auth is off/, 'hint');
is($d->{checks}{authenticated}{require_auth}, JSON::PP::false,
   'require_auth false reported');

# end-user auth off
api('PATCH', '/v1/projects/p1/connectors/github',
    { require_auth => JSON::PP::true, allow_end_user_auth => JSON::PP::false });
($s, $d) = diagnose('connector=github&user=u1');
like($d->{checks}{authenticated}{hint}, qr/allow_end_user_auth/,
     'end-user auth off: the hint says to turn it on');

unlike(error_log_text(), qr/\[(?:error|alert|crit)\]/, 'no error logged');
unlike(error_log_text(), qr/diagnose-gh-secret|diag-at-/, 'no secret logged');

stop_nginx();
for my $k (@{ redis_cmd('KEYS', 'astralform:{p*') }) {
    redis_cmd('DEL', $k);
}

done_testing();
