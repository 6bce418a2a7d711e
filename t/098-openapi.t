# The API description (GET /v1/openapi.json, docs/openapi.json) and the
# embedded dashboard's headers: the served description is the file byte for
# byte; HEAD /v1/health works; the dashboard is served with a strict CSP,
# X-Frame-Options DENY and nosniff; the README's request bodies are the
# ones the file gives; and every API answer the suite received in this run
# (t/run.sh records them in $TEST_NGINX_ANSWERS) validates against the file
# (t/browser/openapi-check.mjs, ajv).  Runs after the other files.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);

BEGIN { unshift @INC, ($ENV{TEST_NGINX_REPO} || '.') . '/t/fixtures' }
use Fixtures;

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $F = fixture_dir();

sub slurp { open my $fh, '<:raw', $_[0] or die "$_[0]: $!"; local $/; <$fh> }

redis_cmd('FLUSHDB');
log_snapshot();
start_nginx(http_config => <<"_EOC_", config => <<'_EOC_')
    astralform_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    astralform_key k1 $F/master.key;
    astralform_public_url http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT};
    astralform_catalog $repo/conf/connectors;
    astralform_project p1 admin_key_file=$F/p1-admin.keys
                       agent_key_file=$F/p1-agent.keys;
_EOC_
    location /v1/ { astralform_api; }
    location /dashboard/ { astralform_dashboard; }
_EOC_
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my ($st, $h, $body) = http_req('GET', '/v1/openapi.json');
is($st, 200, 'GET /v1/openapi.json');
like($h->{'content-type'}, qr{^application/json}, '... is JSON');
ok($body eq slurp("$repo/docs/openapi.json"),
   '... is docs/openapi.json byte for byte (compiled in)');

($st, $h, $body) = http_req('HEAD', '/v1/health');
is($st, 200, 'HEAD /v1/health: 200');
is($body, '', '... without a body');
($st, $h, $body) = http_req('GET', '/v1/health');
like($body, qr/"version":"\d+\.\d+\.\d+"/, 'the health answer has the version');
like(error_log_text(), qr/\[notice\][^\n]*astralform \d+\.\d+\.\d+ started: 1 projects/,
     'the startup line names the version');

($st, $h, $body) = http_req('GET', '/dashboard/');
is($st, 200, 'the dashboard page');
ok($body eq slurp("$repo/html/index.html"), '... is html/index.html');
like($h->{'content-security-policy'} // '', qr/^default-src 'self'; script-src 'self'; style-src 'self';/,
     '... strict CSP');
unlike($h->{'content-security-policy'} // '', qr/unsafe/, '... nothing unsafe');
like($h->{'content-security-policy'} // '', qr/frame-ancestors 'none'/, '... no framing');
is($h->{'x-frame-options'}, 'DENY', '... X-Frame-Options DENY');
is($h->{'x-content-type-options'}, 'nosniff', '... nosniff');
unlike(slurp("$repo/html/index.html"), qr/<script>|<style|\son[a-z]+=/i,
       'index.html has no inline script, style or handler');
unlike(slurp("$repo/html/app.js"), qr/innerHTML|outerHTML|insertAdjacentHTML|document\.write/,
       'app.js never inserts markup');

my $etag = $h->{etag};
($st) = http_req('GET', '/dashboard/', ['If-None-Match' => $etag]);
is($st, 304, 'a matching ETag: 304');
($st, $h) = http_req('GET', '/dashboard/app.js');
is($st, 200, 'app.js');
like($h->{'content-type'}, qr{^text/javascript}, '... as JavaScript');
($st) = http_req('GET', '/dashboard/nope.js');
is($st, 404, 'an unknown file: 404');
($st) = http_req('POST', '/dashboard/', [], '');
is($st, 405, 'POST: 405');

stop_nginx();

my $out = `node $repo/scripts/readme-api.mjs --check 2>&1`;
is($? >> 8, 0, 'README request bodies match docs/openapi.json') or diag($out);

SKIP: {
    skip 'TEST_NGINX_ANSWERS is not set (run through t/run.sh)', 2
        unless $ENV{TEST_NGINX_ANSWERS} && -f $ENV{TEST_NGINX_ANSWERS};
    $out = `node $repo/t/browser/openapi-check.mjs $ENV{TEST_NGINX_ANSWERS} 2>&1`;
    is($? >> 8, 0, 'every recorded API answer validates against '
                   . 'docs/openapi.json') or diag($out);
    my ($n) = $out =~ /(\d+) answers checked/;
    diag("$n answers of this run checked against docs/openapi.json");
    cmp_ok($n // 0, '>', 0, 'answers were recorded');
}

scan_logs();
done_testing();
