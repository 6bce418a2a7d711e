# The browser endpoints (authorize, callback) and the connections rows on
# their own, without a provider: answers, headers and error codes.
# The flows themselves are in t/041..045.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

our $Agent = 'af_test_p1_agent_e175c5c50729dcc375458d80';

our $HttpConfig = <<'_EOC_';
    astralform_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix t040:;
    astralform_key k1 $TEST_NGINX_REPO/t/fixtures/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_REPO/conf/connectors;
    astralform_return_origin https://app.example.com;
    astralform_project p1 admin_key_file=$TEST_NGINX_REPO/t/fixtures/p1-admin.keys
                          agent_key_file=$TEST_NGINX_REPO/t/fixtures/p1-agent.keys;
    astralform_connector p1 github client_id=gh-cid
                         client_secret_file=$TEST_NGINX_REPO/t/fixtures/client.secret;
    astralform_connector p1 notion client_id=notion-cid
                         client_secret_file=$TEST_NGINX_REPO/t/fixtures/client.secret;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $HttpConfig) unless defined $block->http_config;
    $block->set_value('config', "    location /v1/ { astralform_api; }\n")
        unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: authorize without a session: an HTML page, not JSON
--- request
GET /v1/connectors/oauth/authorize
--- error_code: 400
--- response_headers
Content-Type: text/html; charset=utf-8
Cache-Control: no-store
Referrer-Policy: no-referrer
X-Content-Type-Options: nosniff
--- response_headers_like
Content-Security-Policy: default-src 'none'.*frame-ancestors 'none'
--- response_body_like chomp
This link is not valid.*incomplete or damaged
--- no_error_log
[error]



=== TEST 2: authorize with a forged session id: expired or used
--- request
GET /v1/connectors/oauth/authorize?session=p1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- error_code: 400
--- response_body_like chomp
expired or was already used
--- no_error_log
[error]



=== TEST 3: authorize with a session of an unknown project
--- request
GET /v1/connectors/oauth/authorize?session=p9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- error_code: 400
--- response_body_like chomp
incomplete or damaged



=== TEST 4: authorize with a short session id
--- request
GET /v1/connectors/oauth/authorize?session=p1.abc
--- error_code: 400
--- response_body_like chomp
incomplete or damaged



=== TEST 5: callback without state
--- request
GET /v1/connectors/oauth/callback?code=abcdef123456
--- error_code: 400
--- response_body_like chomp
This sign-in is not valid
--- response_body_unlike chomp
abcdef123456
--- no_error_log
[error]



=== TEST 6: callback with a forged state: refused, the code is not echoed
--- request
GET /v1/connectors/oauth/callback?code=zyxwv987654&state=p1.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
--- error_code: 400
--- response_body_like chomp
expired or was already completed
--- response_body_unlike chomp
zyxwv987654
--- error_log
OAuth callback with an unknown, used or expired state for project "p1"
--- no_error_log
[error]



=== TEST 7: the access log does not keep the code
--- config
    location /v1/ {
        access_log logs/oauth.log;
        astralform_api;
    }
    location = /oauth.log {
        root $TEST_NGINX_SERVROOT/logs;
    }
--- request eval
["GET /v1/connectors/oauth/callback?x=1&code=secret-code-4242&state=p1.CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
 "GET /oauth.log"]
--- error_code eval
[400, 200]
--- response_body_like eval
[qr/expired or was already completed/,
 qr{"GET /v1/connectors/oauth/callback\?x=1&code=\[redacted\]&state=p1\.C+ HTTP/1\.1" 400}]
--- response_body_unlike eval
[qr/secret-code-4242/, qr/secret-code-4242/]



=== TEST 8: provider errors come back with a state: the state is checked first
--- request
GET /v1/connectors/oauth/callback?error=access_denied&state=p1.DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD
--- error_code: 400
--- response_body_like chomp
expired or was already completed



=== TEST 9: only GET on the browser endpoints
--- request
POST /v1/connectors/oauth/callback
--- error_code: 405
--- response_body_like chomp
"error":"method_not_allowed"



=== TEST 10: connections of a user with nothing stored
--- more_headers eval
"Authorization: Bearer $main::Agent"
--- request
GET /v1/projects/p1/users/nobody-yet/connections
--- error_code: 200
--- response_body_like chomp
^\{"user":"nobody-yet","connections":\[\{"connector":"github","connector_slug":"github","name":"GitHub","type":"oauth","status":"missing","scopes":\[\],"expires_at":null,"credential":null,"refreshable":false,"account_id":null\},\{"connector":"notion",.*"status":"missing".*\}\]\}$
--- no_error_log
[error]



=== TEST 11: the user in the path is checked like X-Astralform-User
--- more_headers eval
"Authorization: Bearer $main::Agent"
--- request
GET /v1/projects/p1/users/a!b/connections
--- error_code: 400
--- response_body_like chomp
"error":"invalid_user"



=== TEST 12: connections need a project key
--- request
GET /v1/projects/p1/users/u1/connections
--- error_code: 401
--- response_body_like chomp
"error":"invalid_api_key"



=== TEST 13: an authorize link on the public URL, with the session TTL
--- more_headers eval
"Authorization: Bearer $main::Agent\nContent-Type: application/json"
--- request
POST /v1/projects/p1/users/u1/connections/github/authorize
{"return_url":"https://app.example.com/settings"}
--- error_code: 200
--- response_body_like chomp
^\{"connector":"github","authorization_url":"https://gw\.example\.com/v1/connectors/oauth/authorize\?session=p1\.[\w-]{43}","expires_in":600\}$
--- no_error_log
[error]



=== TEST 14: a return_url outside the allowed origins
--- more_headers eval
"Authorization: Bearer $main::Agent\nContent-Type: application/json"
--- request
POST /v1/projects/p1/users/u1/connections/github/authorize
{"return_url":"https://app.example.com.evil.example/"}
--- error_code: 400
--- response_body_like chomp
"error":"invalid_return_url"



=== TEST 15: a return_url that is not a string
--- more_headers eval
"Authorization: Bearer $main::Agent\nContent-Type: application/json"
--- request
POST /v1/projects/p1/users/u1/connections/github/authorize
{"return_url":42}
--- error_code: 400
--- response_body_like chomp
"error":"invalid_return_url"



=== TEST 16: an authorize link for a connector the project does not have
--- more_headers eval
"Authorization: Bearer $main::Agent\nContent-Type: application/json"
--- request
POST /v1/projects/p1/users/u1/connections/slack/authorize
{}
--- error_code: 404
--- response_body_like chomp
"error":"connector_not_found"



=== TEST 17: PUT api_key on an OAuth connector
--- more_headers eval
"Authorization: Bearer $main::Agent\nContent-Type: application/json"
--- request
PUT /v1/projects/p1/users/u1/connections/github
{"api_key":"abc"}
--- error_code: 400
--- response_body_like chomp
"error":"not_api_key"



=== TEST 18: disconnecting with nothing stored
--- more_headers eval
"Authorization: Bearer $main::Agent"
--- request
DELETE /v1/projects/p1/users/u1/connections/notion
--- error_code: 200
--- response_body
{"connector":"notion","disconnected":false,"pending_revocations":0}
--- no_error_log
[error]
