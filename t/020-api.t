# The HTTP API of the foundation (DESIGN 4): health, the catalog, project
# connectors (list, enable, read, update, disable), agent assignments and the
# tool list, with every error code; no secret in any answer or log.
#
# The blocks run in order and share Redis state: block 1 starts from an empty
# project state.  $TEST_NGINX_* variables are expanded in every section (the
# preprocessor below), and every response_body_like also asserts that no
# secret this file uses appears in the body.  The file ends with a
# scan of every log for the secrets.

use Test::Nginx::Socket 'no_plan';
use Astralform::Test ();


BEGIN {
    my $repo = $ENV{TEST_NGINX_REPO} || '.';
    unshift @INC, "$repo/t/fixtures";
    $ENV{TEST_NGINX_CATALOG} = "$repo/conf/connectors";
}

use Fixtures;

BEGIN {
    $ENV{TEST_NGINX_FIXTURES} = fixture_dir();
    my @admin = fixture_lines('p1-admin.keys');
    $ENV{TEST_NGINX_P1_ADMIN} = $admin[0];
    $ENV{TEST_NGINX_P1_ADMIN_ROTATED} = $admin[1];
    $ENV{TEST_NGINX_P1_AGENT} = fixture_line('p1-agent.keys');
    $ENV{TEST_NGINX_P2_ADMIN} = fixture_line('p2-admin.keys');
    $ENV{TEST_NGINX_P2_AGENT} = fixture_line('p2-agent.keys');

    # secrets sent in request bodies
    $ENV{TEST_NGINX_SLACK_SECRET} = 'test-body-slack-secret-5c1f0e9a7d2b';
    $ENV{TEST_NGINX_SLACK_SECRET2} = 'test-body-slack-secret2-a8e3c47b19f0';
    $ENV{TEST_NGINX_GITHUB_SECRET} = 'test-body-github-secret-3b9d6e2f80c1';
    $ENV{TEST_NGINX_P2_SECRET} = 'test-body-p2-github-secret-71e0c5d4a2b9';
    $ENV{TEST_NGINX_SERVICE_KEY} = fixture_line('service-api.key');
    # jansson's error text quotes the token it stopped at ("invalid token
    # near '...'") when it is at most 20 characters: a run of letters here
    $ENV{TEST_NGINX_BARE_SECRET} = 'BareSecretOnlyLetter';
}

our @SECRETS = (fixture_line('client.secret'),
                @ENV{qw(TEST_NGINX_SLACK_SECRET TEST_NGINX_SLACK_SECRET2
                        TEST_NGINX_GITHUB_SECRET TEST_NGINX_P2_SECRET
                        TEST_NGINX_SERVICE_KEY TEST_NGINX_BARE_SECRET)});

our $HTTP_CONFIG = <<'_EOC_';
    astralform_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_max_body_size 1k;
    astralform_mcp_allowed_origin http://127.0.0.1:1;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys
                       agent_key_file=$TEST_NGINX_FIXTURES/p1-agent.keys;
    astralform_project p2 admin_key_file=$TEST_NGINX_FIXTURES/p2-admin.keys
                       agent_key_file=$TEST_NGINX_FIXTURES/p2-agent.keys;
    astralform_connector p1 notion client_id=test-notion-client
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret
                         agents=agent-cfg;
_EOC_

our $CONFIG = <<'_EOC_';
    location /v1/ {
        astralform_api;
    }
_EOC_


# --- helpers for the expected bodies (called from "eval" sections) --------

# the JSON error object with this code
sub err {
    my ($code) = @_;
    return '\A\{"error":"' . quotemeta($code) . '","message":"[^"]+"';
}

# a regex that needs every fragment (a string, or a qr// of its own)
sub has {
    return '\A' . join '', map {
        ref $_ ? "(?=[\\s\\S]*$_)" : '(?=[\s\S]*' . quotemeta($_) . ')'
    } @_;
}

# ... and none of these
sub none {
    return join '', map { '(?![\s\S]*' . quotemeta($_) . ')' } @_;
}

# fragment $s exactly $n times
sub count {
    my ($s, $n) = @_;
    my $q = quotemeta $s;
    return qr/\A(?:[\s\S]*?$q){$n}(?![\s\S]*?$q)/;
}

# a tool as the catalog and the tool list describe it
sub tool {
    my ($name) = @_;
    return qr/\{"name":"\Q$name\E","description":"(?:[^"\\]|\\.)+",
              "input_schema":\{"type":"object"/x;
}

# the connector fragment of each tool of a project's tool list
our %TOOLS = (
    notion => [qw(notion_search notion_get_page notion_create_page)],
    slack => [qw(slack_list_channels slack_send_message
                 slack_search_messages)],
    github => [qw(github_list_repos github_search_issues)],
    openweather => [qw(openweather_current)],
);

sub tools_of {
    my (@ids) = @_;
    my %want = map { $_ => 1 } @ids;
    my @frags = map { tool($_) } map { @{ $TOOLS{$_} } } @ids;
    push @frags, count(qq{"connector":"$_"}, scalar @{ $TOOLS{$_} })
        for @ids;
    return has(@frags)
           . none(map { qq{"name":"$_"} }
                  map { @{ $TOOLS{$_} } } grep { !$want{$_} } keys %TOOLS);
}

sub fresh_redis {
    for my $p (qw(p1 p2)) {
        my $keys = Astralform::Test::redis_cmd('KEYS', "astralform:{$p}:*");
        Astralform::Test::redis_cmd('DEL', @$keys) if @$keys;
    }
}


# --- every block: defaults, $TEST_NGINX_ expansion, no secret in a body ----

my $no_secret = '\A' . none(@SECRETS);

sub expand {
    my ($v) = @_;
    return [map { expand($_) } @$v] if ref $v eq 'ARRAY';
    return $v if !defined $v || ref $v;
    $v =~ s/\$(TEST_NGINX_[A-Z0-9_]+)/
            defined $ENV{$1} ? $ENV{$1} : die "no \$$1\n"/ge;
    return $v;
}

sub guard {
    my ($v) = @_;
    return [map { guard($_) } @$v] if ref $v eq 'ARRAY';
    return "$no_secret(?:[\\s\\S]*?)(?:$v)";
}

add_block_preprocessor(sub {
    my $block = shift;

    log_snapshot();

    $block->set_value(http_config => $HTTP_CONFIG)
        unless defined $block->http_config;
    $block->set_value(config => $CONFIG) unless defined $block->config;

    for my $s (qw(request more_headers)) {
        my $v = scalar $block->$s;
        $block->set_value($s => expand($v)) if defined $v;
    }

    my $like = scalar $block->response_body_like;
    $block->set_value(response_body_like => guard($like)) if defined $like;
});

repeat_each(1);
no_shuffle();
no_long_string();

run_tests();


# --- a malformed body never echoes a secret in the error ---------------------

log_snapshot();
Astralform::Test::start_nginx(http_config => $HTTP_CONFIG, config => $CONFIG)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my ($status, $headers, $body) = Astralform::Test::http_req(
    'POST', '/v1/projects/p1/connectors',
    ['Authorization' => "Bearer $ENV{TEST_NGINX_P1_ADMIN}"],
    qq{{"connector_slug": "openweather", "api_key": $ENV{TEST_NGINX_BARE_SECRET}}});
is($status, 400, 'a secret without quotes: 400');
like($body, qr/\A\{"error":"invalid_json"/, 'a secret without quotes: invalid_json');
{
    unlike($body, qr/\Q$ENV{TEST_NGINX_BARE_SECRET}\E/,
           'the invalid_json message does not echo the secret');
}


# --- an agent id in the path follows the X-Astralform-Agent rules -----------

($status, $headers, $body) = Astralform::Test::http_req(
    'PUT', '/v1/projects/p1/agents/agent%20one%22%3C/connectors',
    ['Authorization' => "Bearer $ENV{TEST_NGINX_P1_ADMIN}"],
    '{"connectors": []}');
{
    is($status, 400, 'an agent id with a space and a quote: 400');
    like($body, qr/\A\{"error":"invalid_request"/,
         'an agent id with a space and a quote: invalid_request');
}

Astralform::Test::stop_nginx();
fresh_redis();


# --- no secret in any log ----------------------------------------------------

scan_logs(@SECRETS);

__DATA__

=== TEST 1: health
--- init
main::fresh_redis();
--- request
GET /v1/health
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- response_body_like: ^\{"status":"ok","redis":"up","mode":"single","master":"127\.0\.0\.1:\d+","version":"0\.10\.0"\}$
--- no_error_log
[error]



=== TEST 2: the catalog needs a key
--- request
GET /v1/connectors
--- error_code: 401
--- response_headers
Content-Type: application/json
--- response_body_like eval
main::err('invalid_api_key')
--- no_error_log
[error]



=== TEST 3: wrong keys: unknown, not Bearer, a valid key with a suffix
--- request eval
["GET /v1/connectors", "GET /v1/connectors", "GET /v1/connectors",
 "GET /v1/connectors"]
--- more_headers eval
["Authorization: Bearer af_test_no_such_key_0123456789",
 "Authorization: Basic $ENV{TEST_NGINX_P1_ADMIN}",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_ADMIN}x",
 "Authorization: Bearer"]
--- error_code eval
[401, 401, 401, 401]
--- response_body_like eval
[main::err('invalid_api_key'), main::err('invalid_api_key'),
 main::err('invalid_api_key'), main::err('invalid_api_key')]



=== TEST 4: the catalog, with an agent key: slug, name, type, category, tools with input_schema
--- request
GET /v1/connectors
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_AGENT
--- response_body_like eval
main::has(
    '{"connectors":[',
    '{"slug":"slack","name":"Slack","type":"oauth","category":"communication",',
    '{"slug":"notion","name":"Notion","type":"oauth","category":"productivity",',
    '{"slug":"github","name":"GitHub","type":"oauth","category":"development",',
    '{"slug":"openweather","name":"OpenWeather","type":"api_key","category":"data",',
    '{"slug":"remote_mcp","name":"Remote MCP server","type":"remote_mcp",',
    map { main::tool($_) } qw(slack_list_channels slack_send_message
        slack_search_messages notion_search notion_get_page
        notion_create_page github_list_repos github_search_issues
        openweather_current))
--- no_error_log
[error]



=== TEST 5: the catalog with an admin key of another project, a lowercase "bearer"
--- request
GET /v1/connectors
--- more_headers
Authorization: bearer $TEST_NGINX_P2_ADMIN
--- response_body_like eval
main::has('"slug":"slack"', main::tool('slack_send_message'))
--- no_error_log
[error]



=== TEST 6: unknown routes
--- request eval
["GET /v1/nope", "GET /v1/projects/p1/connectors/slack/extra",
 "GET /v1/", "GET /v1/projects"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[404, 404, 404, 404]
--- response_body_like eval
[main::err('not_found'), main::err('not_found'), main::err('not_found'),
 main::err('not_found')]



=== TEST 7: wrong methods
--- request eval
["DELETE /v1/health", "POST /v1/projects/p1/tools\n{}",
 "PUT /v1/projects/p1/connectors\n{}",
 "GET /v1/projects/p1/tools/call",
 "POST /v1/projects/p1/connectors/notion\n{}"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[405, 405, 405, 405, 405]
--- response_body_like eval
[main::err('method_not_allowed'), main::err('method_not_allowed'),
 main::err('method_not_allowed'), main::err('method_not_allowed'),
 main::err('method_not_allowed')]



=== TEST 8: another project's key, an unknown project
--- request eval
["GET /v1/projects/p1/connectors", "GET /v1/projects/p1/tools",
 "GET /v1/projects/p9/connectors", "GET /v1/projects/p2/connectors"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_P2_ADMIN}",
 "Authorization: Bearer $ENV{TEST_NGINX_P2_AGENT}",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_ADMIN}",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}"]
--- error_code eval
[404, 404, 404, 404]
--- response_body_like eval
[main::err('project_not_found'), main::err('project_not_found'),
 main::err('project_not_found'), main::err('project_not_found')]



=== TEST 9: an agent key on the admin rows
--- request eval
["GET /v1/projects/p1/connectors",
 "POST /v1/projects/p1/connectors\n" . '{"connector_slug":"openweather"}',
 "GET /v1/projects/p1/connectors/notion",
 "PATCH /v1/projects/p1/connectors/notion\n" . '{"require_auth":false}',
 "DELETE /v1/projects/p1/connectors/notion",
 "GET /v1/projects/p1/agents/agent-a/connectors",
 "PUT /v1/projects/p1/agents/agent-a/connectors\n" . '{"connectors":[]}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_AGENT
--- error_code eval
[403, 403, 403, 403, 403, 403, 403]
--- response_body_like eval
[(main::err('admin_required')) x 7]



=== TEST 10: bad X-Astralform-User / X-Astralform-Agent headers
--- request eval
[("GET /v1/projects/p1/tools") x 4]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-User: alice/../bob",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-User: " . ('u' x 129),
 "Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-User:",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-Agent: agent a"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[(main::err('invalid_header')) x 4]



=== TEST 11: identity headers of 128 allowed characters are fine
--- request
GET /v1/projects/p1/tools
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}
X-Astralform-User: " . ('user.name_1-2:3@example.com' x 4) . ('u' x 20) . "
X-Astralform-Agent: " . ('a' x 128)
--- response_body_like eval
main::has('{"tools":[')
--- no_error_log
[error]



=== TEST 12: the list holds the config connector (read with the rotated admin key)
--- request
GET /v1/projects/p1/connectors
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN_ROTATED
--- response_body_like eval
'\A\{"connectors":\[\{"id":"notion","connector_slug":"notion","name":"Notion",'
. '"type":"oauth","category":"productivity","is_enabled":true,'
. '"require_auth":true,"allow_end_user_auth":true,'
. '"oauth_client_id":"test-notion-client","oauth_scopes":\[[^\]]*\],'
. '"has_secret":true,"has_api_key":false,"mcp_url":null,"source":"config",'
. '"tools":\["notion_search","notion_get_page","notion_create_page"\],'
. '"agents":\["agent-cfg"\]\}\]\}$'
--- no_error_log
[error]



=== TEST 13: enable slack: 201, scopes typed as a string answered as an array, defaults
--- request
POST /v1/projects/p1/connectors
{"connector_slug": "slack", "oauth_client_id": "test-slack-client",
 "oauth_client_secret": "$TEST_NGINX_SLACK_SECRET",
 "oauth_scopes": "channels:read, chat:write,search:read"}
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
Content-Type: application/json
--- error_code: 201
--- response_body_like eval
main::has('{"id":"slack","connector_slug":"slack","name":"Slack","type":"oauth",',
          '"is_enabled":true,"require_auth":true,"allow_end_user_auth":true,',
          '"oauth_client_id":"test-slack-client",',
          '"oauth_scopes":["channels:read","chat:write","search:read"],',
          '"has_secret":true,"has_api_key":false,"mcp_url":null,',
          '"source":"api",',
          '"tools":["slack_list_channels","slack_send_message","slack_search_messages"]')
--- no_error_log
[error]



=== TEST 14: enable github: scopes as an array, require_auth false
--- request
POST /v1/projects/p1/connectors
{"connector_slug": "github", "oauth_client_id": "test-github-client",
 "oauth_client_secret": "$TEST_NGINX_GITHUB_SECRET",
 "oauth_scopes": ["repo", "read:user"], "require_auth": false,
 "allow_end_user_auth": false}
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code: 201
--- response_body_like eval
main::has('{"id":"github","connector_slug":"github",',
          '"require_auth":false,"allow_end_user_auth":false,',
          '"oauth_scopes":["repo","read:user"],"has_secret":true,',
          '"source":"api"')
--- no_error_log
[error]



=== TEST 15: enable openweather with a service api_key
--- request
POST /v1/projects/p1/connectors
{"connector_slug": "openweather", "api_key": "$TEST_NGINX_SERVICE_KEY"}
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code: 201
--- response_body_like eval
main::has('{"id":"openweather","connector_slug":"openweather",',
          '"type":"api_key",', '"has_secret":false,"has_api_key":true,',
          '"oauth_client_id":null,', '"source":"api",',
          '"tools":["openweather_current"]')
--- no_error_log
[error]



=== TEST 16: read one
--- request
GET /v1/projects/p1/connectors/slack
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body_like eval
main::has('{"id":"slack","connector_slug":"slack",', '"has_secret":true,',
          '"oauth_scopes":["channels:read","chat:write","search:read"],',
          '"source":"api"')
--- no_error_log
[error]



=== TEST 17: the list: config and API connectors, never a secret
--- request
GET /v1/projects/p1/connectors
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body_like eval
main::has('{"connectors":[{"id":"notion",',
          main::count('"source":"config"', 1), main::count('"source":"api"', 3),
          '{"id":"slack",', '{"id":"github",', '{"id":"openweather",')
--- no_error_log
[error]



=== TEST 18: a duplicate id: 409 duplicate_id
--- request eval
["POST /v1/projects/p1/connectors\n"
 . '{"connector_slug":"remote_mcp","id":"slack","mcp_url":"http://127.0.0.1:1/mcp"}',
 "POST /v1/projects/p1/connectors\n"
 . '{"connector_slug":"remote_mcp","id":"notion","mcp_url":"http://127.0.0.1:1/mcp"}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[409, 409]
--- response_body_like eval
[main::err('duplicate_id'), main::err('duplicate_id')]



=== TEST 19: a catalog connector enabled twice: 409 already_enabled
--- request eval
["POST /v1/projects/p1/connectors\n"
 . qq{{"connector_slug":"slack","id":"slack2","oauth_client_id":"x","oauth_client_secret":"$ENV{TEST_NGINX_SLACK_SECRET2}"}},
 "POST /v1/projects/p1/connectors\n"
 . qq{{"connector_slug":"notion","id":"notion2","oauth_client_id":"x","oauth_client_secret":"$ENV{TEST_NGINX_SLACK_SECRET2}"}}]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[409, 409]
--- response_body_like eval
[main::err('already_enabled'), main::err('already_enabled')]



=== TEST 20: an unknown connector slug
--- request
POST /v1/projects/p1/connectors
{"connector_slug": "gitlab", "oauth_client_id": "x"}
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code: 400
--- response_body_like eval
main::err('unknown_connector')



=== TEST 21: malformed JSON, JSON that is not an object, no body
--- request eval
["POST /v1/projects/p1/connectors\n" . '{"connector_slug": "slack",',
 "POST /v1/projects/p1/connectors\n" . '["slack"]',
 "POST /v1/projects/p1/connectors\n" . '"slack"',
 "POST /v1/projects/p1/connectors\n",
 "POST /v1/projects/p1/connectors\n" . '{"connector_slug":"openweather","connector_slug":"slack"}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[400, 400, 400, 400, 400]
--- response_body_like eval
[(main::err('invalid_json')) x 5]



=== TEST 22: wrong types
--- request eval
[map { "POST /v1/projects/p1/connectors\n$_" }
 '{"connector_slug": 5}',
 '{"connector_slug": "github", "oauth_client_id": "x", "oauth_client_secret": "y", "require_auth": "yes"}',
 '{"connector_slug": "github", "oauth_client_id": "x", "oauth_client_secret": "y", "allow_end_user_auth": 1}',
 '{"connector_slug": "github", "oauth_client_id": "x", "oauth_client_secret": "y", "oauth_scopes": 5}',
 '{"connector_slug": "github", "oauth_client_id": "x", "oauth_client_secret": "y", "oauth_scopes": ["repo", 1]}',
 '{"connector_slug": "github", "oauth_client_id": 7, "oauth_client_secret": "y"}',
 '{"connector_slug": "github", "oauth_client_id": "x", "oauth_client_secret": 7}',
 '{"connector_slug": "openweather", "api_key": ""}',
 '{"connector_slug": "remote_mcp", "id": "bad id!", "mcp_url": "http://127.0.0.1:1/mcp"}',
 '{"connector_slug": "remote_mcp", "id": "mcp1", "mcp_url": "ftp://127.0.0.1/mcp"}',
 '{"connector_slug": "remote_mcp", "id": "mcp1", "mcp_url": "http://127.0.0.1:2/mcp"}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[(400) x 11]
--- response_body_like eval
[(main::err('invalid_request')) x 11]



=== TEST 23: an unknown field
--- request
POST /v1/projects/p1/connectors
{"connector_slug": "remote_mcp", "id": "mcp1", "mcp_url": "http://127.0.0.1:1/mcp", "colour": "blue"}
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code: 400
--- response_body_like eval
main::err('invalid_request')



=== TEST 24: what each type needs
--- request eval
[map { "POST /v1/projects/p2/connectors\n$_" }
 '{"connector_slug": "slack", "oauth_client_id": "x"}',
 '{"connector_slug": "slack", "oauth_client_secret": "not-a-real-secret"}',
 '{"connector_slug": "remote_mcp", "mcp_url": "http://127.0.0.1:1/mcp"}',
 '{"connector_slug": "remote_mcp", "id": "mcp1"}',
 '{"connector_slug": "openweather", "allow_end_user_auth": false}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P2_ADMIN
--- error_code eval
[(400) x 5]
--- response_body_like eval
[(main::err('invalid_request')) x 5]



=== TEST 25: astralform_max_body_size 1k: 1024 bytes are read, 1025 are not
--- request eval
my $pad = 1024 - length('{"connector_slug":""}');
["POST /v1/projects/p2/connectors\n" . '{"connector_slug":"' . ('x' x $pad) . '"}',
 "POST /v1/projects/p2/connectors\n" . '{"connector_slug":"' . ('x' x ($pad + 1)) . '"}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P2_ADMIN
--- error_code eval
[400, 413]
--- response_body_like eval
[main::err('unknown_connector'), main::err('body_too_large')]



=== TEST 26: an oversized body announced by Content-Length
--- request eval
"POST /v1/projects/p2/connectors\n" . '{"connector_slug":"' . ('x' x 4000) . '"}'
--- more_headers
Authorization: Bearer $TEST_NGINX_P2_ADMIN
--- error_code: 413
--- response_body_like eval
main::err('body_too_large')



=== TEST 27: an oversized chunked body
--- request eval
my $body = '{"connector_slug":"' . ('x' x 4000) . '"}';
"POST /v1/projects/p2/connectors\n"
. CORE::join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) }
               unpack('(a1000)*', $body))
. "0\r\n\r\n"
--- more_headers
Authorization: Bearer $TEST_NGINX_P2_ADMIN
Transfer-Encoding: chunked
--- error_code: 413
--- response_body_like eval
main::err('body_too_large')



=== TEST 28: a small chunked body is read
--- request eval
"PATCH /v1/projects/p1/connectors/slack\n"
. CORE::join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) }
               '{"require_auth"', ': false}')
. "0\r\n\r\n"
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
Transfer-Encoding: chunked
--- response_body_like eval
main::has('{"id":"slack",', '"require_auth":false,', '"has_secret":true,')
--- no_error_log
[error]



=== TEST 29: update scopes and auth settings; the change is stored
--- request eval
["PATCH /v1/projects/p1/connectors/slack\n"
 . '{"oauth_scopes": ["search:read"], "require_auth": true, "allow_end_user_auth": false}',
 "GET /v1/projects/p1/connectors/slack"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body_like eval
[main::has('{"id":"slack",', '"require_auth":true,"allow_end_user_auth":false,',
           '"oauth_client_id":"test-slack-client","oauth_scopes":["search:read"],"has_secret":true,'),
 main::has('{"id":"slack",', '"require_auth":true,"allow_end_user_auth":false,',
           '"oauth_client_id":"test-slack-client","oauth_scopes":["search:read"],"has_secret":true,')]
--- no_error_log
[error]



=== TEST 30: update the client id and secret
--- request
PATCH /v1/projects/p1/connectors/slack
{"oauth_client_id": "test-slack-client-2", "oauth_client_secret": "$TEST_NGINX_SLACK_SECRET2"}
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body_like eval
main::has('"oauth_client_id":"test-slack-client-2",', '"has_secret":true,')
--- no_error_log
[error]



=== TEST 31: update errors
--- request eval
[map({ "PATCH /v1/projects/p1/connectors/slack\n$_" }
     '{"id": "slack3"}', '{"connector_slug": "github"}', '{"colour": "blue"}',
     '{"require_auth": "no"}', '{"oauth_client_secret": null}',
     '{"oauth_scopes": {"a": 1}}', '{"require_auth": fals'),
 "PATCH /v1/projects/p1/connectors/nope\n" . '{"require_auth": false}',
 "GET /v1/projects/p1/connectors/nope"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[(400) x 7, 404, 404]
--- response_body_like eval
[(main::err('invalid_request')) x 6, main::err('invalid_json'),
 main::err('connector_not_found'), main::err('connector_not_found')]



=== TEST 32: a config connector is read-only through the API
--- request eval
["GET /v1/projects/p1/connectors/notion",
 "PATCH /v1/projects/p1/connectors/notion\n" . '{"require_auth": false}',
 "DELETE /v1/projects/p1/connectors/notion",
 "GET /v1/projects/p1/connectors/notion"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[200, 409, 409, 200]
--- response_body_like eval
[main::has('{"id":"notion",', '"require_auth":true,', '"source":"config"'),
 main::err('read_only'), main::err('read_only'),
 main::has('{"id":"notion",', '"require_auth":true,', '"source":"config"')]



=== TEST 33: a remote_mcp connector: enable (201), disable, gone
--- request eval
["POST /v1/projects/p1/connectors\n"
 . '{"connector_slug":"remote_mcp","id":"docs","mcp_url":"http://127.0.0.1:1/mcp","require_auth":false}',
 "DELETE /v1/projects/p1/connectors/docs",
 "GET /v1/projects/p1/connectors/docs"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[201, 200, 404]
--- response_body_like eval
[main::has('{"id":"docs","connector_slug":"remote_mcp",', '"type":"remote_mcp",',
           '"mcp_url":"http://127.0.0.1:1/mcp",', '"source":"api","tools":[]}'),
 '\A\{"id":"docs","disabled":true,"revoked_tokens":0,"deleted_tokens":0,"pending_revocations":0\}$',
 main::err('connector_not_found')]
--- no_error_log
[error]



=== TEST 34: an agent without an assignment
--- request
GET /v1/projects/p1/agents/agent-a/connectors
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body
{"agent":"agent-a","connectors":null,"source":"none"}
--- no_error_log
[error]



=== TEST 35: assign connectors to an agent
--- request eval
["PUT /v1/projects/p1/agents/agent-a/connectors\n" . '{"connectors": ["slack"]}',
 "GET /v1/projects/p1/agents/agent-a/connectors",
 "PUT /v1/projects/p1/agents/agent-b/connectors\n" . '{"connectors": ["slack", "openweather"]}',
 "PUT /v1/projects/p1/agents/agent-c/connectors\n" . '{"connectors": []}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body eval
[qq{{"agent":"agent-a","connectors":["slack"],"source":"api"}\n},
 qq{{"agent":"agent-a","connectors":["slack"],"source":"api"}\n},
 qq{{"agent":"agent-b","connectors":["slack","openweather"],"source":"api"}\n},
 qq{{"agent":"agent-c","connectors":[],"source":"api"}\n}]
--- no_error_log
[error]



=== TEST 36: assignment errors
--- request eval
[map { "PUT /v1/projects/p1/agents/agent-a/connectors\n$_" }
 '{"connectors": ["slack", "gitlab"]}', '{"connectors": "slack"}',
 '{"connectors": [1]}', '{"connectors": ["slack"], "colour": "blue"}',
 '{}', '{"connectors": [}']
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[(400) x 6]
--- response_body_like eval
[main::err('unknown_connector'), (main::err('invalid_request')) x 4,
 main::err('invalid_json')]



=== TEST 37: a failed assignment changed nothing
--- request
GET /v1/projects/p1/agents/agent-a/connectors
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body
{"agent":"agent-a","connectors":["slack"],"source":"api"}
--- no_error_log
[error]



=== TEST 38: the assignment from nginx.conf (agents=)
--- request
GET /v1/projects/p1/agents/agent-cfg/connectors
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body
{"agent":"agent-cfg","connectors":["notion"],"source":"config"}
--- no_error_log
[error]



=== TEST 39: tools without X-Astralform-Agent: every enabled connector's
--- request
GET /v1/projects/p1/tools
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_AGENT
--- response_body_like eval
main::tools_of(qw(notion slack github openweather))
--- no_error_log
[error]



=== TEST 40: tools of an agent with an assignment: only its connectors'
--- request eval
[("GET /v1/projects/p1/tools") x 3]
--- more_headers eval
[map { "Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-Agent: $_" }
     qw(agent-a agent-b agent-c)]
--- response_body_like eval
[main::tools_of('slack'), main::tools_of('slack', 'openweather'),
 '\A\{"tools":\[\]\}$']
--- no_error_log
[error]



=== TEST 41: tools of the agent nginx.conf assigns, of an agent without any, with an admin key
--- request eval
[("GET /v1/projects/p1/tools") x 3]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-Agent: agent-cfg",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_AGENT}\nX-Astralform-Agent: agent-z",
 "Authorization: Bearer $ENV{TEST_NGINX_P1_ADMIN}"]
--- response_body_like eval
[main::tools_of('notion'), main::tools_of(qw(notion slack github openweather)),
 main::tools_of(qw(notion slack github openweather))]
--- no_error_log
[error]



=== TEST 42: disable: every end-user token of the connector is deleted and counted
--- init
for my $u (qw(u1 u2 u3)) {
    Astralform::Test::redis_cmd('HSET', 'astralform:{p1}:tokens:slack', $u,
                                "v1.k1.not-a-real-token-of-$u");
}
Astralform::Test::redis_cmd('HSET', 'astralform:{p1}:tokens:github', 'u1',
                            'v1.k1.not-a-real-token');
--- request eval
["DELETE /v1/projects/p1/connectors/slack",
 "GET /v1/projects/p1/connectors/slack",
 "DELETE /v1/projects/p1/connectors/slack"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[200, 404, 404]
--- response_body_like eval
['\A\{"id":"slack","disabled":true,"revoked_tokens":3,"deleted_tokens":3,"pending_revocations":3\}$',
 main::err('connector_not_found'), main::err('connector_not_found')]
--- no_error_log
[error]



=== TEST 43: after disable: no token hash left, other connectors' tokens kept, assignments updated
--- init
Test::More::is(Astralform::Test::redis_cmd('EXISTS', 'astralform:{p1}:tokens:slack'),
               0, 'TEST 43: the tokens hash of slack is gone');
Test::More::is(Astralform::Test::redis_cmd('HLEN', 'astralform:{p1}:tokens:github'),
               1, 'TEST 43: the tokens of github are kept');
--- request eval
["GET /v1/projects/p1/agents/agent-a/connectors",
 "GET /v1/projects/p1/agents/agent-b/connectors",
 "GET /v1/projects/p1/connectors"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body_like eval
['\A\{"agent":"agent-a","connectors":\[\],"source":"api"\}$',
 '\A\{"agent":"agent-b","connectors":\["openweather"\],"source":"api"\}$',
 main::has('{"id":"notion",', '{"id":"github",', '{"id":"openweather",')
 . main::none('"id":"slack"')]
--- no_error_log
[error]



=== TEST 44: null removes an assignment
--- request eval
["PUT /v1/projects/p1/agents/agent-a/connectors\n" . '{"connectors": null}',
 "GET /v1/projects/p1/agents/agent-a/connectors"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body eval
[qq{{"agent":"agent-a","connectors":null,"source":"none"}\n},
 qq{{"agent":"agent-a","connectors":null,"source":"none"}\n}]
--- no_error_log
[error]



=== TEST 45: projects are apart: p2 sees none of p1's connectors and may enable the same slug
--- request eval
["GET /v1/projects/p2/connectors",
 "GET /v1/projects/p2/connectors/github",
 "POST /v1/projects/p2/connectors\n"
 . qq{{"connector_slug":"github","oauth_client_id":"p2-client","oauth_client_secret":"$ENV{TEST_NGINX_P2_SECRET}"}},
 "GET /v1/projects/p2/tools"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P2_ADMIN
--- error_code eval
[200, 404, 201, 200]
--- response_body_like eval
['\A\{"connectors":\[\]\}$', main::err('connector_not_found'),
 main::has('{"id":"github",', '"oauth_client_id":"p2-client",', '"source":"api"'),
 main::tools_of('github')]
--- no_error_log
[error]



=== TEST 46: p1's github is still p1's own
--- request
GET /v1/projects/p1/connectors/github
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- response_body_like eval
main::has('"oauth_client_id":"test-github-client",')
--- no_error_log
[error]



=== TEST 47: stored connectors that no longer parse are left out, and their ids stay taken
--- init
Astralform::Test::redis_cmd('HSET', 'astralform:{p1}:connectors',
    'broken', '{"connector_slug":',
    'legacy', '{"connector_slug":"gitlab","require_auth":true}');
--- request eval
["GET /v1/projects/p1/connectors",
 "POST /v1/projects/p1/connectors\n"
 . '{"connector_slug":"remote_mcp","id":"broken","mcp_url":"http://127.0.0.1:1/mcp"}',
 "GET /v1/projects/p1/tools"]
--- more_headers
Authorization: Bearer $TEST_NGINX_P1_ADMIN
--- error_code eval
[200, 409, 200]
--- response_body_like eval
[main::has('{"id":"notion",', '{"id":"github",', '{"id":"openweather",')
 . main::none('"id":"broken"', '"id":"legacy"'),
 main::err('duplicate_id'),
 main::tools_of(qw(notion github openweather))]
--- error_log
project "p1" has connector "legacy" of slug "gitlab" the catalog no longer has
--- no_error_log
[error]
