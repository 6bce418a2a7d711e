# Messages that say how to fix it (issue 10, item 4): `nginx -t` refuses a
# public_url with a path, empty list items, one key for admin and agent, a
# Redis address without a port, and names the known slugs for an unknown
# one; API validation errors name the field (unknown ones included), list
# an enum's allowed values and show the pattern.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use File::Temp ();
use JSON::PP ();

BEGIN { unshift @INC, ($ENV{TEST_NGINX_REPO} || '.') . '/t/fixtures' }
use Fixtures;

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $F = fixture_dir();
my $binary = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $tmp = File::Temp::tempdir('astralform-011-XXXXXX', TMPDIR => 1,
                              CLEANUP => 1);
my $json = JSON::PP->new->canonical;
mkdir "$tmp/logs";

sub conf_test {
    my ($http) = @_;
    my $conf = nginx_conf(http_config => $http, servroot => $tmp,
                          config => 'location /v1/ { astralform_api; }');
    open my $fh, '>', "$tmp/nginx.conf" or die "$tmp/nginx.conf: $!";
    print $fh $conf;
    close $fh;
    my $out = `$binary -t -p $tmp/ -c $tmp/nginx.conf 2>&1`;
    log_add('nginx -t', $out);
    return ($? >> 8, $out);
}

my $base = <<"_EOC_";
    astralform_key k1 $F/master.key;
    astralform_catalog $repo/conf/connectors;
    astralform_project p1 admin_key_file=$F/p1-admin.keys
                       agent_key_file=$F/p1-agent.keys;
_EOC_
my $url = "    astralform_public_url https://gw.example.com;\n";

# every case: (name, http_config, expected message)
my @cases = (
    ['a public_url with a path',
     $base . "    astralform_public_url https://gw.example.com/gateway;\n",
     qr/\[emerg\][^\n]*"astralform_public_url" must be an origin such as https:\/\/gw\.example\.com, without a path[^\n]*"https:\/\/gw\.example\.com\/gateway"/],
    ['an empty agents= item',
     $base . $url . "    astralform_connector p1 notion client_id=n "
         . "client_secret_file=$F/client.secret agents=bot1,,bot2;\n",
     qr/\[emerg\][^\n]*"astralform_connector" has an empty item in "agents=bot1,,bot2"/],
    ['a trailing comma in agents=',
     $base . $url . "    astralform_connector p1 notion client_id=n "
         . "client_secret_file=$F/client.secret agents=bot1,;\n",
     qr/empty item in "agents=bot1,"/],
    ['an empty scopes= item',
     $base . $url . "    astralform_connector p1 notion client_id=n "
         . "client_secret_file=$F/client.secret scopes=,read;\n",
     qr/\[emerg\][^\n]*"astralform_connector" has an empty item in "scopes=,read"/],
    ['one key file for admin and agent keys',
     "    astralform_key k1 $F/master.key;\n$url"
         . "    astralform_project p1 admin_key_file=$F/p1-admin.keys "
         . "agent_key_file=$F/p1-admin.keys;\n",
     qr/\[emerg\][^\n]*one key is given twice, in "astralform_project p1 admin_key_file=" and in "astralform_project p1 agent_key_file="/],
    ['a Redis address without a port',
     "    astralform_redis 127.0.0.1;\n",
     qr/\[emerg\][^\n]*"astralform_redis" address "127\.0\.0\.1" has no port: write "127\.0\.0\.1:6379"/],
    ['an unknown slug',
     $base . $url . "    astralform_connector p1 notoin client_id=n "
         . "client_secret_file=$F/client.secret;\n",
     qr/\[emerg\][^\n]*"astralform_connector p1 notoin" names a connector slug the catalog does not have \(known:[^)]*\bnotion\b[^)]*\bslack\b[^)]*\)/],
);

for my $c (@cases) {
    my ($name, $http, $re) = @$c;
    my ($status, $out) = conf_test($http);
    isnt($status, 0, "nginx -t fails: $name");
    like($out, $re, "nginx -t says how to fix it: $name");
}

# and the good forms of the same directives pass
{
    my ($status, $out) = conf_test($base . $url
        . "    astralform_redis 127.0.0.1:6379;\n"
        . "    astralform_connector p1 notion client_id=n "
        . "client_secret_file=$F/client.secret agents=bot1,bot2 "
        . "scopes=read;\n");
    is($status, 0, 'nginx -t passes the corrected configuration')
        or diag($out);
}


# --- the API's validation messages -----------------------------------------

my $admin = fixture_line('p1-admin.keys');
my $agent = fixture_line('p1-agent.keys');
my $mock = $ENV{TEST_NGINX_MOCK_PORT};

redis_cmd('FLUSHDB');
log_snapshot();
start_nginx(http_config => <<"_EOC_", config => 'location /v1/ { astralform_api; }')
    astralform_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    astralform_key k1 $F/master.key;
    astralform_public_url http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT};
    astralform_catalog $repo/conf/connectors;
    astralform_catalog $repo/t/catalog;
    astralform_project p1 admin_key_file=$F/p1-admin.keys
                       agent_key_file=$F/p1-agent.keys;
    astralform_connector p1 openweather
                         api_key_file=$F/service-api.key;
    astralform_connector p1 github client_id=gh
                         client_secret_file=$F/client.secret;
_EOC_
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

sub api {
    my ($method, $path, $key, $body, @h) = @_;
    my ($st, $hd, $b) = http_req($method, $path,
        ['Authorization' => "Bearer $key",
         'Content-Type' => 'application/json', @h],
        defined $body ? $json->encode($body) : undef);
    my $doc = eval { JSON::PP::decode_json($b) } || {};
    return ($st, $doc);
}

my ($st, $doc) = api('POST', '/v1/projects/p1/connectors', $admin,
                     { connector_slug => 'notion', oauth_client_id => 'n',
                       oauth_client_secret => 'x', oauth_scope => 'read' });
is($st, 400, 'enable with a misspelt field: 400');
is($doc->{error}, 'invalid_request', '... invalid_request');
like($doc->{message}, qr/unknown field "oauth_scope" in the body; this endpoint takes "connector_slug", "id", "oauth_client_id", "oauth_client_secret", "api_key", "mcp_url", "oauth_scopes", "require_auth", "allow_end_user_auth"/,
     '... names the field and lists the known ones');

($st, $doc) = api('PATCH', '/v1/projects/p1/connectors/openweather', $admin,
                  { requireauth => JSON::PP::true });
is($st, 400, 'update with a misspelt field: 400, before anything else');
like($doc->{message}, qr/unknown field "requireauth"/, '... named');

($st, $doc) = api('POST', '/v1/projects/p1/connectors', $admin,
                  { connector_slug => 'notoin' });
is($doc->{error}, 'unknown_connector', 'an unknown slug: unknown_connector');
like($doc->{message}, qr/the catalog has no connector "notoin"; known slugs: .*"notion".*"slack"/,
     '... lists the known slugs');

($st, $doc) = api('POST', '/v1/projects/p1/connectors', $admin,
                  { connector_slug => 7 });
like($doc->{message}, qr/"connector_slug" must be one of the catalog's slugs: .*"github"/,
     'a slug that is no string: the allowed values');

($st, $doc) = api('POST', '/v1/projects/p1/connectors', $admin,
                  { connector_slug => 'slack', id => 'bad id',
                    oauth_client_id => 'c', oauth_client_secret => 's' });
like($doc->{message}, qr/"id" must be .*\(pattern \^\[A-Za-z0-9_-\]\{1,64\}\$\)/,
     'a bad id: the pattern');

($st, $doc) = api('PUT', '/v1/projects/p1/agents/bot1/connectors', $admin,
                  { connectors => ['openweather'], extra => 1 });
is($st, 400, 'assignment with an extra field: 400');
like($doc->{message}, qr/unknown field "extra" in the body; this endpoint takes "connectors"/,
     '... names it');

($st, $doc) = api('PUT', '/v1/projects/p1/agents/bot1/connectors', $admin,
                  { connectors => ['slak'] });
like($doc->{message}, qr/the project has no connector "slak"; it has: "openweather"/,
     'assignment of an unknown connector: the ids the project has');

($st, $doc) = api('POST', '/v1/projects/p1/tools/call', $agent,
                  { name => 'openweather_current', argument => {} },
                  'X-Astralform-User' => 'u1');
is($st, 400, 'tool call with "argument": 400');
like($doc->{message}, qr/unknown field "argument" in the body; this endpoint takes "name", "arguments"/,
     '... names the field');

($st, $doc) = api('PUT', '/v1/projects/p1/users/u1/connections/openweather',
                  $agent, { apikey => 'k' });
like($doc->{message}, qr/unknown field "apikey"[^"]*"api_key"/,
     'user key with a misspelt field: named');

# the tools' own input schemas: enum values and patterns
($st, $doc) = api('POST', '/v1/projects/p1/tools/call', $agent,
                  { name => 'openweather_current',
                    arguments => { q => 'Paris', units => 'kelvin' } },
                  'X-Astralform-User' => 'u1');
is($doc->{error}, 'invalid_arguments', 'a value outside an enum');
like($doc->{message}, qr/arguments\.units must be one of "standard", "metric", "imperial"/,
     '... lists the allowed values');

($st, $doc) = api('POST', '/v1/projects/p1/tools/call', $agent,
                  { name => 'openweather_current',
                    arguments => { q => 'Paris', colour => 1 } },
                  'X-Astralform-User' => 'u1');
like($doc->{message}, qr/arguments\.colour is not a known argument; known: "q"/,
     'an unknown argument: the known ones');

($st, $doc) = api('POST', '/v1/projects/p1/tools/call', $agent,
                  { name => 'github_list_repos',
                    arguments => { affiliation => 'friends' } },
                  'X-Astralform-User' => 'u1');
is($doc->{error}, 'invalid_arguments', 'a value off a pattern');
like($doc->{message}, qr/arguments\.affiliation must match the pattern \^\(owner\|collaborator/,
     '... shows the pattern');

stop_nginx();
scan_logs();
done_testing();
