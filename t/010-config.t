# Configuration: every astralform_* directive rejects a bad value at start-up
# with a message that names the directive and the problem (the data blocks:
# nginx must die), `nginx -t` reports the same, a good configuration starts,
# and the shipped conf/nginx.conf passes `nginx -t`.
#
# The checks after run_tests() run `nginx -t` directly.

use Test::Nginx::Socket 'no_plan';
use Astralform::Test ();
use File::Copy ();
use File::Path ();
use File::Temp ();

BEGIN {
    unshift @INC, ($ENV{TEST_NGINX_REPO} || '.') . '/t/fixtures';
    $ENV{TEST_NGINX_FIXTURES} = ($ENV{TEST_NGINX_REPO} || '.')
                                . '/t/fixtures';
    $ENV{TEST_NGINX_CATALOG} = ($ENV{TEST_NGINX_REPO} || '.')
                               . '/conf/connectors';
}

use Fixtures;

our $F = $ENV{TEST_NGINX_FIXTURES};

repeat_each(1);
no_shuffle();
log_level('info');

# the runner truncates error.log for each block: keep what was logged; and
# every block gets the API location unless it has a config of its own (the
# real Test::Nginx::Socket starts no new nginx for a block without config)
add_block_preprocessor(sub {
    my $block = shift;
    log_snapshot();
    $block->set_value(config => "    location /v1/ { astralform_api; }\n")
        unless defined $block->config;
});

run_tests();

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $binary = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $tmp = File::Temp::tempdir('astralform-010-XXXXXX', TMPDIR => 1,
                              CLEANUP => 1);


# --- nginx -t on a configuration built like the data blocks' --------------

# (exit status, everything nginx -t printed)
sub conf_test {
    my ($http_config) = @_;
    my $conf = Astralform::Test::nginx_conf(
        http_config => $http_config,
        config => 'location /v1/ { astralform_api; }');
    open my $fh, '>', "$tmp/nginx.conf" or die "$tmp/nginx.conf: $!";
    print $fh $conf;
    close $fh;
    my $out = `$binary -t -p $tmp/ -c $tmp/nginx.conf 2>&1`;
    log_add('nginx -t', $out);
    return ($? >> 8, $out);
}

my $project = <<"_EOC_";
    astralform_key k1 $F/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $repo/conf/connectors;
    astralform_project p1 admin_key_file=$F/p1-admin.keys;
_EOC_

my ($status, $out) = conf_test($project . <<"_EOC_");
    astralform_connector p1 notion client_id=nt
                         client_secret_file=$F/no-such.secret;
_EOC_
isnt($status, 0, 'nginx -t: an unreadable client_secret_file fails');
like($out, qr/\[emerg\] \d+#\d+: "astralform_connector" cannot read secret file "\Q$F\E\/no-such\.secret"/,
     'nginx -t: the message names the file');
like($out, qr/test failed/, 'nginx -t: test failed');

{

    like($out, qr/\[emerg\][^\n]*"astralform_connector"/,
         'nginx -t: an unreadable client_secret_file names '
         . '"astralform_connector"');

    ($status, $out) = conf_test("    astralform_key k1 $F/no-such.key;\n");
    like($out, qr/\[emerg\][^\n]*"astralform_key"/,
         'nginx -t: an unreadable astralform_key file names '
         . '"astralform_key"');

    ($status, $out) = conf_test(<<"_EOC_");
    astralform_key k1 $F/master.key;
    astralform_public_url https://gw.example.com;
    astralform_project p1 admin_key_file=$F/short-admin.keys;
_EOC_
    like($out, qr/\[emerg\][^\n]*"astralform_project"/,
         'nginx -t: a short admin key names "astralform_project"');
}

# for comparison: astralform_redis reads its password_file itself and names
# the directive
($status, $out) = conf_test(
    "    astralform_redis 127.0.0.1:6379 password_file=$F/no-such.pw;\n");
like($out, qr/\[emerg\] \d+#\d+: "astralform_redis" cannot read password_file/,
     'nginx -t: an unreadable password_file names "astralform_redis"');

# one catalog connector twice: its tools would have the same names (the
# API refuses this with 409 already_enabled)
($status, $out) = conf_test($project . <<"_EOC_");
    astralform_connector p1 slack id=slack-a client_id=a
                         client_secret_file=$F/client.secret;
    astralform_connector p1 slack id=slack-b client_id=b
                         client_secret_file=$F/client.secret;
_EOC_
{
    isnt($status, 0, 'nginx -t: slack enabled twice in p1 fails');
    like($out, qr/\[emerg\] \d+#\d+: "astralform_connector p1 slack"/,
         'nginx -t: the message names the connector');
}


# --- the shipped configuration ---------------------------------------------
#
# conf/nginx.conf is tested as shipped, byte for byte, from a copy of the
# layout it expects: ../ngx_astralform_module.so, connectors/ and the key
# files `make run` creates under ../run/keys (here: fixtures).

my $tree = "$tmp/shipped";

File::Path::make_path("$tree/conf", "$tree/run/keys", "$tree/run/logs",
                      "$tree/run/tmp");
File::Copy::copy("$repo/conf/nginx.conf", "$tree/conf/nginx.conf")
    or die "copy conf/nginx.conf: $!";
symlink("$repo/conf/connectors", "$tree/conf/connectors")
    or die "symlink: $!";
symlink(($ENV{TEST_NGINX_LOAD_MODULES} || "$repo/ngx_astralform_module.so"),
        "$tree/ngx_astralform_module.so") or die "symlink: $!";

# the files scripts/run.sh creates on a first `make run`
my %keys = ('master.key' => 'master.key',
            'demo-admin.keys' => 'p1-admin.keys',
            'demo-agent.keys' => 'p1-agent.keys',
            'github-client.secret' => 'client.secret');
for my $k (sort keys %keys) {
    File::Copy::copy("$F/$keys{$k}", "$tree/run/keys/$k")
        or die "copy $keys{$k}: $!";
}

sub shipped_test {
    my $out = `$binary -t -p $tree/run/ -c $tree/conf/nginx.conf 2>&1`;
    my $status = $? >> 8;
    log_add('nginx -t conf/nginx.conf', $out);
    return ($status, $out);
}

($status, $out) = shipped_test();
is($status, 0, 'conf/nginx.conf passes nginx -t') or diag($out);
like($out, qr/syntax is ok/, 'conf/nginx.conf: syntax is ok');
like($out, qr/test is successful/, 'conf/nginx.conf: test is successful');

# the same check fails when make run's master key is missing
unlink "$tree/run/keys/master.key";
($status, $out) = shipped_test();
isnt($status, 0, 'conf/nginx.conf without run/keys/master.key fails');
like($out, qr/\Q$tree\E\/conf\/\.\.\/run\/keys\/master\.key/,
     'nginx -t names the missing key file');
like($out, qr/test failed/, 'conf/nginx.conf without its key: test failed');
log_add('conf/nginx.conf error log',
        scalar `cat $tree/run/logs/*.log 2>/dev/null`);


# --- no secret in any log ----------------------------------------------------

scan_logs();

__DATA__

=== TEST 1: a configuration using every directive starts
--- http_config
    astralform_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=0
                     connect_timeout=300ms timeout=2s;
    astralform_redis_prefix t010:;
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_key old $TEST_NGINX_FIXTURES/old.key;
    astralform_key raw $TEST_NGINX_FIXTURES/raw32.key;
    astralform_public_url https://gw.example.com/;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_provider github api_base=https://ghe.example.com/api/v3/
                        authorize_url=https://ghe.example.com/login/oauth/authorize
                        token_url=https://ghe.example.com/login/oauth/access_token
                        "revoke_url=https://ghe.example.com/api/v3/applications/{client_id}/grant";
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys
                       agent_key_file=$TEST_NGINX_FIXTURES/p1-agent.keys;
    astralform_project p2 admin_key_file=$TEST_NGINX_FIXTURES/p2-admin.keys;
    astralform_connector p1 github client_id=gh-client
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret
                         scopes=repo,read:user require_auth=off
                         allow_end_user_auth=on agents=a1,a2;
    astralform_connector p1 openweather
                         api_key_file=$TEST_NGINX_FIXTURES/service-api.key
                         allow_end_user_auth=off;
    astralform_connector p1 remote_mcp id=docs mcp_url=https://mcp.example.com/mcp;
    astralform_connector p2 github client_id=gh-client-2
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret;
    astralform_return_origin https://app.example.com http://localhost:3000;
    astralform_mcp_allowed_origin https://mcp.example.com;
    astralform_max_body_size 8k;
    astralform_http_ca_file /etc/ssl/certs/ca-certificates.crt;
    astralform_http_connect_timeout 2s;
    astralform_http_timeout 10s;
    astralform_http_max_response_size 1m;
    astralform_http_max_host_connections 8;
    astralform_session_ttl 5m;
    astralform_state_ttl 5m;
    astralform_refresh_skew 30s;
    astralform_revoke_timeout 3s;
--- config
    location /v1/ {
        astralform_api;
    }
--- request
GET /v1/health
--- response_body_like: ^\{"status":"ok","redis":"up","mode":"single","master":"127\.0\.0\.1:\d+","version":"0\.10\.0"\}$
--- no_error_log
[error]
[emerg]



=== TEST 2: astralform_redis: a bad address
--- http_config
    astralform_redis 127.0.0.1:notaport;
--- must_die
--- error_log
"astralform_redis" has a bad address "127.0.0.1:notaport": invalid port



=== TEST 3: astralform_redis: an unknown parameter
--- http_config
    astralform_redis 127.0.0.1:6379 pool=4;
--- must_die
--- error_log
"astralform_redis" has an invalid parameter "pool=4"



=== TEST 4: astralform_redis: a db that is not a number
--- http_config
    astralform_redis 127.0.0.1:6379 db=two;
--- must_die
--- error_log
"astralform_redis" has an invalid parameter "db=two"



=== TEST 5: astralform_redis: a timeout that is not a time
--- http_config
    astralform_redis 127.0.0.1:6379 timeout=soon;
--- must_die
--- error_log
"astralform_redis" has an invalid parameter "timeout=soon"



=== TEST 6: astralform_redis: an unreadable password_file
--- http_config
    astralform_redis 127.0.0.1:6379
                     password_file=$TEST_NGINX_FIXTURES/no-such.password;
--- must_die
--- error_log eval
qq{"astralform_redis" cannot read password_file "$::F/no-such.password"}



=== TEST 7: astralform_redis: an empty unix socket path
--- http_config
    astralform_redis unix:;
--- must_die
--- error_log
"astralform_redis" directive has an empty unix socket path



=== TEST 8: astralform_redis: given twice
--- http_config
    astralform_redis 127.0.0.1:6379;
    astralform_redis 127.0.0.1:6380;
--- must_die
--- error_log
"astralform_redis" directive is duplicate



=== TEST 9: astralform_key: a short key file
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/short.key;
--- must_die
--- error_log eval
qq{"astralform_key" file "$::F/short.key" must hold 32 raw bytes or 64 hex characters, not 16 bytes}



=== TEST 10: astralform_key: 64 characters that are not hex
--- user_files
>>> zz.key
zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz
--- http_config
    astralform_key k1 ../html/zz.key;
--- must_die
--- error_log eval
qr{"astralform_key" file "\.\./html/zz\.key" must hold 32 raw bytes or 64 hex characters, not 64 bytes}



=== TEST 11: astralform_key: an unreadable file
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/no-such.key;
--- must_die
--- error_log eval
qq{cannot read secret file "$::F/no-such.key"}



=== TEST 12: astralform_key: a bad id
--- http_config
    astralform_key k.1 $TEST_NGINX_FIXTURES/master.key;
--- must_die
--- error_log
"astralform_key" id "k.1" may only hold letters, digits, "_" and "-"



=== TEST 13: astralform_key: an id longer than 32 characters
--- http_config
    astralform_key k123456789012345678901234567890123 $TEST_NGINX_FIXTURES/master.key;
--- must_die
--- error_log
"astralform_key" id must be 1 to 32 characters



=== TEST 14: astralform_key: a duplicate id
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_key k1 $TEST_NGINX_FIXTURES/old.key;
--- must_die
--- error_log
duplicate "astralform_key" id "k1"



=== TEST 15: astralform_public_url: not http(s)
--- http_config
    astralform_public_url ftp://gw.example.com;
--- must_die
--- error_log
"astralform_public_url" must be an absolute http(s) URL without a query, not "ftp://gw.example.com"



=== TEST 16: astralform_public_url: with a query
--- http_config
    astralform_public_url https://gw.example.com/?a=1;
--- must_die
--- error_log
"astralform_public_url" must be an absolute http(s) URL without a query, not "https://gw.example.com/?a=1"



=== TEST 17: astralform_public_url: without a host
--- http_config
    astralform_public_url https:///path;
--- must_die
--- error_log
"astralform_public_url" must be an absolute http(s) URL without a query, not "https:///path"



=== TEST 18: astralform_catalog: an unreadable path
--- http_config
    astralform_catalog $TEST_NGINX_FIXTURES/no-such-catalog;
--- must_die
--- error_log eval
qq{"astralform_catalog" cannot read "$::F/no-such-catalog"}



=== TEST 19: astralform_catalog: a file that is not JSON
--- user_files
>>> cat/broken.json
{"slug": "broken", "name": "Broken",
--- http_config
    astralform_catalog ../html/cat/broken.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/broken\.json" is not valid JSON: .+ at line \d+}



=== TEST 20: astralform_catalog: a folder with one bad file names that file
--- user_files
>>> cat/good.json
{"slug": "good", "name": "Good", "type": "remote_mcp"}
>>> cat/nameless.json
{"slug": "nameless", "type": "remote_mcp"}
--- http_config
    astralform_catalog ../html/cat;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/nameless\.json": field "name" must be a string}



=== TEST 21: astralform_catalog: a missing slug
--- user_files
>>> cat/x.json
{"name": "X", "type": "remote_mcp"}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "slug" must be a non-empty string\E}



=== TEST 22: astralform_catalog: an unknown type
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "soap"}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "type" must be "oauth", "api_key" or "remote_mcp"\E}



=== TEST 23: astralform_catalog: an oauth connector without a token_url
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "oauth",
 "oauth": {"authorize_url": "https://x.example.com/authorize"},
 "api": {"base_url": "https://api.x.example.com/"},
 "tools": [{"name": "x_get", "description": "Get.", "method": "GET",
            "path": "get", "input_schema": {"type": "object"}}]}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "oauth.token_url" must be a URL\E}



=== TEST 24: astralform_catalog: no tools
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "api_key",
 "api": {"base_url": "https://api.x.example.com/"}, "tools": []}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "tools" must be a non-empty array\E}



=== TEST 25: astralform_catalog: a tool without an input_schema
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "api_key",
 "api": {"base_url": "https://api.x.example.com/"},
 "tools": [{"name": "x_get", "description": "Get.", "method": "GET",
            "path": "get"}]}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "x_get" needs an "input_schema" of type "object"\E}



=== TEST 26: astralform_catalog: a tool argument the schema does not define
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "api_key",
 "api": {"base_url": "https://api.x.example.com/"},
 "tools": [{"name": "x_get", "description": "Get.", "method": "GET",
            "path": "get", "query": ["q"],
            "input_schema": {"type": "object", "properties": {}}}]}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "x_get" places an argument the input_schema does not define\E}



=== TEST 27: astralform_catalog: an api.base_url that is not a URL
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "api_key",
 "api": {"base_url": "ftp://api.x.example.com/"},
 "tools": [{"name": "x_get", "description": "Get.", "method": "GET",
            "path": "get", "input_schema": {"type": "object"}}]}
--- http_config
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Q"ftp://api.x.example.com/" is not an absolute http(s) URL\E}



=== TEST 28: astralform_catalog: a slug loaded twice
--- user_files
>>> cat/slack.json
{"slug": "slack", "name": "Another Slack", "type": "remote_mcp"}
--- http_config
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_catalog ../html/cat/slack.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/slack\.json": \Qfield "slug" is a duplicate of another catalog file's slug\E}



=== TEST 29: astralform_catalog: a tool name another connector has
--- user_files
>>> cat/x.json
{"slug": "x", "name": "X", "type": "api_key",
 "api": {"base_url": "https://api.x.example.com/"},
 "tools": [{"name": "slack_send_message", "description": "Send.",
            "method": "POST", "path": "send",
            "input_schema": {"type": "object"}}]}
--- http_config
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_catalog ../html/cat/x.json;
--- must_die
--- error_log eval
qr{"astralform_catalog" file "[^"]*/html/cat/x\.json": \Qfield "slack_send_message" is a tool name another connector already has\E}



=== TEST 30: astralform_provider: an unknown slug
--- http_config
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_provider gitlab api_base=https://gitlab.example.com/api/v4/;
--- must_die
--- error_log
"astralform_provider" names the unknown connector "gitlab" in



=== TEST 31: astralform_provider: a bad URL
--- http_config
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_provider github token_url=ftp://ghe.example.com/token;
--- must_die
--- error_log
"astralform_provider" has a bad URL in "token_url=ftp://ghe.example.com/token"



=== TEST 32: astralform_provider: an unknown key
--- http_config
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_provider github base_url=https://ghe.example.com/api/;
--- must_die
--- error_log
"astralform_provider" has an invalid parameter "base_url=https://ghe.example.com/api/" (api_base=, authorize_url=, token_url= or revoke_url=)



=== TEST 33: astralform_provider: a parameter without a value
--- http_config
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_provider github api_base;
--- must_die
--- error_log
"astralform_provider" has an invalid parameter "api_base"



=== TEST 34: astralform_project: a duplicate
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p2-admin.keys;
--- must_die
--- error_log
duplicate "astralform_project" "p1"



=== TEST 35: astralform_project: no admin_key_file
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_project p1 agent_key_file=$TEST_NGINX_FIXTURES/p1-agent.keys;
--- must_die
--- error_log
"astralform_project" "p1" needs admin_key_file=



=== TEST 36: astralform_project: a short key
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/short-admin.keys;
--- must_die
--- error_log eval
qq{"astralform_project" has a key in "$::F/short-admin.keys" shorter than 16 characters}



=== TEST 37: astralform_project: a short agent key, among good ones
--- user_files
>>> agent.keys
a-good-agent-key-0123456789
short-key
another-good-agent-key-0123
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys
                       agent_key_file=../html/agent.keys;
--- must_die
--- error_log
"astralform_project" has a key in "../html/agent.keys" shorter than 16 characters



=== TEST 38: astralform_project: an unreadable admin_key_file
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/no-such.keys;
--- must_die
--- error_log eval
qq{cannot read secret file "$::F/no-such.keys"}



=== TEST 39: astralform_project: a bad id
--- http_config
    astralform_project p.1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
--- must_die
--- error_log
"astralform_project" id "p.1" must be 1 to 64 letters, digits, "_" or "-"



=== TEST 40: astralform_project: an unknown parameter
--- http_config
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys
                       keys=$TEST_NGINX_FIXTURES/p2-admin.keys;
--- must_die
--- error_log eval
qq{"astralform_project" has an invalid parameter "keys=$::F/p2-admin.keys"}



=== TEST 41: projects need an astralform_key
--- http_config
    astralform_public_url https://gw.example.com;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
--- must_die
--- error_log
no "astralform_key" is defined: projects need a key to seal their secrets



=== TEST 42: projects need an astralform_public_url
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
--- must_die
--- error_log
no "astralform_public_url" is defined: OAuth needs it for the redirect URI



=== TEST 43: astralform_connector: an unknown project
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p9 github client_id=gh
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret;
--- must_die
--- error_log
"astralform_connector p9 github" names an unknown project in



=== TEST 44: astralform_connector: an unknown slug
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 gitlab client_id=gl
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret;
--- must_die
--- error_log
"astralform_connector p1 gitlab" names a connector slug the catalog does not have



=== TEST 45: astralform_connector: oauth without client_id
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 slack
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret;
--- must_die
--- error_log
"astralform_connector p1 slack" needs client_id= and client_secret_file= for an oauth connector



=== TEST 46: astralform_connector: oauth without a client secret
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 notion client_id=nt;
--- must_die
--- error_log
"astralform_connector p1 notion" needs client_id= and client_secret_file= for an oauth connector



=== TEST 47: astralform_connector: an unreadable client_secret_file
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 notion client_id=nt
                         client_secret_file=$TEST_NGINX_FIXTURES/no-such.secret;
--- must_die
--- error_log eval
qq{cannot read secret file "$::F/no-such.secret"}



=== TEST 48: astralform_connector: remote_mcp without an id
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 remote_mcp mcp_url=https://mcp.example.com/mcp;
--- must_die
--- error_log
"astralform_connector p1 remote_mcp" needs mcp_url= and id= for a remote_mcp connector



=== TEST 49: astralform_connector: remote_mcp without mcp_url
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 remote_mcp id=docs;
--- must_die
--- error_log
"astralform_connector p1 remote_mcp" needs mcp_url= and id= for a remote_mcp connector



=== TEST 50: astralform_connector: api_key without a key while end users may not bring one
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 openweather allow_end_user_auth=off;
--- must_die
--- error_log
"astralform_connector p1 openweather" needs api_key_file= when end users may not bring their own key



=== TEST 51: astralform_connector: a duplicate id
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 remote_mcp id=docs mcp_url=https://a.example.com/mcp;
    astralform_connector p1 openweather id=docs
                         api_key_file=$TEST_NGINX_FIXTURES/service-api.key;
--- must_die
--- error_log
"astralform_connector p1 openweather" repeats a connector id of the project



=== TEST 52: astralform_connector: the same id in two projects is fine
--- http_config
    astralform_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_project p2 admin_key_file=$TEST_NGINX_FIXTURES/p2-admin.keys;
    astralform_connector p1 remote_mcp id=docs mcp_url=https://a.example.com/mcp;
    astralform_connector p2 remote_mcp id=docs mcp_url=https://b.example.com/mcp;
--- config
    location /v1/ {
        astralform_api;
    }
--- request
GET /v1/health
--- response_body_like: ^\{"status":"ok","redis":"up","mode":"single","master":"127\.0\.0\.1:\d+","version":"0\.10\.0"\}$
--- no_error_log
[error]



=== TEST 53: astralform_connector: a bad mcp_url
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 remote_mcp id=docs mcp_url=ftp://mcp.example.com/;
--- must_die
--- error_log
"astralform_connector" has a bad URL in "mcp_url=ftp://mcp.example.com/"



=== TEST 54: astralform_connector: an unknown parameter
--- http_config
    astralform_key k1 $TEST_NGINX_FIXTURES/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_CATALOG;
    astralform_project p1 admin_key_file=$TEST_NGINX_FIXTURES/p1-admin.keys;
    astralform_connector p1 github client_id=gh colour=blue
                         client_secret_file=$TEST_NGINX_FIXTURES/client.secret;
--- must_die
--- error_log
"astralform_connector" has an invalid parameter "colour=blue"



=== TEST 55: astralform_connector: require_auth neither on nor off
--- http_config
    astralform_connector p1 github require_auth=yes;
--- must_die
--- error_log
"astralform_connector" has an invalid parameter "require_auth=yes"



=== TEST 56: astralform_connector: a bad id
--- http_config
    astralform_connector p1 remote_mcp id=my.docs;
--- must_die
--- error_log
"astralform_connector" has an invalid parameter "id=my.docs"



=== TEST 57: astralform_connector: a parameter without "="
--- http_config
    astralform_connector p1 github public;
--- must_die
--- error_log
"astralform_connector" has an invalid parameter "public"



=== TEST 58: astralform_return_origin: not an origin
--- http_config
    astralform_return_origin https://app.example.com/after-connect;
--- must_die
--- error_log
"astralform_return_origin" must be an origin such as https://app.example.com, not "https://app.example.com/after-connect"



=== TEST 59: a tuning directive with a bad value
--- http_config
    astralform_http_timeout soon;
--- must_die
--- error_log
"astralform_http_timeout" directive invalid value



=== TEST 60: astralform_api twice in a location
--- config
    location /v1/ {
        astralform_api;
        astralform_api;
    }
--- must_die
--- error_log
"astralform_api" directive is duplicate



=== TEST 61: astralform_redis: sentinel= needs master=
--- http_config
    astralform_redis sentinel=127.0.0.1:26379;
--- must_die
--- error_log
"astralform_redis" directive needs "master=" with "sentinel="



=== TEST 62: astralform_redis: no db= in a cluster
--- http_config
    astralform_redis cluster=127.0.0.1:7000 db=2;
--- must_die
--- error_log
"astralform_redis" directive cannot select a "db=" in a cluster (only db 0 exists)



=== TEST 63: astralform_redis: an address and sentinel= at once
--- http_config
    astralform_redis 127.0.0.1:6379 sentinel=127.0.0.1:26379 master=m;
--- must_die
--- error_log
"astralform_redis" directive takes either an address or "sentinel=" or "cluster="



=== TEST 64: astralform_redis: a bad sentinel address
--- http_config
    astralform_redis sentinel=127.0.0.1:26379,:x master=m;
--- must_die
--- error_log
"astralform_redis" has a bad address ":x"
