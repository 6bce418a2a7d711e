# The dashboard in real Chromium (t/browser/dashboard.mjs: Debian's
# chromium driven by playwright-core): sign in, enable Notion through the
# form, edit its scopes, assign it to an agent, troubleshoot a user, disable
# it after the warning (one end user's token revoked), a wrong key; every
# API answer the page got validated against docs/openapi.json.  Screenshots
# go to t/tmp/screens/ (the best of them are docs/dashboard-*.png).
# Skipped, loudly, only when Chromium cannot start at all.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::Seal;

BEGIN { unshift @INC, ($ENV{TEST_NGINX_REPO} || '.') . '/t/fixtures' }
use Fixtures;

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $F = fixture_dir();
my $port = $ENV{TEST_NGINX_SERVER_PORT};
my $admin = fixture_line('p1-admin.keys');
my $screens = "$repo/t/tmp/screens";

redis_cmd('FLUSHDB');
# end user bob already connected Notion: disabling must revoke his token
my $now = time;
redis_cmd('HSET', 'astralform:{p1}:tokens:notion', 'bob',
          seal_token(fixture_line('master.key'), 'k1', 'p1', 'notion', 'bob',
                     { type => 'oauth', access_token => 'ui-at-bob-3c2b1a',
                       expires_at => $now + 3600, obtained_at => $now }));

log_snapshot();
start_nginx(http_config => <<"_EOC_", config => <<'_EOC_')
    astralform_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    astralform_key k1 $F/master.key;
    astralform_public_url http://127.0.0.1:$port;
    astralform_catalog $repo/conf/connectors;
    astralform_provider notion revoke_url=http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}/notion/v1/oauth/revoke;
    astralform_project p1 admin_key_file=$F/p1-admin.keys
                       agent_key_file=$F/p1-agent.keys;
    astralform_connector p1 openweather api_key_file=$F/service-api.key;
_EOC_
    location /v1/ { astralform_api; }
    location /dashboard/ { astralform_dashboard; }
_EOC_
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my @out = `node $repo/t/browser/dashboard.mjs --base http://127.0.0.1:$port --project p1 --key '$admin' --screens $screens 2>&1`;
my $status = $? >> 8;

if ($status == 3 && grep { /^SKIP / } @out) {
    my ($why) = grep { /^SKIP / } @out;
    diag('*' x 70);
    diag("BROWSER TESTS CANNOT RUN: $why");
    diag('install chromium (scripts/install-deps.sh) to run them');
    diag('*' x 70);
    missing_part($why);
}

my $n = 0;
for (@out) {
    chomp;
    if (/^(not )?ok - (.*)$/) {
        ok(!$1, $2);
        $n++;
    } elsif (/^# (.*)/) {
        diag($1);
    } else {
        diag($_);
    }
}
cmp_ok($n, '>=', 20, 'the browser test ran every step') or diag("@out");
is($status, 0, 'dashboard.mjs exited 0');
ok(-s "$screens/connectors.png", 'screenshots written');

stop_nginx();
scan_logs('ui-secret-9f8e7d6c5b4a', 'ui-at-bob-3c2b1a');
done_testing();
