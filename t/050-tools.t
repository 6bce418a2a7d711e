# Tool calls against the mock providers: the exact outbound request of every
# catalog tool, credentials, scoping, and the mapping of provider errors.
#
# End-user tokens are sealed here in Perl (t/lib/Astralform/Seal.pm, written
# apart from the C code) and planted in Redis, so these tests do not depend
# on the OAuth flow (t/04x covers that).

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::Seal;
use JSON::PP;
use File::Path qw(make_path);
use Time::HiRes qw(time sleep);
use POSIX ();

my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
my $json = JSON::PP->new->canonical;
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/050";
make_path($dir);

my $KEY = '9f' x 32;           # the current key (k2)
my $OLD = '3c' x 32;           # an older key (k1), still configured
my $ADMIN = 'p1-admin-key-0123456789';
my $AGENT = 'p1-agent-key-0123456789';
my $SECRET = 'p1-client-secret-abcdef';

spew("$dir/k2.key", "$KEY\n");
spew("$dir/k1.key", "$OLD\n");
spew("$dir/admin.keys", "$ADMIN\n");
spew("$dir/agent.keys", "$AGENT\n");
spew("$dir/client.secret", "$SECRET\n");

my $M = "http://127.0.0.1:$mock";

my $http_config = <<"_EOC_";
    astralform_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix t050:;
    astralform_key k2 $dir/k2.key;
    astralform_key k1 $dir/k1.key;
    astralform_public_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT;
    astralform_catalog \$TEST_NGINX_REPO/conf/connectors;
    astralform_http_timeout 2s;
    astralform_provider slack api_base=$M/slack/api/ authorize_url=$M/slack/oauth/v2/authorize token_url=$M/slack/api/oauth.v2.access;
    astralform_provider notion api_base=$M/notion/v1/ authorize_url=$M/notion/v1/oauth/authorize token_url=$M/notion/v1/oauth/token;
    astralform_provider github api_base=$M/github/api/ authorize_url=$M/github/login/oauth/authorize token_url=$M/github/login/oauth/access_token;
    astralform_provider openweather api_base=$M/openweather/data/2.5/;
    astralform_project p1 admin_key_file=$dir/admin.keys agent_key_file=$dir/agent.keys;
    astralform_connector p1 slack client_id=slack-cid client_secret_file=$dir/client.secret;
    astralform_connector p1 notion client_id=notion-cid client_secret_file=$dir/client.secret;
    astralform_connector p1 github client_id=github-cid client_secret_file=$dir/client.secret;

    log_format audit 'tool=\$astralform_tool connector=\$astralform_connector '
                     'project=\$astralform_project agent=\$astralform_agent '
                     'user=\$astralform_user status=\$status '
                     'provider_status=\$astralform_provider_status '
                     'error=\$astralform_error';
_EOC_

my $config = <<'_EOC_';
    location /v1/ {
        access_log logs/audit.log audit;
        astralform_api;
    }
_EOC_

start_nginx(http_config => $http_config, config => $config)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_flush();
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my @secrets = ($KEY, $OLD, $ADMIN, $AGENT, $SECRET);

# --- every catalog tool sends exactly the provider's request -------------

my $slack = mint(slack => { user => 'U0SLACK1', token_type => 'user' });
my $notion = mint(notion => {});
my $github = mint(github => {});
plant('slack', 'u1', $slack);
plant('notion', 'u1', $notion);
plant('github', 'u1', $github);

my @cases = (
    [ slack_list_channels => { types => 'public_channel', limit => 5 },
      GET => '/slack/api/conversations.list',
      { types => 'public_channel', limit => '5' }, undef, $slack, {} ],
    [ slack_send_message => { channel => 'C0GENERAL01', text => 'hello' },
      POST => '/slack/api/chat.postMessage', {},
      { channel => 'C0GENERAL01', text => 'hello' }, $slack, {} ],
    [ slack_search_messages => { query => 'deploy', count => 3 },
      GET => '/slack/api/search.messages', { query => 'deploy', count => '3' },
      undef, $slack, {} ],
    [ notion_search => { query => 'Roadmap', page_size => 2 },
      POST => '/notion/v1/search', {}, { query => 'Roadmap', page_size => 2 },
      $notion, { 'notion-version' => '2022-06-28' } ],
    [ notion_get_page => { page_id => '11111111-2222-4333-8444-555555555555' },
      GET => '/notion/v1/pages/11111111-2222-4333-8444-555555555555', {},
      undef, $notion, { 'notion-version' => '2022-06-28' } ],
    [ notion_create_page => {
          parent => { page_id => '11111111-2222-4333-8444-555555555555' },
          properties => { title => { title => [
              { text => { content => 'New page' } } ] } } },
      POST => '/notion/v1/pages', {}, {
          parent => { page_id => '11111111-2222-4333-8444-555555555555' },
          properties => { title => { title => [
              { text => { content => 'New page' } } ] } } },
      $notion, { 'notion-version' => '2022-06-28' } ],
    [ github_list_repos => { per_page => 2, sort => 'updated' },
      GET => '/github/api/user/repos', { per_page => '2', sort => 'updated' },
      undef, $github, { 'user-agent' => 'astralform-gateway' } ],
    [ github_search_issues => { q => 'is:open label:bug', per_page => 1 },
      GET => '/github/api/search/issues',
      { q => 'is:open label:bug', per_page => '1' }, undef, $github,
      { accept => 'application/vnd.github+json' } ],
);

for my $c (@cases) {
    my ($tool, $args, $method, $path, $query, $body, $token, $hdrs) = @$c;

    mock('POST', '/__mock/reset');

    my ($st, $h, $res) = call($tool, $args, user => 'u1',
                              extra => [ Cookie => 'session=abc',
                                         'X-Forwarded-For' => '10.0.0.1',
                                         'Proxy-Authorization' => 'Basic eDp5',
                                         'TE' => 'trailers',
                                         'X-Api-Key' => 'client-supplied' ]);
    is($st, 200, "$tool: 200") or diag($json->encode($res));
    is($res->{tool}, $tool, "$tool: tool named in the answer");
    ok(ref $res->{result}, "$tool: provider result passed through");

    my @reqs = @{ mock('GET', '/__mock/requests')->{requests} };
    is(scalar @reqs, 1, "$tool: one provider request");
    my $r = $reqs[0] or next;

    is($r->{method}, $method, "$tool: method");
    is($r->{path}, $path, "$tool: path");
    is_deeply($r->{query}, $query, "$tool: query");
    if (defined $body) {
        is_deeply($r->{json}, $body, "$tool: JSON body");
        like($r->{headers}{'content-type'}, qr{^application/json},
             "$tool: JSON content type");
    } else {
        is($r->{body_size}, 0, "$tool: no body");
    }
    is($r->{headers}{authorization}, "Bearer $token->{access_token}",
       "$tool: the end user's token");
    for my $k (sort keys %$hdrs) {
        is($r->{headers}{$k}, $hdrs->{$k}, "$tool: header $k");
    }
    ok(!exists $r->{headers}{cookie}, "$tool: client cookie not forwarded");
    ok(!exists $r->{headers}{'x-forwarded-for'},
       "$tool: client headers not forwarded");
    for my $hop (qw(proxy-authorization te x-api-key)) {
        ok(!exists $r->{headers}{$hop}, "$tool: client $hop not forwarded");
    }
    unlike($r->{headers}{authorization}, qr/\Q$AGENT\E/,
           "$tool: the caller's project key never reaches the provider");
}

# an argument cannot leave its path segment, nor the connector's API host
mock('POST', '/__mock/reset');
my ($st, $h, $res) = call('notion_get_page',
                       { page_id => '../../../evil?x=1#y' }, user => 'u1');
is($res->{error}, 'invalid_arguments', 'a traversal page_id fails the schema');
is(scalar @{ mock('GET', '/__mock/requests')->{requests} }, 0,
   'and never reaches the provider');

# one the schema lets through is percent-encoded into its one segment
($st, $h, $res) = call('notion_get_page',
                       { page_id => '11111111-2222-4333-8444-555555555555' },
                       user => 'u1');
my ($esc) = @{ mock('GET', '/__mock/requests')->{requests} };
is($esc->{path}, '/notion/v1/pages/11111111-2222-4333-8444-555555555555',
   'path argument in its segment');

# --- api_key connector: the project's key in the query, or the user's -----

my $wkey = mint(openweather => {})->{access_token};
spew("$dir/ow.key", "$wkey\n");
push @secrets, $wkey;

($st, $h, $res) = admin('POST', '/v1/projects/p1/connectors',
                           { connector_slug => 'openweather',
                             api_key => $wkey });
is($st, 201, 'openweather enabled through the API');

mock('POST', '/__mock/reset');
($st, $h, $res) = call('openweather_current', { q => 'Paris', units => 'metric' });
is($st, 200, 'api_key tool: 200');
is($res->{result}{name}, 'Paris', 'api_key tool: provider result');
my ($r) = @{ mock('GET', '/__mock/requests')->{requests} };
is_deeply($r->{query}, { q => 'Paris', units => 'metric', appid => $wkey },
          'api_key tool: project key sent as appid');
ok(!exists $r->{headers}{authorization}, 'api_key tool: no Authorization');

# the end user's own key wins over the project's
my $ukey = mint(openweather => {})->{access_token};
redis_cmd('HSET', 't050:{p1}:tokens:openweather', 'u2',
          seal_token($KEY, 'k2', 'p1', 'openweather', 'u2',
                     { type => 'api_key', api_key => $ukey }));
mock('POST', '/__mock/reset');
($st) = call('openweather_current', { q => 'Tokyo' }, user => 'u2');
is($st, 200, "user's own api key: 200") or diag($json->encode($h));
($r) = @{ mock('GET', '/__mock/requests')->{requests} };
is($r->{query}{appid}, $ukey, "user's own api key sent");

# --- request errors -------------------------------------------------------

($st, $h, $res) = call('nope_tool', {});
is($st, 404, 'unknown tool: 404');
is($res->{error}, 'unknown_tool', 'unknown tool: code');

($st, $h, $res) = call('slack_list_channels', { limit => 5000 }, user => 'u1');
is($st, 400, 'out of range: 400');
is($res->{error}, 'invalid_arguments', 'out of range: code');
like($res->{message}, qr/arguments\.limit must be at most 1000/,
     'out of range: names the argument and the bound');

($st, $h, $res) = call('slack_send_message', { channel => 'C1' }, user => 'u1');
is($res->{error}, 'invalid_arguments', 'missing required: code');
like($res->{message}, qr/needs "text"/, 'missing required: names it');

($st, $h, $res) = call('slack_send_message',
                       { channel => 'C1', text => 'x', colour => 'red' },
                       user => 'u1');
like($res->{message}, qr/arguments\.colour is not a known argument/,
     'unknown argument refused');

($st, $h, $res) = call('slack_send_message', { channel => 5, text => 'x' },
                       user => 'u1');
like($res->{message}, qr/arguments\.channel must be string/, 'wrong type');

($st, $h, $res) = call('slack_list_channels', {});
is($st, 400, 'no end user on an oauth tool: 400');
is($res->{error}, 'user_required', 'no end user: code');

($st, $h, $res) = req('POST', '/v1/projects/p1/tools/call', $AGENT,
                      { name => 'slack_list_channels', arguments => [1] });
is($res->{error}, 'invalid_arguments', 'arguments not an object');

($st, $h, $res) = req('POST', '/v1/projects/p1/tools/call', 'wrong-key-0123456789',
                      { name => 'slack_list_channels' });
is($st, 401, 'bad key: 401');
is($res->{error}, 'invalid_api_key', 'bad key: code');

# --- not connected: auth_required with a single-purpose link --------------

($st, $h, $res) = call('github_list_repos', {}, user => 'nobody');
is($st, 401, 'not connected: 401');
is($res->{error}, 'auth_required', 'not connected: code');
is($res->{connector}, 'github', 'not connected: names the connector');
like($res->{authorization_url} // '',
     qr{^http://127\.0\.0\.1:\d+/v1/connectors/oauth/authorize\?session=p1\.},
     'not connected: authorization_url on the public URL');

# a sealed record copied under another user does not open: treated as missing
my $blob = redis_cmd('HGET', 't050:{p1}:tokens:github', 'u1');
redis_cmd('HSET', 't050:{p1}:tokens:github', 'thief', $blob);
($st, $h, $res) = call('github_list_repos', {}, user => 'thief');
is($res->{error}, 'auth_required', 'copied blob does not open');
like(error_log_text(), qr/credential of user "thief" for connector "github" does not open/,
     'copied blob: logged without the secret');

# --- key rotation: a blob sealed with the old key is re-sealed ------------

plant('github', 'u3', $github, 'k1', $OLD);
($st) = call('github_list_repos', {}, user => 'u3');
is($st, 200, 'old-key blob opens');
sleep 0.2;
like(redis_cmd('HGET', 't050:{p1}:tokens:github', 'u3'), qr/^v1\.k2\./,
     'old-key blob re-sealed with the current key');

# --- agent scoping ---------------------------------------------------------

($st) = admin('PUT', '/v1/projects/p1/agents/bot1/connectors',
              { connectors => ['github'] });
is($st, 200, 'assignment stored');
($st, $h, $res) = req('GET', '/v1/projects/p1/tools', $AGENT, undef,
                      'X-Astralform-Agent' => 'bot1');
is_deeply([ sort map { $_->{name} } @{ $res->{tools} } ],
          [ 'github_list_repos', 'github_search_issues' ],
          'assigned agent sees only its tools');
($st, $h, $res) = call('slack_list_channels', {}, user => 'u1', agent => 'bot1');
is($st, 403, 'unassigned tool: 403');
is($res->{error}, 'tool_not_assigned', 'unassigned tool: code');
($st) = call('github_list_repos', {}, user => 'u1', agent => 'bot1');
is($st, 200, 'assigned tool works');

# --- provider errors --------------------------------------------------------

sub behave { mock('POST', '/__mock/behaviour', { @_ }) }

mock('POST', '/__mock/reset');
behave(prefix => '/slack/api/conversations.list', status => 429,
       headers => { 'Retry-After' => '17' },
       body => { ok => JSON::PP::false, error => 'ratelimited' });
($st, $h, $res) = call('slack_list_channels', {}, user => 'u1');
is($st, 429, 'provider 429: 429');
is($res->{error}, 'rate_limited', 'provider 429: code');
is($res->{retry_after}, 17, 'provider 429: retry_after from Retry-After');

behave(prefix => '/github/api/user/repos', status => 403,
       headers => { 'x-ratelimit-remaining' => '0',
                    'x-ratelimit-reset' => int(time()) + 40 },
       body => { message => 'API rate limit exceeded' });
($st, $h, $res) = call('github_list_repos', {}, user => 'u1');
is($res->{error}, 'rate_limited', 'GitHub 403 rate limit: rate_limited');
ok($res->{retry_after} >= 38 && $res->{retry_after} <= 41,
   'GitHub rate limit: retry_after from x-ratelimit-reset');

behave(prefix => '/notion/v1/search', status => 500,
       body => { object => 'error', status => 500, code => 'internal_server_error',
                 message => 'Unexpected error.' });
($st, $h, $res) = call('notion_search', { query => 'x' }, user => 'u1');
is($st, 502, 'provider 500: 502');
is($res->{error}, 'provider_error', 'provider 500: code');
is($res->{provider_status}, 500, 'provider 500: status passed');
is($res->{provider_body}{code}, 'internal_server_error', 'provider 500: body passed');

behave(prefix => '/notion/v1/search', status => 529,
       body => { object => 'error', status => 529, code => 'service_unavailable' });
($st, $h, $res) = call('notion_search', { query => 'x' }, user => 'u1');
is($res->{provider_status}, 529, 'Notion 529: provider_error with 529');

($st, $h, $res) = call('slack_send_message',
                       { channel => 'C0NOSUCH', text => 'x' }, user => 'u1');
is($st, 502, 'Slack ok:false: 502');
is($res->{error}, 'provider_error', 'Slack ok:false: provider_error');
is($res->{provider_body}{error}, 'channel_not_found', 'Slack error passed');

behave(prefix => '/github/api/search/issues', hang => JSON::PP::true);
my $t0 = time;
($st, $h, $res) = call('github_search_issues', { q => 'x' }, user => 'u1');
is($st, 504, 'provider stalls: 504');
is($res->{error}, 'provider_timeout', 'provider stalls: code');
ok(time - $t0 < 4, 'provider stalls: answered at the configured timeout');

for my $fault ([ reset => JSON::PP::true ], [ garbage => 'NOT HTTP AT ALL' ],
               [ oversized_bytes => 6 * 1024 * 1024 ]) {
    behave(prefix => '/github/api/user/repos', @$fault);
    ($st, $h, $res) = call('github_list_repos', {}, user => 'u1');
    is($st, 502, "provider $fault->[0]: 502");
    is($res->{error}, 'provider_error', "provider $fault->[0]: code");
}

# a revoked token, no refresh token: the user must connect again
mock('POST', '/__mock/tokens/revoke', { token => $github->{access_token} });
($st, $h, $res) = call('github_list_repos', {}, user => 'u1');
is($st, 401, 'provider 401: 401');
is($res->{error}, 'auth_required', 'provider 401: auth_required');
ok($res->{authorization_url}, 'provider 401: with an authorization_url');

# Slack's 200 + ok:false invalid_auth is an auth failure too
mock('POST', '/__mock/tokens/revoke', { token => $slack->{access_token} });
($st, $h, $res) = call('slack_list_channels', {}, user => 'u1');
is($res->{error}, 'auth_required', 'Slack invalid_auth: auth_required');

# --- the audit line ----------------------------------------------------------

my $audit = slurp("$Astralform::Test::ServRoot/logs/audit.log");
like($audit, qr/tool=github_list_repos connector=github project=p1 agent=bot1 user=u1 status=200 provider_status=200 error=-/,
     'access log: one audit line per tool call');
like($audit, qr/tool=slack_list_channels connector=slack project=p1 agent=- user=u1 status=429 provider_status=429 error=rate_limited/,
     'access log: errors carry their code');

# --- no secret in any log -----------------------------------------------------

# The project keys are left out: at "error_log debug" nginx core itself
# traces every request header, the caller's Authorization included.
push @secrets, map { $_->{access_token} } $slack, $notion, $github;
my $logs = join '', map { slurp($_) } glob("$Astralform::Test::ServRoot/logs/*");
for my $s (grep { $_ ne $ADMIN && $_ ne $AGENT } @secrets) {
    ok(index($logs, $s) < 0, 'no secret in the logs: ' . substr($s, 0, 6) . '...');
}

stop_nginx();
done_testing();

# --- helpers -----------------------------------------------------------------

sub spew { my ($f, $t) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $t; close $fh }
sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; <$fh> }

sub redis_flush {
    my $keys = redis_cmd('KEYS', 't050:*');
    redis_cmd('DEL', @$keys) if @$keys;
}

sub mock {
    my ($method, $path, $body) = @_;
    my ($st, $h, $b) = http_req($method, $path,
                                [ 'Content-Type' => 'application/json' ],
                                defined $body ? $json->encode($body) : undef,
                                { port => $mock });
    return $b =~ /^\s*[\{\[]/ ? $json->decode($b) : $b;
}

sub mint {
    my ($provider, $o) = @_;
    return mock('POST', '/__mock/tokens', { provider => $provider, %$o });
}

sub plant {
    my ($conn, $user, $tok, $kid, $key) = @_;
    redis_cmd('HSET', "t050:{p1}:tokens:$conn", $user,
              seal_token($key // $KEY, $kid // 'k2', 'p1', $conn, $user,
                         { type => 'oauth',
                           access_token => $tok->{access_token},
                           expires_at => 0, obtained_at => time() }));
}

sub req {
    my ($method, $path, $key, $body, %hdr) = @_;
    my @h = (Authorization => "Bearer $key", %hdr);
    push @h, 'Content-Type' => 'application/json' if defined $body;
    my ($st, $h, $b) = http_req($method, $path, \@h,
                                defined $body ? $json->encode($body) : undef,
                                { timeout => 10 });
    my $res = eval { $json->decode($b) } // { raw => $b };
    return ($st, $h, $res);
}

sub admin { my ($m, $p, $b) = @_; req($m, $p, $ADMIN, $b) }

sub call {
    my ($name, $args, %o) = @_;
    my %h;
    $h{'X-Astralform-User'} = $o{user} if $o{user};
    $h{'X-Astralform-Agent'} = $o{agent} if $o{agent};
    my @extra = @{ $o{extra} || [] };
    return req('POST', '/v1/projects/p1/tools/call', $AGENT,
               { name => $name, arguments => $args }, %h, @extra);
}
