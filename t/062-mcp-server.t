# The gateway as an MCP server (DESIGN 8): the streamable HTTP transport
# rules (sessions in Redis, Origin, MCP-Protocol-Version, 202, 405,
# DELETE, batches), the agents' endpoint (tools/list = GET /tools with
# titles and annotations, tools/call through the POST /tools/call engine,
# the connect prompt as -32042 or as a tool error, consent, the same call
# succeeding, cancellation), the admins' endpoint (the seven tools,
# project_id checked, secrets never returned), and a session opened on one
# instance serving on another.

use strict;
use warnings;

use Test::More;
use Time::HiRes ();
use Astralform::Test qw(:all);
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'the mock providers did not start';

my $cfg = oauth_config(prefix => 't062:', dir => 't/tmp/062',
    extra => "    astralform_mcp_client_origin https://claude.example;\n");

sub wipe { redis_cmd('DEL', $_) for @{ redis_cmd('KEYS', 't062:*') || [] } }
wipe();

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $PATH = '/v1/projects/p1/mcp';
my $id = 0;

# one JSON-RPC message; returns (status, headers, decoded body)
sub rpc {
    my ($msg, %o) = @_;
    my @h = ('Authorization' => 'Bearer ' . ($o{key} || $AGENT),
             'Content-Type' => 'application/json',
             'Accept' => 'application/json, text/event-stream');
    push @h, 'Mcp-Session-Id' => $o{sid} if defined $o{sid};
    push @h, 'MCP-Protocol-Version' => $o{version} if defined $o{version};
    push @h, 'X-Astralform-User' => $o{user} if defined $o{user};
    push @h, 'X-Astralform-Agent' => $o{agent} if defined $o{agent};
    push @h, 'Origin' => $o{origin} if defined $o{origin};
    my $body = ref $msg ? $JSON->encode($msg) : $msg;
    my ($st, $h, $text) = http_req($o{method} || 'POST', $o{path} || $PATH,
                                   \@h, $body,
                                   { port => $o{port}, timeout => 10 });
    my $d = eval { $JSON->decode($text) } // $text;
    return ($st, $h, $d, $text);
}

sub req { my ($m, $p) = @_; return { jsonrpc => '2.0', id => ++$id, method => $m, params => $p // {} } }

sub init {
    my (%o) = @_;
    my ($st, $h, $d) = rpc(req('initialize', {
        protocolVersion => $o{version} // '2025-11-25',
        capabilities => $o{caps} // {},
        clientInfo => { name => 't062', version => '1' } }), %o);
    return ($h->{'mcp-session-id'}, $d, $st);
}

# --- initialize and the transport rules -----------------------------------

my ($sid, $d, $st) = init(user => 'u1');
is($st, 200, 'initialize: 200');
like($sid // '', qr/\A[A-Za-z0-9_-]{43}\z/, 'a session id of 256 bits');
is($d->{result}{protocolVersion}, '2025-11-25', 'latest version');
ok($d->{result}{capabilities}{tools}, 'tools capability');
is($d->{result}{serverInfo}{name}, 'astralform', 'serverInfo');
ok(redis_cmd('PTTL', "t062:{p1}:mcp:$sid") > 3_500_000, 'session in Redis with a TTL');

my ($sid2, $d2) = init(version => '2025-06-18', user => 'u1');
is($d2->{result}{protocolVersion}, '2025-06-18', 'negotiates 2025-06-18');
(undef, $d2) = init(version => '2025-03-26');
is($d2->{result}{protocolVersion}, '2025-03-26', 'negotiates 2025-03-26');
(undef, $d2) = init(version => '2024-01-01');
is($d2->{result}{protocolVersion}, '2025-11-25', 'an unknown version gets the latest');

my ($s, $h);
($s, $h, $d) = rpc({ jsonrpc => '2.0', method => 'notifications/initialized' }, sid => $sid);
is($s, 202, 'a notification: 202');

redis_cmd('PEXPIRE', "t062:{p1}:mcp:$sid", 10000);
($s, $h, $d) = rpc(req('ping'), sid => $sid, version => '2025-11-25');
is($s, 200, 'ping: 200');
is_deeply($d->{result}, {}, 'ping: empty result');
ok(redis_cmd('PTTL', "t062:{p1}:mcp:$sid") > 3_500_000, 'the TTL slides on use');

($s, $h, $d) = rpc(req('ping'));
is($s, 400, 'no session id: 400');
is($d->{error}{code}, -32600, 'no session id: -32600');

($s, $h, $d) = rpc(req('ping'), sid => 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
is($s, 404, 'unknown session: 404');
($s) = rpc(req('ping'), sid => 'bad id!');
is($s, 404, 'a malformed session id: 404');

($s, $h, $d) = rpc(req('ping'), sid => $sid, version => '1999-01-01');
is($s, 400, 'unsupported MCP-Protocol-Version: 400');

($s, $h, $d) = rpc(req('ping'), sid => $sid, origin => 'https://evil.example');
is($s, 403, 'a foreign Origin: 403');
($s) = rpc(req('ping'), sid => $sid, origin => 'https://claude.example');
is($s, 200, 'an allowed Origin: 200');
($s) = rpc(req('ping'), sid => $sid,
           origin => "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}");
is($s, 200, "the gateway's own origin: 200");

($s, $h, $d) = rpc(undef, method => 'GET', sid => $sid);
is($s, 405, 'GET: 405');
like($h->{allow} // '', qr/POST/, 'GET: Allow header');

($s, $h, $d) = rpc([req('ping'), req('ping')], sid => $sid);
is($s, 400, 'a batch: 400');
is($d->{error}{code}, -32600, 'a batch: JSON-RPC invalid request');
like($d->{error}{message}, qr/batch/i, 'a batch: says why');

($s, $h, $d) = rpc('{"jsonrpc":', sid => $sid);
is($s, 400, 'not JSON: 400');
is($d->{error}{code}, -32700, 'not JSON: parse error');

($s, $h, $d) = rpc(req('no/such'), sid => $sid);
is($d->{error}{code}, -32601, 'unknown method: -32601');

($s, $h, $d) = rpc({ jsonrpc => '2.0', id => 99, result => {} }, sid => $sid);
is($s, 202, 'a response: 202');

($s, $h, $d) = rpc(req('ping'), sid => $sid, user => 'someone-else');
is($s, 403, 'another user on the session: 403');

($s) = rpc(req('ping'), sid => $sid, key => 'wrong-key');
is($s, 401, 'a bad key: 401');

# the admin endpoint does not take an agent session
($s) = rpc(req('ping'), sid => $sid, key => $ADMIN, path => '/v1/mcp');
is($s, 404, 'an agent session on the admin endpoint: 404');

# --- two instances: a session opened on one serves on the other -------------

{
    my $port2 = $ENV{TEST_NGINX_SERVER_PORT} + 1;
    my $root2 = "$ENV{TEST_NGINX_REPO}/t/tmp/062/second";
    File::Path::make_path("$root2/logs", "$root2/conf");
    my $conf = Astralform::Test::nginx_conf(
        http_config => $cfg->{http_config}, config => $cfg->{config},
        servroot => $root2, port => $port2);
    open my $fh, '>', "$root2/conf/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    system($Astralform::Test::Binary, '-p', "$root2/", '-c',
           "$root2/conf/nginx.conf") == 0 or die "second nginx";
    Astralform::Test::wait_port($port2);

    ($s, $h, $d) = rpc(req('tools/list'), sid => $sid, port => $port2);
    is($s, 200, 'second instance: the session works');
    ok(@{ $d->{result}{tools} || [] } > 0, 'second instance: tools listed');

    ($s) = rpc(undef, method => 'DELETE', sid => $sid2, port => $port2);
    is($s, 200, 'second instance: DELETE ends a session of the first');
    ($s) = rpc(req('ping'), sid => $sid2);
    is($s, 404, 'first instance: the ended session is gone');
    ($s) = rpc(undef, method => 'DELETE', sid => $sid2);
    is($s, 404, 'DELETE of an ended session: 404');

    if (open my $p, '<', "$root2/logs/nginx.pid") {
        my $pid = <$p>;
        chomp $pid;
        kill 'TERM', $pid;
        Time::HiRes::sleep(0.3);
    }
}

# --- agents: tools/list is GET /tools --------------------------------------

admin_api('PUT', '/v1/projects/p1/agents/gh-bot/connectors', { connectors => ['github'] });

my ($asid) = init(user => 'u1', agent => 'gh-bot');
($s, $h, $d) = rpc(req('tools/list'), sid => $asid);
my @names = sort map { $_->{name} } @{ $d->{result}{tools} };
my (undef, undef, $rest) = api('GET', '/v1/projects/p1/tools', undef, agent => 'gh-bot');
is_deeply(\@names, [sort map { $_->{name} } @{ $rest->{tools} }],
          'tools/list = GET /tools for the agent');
is_deeply(\@names, [qw(github_list_repos github_search_issues)],
          'only the assigned connector');
my ($repos) = grep { $_->{name} eq 'github_list_repos' } @{ $d->{result}{tools} };
is($repos->{title}, 'GitHub: list repos', 'a title');
is($repos->{inputSchema}{type}, 'object', 'inputSchema');
is($repos->{annotations}{readOnlyHint}, JSON::PP::true, 'readOnlyHint for a GET tool');

# --- tools/call: the connect prompt, consent, the same call ----------------

my $call = { name => 'github_list_repos', arguments => {} };

($s, $h, $d) = rpc(req('tools/call', $call), sid => $asid);
is($s, 200, 'not connected: 200');
ok($d->{result}{isError}, 'not connected, no URL elicitation: isError');
my ($link) = ($d->{result}{content}[0]{text} // '') =~ m{(http://\S+/v1/connectors/oauth/authorize\?session=\S+)};
ok($link, 'the text gives the connect link');
like($d->{result}{content}[0]{text}, qr/retry/, 'and says to retry');

my ($esid) = init(user => 'u1', agent => 'gh-bot',
                  caps => { elicitation => { url => {} } });
($s, $h, $d) = rpc(req('tools/call', $call), sid => $esid);
is($d->{error}{code}, -32042, 'with URL elicitation: -32042');
my $el = $d->{error}{data}{elicitations}[0] // {};
is($el->{mode}, 'url', 'elicitation mode url');
like($el->{url} // '', qr{/v1/connectors/oauth/authorize\?session=}, 'elicitation url');
ok($el->{elicitationId} && $el->{message}, 'elicitationId and message');

my $r = connect_flow(browser(), $link);
is($r->{callback} && $r->{callback}->code, 200, 'consent completed');

($s, $h, $d) = rpc(req('tools/call', $call), sid => $asid);
ok(!$d->{result}{isError}, 'after consent: the same call succeeds');
ok(ref $d->{result}{structuredContent} || ref $JSON->decode($d->{result}{content}[0]{text}),
   'the result as JSON text');

($s, $h, $d) = rpc(req('tools/call', { name => 'no_such_tool', arguments => {} }), sid => $asid);
is($d->{error}{code}, -32602, 'unknown tool: -32602');

($s, $h, $d) = rpc(req('tools/call', { name => 'github_list_repos', arguments => { nope => 1 } }), sid => $asid);
ok($d->{result}{isError}, 'bad arguments: isError');
like($d->{result}{content}[0]{text}, qr/invalid_arguments/, 'bad arguments: the gateway code');

($s, $h, $d) = rpc(req('tools/call', { name => 'slack_list_channels', arguments => {} }), sid => $asid);
like($d->{result}{content}[0]{text} // '', qr/tool_not_assigned/, 'not assigned: isError with the code');

# --- cancellation aborts the provider call ---------------------------------

mock('POST', '/__mock/behaviour', { prefix => '/github/api/user/repos', hang_ms => 8000, count => 1 });
my $cid = ++$id;
my $pid = fork();
if ($pid == 0) {
    Time::HiRes::sleep(0.5);
    rpc({ jsonrpc => '2.0', method => 'notifications/cancelled',
          params => { requestId => $cid, reason => 'test' } }, sid => $asid);
    exit 0;
}
my $t0 = Time::HiRes::time();
($s, $h, $d) = rpc({ jsonrpc => '2.0', id => $cid, method => 'tools/call', params => $call }, sid => $asid);
my $took = Time::HiRes::time() - $t0;
waitpid($pid, 0);
is($d->{error}{code}, -32800, "a cancelled call: answered as cancelled") or diag(explain($d));
ok($took < 3, sprintf('cancelled at once (%.1fs), not after the provider', $took));
mock('DELETE', '/__mock/behaviour');

# --- admins: the seven tools -----------------------------------------------

my ($msid) = init(key => $ADMIN, path => '/v1/mcp');
ok($msid, 'admin session');
sub admin { my ($m, $p) = @_; return rpc(req($m, $p), sid => $msid, key => $ADMIN, path => '/v1/mcp') }
sub tool { my ($n, $a) = @_; my (undef, undef, $x, $t) = admin('tools/call', { name => $n, arguments => $a }); return ($x->{result} // $x, $t) }

($s, $h, $d) = admin('tools/list');
is_deeply([sort map { $_->{name} } @{ $d->{result}{tools} }],
          [sort qw(astralform_connector_catalog astralform_list_connectors
                   astralform_enable_connector astralform_update_project_connector
                   astralform_disable_connector astralform_assign_connectors
                   astralform_connector_status)], 'the seven admin tools');
my ($en) = grep { $_->{name} eq 'astralform_enable_connector' } @{ $d->{result}{tools} };
is_deeply([sort keys %{ $en->{inputSchema}{properties} }],
          [sort qw(project_id connector_slug oauth_client_id oauth_client_secret api_key
                   mcp_url oauth_scopes require_auth allow_end_user_auth id)],
          'enable: the HTTP fields');

my ($res, $text) = tool('astralform_connector_catalog', { project_id => 'p1' });
ok(!$res->{isError} && grep({ $_->{slug} eq 'openweather' } @{ $res->{structuredContent}{connectors} }), 'catalog');

my $svc = 'mcp-admin-openweather-key-7d1e0f';
($res, $text) = tool('astralform_enable_connector',
                     { project_id => 'p1', connector_slug => 'openweather', api_key => $svc });
ok(!$res->{isError}, 'enable');
is($res->{structuredContent}{has_api_key}, JSON::PP::true, 'enable: has_api_key');
unlike($text, qr/\Q$svc\E/, 'enable: the key is not returned');

($res) = tool('astralform_enable_connector', { project_id => 'p2', connector_slug => 'openweather' });
like($res->{content}[0]{text}, qr/project_not_found/, "another project's id: refused");

($res, $text) = tool('astralform_list_connectors', { project_id => 'p1' });
ok(grep({ $_->{id} eq 'openweather' } @{ $res->{structuredContent}{connectors} }), 'list');
unlike($text, qr/\Q$svc\E|\Q$SECRET\E/, 'list: no secret');

($res) = tool('astralform_update_project_connector',
              { project_id => 'p1', connector_id => 'openweather', require_auth => JSON::PP::false });
is($res->{structuredContent}{require_auth}, JSON::PP::false, 'update');

($res) = tool('astralform_update_project_connector', { project_id => 'p1', connector_id => 'github', require_auth => JSON::PP::false });
like($res->{content}[0]{text}, qr/read_only/, 'update of a config connector: read_only');

($res) = tool('astralform_assign_connectors', { project_id => 'p1', agent_id => 'bot-2', connectors => ['openweather'] });
is_deeply($res->{structuredContent}{connectors}, ['openweather'], 'assign');

($res) = tool('astralform_connector_status', { project_id => 'p1', connector_id => 'github', agent_id => 'bot-2', user_id => 'u1' });
is($res->{structuredContent}{checks}{assigned}{ok}, JSON::PP::false, 'status: not assigned');
is($res->{structuredContent}{checks}{authenticated}{ok}, JSON::PP::true, 'status: u1 connected');

($res) = tool('astralform_disable_connector', { project_id => 'p1', connector_id => 'openweather' });
is($res->{structuredContent}{revoked_tokens}, 0, 'disable: revoked_tokens');

($res) = tool('astralform_disable_connector', { project_id => 'p1' });
like($res->{content}[0]{text}, qr/connector_id/, 'disable without connector_id: says so');

($s, $h, $d) = admin('tools/call', { name => 'astralform_nope', arguments => {} });
is($d->{error}{code}, -32602, 'unknown admin tool: -32602');

($s) = rpc(req('initialize', { protocolVersion => '2025-11-25', capabilities => {} }), path => '/v1/mcp');
is($s, 403, 'the admin endpoint with an agent key: 403');

unlike(error_log_text(), qr/\[(?:alert|crit|emerg)\]/, 'no alert in the log');
unlike(error_log_text(), qr/\Q$svc\E/, 'no secret in the log');

stop_nginx();
wipe();
done_testing();
