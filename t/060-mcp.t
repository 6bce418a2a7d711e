# Remote MCP connectors against a real MCP server (t/servers/mcp-server.mjs,
# built with the official TypeScript SDK): tools listed as <id>_<tool> with
# the server's schemas, tools/call through the gateway over SSE and JSON
# answers, sessions kept and re-initialized, a dead server, timeouts.
#
# /mcpstats and /mcpdrop proxy to the server's test hooks, so that one
# block can look at what the server saw between its requests.

use Test::Nginx::Socket;
use File::Path qw(make_path);
use IO::Socket::INET;

if (!$ENV{TEST_NGINX_MCP_PORT}) {
    plan(skip_all => 'no MCP test server (run through t/run.sh)');
} else {
    plan('no_plan');
}

my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/060";
make_path($dir);

for (['k1.key', 'a5' x 32], ['admin.keys', 'p-admin-key-060-0123456789'],
     ['agent.keys', 'p-agent-key-060-0123456789'])
{
    open my $fh, '>', "$dir/$_->[0]" or die "$dir/$_->[0]: $!\n";
    print $fh "$_->[1]\n";
    close $fh;
}

# a server that accepts connections (the kernel does) and never answers
my $mute = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Listen => 16, Proto => 'tcp')
    or die "listen: $!\n";
$ENV{TEST_NGINX_MUTE_PORT} = $mute->sockport;

my $http_config = <<"_EOC_";
    astralform_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix t060:;
    astralform_key k1 $dir/k1.key;
    astralform_public_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT;
    astralform_catalog \$TEST_NGINX_REPO/conf/connectors;
    astralform_project P admin_key_file=$dir/admin.keys agent_key_file=$dir/agent.keys;
_EOC_

my $config = <<'_EOC_';
    location /v1/ {
        astralform_api;
    }

    location = /mcpstats {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MCP_PORT/__mcp/stats;
    }

    location = /mcpdrop {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MCP_PORT/__mcp/drop-sessions;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('http_config',
                      $http_config . ($block->http_config // ''));
    $block->set_value('config', $config . ($block->config // ''));

    # the server's sessions and counters, and the API-enabled connectors,
    # start from nothing (a stopped worker leaves its sessions behind)
    my $init = $block->init // '';
    $block->set_value('init', <<'_EOI_' . $init);
for my $hook ('/__mcp/drop-sessions', '/__mcp/reset-stats') {
    Astralform::Test::http_req('POST', $hook, [], '',
                               { port => $ENV{TEST_NGINX_MCP_PORT} });
}
Astralform::Test::redis_cmd('DEL', 't060:{P}:connectors', 't060:{P}:agents');
_EOI_

    if (!defined $block->more_headers) {
        $block->set_value('more_headers',
                          "Authorization: Bearer p-agent-key-060-0123456789\n");
    }
});

repeat_each(1);
no_shuffle();
log_level('info');
timeout(10);

run_tests();

__DATA__

=== TEST 1: tools of an SSE and a JSON server, namespaced, with schemas
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
    astralform_connector P remote_mcp id=tools2 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json;
--- request
GET /v1/projects/P/tools
--- error_code: 200
--- response_body_like eval
qr/^\{"tools":\[\{"name":"tools1_echo","description":"Echo the given text back.","input_schema":\{[^\n]*"properties":\{"text":\{"type":"string","description":"Text to echo"\}\}[^\n]*"required":\["text"\][^\n]*\},"connector":"tools1"\},\{"name":"tools1_add","description":"Add two numbers.","input_schema":\{[^\n]*"a":\{"type":"number"[^\n]*"connector":"tools1"\},\{"name":"tools1_slow",[^\n]*\{"name":"tools1_fail",[^\n]*\{"name":"tools2_echo","description":"Echo the given text back.",[^\n]*"connector":"tools2"\},\{"name":"tools2_add",[^\n]*\{"name":"tools2_slow",[^\n]*\{"name":"tools2_fail",[^\n]*"connector":"tools2"\}\]\}$/
--- no_error_log
[error]



=== TEST 2: the listing speaks MCP as the specification says
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request eval
["GET /v1/projects/P/tools", "GET /mcpstats"]
--- more_headers eval
["Authorization: Bearer p-agent-key-060-0123456789", ""]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"name":"tools1_echo"/,
 qr/^(?=.*"initialize": 1,)(?=.*"initialized_notifications": 1,)(?=.*"tools_list": 1,)(?=.*"method": "POST")(?=.*"accept": "application\/json, text\/event-stream")(?=.*"content-type": "application\/json")(?=.*"mcp-session-id": "[0-9a-f-]{36}")(?=.*"mcp-protocol-version": "2025-06-18")(?=.*"user-agent": "astralform")/s]
--- no_error_log
[error]



=== TEST 3: tools/call with an SSE answer
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request
POST /v1/projects/P/tools/call
{"name":"tools1_echo","arguments":{"text":"hi"}}
--- error_code: 200
--- response_body
{"tool":"tools1_echo","connector":"tools1","result":{"content":[{"type":"text","text":"hi"}]}}
--- no_error_log
[error]



=== TEST 4: tools/call with a JSON answer
--- http_config
    astralform_connector P remote_mcp id=tools2 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json;
--- request
POST /v1/projects/P/tools/call
{"name":"tools2_add","arguments":{"a":2,"b":3.5}}
--- error_code: 200
--- response_body
{"tool":"tools2_add","connector":"tools2","result":{"content":[{"type":"text","text":"5.5"}]}}
--- no_error_log
[error]



=== TEST 5: a tool that fails (isError) is still a result for the agent
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request
POST /v1/projects/P/tools/call
{"name":"tools1_fail","arguments":{"message":"disk full"}}
--- error_code: 200
--- response_body
{"tool":"tools1_fail","connector":"tools1","result":{"content":[{"type":"text","text":"disk full"}],"isError":true}}
--- no_error_log
[error]



=== TEST 6: a tool the server does not have: the server's answer, passed on
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request
POST /v1/projects/P/tools/call
{"name":"tools1_nosuch","arguments":{}}
--- error_code: 200
--- response_body_like eval
qr/^\{"tool":"tools1_nosuch","connector":"tools1","result":\{"content":\[\{"type":"text","text":"[^"]*nosuch not found"\}\],"isError":true\}\}$/
--- no_error_log
[error]



=== TEST 7: one session serves the calls that follow, no initialize each time
--- http_config
    astralform_connector P remote_mcp id=tools2 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json;
--- request eval
["POST /v1/projects/P/tools/call\n{\"name\":\"tools2_echo\",\"arguments\":{\"text\":\"a\"}}",
 "POST /v1/projects/P/tools/call\n{\"name\":\"tools2_echo\",\"arguments\":{\"text\":\"b\"}}",
 "POST /v1/projects/P/tools/call\n{\"name\":\"tools2_add\",\"arguments\":{\"a\":1,\"b\":1}}",
 "GET /mcpstats"]
--- more_headers eval
["Authorization: Bearer p-agent-key-060-0123456789",
 "Authorization: Bearer p-agent-key-060-0123456789",
 "Authorization: Bearer p-agent-key-060-0123456789", ""]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"text":"a"/, qr/"text":"b"/, qr/"text":"2"/,
 qr/^(?=.*"initialize": 1,)(?=.*"tools_call": 3,)(?=.*"sessions_created": 1,)(?=.*"active_sessions": 1\b)/s]
--- no_error_log
[error]



=== TEST 8: the server forgets the session: initialized again, call answered
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request eval
["POST /v1/projects/P/tools/call\n{\"name\":\"tools1_echo\",\"arguments\":{\"text\":\"before\"}}",
 "POST /mcpdrop",
 "POST /v1/projects/P/tools/call\n{\"name\":\"tools1_echo\",\"arguments\":{\"text\":\"after\"}}",
 "GET /mcpstats"]
--- more_headers eval
["Authorization: Bearer p-agent-key-060-0123456789", "",
 "Authorization: Bearer p-agent-key-060-0123456789", ""]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"text":"before"/, qr/"dropped": 1/, qr/"text":"after"/,
 qr/^(?=.*"initialize": 2,)(?=.*"unknown_session_404": 1,)(?=.*"tools_call": 2,)(?=.*"active_sessions": 1\b)/s]
--- no_error_log
[error]



=== TEST 9: a server that is down is skipped, the other tools are listed
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
    astralform_connector P remote_mcp id=gone mcp_url=http://127.0.0.1:1/secret/path?token=t;
    astralform_connector P remote_mcp id=tools2 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json;
--- request
GET /v1/projects/P/tools
--- error_code: 200
--- response_body_like eval
qr/^(?=.*"tools1_echo")(?=.*"tools2_echo")(?!.*gone_)/s
--- error_log
MCP connector "gone" of project "P" at "127.0.0.1:1" skipped in the tool list: the server cannot be reached
--- no_error_log eval
[qr/secret|token=/]



=== TEST 10: a call to a server that is down is a provider_error
--- http_config
    astralform_connector P remote_mcp id=gone mcp_url=http://127.0.0.1:1/mcp;
--- request
POST /v1/projects/P/tools/call
{"name":"gone_echo","arguments":{"text":"hi"}}
--- error_code: 502
--- response_body
{"error":"provider_error","message":"the MCP server of \"gone\" failed: the server cannot be reached","connector":"gone","provider_status":0,"provider_body":null}



=== TEST 11: no answer in time is a provider_timeout, and fast
--- http_config
    astralform_http_timeout 1s;
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request
POST /v1/projects/P/tools/call
{"name":"tools1_slow","arguments":{"ms":4000}}
--- timeout: 3
--- error_code: 504
--- response_body
{"error":"provider_timeout","message":"the MCP server of \"tools1\" did not answer in time","connector":"tools1"}



=== TEST 12: a slow tool within the timeout is answered
--- http_config
    astralform_http_timeout 3s;
    astralform_connector P remote_mcp id=tools2 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json;
--- request
POST /v1/projects/P/tools/call
{"name":"tools2_slow","arguments":{"ms":300}}
--- error_code: 200
--- response_body
{"tool":"tools2_slow","connector":"tools2","result":{"content":[{"type":"text","text":"slept 300 ms"}]}}
--- no_error_log
[error]



=== TEST 13: a server that does not answer the listing in time is left out
--- http_config
    astralform_http_timeout 1s;
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
    astralform_connector P remote_mcp id=mute mcp_url=http://127.0.0.1:$TEST_NGINX_MUTE_PORT/mcp;
--- request
GET /v1/projects/P/tools
--- timeout: 3
--- error_code: 200
--- response_body_like eval
qr/^(?=.*"tools1_echo")(?!.*mute_)/s
--- error_log eval
qr/MCP connector "mute" of project "P" at "127.0.0.1:\d+" skipped in the tool list: no answer in time/



=== TEST 14: the tool list is cached for a while: the server is asked once
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request eval
["GET /v1/projects/P/tools", "GET /v1/projects/P/tools",
 "GET /v1/projects/P/tools", "GET /mcpstats"]
--- more_headers eval
["Authorization: Bearer p-agent-key-060-0123456789",
 "Authorization: Bearer p-agent-key-060-0123456789",
 "Authorization: Bearer p-agent-key-060-0123456789", ""]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"tools1_echo"/, qr/"tools1_echo"/, qr/"tools1_echo"/,
 qr/^(?=.*"initialize": 1,)(?=.*"tools_list": 1,)/s]
--- no_error_log
[error]



=== TEST 15: an agent with an assignment sees only its connectors' tools
--- http_config
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
    astralform_connector P remote_mcp id=tools2 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json agents=a1;
--- request eval
["GET /v1/projects/P/tools",
 "POST /v1/projects/P/tools/call\n{\"name\":\"tools1_echo\",\"arguments\":{\"text\":\"x\"}}",
 "GET /mcpstats"]
--- more_headers eval
["Authorization: Bearer p-agent-key-060-0123456789\nX-Astralform-Agent: a1",
 "Authorization: Bearer p-agent-key-060-0123456789\nX-Astralform-Agent: a1", ""]
--- error_code eval
[200, 403, 200]
--- response_body_like eval
[qr/^(?=.*"tools2_echo")(?!.*"tools1_)/s, qr/"error":"tool_not_assigned"/,
 qr/(?=.*"by_endpoint": \{\n\s*"\/mcp-json": \d+\n\s*\})(?=.*"tools_call": 0,)/s]



=== TEST 16: a remote_mcp connector enabled through the API lists its tools
--- http_config
    astralform_mcp_allowed_origin http://127.0.0.1:$TEST_NGINX_MCP_PORT;
    astralform_connector P remote_mcp id=tools1 mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request eval
["POST /v1/projects/P/connectors\n{\"connector_slug\":\"remote_mcp\",\"id\":\"api1\",\"mcp_url\":\"http://127.0.0.1:$ENV{TEST_NGINX_MCP_PORT}/mcp-json\"}",
 "GET /v1/projects/P/tools",
 "POST /v1/projects/P/tools/call\n{\"name\":\"api1_echo\",\"arguments\":{\"text\":\"via api\"}}"]
--- more_headers eval
["Authorization: Bearer p-admin-key-060-0123456789",
 "Authorization: Bearer p-agent-key-060-0123456789",
 "Authorization: Bearer p-agent-key-060-0123456789"]
--- error_code eval
[201, 200, 200]
--- response_body_like eval
[qr/"id":"api1"/, qr/^(?=.*"tools1_echo")(?=.*"name":"api1_echo".*?"connector":"api1")/s,
 qr/^\{"tool":"api1_echo","connector":"api1","result":\{"content":\[\{"type":"text","text":"via api"\}\]\}\}$/]
--- no_error_log
[error]



=== TEST 17: the longest connector id wins ("kb_x_echo" is kb_x's echo, not kb's "x_echo")
--- http_config
    astralform_connector P remote_mcp id=kb mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp-json;
    astralform_connector P remote_mcp id=kb_x mcp_url=http://127.0.0.1:$TEST_NGINX_MCP_PORT/mcp;
--- request
POST /v1/projects/P/tools/call
{"name":"kb_x_echo","arguments":{"text":"routed"}}
--- error_code: 200
--- response_body
{"tool":"kb_x_echo","connector":"kb_x","result":{"content":[{"type":"text","text":"routed"}]}}
--- no_error_log
[error]
