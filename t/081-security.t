# Issue 8, the gateway as an attacker sees it:
#   - dot segments in path arguments never change the path (an operator
#     catalog without patterns, an api_base with a path);
#   - no credential the gateway sent comes back (a provider that echoes);
#   - ?CODE= (any case) is redacted in the access and error logs;
#   - a stranger's callback does not burn the real browser's sign-in;
#   - authorize re-checks allow_end_user_auth;
#   - a connect link shows a confirmation page; only its CSRF-safe POST
#     sends the browser to the provider.

use strict;
use warnings;
use Test::More;
use JSON::PP;
use URI::Escape ();
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $M = "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}";
my $PUB = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/081";
my $PROJECT_KEY = 'project-key-81/with+specials=ok';
my $USER_KEY = 'user-key-81"quoted"/and\\slash';

my $cfg = oauth_config(prefix => 't081:', dir => 't/tmp/081', connectors => 0);
mkdir "$dir/catalog";

sub tool {
    my ($name, $path, %o) = @_;
    return { name => $name, description => "echo $name", method => 'GET',
             path => $path, query => $o{query} || [], body => [],
             input_schema => { type => 'object',
                               properties => { map { $_ => { type => 'string' } }
                                               @{ $o{args} || [] } },
                               additionalProperties => JSON::PP::false } };
}

# an operator's catalog: no patterns on the path arguments
for my $c ([ 'echokey', { in => 'query', name => 'appid' }, 'k' ],
           [ 'echohdr', { in => 'header', name => 'Authorization',
                          prefix => 'Bearer ' }, 'h' ]) {
    my ($slug, $auth, $p) = @{$c};
    spew("$dir/catalog/$slug.json", JSON::PP->new->encode({
        slug => $slug, name => "Echo $p", type => 'api_key',
        category => 'test', description => 'echoes the request',
        api => { base_url => "https://echo.invalid/api/v3/", headers => {},
                 auth => $auth, error_style => 'http' },
        tools => [ tool("${p}_item", 'items/{id}', args => ['id']),
                   tool("${p}_repo", 'repos/{owner}/{repo}/issues',
                        args => [qw(owner repo)]),
                   tool("${p}_pair", 'x/{a}{b}', args => [qw(a b)]),
                   tool("${p}_error", 'error', args => ['x'], query => ['x']),
                   tool("${p}_page", 'page', args => ['x'], query => ['x']),
                   tool("${p}_text", 'text') ] }));
}
spew("$dir/project.key", "$PROJECT_KEY\n");
remember_secret($PROJECT_KEY, $USER_KEY);

my $http = $cfg->{http_config} . <<"_EOC_";
    astralform_catalog $dir/catalog;
    astralform_provider echokey api_base=$M/echo/api/v3/;
    astralform_provider echohdr api_base=$M/echo/api/v3/;
    astralform_connector p1 echokey api_key_file=$dir/project.key;
    astralform_connector p1 echohdr allow_end_user_auth=on;
_EOC_

sub start {
    my ($level) = @_;
    start_nginx(http_config => $http, log_level => $level, config => <<'_EOC_')
    location /v1/ {
        access_log logs/access.log;
        astralform_api;
    }
_EOC_
        or BAIL_OUT("nginx: $Astralform::Test::StartError");
}

start('info');
redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't081:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

sub echo_requests { scalar @{ mock('GET', '/__mock/requests?prefix=/echo/')->{requests} } }
sub call { api('POST', '/v1/projects/p1/tools/call',
               { name => $_[0], arguments => $_[1] || {} }, user => 'u1') }

# --- 3. dot segments --------------------------------------------------------

my $before = echo_requests();
for my $bad ('..', '.', '') {
    my ($st, $h, $res) = call('k_item', { id => $bad });
    is($st, 400, "id=\"$bad\": 400");
    is($res->{error}, 'invalid_arguments', "id=\"$bad\": invalid_arguments");
    like($res->{message} // '', qr/"id"/, "id=\"$bad\": names the argument");
}
my ($st, $h, $res) = call('k_repo', { owner => '..', repo => '..' });
is($st, 400, 'repos/../..: 400');
like($res->{message} // '', qr/"owner"/, 'repos/../..: names owner');
($st, $h, $res) = call('k_pair', { a => '.', b => '.' });
is($st, 400, 'x/{a}{b} = "..": 400');
is(echo_requests(), $before, 'no refused call reached the provider');

for my $ok ('%2e%2e', '...', '.x', '..;') {
    mock('POST', '/__mock/reset');
    ($st, $h, $res) = call('k_item', { id => $ok });
    is($st, 200, "id=\"$ok\": 200");
    my ($req) = @{ mock('GET', '/__mock/requests?prefix=/echo/')->{requests} };
    like($req->{path} // '', qr{^/echo/api/v3/items/[^/]+$},
         "id=\"$ok\": stays in its segment under the api_base path")
        or diag($req->{path});
}

# --- 4. credential echoes ---------------------------------------------------

($st) = api('PUT', '/v1/projects/p1/users/u1/connections/echohdr',
            { api_key => $USER_KEY });
is($st, 200, 'the user\'s own key stored');

sub clean_ok {
    my ($name, $res, $secret) = @_;
    my $text = ref $res ? JSON::PP->new->canonical->encode($res) : $res;
    my @forms = ($secret, URI::Escape::uri_escape($secret),
                 lc URI::Escape::uri_escape($secret),
                 substr(JSON::PP->new->allow_nonref->encode($secret), 1, -1));
    for my $f (@forms) {
        unlike($text, qr/\Q$f\E/i, "$name: no credential form ($f)");
    }
    like($text, qr/\[redacted\]/, "$name: redacted");
}

($st, $h, $res) = call('h_error', { x => 'q1' });
is($st, 502, 'echoed Authorization in an error body: 502');
is($res->{error}, 'provider_error', 'provider_error');
clean_ok('error body quoting Authorization', $res, $USER_KEY);

($st, $h, $res) = call('k_error', { x => 'q1' });
clean_ok('error body quoting ?appid=', $res, $PROJECT_KEY);

($st, $h, $res) = call('k_page', { x => 'q2' });
is($st, 200, 'pagination links: 200');
clean_ok('pagination links with appid=KEY', $res, $PROJECT_KEY);
is_deeply($res->{result}{items}, [1, 2], 'the rest of the result intact');

($st, $h, $res) = call('h_page', { x => 'q2' });
clean_ok('a key named after the token', $res, $USER_KEY);

($st, $h, $res) = call('h_text');
is($st, 200, 'a text answer: 200');
clean_ok('a text answer quoting the request', $res, $USER_KEY);

# --- 6, 7, 8: the connect flow ---------------------------------------------

($st) = admin_api('POST', '/v1/projects/p1/connectors',
                  { connector_slug => 'github', oauth_client_id => 'github-cid',
                    oauth_client_secret => $SECRET });
is($st, 201, 'github enabled through the API');

# 8. the confirmation page
my $link = start_link('github', 'u-c');
my $b = browser();
my $page = $b->get($link);
is($page->code, 200, 'confirm: the link shows a page');
like($page->header('Content-Type'), qr{^text/html}, 'confirm: HTML');
my $html = $page->decoded_content;
like($html, qr/Connect GitHub\?/, 'confirm: names the connector');
like($html, qr/<strong>p1<\/strong>/, 'confirm: names the project');
like($html, qr/<strong>u-c<\/strong>/, 'confirm: names the user');
like($html, qr/<form method="post" action="\Q$PUB\E\/v1\/connectors\/oauth\/authorize">/,
     'confirm: a POST form to the gateway');
unlike($html, qr/<script/i, 'confirm: no script');
is($page->header('X-Frame-Options'), 'DENY', 'confirm: X-Frame-Options DENY');
like($page->header('Content-Security-Policy') // '',
     qr/^default-src 'none';.*frame-ancestors 'none'.*form-action 'self' \Q$PUB\E \Q$M\E$/,
     'confirm: strict CSP, the form may go only to the gateway and the provider');
like($page->header('Set-Cookie') // '',
     qr{^astralform_confirm_[\w-]{12}=[\w-]{22}; Path=/v1/connectors/oauth/authorize; Max-Age=\d+; HttpOnly; SameSite=Strict$},
     'confirm: the binding cookie');
is($page->header('Location'), undef, 'confirm: no redirect yet');
my @states = redis_keys('{p1}:state:*');
is(scalar @states, 0, 'confirm: no state yet');
is($b->get($link)->code, 200, 'confirm: opening it again: not spent');

my $r = confirm(browser(), $page);
is($r->code, 403, 'confirm: another browser (no cookie): 403');
like($r->decoded_content, qr/did not come from the page/, 'confirm: says why');
$r = confirm($b, $page, headers => [ Origin => 'https://evil.example' ]);
is($r->code, 403, 'confirm: a foreign Origin: 403');
$r = confirm($b, $page, headers => [ 'Sec-Fetch-Site' => 'cross-site' ]);
is($r->code, 403, 'confirm: Sec-Fetch-Site cross-site: 403');
$r = confirm($b, $page, form => { csrf => 'A' x 43 });
is($r->code, 403, 'confirm: a forged token: 403');
$r = $b->post("$PUB/v1/connectors/oauth/authorize", { session => 'x' },
              Origin => $PUB);
is($r->code, 400, 'confirm: a broken form: 400');

$r = confirm($b, $page);
is($r->code, 302, 'confirm: the POST redirects to the provider');
like($r->header('Location') // '', qr{^\Q$M\E/github/login/oauth/authorize\?},
     'confirm: to the consent page');
$r = confirm($b, $page);
is($r->code, 400, 'confirm: the token works once');
like($r->decoded_content, qr/expired or was already used/, 'confirm: spent');

# 6. a stranger's callback does not burn the sign-in
my $alice = browser();
my $flow = connect_flow($alice, start_link('github', 'u-s'),
                        stop_before_callback => 1);
ok($flow->{callback_url}, 'stranger: a flow up to the callback');
my $m = browser()->get($flow->{callback_url});
is($m->code, 400, 'stranger: refused');
like($m->decoded_content, qr/started in another browser/, 'stranger: session_mismatch');
my $cb = $alice->get($flow->{callback_url});
is($cb->code, 200, 'stranger: the real browser still connects');
like($cb->decoded_content, qr/Connected to GitHub/, 'stranger: connected');

# 7. authorize re-checks allow_end_user_auth
$link = start_link('github', 'u-d');
my $bd = browser();
my $pd = $bd->get($link);
is($pd->code, 200, 'disabled later: the page first');
($st) = admin_api('PATCH', '/v1/projects/p1/connectors/github',
                  { allow_end_user_auth => JSON::PP::false });
is($st, 200, 'allow_end_user_auth turned off');
$r = confirm($bd, $pd);
is($r->code, 403, 'disabled later: the confirmation is refused');
like($r->decoded_content, qr/no longer lets you connect GitHub/, 'disabled: says why');
($st, $h, $res) = api('POST', '/v1/projects/p1/users/u-d/connections/github/authorize', {});
is($st, 403, 'disabled: POST .../authorize: 403');
is($res->{error}, 'end_user_auth_disabled', 'disabled: end_user_auth_disabled');

# a flow at the provider when the connector is turned off: no token stored
admin_api('PATCH', '/v1/projects/p1/connectors/github',
          { allow_end_user_auth => JSON::PP::true });
my $link2 = start_link('github', 'u-d2');
$b = browser();
$flow = connect_flow($b, start_link('github', 'u-e'), stop_before_callback => 1);
admin_api('PATCH', '/v1/projects/p1/connectors/github',
          { allow_end_user_auth => JSON::PP::false });
$r = browser()->get($link2);
is($r->code, 403, 'disabled: a link made before is refused');
$r = $b->get($flow->{callback_url});
is($r->code, 403, 'disabled during consent: the callback is refused');
ok(!redis_cmd('HGET', 't081:{p1}:tokens:github', 'u-e'),
   'disabled during consent: nothing stored');

# --- 5. ?CODE= in the logs, at info and at debug ----------------------------

my @codes;
for my $level ('info', 'debug') {
    start($level) if $level eq 'debug';
    for my $arg ('CODE', 'Code', 'code') {
        my $code = "code-$level-$arg-0123456789";
        push @codes, $code;
        remember_secret($code);
        http_req('GET', "/v1/connectors/oauth/callback?$arg=$code&state=p1."
                        . ('C' x 43), []);
        http_req('POST', "/v1/connectors/oauth/callback?state=x&$arg=$code",
                 [], '');
        http_req('GET', "/v1/nowhere?a=1&$arg=$code&$arg=$code-2", []);
    }
    my $access = do { local (@ARGV, $/) = "$Astralform::Test::ServRoot/logs/access.log"; <> } // '';
    like($access, qr/CODE=\[redacted\]/, "$level: access log shows CODE=[redacted]");
    for my $c (@codes) {
        unlike($access, qr/\Q$c\E/, "$level: access log without $c");
    }
}
scan_logs();

stop_nginx();
done_testing();
