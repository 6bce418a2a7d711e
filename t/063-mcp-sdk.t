# The gateway's MCP endpoints (DESIGN 8) as the official TypeScript SDK
# client (@modelcontextprotocol/sdk, t/clients) sees them: Client +
# StreamableHTTPClientTransport connect, list and call tools on the agents'
# endpoint (URL elicitation -32042 as UrlElicitationRequiredError, consent,
# the same session's retry; the connect prompt as a tool error for a client
# without it; provider errors; unknown tools), run the seven admin tools on
# the admins' endpoint, and end a session with DELETE. No secret in any
# answer the client got nor in any log.
#
# t/clients/sdk-client.mjs runs as a co-process: one JSON step per line in,
# one JSON answer per line out, so the test consents between two calls of
# one SDK session.

use strict;
use warnings;

use Test::More;
use IO::Select;
use IPC::Open3 ();
use POSIX ();
use Symbol ();
use Time::HiRes ();
use Astralform::Test qw(:all);
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'the mock providers did not start';

my $repo = $ENV{TEST_NGINX_REPO};
my $script = "$repo/t/clients/sdk-client.mjs";
my $sdk = "$repo/t/clients/node_modules/\@modelcontextprotocol/sdk/package.json";
my $node_v = `node --version 2>/dev/null` // '';
missing_part("node is not installed (t/node)") unless $node_v =~ /^v\d+/;
missing_part("the MCP TypeScript SDK is not installed in t/clients")
    unless -f $sdk;

# github and notion from nginx.conf; slack is enabled through the admins'
# endpoint, with a client secret
my $cfg = oauth_config(prefix => 't063:', dir => 't/tmp/063', connectors => 0);
my $tmp = $cfg->{dir};
$cfg->{http_config} .= <<"_EOC_";
    astralform_connector p1 github client_id=github-cid client_secret_file=$tmp/client.secret;
    astralform_connector p1 notion client_id=notion-cid client_secret_file=$tmp/client.secret;
_EOC_

sub wipe { redis_cmd('DEL', $_) for @{ redis_cmd('KEYS', 't063:*') || [] } }
wipe();
mock('POST', '/__mock/reset', { all => JSON::PP::true });

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $BASE = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $AGENT_URL = "$BASE/v1/projects/p1/mcp";
my $ADMIN_URL = "$BASE/v1/mcp";

# --- the SDK client as a co-process ----------------------------------------

my $nclients = 0;

# sdk(url => .., key => .., user => .., agent => .., elicitation => 1,
#     session => ..): a running client; its transcript goes to a log file
# that scan_logs reads
sub sdk {
    my (%o) = @_;
    my @cmd = ('node', $script, '--url', $o{url} // $AGENT_URL,
               '--key', $o{key} // $AGENT, '--timeout', 60000);
    push @cmd, '--user', $o{user} if defined $o{user};
    push @cmd, '--agent', $o{agent} if defined $o{agent};
    push @cmd, '--session', $o{session} if defined $o{session};
    push @cmd, '--elicitation-url' if $o{elicitation};
    my $n = ++$nclients;
    my $log = "$tmp/sdk-$n.log";
    open my $err, '>', "$log.stderr" or die $!;
    my ($in, $out) = (Symbol::gensym(), Symbol::gensym());
    my $pid = IPC::Open3::open3($in, $out, '>&' . fileno($err), @cmd);
    close $err;
    push @Astralform::OAuth::ExtraLogs, $log, "$log.stderr";
    open my $t, '>', $log or die $!;
    return { pid => $pid, in => $in, out => $out, buf => '', log => $t,
             name => "sdk-$n", errfile => "$log.stderr" };
}

# One step; returns the decoded answer (or { fatal => why }).
sub step {
    my ($c, $s) = @_;
    my $line = $JSON->encode($s);
    print { $c->{log} } "> $s->{op}\n";      # the answers only: the steps carry secrets
    syswrite($c->{in}, "$line\n");
    my $sel = IO::Select->new($c->{out});
    my $deadline = Time::HiRes::time() + 30;
    while ($c->{buf} !~ /\n/) {
        my $left = $deadline - Time::HiRes::time();
        return { fatal => 'no answer in 30 s' } if $left <= 0;
        next unless $sel->can_read($left);
        my $got = sysread($c->{out}, $c->{buf}, 65536, length $c->{buf});
        if (!$got) {
            my $err = do { local (@ARGV, $/) = $c->{errfile}; <> } // '';
            missing_part("the SDK client cannot run: $err") if $err =~ /^SKIP /m;
            return { fatal => "the client exited: $err" };
        }
    }
    $c->{buf} =~ s/\A([^\n]*)\n//;
    my $ans = $1;
    print { $c->{log} } "< $ans\n";
    my $d = eval { $JSON->decode($ans) } // { fatal => "not JSON: $ans" };
    diag("$c->{name} $s->{op}: fatal $d->{fatal}") if $d->{fatal};
    return $d;
}

sub done_client {
    my ($c) = @_;
    close $c->{in};
    my $deadline = Time::HiRes::time() + 10;
    while (waitpid($c->{pid}, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $deadline) {
            kill 'TERM', $c->{pid};
            waitpid($c->{pid}, 0);
            last;
        }
        Time::HiRes::sleep(0.05);
    }
    close $c->{log};
    return $? >> 8;
}

sub call { my ($c, $name, $args) = @_; step($c, { op => 'callTool', name => $name, arguments => $args // {} }) }

sub text_of { my ($r) = @_; return ($r->{result}{content} || [])->[0]{text} // '' }

# --- 1. the agents' endpoint: connect, tools/list = GET /tools ---------------

admin_api('PUT', '/v1/projects/p1/agents/gh-bot/connectors',
          { connectors => ['github', 'notion'] });

my $a1 = sdk(user => 'u1', agent => 'gh-bot', elicitation => 1);
my $r = step($a1, { op => 'connect' });
ok($r->{ok}, 'agent: the SDK connects') or diag(explain($r));
is($r->{result}{protocolVersion}, '2025-11-25', 'the version the SDK asks for');
like($r->{result}{sessionId} // '', qr/\A[A-Za-z0-9_-]{43}\z/, 'a session id');
ok($r->{result}{serverCapabilities}{tools}, 'the tools capability');
is($r->{result}{serverVersion}{name}, 'astralform', 'serverInfo');
ok(!$r->{async_errors}, 'no transport error (GET 405 is a stream refused)')
    or diag(explain($r->{async_errors}));
my $sid1 = $r->{result}{sessionId};

$r = step($a1, { op => 'listTools' });
ok($r->{ok}, 'agent: listTools') or diag(explain($r));
my @tools = @{ $r->{result}{tools} || [] };
my (undef, undef, $rest) = api('GET', '/v1/projects/p1/tools', undef,
                               agent => 'gh-bot', user => 'u1');
my @rest = @{ $rest->{tools} || [] };
ok(@rest >= 4, scalar(@rest) . ' tools over HTTP');
is_deeply([sort map { $_->{name} } @tools], [sort map { $_->{name} } @rest],
          'listTools = GET /tools of the agent');
my %rest = map { $_->{name} => $_ } @rest;
for my $t (@tools) {
    my $h = $rest{ $t->{name} } // {};
    my $ok = ref $t->{inputSchema} eq 'HASH' && $t->{inputSchema}{type} eq 'object'
        && length($t->{title} // '') && ref $t->{annotations} eq 'HASH'
        && defined $t->{description};
    ok($ok, "$t->{name}: inputSchema, title, annotations, description")
        or diag(explain($t));
    is_deeply([$t->{inputSchema}, $t->{description}],
              [$h->{input_schema}, $h->{description}],
              "$t->{name}: the schema and description of GET /tools");
}
my ($repos) = grep { $_->{name} eq 'github_list_repos' } @tools;
is($repos->{annotations}{readOnlyHint}, JSON::PP::true, 'readOnlyHint of a read');

# --- 2. not connected, URL elicitation: UrlElicitationRequiredError ----------

my ($call, $q) = ('github_search_issues', { q => 'crash' });
$r = call($a1, $call, $q);
ok(!$r->{ok}, 'not connected: callTool throws');
is($r->{error}{class}, 'UrlElicitationRequiredError', 'as UrlElicitationRequiredError')
    or diag(explain($r));
is($r->{error}{code}, -32042, 'code -32042');
my $el = ($r->{error}{elicitations} || [])->[0] // {};
is($el->{mode}, 'url', 'elicitations[0].mode url');
like($el->{url} // '', qr{\A\Q$BASE\E/v1/connectors/oauth/authorize\?session=[A-Za-z0-9._-]+\z},
     'elicitations[0].url: the connect link');
ok(length($el->{elicitationId} // '') && length($el->{message} // ''),
   'elicitationId and message');
is_deeply($r->{error}{data}{elicitations}, $r->{error}{elicitations},
          'err.data.elicitations');

my $flow = connect_flow(browser(), $el->{url});
is($flow->{callback} && $flow->{callback}->code, 200,
   'consent through the elicitation url');

$r = call($a1, $call, $q);
ok($r->{ok} && !$r->{result}{isError}, 'the same session: the retry succeeds')
    or diag(explain($r));
my $text = text_of($r);
my $as_json = eval { $JSON->decode($text) };
ok(ref $as_json, 'content[0]: the result as JSON text');
is(($r->{result}{content}[0] || {})->{type}, 'text', 'content type text');
ok(ref $r->{result}{structuredContent} eq 'HASH', 'structuredContent');
is_deeply($r->{result}{structuredContent}, $as_json, 'structuredContent is the text');
ok(exists $as_json->{total_count}, 'the search result');

# an array result: text only (structuredContent is an object)
$r = call($a1, 'github_list_repos');
ok($r->{ok} && !$r->{result}{isError}, 'an array result');
ok(ref eval { $JSON->decode(text_of($r)) } eq 'ARRAY', 'as JSON text');
ok(!exists $r->{result}{structuredContent}, 'without structuredContent');

# --- 3. no URL elicitation: a tool error with the link ----------------------

my $a3 = sdk(user => 'u3', agent => 'gh-bot');
$r = step($a3, { op => 'connect' });
ok($r->{ok}, 'no elicitation capability: connects');
$r = call($a3, $call, $q);
ok($r->{ok}, 'not connected, no URL elicitation: a result, not a throw')
    or diag(explain($r));
is($r->{result}{isError}, JSON::PP::true, 'isError');
$text = text_of($r);
my ($link) = $text =~ m{(\Q$BASE\E/v1/connectors/oauth/authorize\?session=[A-Za-z0-9._-]+)};
ok($link, 'the text carries the connect link') or diag($text);
like($text, qr/retry/i, 'and says to retry');
$flow = connect_flow(browser(), $link);
is($flow->{callback} && $flow->{callback}->code, 200, 'u3: consent');
$r = call($a3, $call, $q);
ok($r->{ok} && !$r->{result}{isError}, 'u3: the same session retries and succeeds');
is(done_client($a3), 0, 'u3 client: exit 0');

# --- 4. provider errors, unknown tools --------------------------------------

behave(prefix => '/github/api/search/issues', status => 500,
       body => { message => 'Server Error' }, count => 1);
$r = call($a1, $call, $q);
ok($r->{ok}, 'a provider error: a result');
is($r->{result}{isError}, JSON::PP::true, 'provider error: isError');
like(text_of($r), qr/provider_error/, 'provider error: the gateway code');

$r = call($a1, $call, { q => 'crash', nope => 1 });
is($r->{result}{isError}, JSON::PP::true, 'bad arguments: isError');
like(text_of($r), qr/invalid_arguments/, 'bad arguments: the gateway code');

$r = call($a1, 'no_such_tool');
ok(!$r->{ok}, 'unknown tool: throws');
is($r->{error}{class}, 'McpError', 'unknown tool: McpError');
is($r->{error}{code}, -32602, 'unknown tool: -32602');

$r = step($a1, { op => 'ping' });
ok($r->{ok}, 'ping');

# the SDK gives up a call (its request timeout) and sends
# notifications/cancelled: the gateway drops the provider request and
# answers -32800 at once, not the provider timeout (2 s) a result later
behave(prefix => '/github/api/search/issues', hang_ms => 8000, count => 1);
$r = step($a1, { op => 'callTool', name => $call, arguments => $q, timeout => 700 });
is($r->{error}{code}, -32001, 'the SDK times the call out (RequestTimeout)')
    or diag(explain($r));
$r = step($a1, { op => 'sleep', ms => 2500 });
my @late = map { $_->{message} // '' } @{ $r->{async_errors} || [] };
ok(grep({ /unknown message ID: .*"code":-32800/ } @late),
   'the cancelled call was answered as cancelled') or diag(explain(\@late));
mock('DELETE', '/__mock/behaviour');

# the SDK reconnects to a live session: no initialize, no
# MCP-Protocol-Version header (the server assumes 2025-03-26)
my $re = sdk(user => 'u1', agent => 'gh-bot', session => $sid1);
$r = step($re, { op => 'connect' });
ok($r->{ok} && !defined $r->{result}{protocolVersion}, 'reconnect: no initialize');
$r = step($re, { op => 'listTools' });
is_deeply([sort map { $_->{name} } @{ $r->{result}{tools} || [] }],
          [sort map { $_->{name} } @tools], 'reconnect: the session serves');
$r = call($re, $call, $q);
ok($r->{ok} && !$r->{result}{isError}, 'reconnect: the call works');
is(done_client($re), 0, 'reconnected client: exit 0');

# --- 6. terminateSession: DELETE, then the session is gone ------------------

ok(redis_cmd('EXISTS', "t063:{p1}:mcp:$sid1"), 'the session is in Redis');
$r = step($a1, { op => 'terminate' });
ok($r->{ok}, 'terminateSession') or diag(explain($r));
is($r->{result}{terminated}, $sid1, 'of the session');
ok(!$r->{result}{sessionId}, 'the transport forgot it');
ok(!redis_cmd('EXISTS', "t063:{p1}:mcp:$sid1"), 'the session is gone from Redis');
is(done_client($a1), 0, 'agent client: exit 0');

my $old = sdk(user => 'u1', agent => 'gh-bot', session => $sid1);
$r = step($old, { op => 'connect' });
ok($r->{ok}, 'a client on the old session id (no initialize)');
$r = step($old, { op => 'listTools' });
ok(!$r->{ok}, 'the ended session: an error');
is($r->{error}{class}, 'StreamableHTTPError', 'StreamableHTTPError');
is($r->{error}{code}, 404, 'HTTP 404');
done_client($old);

# --- 5. the admins' endpoint ------------------------------------------------

my $svc = 'sdk-openweather-key-5c1d9e77';
my $cs1 = 'sdk-slack2-secret-a8e04b21';
my $cs2 = 'sdk-slack2-secret-rotated-39fd10';
remember_secret($svc, $cs1, $cs2);

my $m = sdk(url => $ADMIN_URL, key => $ADMIN);
$r = step($m, { op => 'connect' });
ok($r->{ok}, 'admin: the SDK connects') or diag(explain($r));
$r = step($m, { op => 'listTools' });
is_deeply([sort map { $_->{name} } @{ $r->{result}{tools} || [] }],
          [sort qw(astralform_connector_catalog astralform_list_connectors
                   astralform_enable_connector astralform_update_project_connector
                   astralform_disable_connector astralform_assign_connectors
                   astralform_connector_status)], 'admin: the seven tools');

sub admin_tool {
    my ($name, $args) = @_;
    my $x = call($m, $name, $args);
    ok($x->{ok}, "$name: a result") or diag(explain($x));
    return $x->{result} // {};
}

my $res = admin_tool('astralform_enable_connector',
    { project_id => 'p1', connector_slug => 'openweather', api_key => $svc });
ok(!$res->{isError}, 'enable openweather') or diag(explain($res));
is($res->{structuredContent}{has_api_key}, JSON::PP::true, 'enable: has_api_key');

$res = admin_tool('astralform_enable_connector',
    { project_id => 'p1', connector_slug => 'slack', id => 'slack2',
      oauth_client_id => 'slack2-cid', oauth_scopes => ['channels:read'], oauth_client_secret => $cs1 });
ok(!$res->{isError}, 'enable slack2 with a client secret') or diag(explain($res));
is($res->{structuredContent}{id}, 'slack2', 'enable: the id');

$res = admin_tool('astralform_list_connectors', { project_id => 'p1' });
is_deeply([sort grep { /^(?:openweather|slack2)$/ }
                map { $_->{id} } @{ $res->{structuredContent}{connectors} || [] }],
          ['openweather', 'slack2'], 'list: both enabled');

$res = admin_tool('astralform_update_project_connector',
    { project_id => 'p1', connector_id => 'slack2', oauth_client_secret => $cs2,
      require_auth => JSON::PP::false });
ok(!$res->{isError}, 'update: a new client secret') or diag(explain($res));
is($res->{structuredContent}{require_auth}, JSON::PP::false, 'update: require_auth');

$res = admin_tool('astralform_assign_connectors',
    { project_id => 'p1', agent_id => 'sl-bot', connectors => ['slack2'] });
is_deeply($res->{structuredContent}{connectors}, ['slack2'], 'assign');

# u2 connects to slack2, so that disabling has a token to revoke
my $auth = start_link('slack2', 'u2');
ok($auth, 'u2: a connect link for slack2');
$flow = connect_flow(browser(), $auth);
is($flow->{callback} && $flow->{callback}->code, 200, 'u2: consent to slack2');

$res = admin_tool('astralform_connector_status',
    { project_id => 'p1', connector_id => 'slack2', agent_id => 'sl-bot', user_id => 'u2' });
is($res->{structuredContent}{checks}{assigned}{ok}, JSON::PP::true, 'status: assigned');
is($res->{structuredContent}{checks}{authenticated}{ok}, JSON::PP::true, 'status: u2 connected');

$res = admin_tool('astralform_enable_connector',
    { project_id => 'p2', connector_slug => 'openweather', api_key => $svc });
is($res->{isError}, JSON::PP::true, "another project's id: a tool error");
like(($res->{content} || [])->[0]{text} // '', qr/project_not_found/,
     'project_id mismatch: refused');

$res = admin_tool('astralform_disable_connector', { project_id => 'p1', connector_id => 'slack2' });
ok(!$res->{isError}, 'disable slack2') or diag(explain($res));
is($res->{structuredContent}{revoked_tokens}, 1, "disable: u2's token revoked");
$res = admin_tool('astralform_disable_connector', { project_id => 'p1', connector_id => 'openweather' });
is($res->{structuredContent}{revoked_tokens}, 0, 'disable openweather: nothing to revoke');

$r = step($m, { op => 'terminate' });
ok($r->{ok}, 'admin: terminateSession');
is(done_client($m), 0, 'admin client: exit 0');

# an agent key on the admins' door
my $bad = sdk(url => $ADMIN_URL, key => $AGENT);
$r = step($bad, { op => 'connect' });
ok(!$r->{ok}, 'admin endpoint with an agent key: connect fails');
is($r->{error}{code}, 403, 'with HTTP 403');
done_client($bad);

# --- no secret anywhere -----------------------------------------------------

secrets_from_mock();
unlike(error_log_text(), qr/\[(?:alert|crit|emerg)\]/, 'no alert in the log');
scan_logs();

stop_nginx();
wipe();
done_testing();
