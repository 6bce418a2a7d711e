# Claude Code against the gateway (DESIGN 8): the plugin in
# contrib/claude-code passes `claude plugin validate --strict` (marketplace
# and plugin) and installs from its marketplace; its .mcp.json, filled from
# ASTRALFORM_URL and ASTRALFORM_ADMIN_KEY, connects to the admin endpoint;
# `claude mcp add --transport http ... --header ...` connects to the agent
# endpoint and to the admin endpoint. Each "Connected" is Claude Code's own
# initialize against nginx; the session it opened is checked in Redis.
# Wrong keys do not connect. Then `claude -p` runs the plugin's commands
# against a scripted model (t/mock/anthropic.js): each command's
# allowed-tools let its admin tools through to the gateway, and nothing
# else. No key reaches a log or an answer.

use strict;
use warnings;

use Test::More;
use File::Temp ();
use Time::HiRes ();
use Astralform::Test qw(:all);
use Astralform::OAuth;

my $CLAUDE = "$ENV{TEST_NGINX_REPO}/t/clients/node_modules/.bin/claude";
-x $CLAUDE or missing_part('Claude Code CLI not installed (t/clients)');

my $MARKET = "$ENV{TEST_NGINX_REPO}/contrib/claude-code";
my $PLUGIN = "$MARKET/plugins/astralform";
my $TOOL = 'mcp__plugin_astralform_astralform__';

my $cfg = oauth_config(prefix => 't064:', dir => 't/tmp/064');

sub wipe { redis_cmd('DEL', $_) for @{ redis_cmd('KEYS', 't064:*') || [] } }
wipe();

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $BASE = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $WRONG = 'claude-wrong-key-5e6f7a8b9c0d';
remember_secret($WRONG);

# Claude Code with a home and a project folder of its own, offline
my $home = File::Temp::tempdir('t064-home-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $work = File::Temp::tempdir('t064-work-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @Outputs;

sub slurp { my ($f) = @_; open my $fh, '<', $f or return undef; local $/; return <$fh> }

# runs claude with @args (and %env); returns (exit status, stdout+stderr)
sub claude {
    my ($args, %env) = @_;
    my $cwd = delete $env{cwd} // $work;
    local %ENV = (%ENV, HOME => $home,
                  PATH => "$ENV{TEST_NGINX_REPO}/t/node/node_modules/.bin:$ENV{PATH}",
                  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC => 1,
                  DISABLE_AUTOUPDATER => 1, %env);
    my $cmd = join ' ', 'cd', Astralform::Test::_shq($cwd), '&&', 'timeout 90',
              map { Astralform::Test::_shq($_) } $CLAUDE, @$args;
    my $out = `$cmd 2>&1`;
    my $rc = $? >> 8;
    push @Outputs, $out;
    return ($rc, $out);
}

# `claude mcp get NAME`: its Status line, and the output without the
# Headers block (which shows what the test configured)
sub mcp_get {
    my ($name, %env) = @_;
    my ($rc, $out) = claude(['mcp', 'get', $name], %env);
    my ($status) = $out =~ /^\s*Status:\s*(.+?)\s*$/m;
    (my $rest = $out) =~ s/^\s*Headers:\n(?:\s{4,}.*\n)*//m;
    return ($status // "(no status) $out", $rest, $out);
}

sub sessions { return { map { $_ => 1 } @{ redis_cmd('KEYS', 't064:{p1}:mcp:*') || [] } } }

# the session `claude mcp get` opened, decoded from Redis
sub new_session {
    my ($before) = @_;
    my @new = grep { !$before->{$_} } keys %{ sessions() };
    return (scalar @new, @new ? $JSON->decode(redis_cmd('GET', $new[0])) : {});
}

# --- the plugin validates ---------------------------------------------------

my ($rc, $out) = claude(['--version']);
like($out, qr/^2\.\d+\.\d+ \(Claude Code\)/m, "claude --version: $out");

for my $dir ($MARKET, $PLUGIN) {
    ($rc, $out) = claude(['plugin', 'validate', '--strict', '--json', $dir]);
    my $v = eval { $JSON->decode($out) } || {};
    is($rc, 0, "validate --strict $dir: exit 0") or diag($out);
    ok($v->{success} && $v->{strict}, 'validate: success under --strict');
    is_deeply([@{ $v->{manifest}{errors} || ['?'] },
               @{ $v->{manifest}{warnings} || ['?'] }], [],
              'validate: no error, no warning');
    ($rc, $out) = claude(['plugin', 'validate', '--strict', $dir]);
    like($out, qr/Validation passed/, 'validate: says it passed');
}

($rc, $out) = claude(['plugin', 'validate', '--strict', '--json', $PLUGIN]);
my $v = eval { $JSON->decode($out) } || {};
is_deeply($v->{provides}{mcpServers},
          [{ name => 'astralform', type => 'http',
             target => '${ASTRALFORM_URL}/v1/mcp' }],
          'the plugin provides the admin endpoint over http');
is_deeply([sort @{ $v->{provides}{commands} || [] }],
          [map { "astralform:astralform-$_" }
               qw(assign-connectors connectors disable-connector
                  enable-connector update-connector)],
          'the plugin provides the five commands');

my $market = $JSON->decode(slurp("$MARKET/.claude-plugin/marketplace.json"));
is_deeply([map { $_->{name} } @{ $market->{plugins} }], ['astralform'],
          'the marketplace holds one plugin');
ok(-f "$MARKET/$market->{plugins}[0]{source}/.claude-plugin/plugin.json",
   "the marketplace's source is the plugin");

# every command pre-approves tools of the admin server only, by their names
my %admin_tools;
{
    my ($sid) = do {
        my ($s, $h) = http_req('POST', '/v1/mcp',
            ['Authorization' => "Bearer $ADMIN",
             'Content-Type' => 'application/json',
             'Accept' => 'application/json, text/event-stream'],
            $JSON->encode({ jsonrpc => '2.0', id => 1, method => 'initialize',
                            params => { protocolVersion => '2025-11-25',
                                        capabilities => {},
                                        clientInfo => { name => 't064', version => '1' } } }));
        $h->{'mcp-session-id'};
    };
    my (undef, undef, $text) = http_req('POST', '/v1/mcp',
        ['Authorization' => "Bearer $ADMIN", 'Mcp-Session-Id' => $sid,
         'MCP-Protocol-Version' => '2025-11-25',
         'Content-Type' => 'application/json',
         'Accept' => 'application/json, text/event-stream'],
        $JSON->encode({ jsonrpc => '2.0', id => 2, method => 'tools/list' }));
    %admin_tools = map { $_->{name} => $_ } @{ $JSON->decode($text)->{result}{tools} };
}
for my $f (glob "$PLUGIN/commands/*.md") {
    my $md = slurp($f);
    my ($allowed) = $md =~ /^allowed-tools:\s*(.+)$/m;
    my @tools = map { s/^\Q$TOOL\E//r } split /\s*,\s*/, $allowed // '';
    my @unknown = grep { !$admin_tools{$_} } @tools;
    ok(@tools && !@unknown, "$f: allowed-tools are admin tools, by their names")
        or diag("not admin tools: @unknown");
    # the text says which tool to call with which arguments, by their names
    for my $t (grep { $admin_tools{$_} } @tools) {
        like($md, qr/\Q$TOOL$t\E/, "$f: names $t");
        my @args = sort keys %{ $admin_tools{$t}{inputSchema}{properties} };
        my @missing = grep { $md !~ /`\Q$_\E`/ } @args;
        ok(!@missing, "$f: names the arguments of $t") or diag("missing: @missing");
    }
}

# a broken copy fails, so the checks above can fail
{
    my $copy = File::Temp::tempdir('t064-bad-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    system('cp', '-r', $PLUGIN, "$copy/astralform") == 0 or die 'cp';
    my $cmd = "$copy/astralform/commands/astralform-connectors.md";
    my $md = slurp($cmd);
    $md =~ s/^description:/descriptio:/m;
    spew($cmd, $md);
    ($rc, $out) = claude(['plugin', 'validate', '--strict', "$copy/astralform"]);
    isnt($rc, 0, 'a command without a description fails --strict');
}

# --- the plugin from its marketplace, on the admin endpoint -----------------

($rc, $out) = claude(['plugin', 'marketplace', 'add', $MARKET]);
is($rc, 0, 'marketplace add') or diag($out);
($rc, $out) = claude(['plugin', 'install', 'astralform@astralform']);
is($rc, 0, 'plugin install astralform@astralform') or diag($out);
($rc, $out) = claude(['plugin', 'list']);
like($out, qr/astralform\@astralform.*?Status:\s*\S+\s*enabled/s, 'the plugin is enabled');

my $before = sessions();
my ($status, $rest, $all) = mcp_get('plugin:astralform:astralform',
    ASTRALFORM_URL => $BASE, ASTRALFORM_ADMIN_KEY => $ADMIN);
like($status, qr/Connected/, "plugin server: $status");
like($all, qr{URL: \Q$BASE\E/v1/mcp}, 'plugin server: the URL from ASTRALFORM_URL');
unlike($all, qr/\Q$ADMIN\E/, 'plugin server: the admin key is not shown');
my ($n, $sess) = new_session($before);
is($n, 1, 'plugin server: Claude Code opened one session');
is($sess->{kind}, 'admin', 'plugin server: an admin session');
is($sess->{version}, '2025-11-25', 'plugin server: version 2025-11-25');

($status) = mcp_get('plugin:astralform:astralform',
    ASTRALFORM_URL => $BASE, ASTRALFORM_ADMIN_KEY => $WRONG);
unlike($status, qr/\bConnected/, "plugin server, wrong admin key: $status");
($status) = mcp_get('plugin:astralform:astralform',
    ASTRALFORM_URL => $BASE, ASTRALFORM_ADMIN_KEY => $AGENT);
unlike($status, qr/\bConnected/, "plugin server, an agent key: $status");

# --- claude mcp add: the agent endpoint and the admin endpoint ---------------

($rc, $out) = claude(['mcp', 'add', '--transport', 'http', 'astralform-agent',
                      "$BASE/v1/projects/p1/mcp",
                      '--header', "Authorization: Bearer $AGENT",
                      '--header', 'X-Astralform-User: alice',
                      '--header', 'X-Astralform-Agent: gh-bot']);
is($rc, 0, 'mcp add (agent endpoint)') or diag($out);
unlike($out, qr/\Q$AGENT\E/, 'mcp add: the key is redacted');

$before = sessions();
($status, $rest) = mcp_get('astralform-agent');
like($status, qr/Connected/, "agent endpoint: $status");
($n, $sess) = new_session($before);
is($n, 1, 'agent endpoint: one session');
is_deeply([@{$sess}{qw(kind user agent version)}],
          ['agent', 'alice', 'gh-bot', '2025-11-25'],
          'agent endpoint: the session has the user and agent of the headers');

claude(['mcp', 'add', '--transport', 'http', 'astralform-admin', "$BASE/v1/mcp",
        '--header', "Authorization: Bearer $ADMIN"]);
($status) = mcp_get('astralform-admin');
like($status, qr/Connected/, "admin endpoint: $status");

for my $case (['wrong key', "$BASE/v1/projects/p1/mcp", $WRONG, qr/401/],
              ['agent key on /v1/mcp', "$BASE/v1/mcp", $AGENT, qr/403/],
              ['other project', "$BASE/v1/projects/p2/mcp", $AGENT, qr/40[134]|not found/i])
{
    my ($what, $url, $key, $code) = @$case;
    (my $name = "bad-$what") =~ s/\W+/-/g;
    claude(['mcp', 'add', '--transport', 'http', $name, $url,
            '--header', "Authorization: Bearer $key",
            '--header', 'X-Astralform-User: alice']);
    ($status, $rest) = mcp_get($name);
    unlike($status, qr/\bConnected/, "$what: not connected ($status)");
    like($rest, $code, "$what: the reason names the status");
    unlike($rest, qr/\Q$key\E/, "$what: the answer does not echo the key");
}

# --- the slash commands, with a scripted model ---------------------------------
#
# t/mock/anthropic.js stands in for the Messages API: its "model" makes the
# tool calls scripted below, and Claude Code does the rest for real: it
# expands the command, loads the MCP tool, allows it only if the command's
# allowed-tools names it, and calls the gateway through the plugin's server.

my $mock_log = "$ENV{TEST_NGINX_REPO}/t/tmp/064/anthropic.log";
unlink $mock_log, glob("$ENV{TEST_NGINX_REPO}/t/tmp/064/claude-*.debug");
my $mock_pid = fork // die "fork: $!";
if ($mock_pid == 0) {
    open STDOUT, '>', $mock_log or die $!;
    open STDERR, '>&', \*STDOUT;
    exec 'node', "$ENV{TEST_NGINX_REPO}/t/mock/anthropic.js", '--port', '0';
    exit 127;
}
END { local $?; if ($mock_pid) { kill 'TERM', $mock_pid; waitpid($mock_pid, 0) } }
my $mock_port;
for (1 .. 100) {
    last if ($mock_port) = (slurp($mock_log) // '') =~ /listening (\d+)/;
    Time::HiRes::sleep(0.1);
}
ok($mock_port, 'the scripted model listens') or diag(`cat $mock_log`);
my $MODEL = "http://127.0.0.1:$mock_port";

# a project folder without the servers added above: the plugin's only
my $work2 = File::Temp::tempdir('t064-work-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub model {
    my ($m, $p, $b) = @_;
    my (undef, undef, $t) = http_req($m, $p, ['Content-Type' => 'application/json'],
        defined $b ? $JSON->encode($b) : undef, { port => $mock_port, timeout => 10 });
    return eval { $JSON->decode($t) } || {};
}

# `claude -p PROMPT` (in folder CWD) whose model calls TOOL with INPUT;
# returns claude's JSON result and the tool_result Claude Code sent back
my $Runs = 0;
sub run_prompt {
    my ($prompt, $tool, $input, $cwd, @args) = @_;
    model('DELETE', '/__mock/requests');
    model('POST', '/__mock/script', { steps => [
        { tool => 'ToolSearch', input => { query => "select:$tool" } },
        { tool => $tool, input => $input } ] });
    my $debug = "$ENV{TEST_NGINX_REPO}/t/tmp/064/claude-" . ++$Runs . '.debug';
    my ($rc, $out) = claude(['-p', $prompt, '--output-format', 'json',
                             '--debug-file', $debug, @args],
        cwd => $cwd // $work2, ANTHROPIC_BASE_URL => $MODEL, ANTHROPIC_API_KEY => 'sk-ant-mock-0',
        ASTRALFORM_URL => $BASE, ASTRALFORM_ADMIN_KEY => $ADMIN);
    my $res = eval { $JSON->decode($out) } || { raw => $out };
    my $reqs = model('GET', '/__mock/requests')->{requests} || [];
    # the last tool_result of the conversation: the admin tool's
    my ($result) = reverse grep { ref eq 'HASH' && ($_->{type} // '') eq 'tool_result' }
                   map { ref $_->{content} ? @{ $_->{content} } : () }
                   map { @{ $_->{messages} || [] } } grep { defined } $reqs->[-1];
    my $text = ref $result->{content}
        ? join('', map { $_->{text} // $JSON->encode($_) } @{ $result->{content} })
        : $result->{content} // '';
    return ($res, $result // {}, $text, $reqs);
}

my ($res, $tr, $text, $reqs) = run_prompt('/astralform:astralform-connectors project=p1',
    "${TOOL}astralform_list_connectors", { project_id => 'p1' });
is($res->{is_error}, JSON::PP::false, '/astralform-connectors: the run succeeds')
    or diag(explain($res));
is_deeply($res->{permission_denials}, [], '/astralform-connectors: its allowed-tools allow the call');
my $first = $JSON->encode($reqs->[0] // {});
like($first, qr/Pick the tool from the arguments/, 'the model got the command text');
like($first, qr/Arguments: `project=p1`/, 'with the arguments in it');
ok(!grep({ $first !~ /\Q$TOOL$_\E/ } keys %admin_tools),
   'Claude Code offers the seven admin tools by the names the commands use');
ok(!$tr->{is_error}, 'list: the gateway answered');
like($text, qr/"id":"slack"/, 'list: the connectors of p1');
unlike($text, qr/\Q$SECRET\E/, 'list: no client secret comes out');

($res, $tr, $text) = run_prompt('list the astralform connectors of p1',
    "${TOOL}astralform_list_connectors", { project_id => 'p1' });
is(($res->{permission_denials}[0] // {})->{tool_name}, "${TOOL}astralform_list_connectors",
   'without the command, the same call is not allowed');
ok($tr->{is_error}, 'without the command: the model gets an error');

my $svc = 'claude-openweather-key-4c3b2a1908';
remember_secret($svc);
($res, $tr, $text) = run_prompt('/astralform:astralform-enable-connector openweather project=p1',
    "${TOOL}astralform_enable_connector",
    { project_id => 'p1', connector_slug => 'openweather', api_key => $svc });
is_deeply($res->{permission_denials}, [], '/astralform-enable-connector: allowed');
like($text, qr/"has_api_key":true/, 'enable: the key is stored');
unlike($text . $JSON->encode($res), qr/\Q$svc\E/, 'enable: the key does not come back');
my (undef, undef, $rows) = admin_api('GET', '/v1/projects/p1/connectors');
ok(grep({ $_->{id} eq 'openweather' } @{ $rows->{connectors} || [] }),
   'enable: the gateway has the connector');

($res) = run_prompt('/astralform:astralform-connectors project=p1',
    "${TOOL}astralform_disable_connector", { project_id => 'p1', connector_id => 'openweather' });
is(($res->{permission_denials}[0] // {})->{tool_name}, "${TOOL}astralform_disable_connector",
   '/astralform-connectors may not disable');

($res, $tr, $text, $reqs) = run_prompt('/astralform:astralform-disable-connector openweather project=p1',
    "${TOOL}astralform_disable_connector", { project_id => 'p1', connector_id => 'openweather' });
is_deeply($res->{permission_denials}, [], '/astralform-disable-connector: allowed');
like($JSON->encode($reqs->[0] // {}), qr/revokes every end-user token/,
     'disable: the command says it revokes every end-user token');
like($text, qr/"revoked_tokens":0/, 'disable: revoked_tokens reported');
(undef, undef, $rows) = admin_api('GET', '/v1/projects/p1/connectors');
ok(!grep({ $_->{id} eq 'openweather' } @{ $rows->{connectors} || [] }),
   'disable: the connector is gone');

# the agent endpoint: Claude Code takes the connect prompt (-32042, as it
# declares URL elicitation) for what it is; after consent the same call works
my $work3 = File::Temp::tempdir('t064-work-XXXXXX', TMPDIR => 1, CLEANUP => 1);
claude(['mcp', 'add', '--transport', 'http', 'astralform', "$BASE/v1/projects/p1/mcp",
        '--header', "Authorization: Bearer $AGENT",
        '--header', 'X-Astralform-User: carol'], cwd => $work3);
my $repos = 'mcp__astralform__github_list_repos';
($res, $tr, $text) = run_prompt('list my repos', $repos, {}, $work3,
                                '--allowedTools', $repos);
is_deeply($res->{permission_denials}, [], 'agent tool: allowed');
unlike($text, qr/"full_name"/, 'agent tool, not connected: no repos');
like($text, qr/URL elicitation.*github_list_repos/s,
     'Claude Code read the -32042 as a URL elicitation for the tool');

my $flow = connect_flow(browser(), start_link('github', 'carol'));
is($flow->{callback} && $flow->{callback}->code, 200, 'carol connects GitHub');
($res, $tr, $text) = run_prompt('list my repos', $repos, {}, $work3,
                                '--allowedTools', $repos);
ok(!$tr->{is_error}, 'after consent: the same call succeeds');
like($text, qr/"full_name"/, "after consent: carol's repos");

# --- no key in a log or an answer ---------------------------------------------

# `mcp get` shows the headers the test configured; nothing else may carry a key
my @leaks = grep { my $o = s/^\s*Headers:\n(?:\s{4,}.*\n)*//mr;
                   grep { index($o, $_) >= 0 } $ADMIN, $AGENT, $WRONG } @Outputs;
is(scalar @leaks, 0, 'no key in what claude printed, beyond the headers given')
    or diag(@leaks);

unlike(error_log_text(), qr/\[(?:alert|crit|emerg)\]/, 'no alert in the log');
scan_logs();

stop_nginx();
wipe();
done_testing();
