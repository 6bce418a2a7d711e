package Astralform::OAuth;

# Helpers for the end-user OAuth tests (t/04x-*.t): a gateway configured
# against the mock providers (and the oidc-provider server when it runs), a
# browser that walks the consent flow one redirect at a time, and a scan of
# every log the test wrote for the secrets it used.
#
#   my $cfg = oauth_config(prefix => 't041:', dir => 't/tmp/041', ...);
#   start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config});
#   my ($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call', $body,
#                            user => 'u1');
#   my $b = browser();                       # LWP with a cookie jar
#   my $r = $b->get($url);                   # no redirect followed
#   my $page = connect_flow($b, $authorization_url);   # the whole dance
#   scan_logs(\@secrets);                    # fails a test per leak

use strict;
use warnings;

use Exporter 'import';
use File::Path ();
use HTTP::Cookies;
use JSON::PP;
use LWP::UserAgent;
use Test::More;
use Time::HiRes ();
use URI;
use URI::QueryParam;

use Astralform::Test qw(:all);

our @EXPORT = qw(oauth_config api admin_api mock behave browser
                 connect_flow confirm confirm_form start_link query_of redis_keys scan_logs
                 remember_secret secrets_from_mock spew $ADMIN $AGENT
                 $SECRET $JSON);

our $ADMIN = 'oauth-admin-key-0123456789abcdef';
our $AGENT = 'oauth-agent-key-0123456789abcdef';
our $SECRET = 'oauth-client-secret-0f1e2d3c4b5a';
our $JSON = JSON::PP->new->canonical->allow_nonref;

my %Secrets;
my $Prefix = 'toauth:';

sub spew {
    my ($f, $t) = @_;
    open my $fh, '>', $f or die "$f: $!";
    print $fh $t;
    close $fh;
}

sub mock_base { "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}" }
sub oidc_base { "http://127.0.0.1:$ENV{TEST_NGINX_OIDC_PORT}" }

# The http{} configuration: project p1 with slack, notion and github from
# nginx.conf (client secret in a file), the oidc_test connector when the
# oidc server runs, return origins for the redirect tests.
#   prefix     Redis key prefix (one per test file)
#   dir        where key files go
#   port       the public URL's port (default: the test server port)
#   extra      more http{} lines
#   connectors 0: declare none (the test enables them through the API)
sub oauth_config {
    my %o = @_;
    my $dir = "$ENV{TEST_NGINX_REPO}/$o{dir}";
    File::Path::make_path($dir);
    $Prefix = $o{prefix} || $Prefix;

    my $key = $o{key} || ('5a' x 32);
    spew("$dir/master.key", "$key\n");
    spew("$dir/admin.keys", "$ADMIN\n");
    spew("$dir/agent.keys", "$AGENT\n");
    spew("$dir/client.secret", "$SECRET\n");
    remember_secret($key, $ADMIN, $AGENT, $SECRET);

    my $M = mock_base();
    my $port = $o{port} || '$TEST_NGINX_SERVER_PORT';
    my $conns = $o{connectors} // 1;

    my $http = <<"_EOC_";
    astralform_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix $Prefix;
    astralform_key k1 $dir/master.key;
    astralform_public_url http://127.0.0.1:$port;
    astralform_catalog \$TEST_NGINX_REPO/conf/connectors;
    astralform_catalog \$TEST_NGINX_REPO/t/catalog;
    astralform_return_origin https://app.example.com http://localhost:3000;
    astralform_http_timeout 2s;
    astralform_revoke_timeout 1s;
    astralform_provider slack api_base=$M/slack/api/ authorize_url=$M/slack/oauth/v2/authorize token_url=$M/slack/api/oauth.v2.access revoke_url=$M/slack/api/auth.revoke;
    astralform_provider notion api_base=$M/notion/v1/ authorize_url=$M/notion/v1/oauth/authorize token_url=$M/notion/v1/oauth/token revoke_url=$M/notion/v1/oauth/revoke;
    astralform_provider github api_base=$M/github/api/ authorize_url=$M/github/login/oauth/authorize token_url=$M/github/login/oauth/access_token "revoke_url=$M/github/api/applications/{client_id}/grant";
    astralform_project p1 admin_key_file=$dir/admin.keys agent_key_file=$dir/agent.keys;
_EOC_

    if ($ENV{TEST_NGINX_OIDC_PORT}) {
        my $O = oidc_base();
        $http .= "    astralform_provider oidc_test api_base=$O/ "
                 . "authorize_url=$O/auth token_url=$O/token "
                 . "revoke_url=$O/token/revocation;\n";
    }

    if ($conns) {
        $http .= <<"_EOC_";
    astralform_connector p1 slack client_id=slack-cid client_secret_file=$dir/client.secret;
    astralform_connector p1 notion client_id=notion-cid client_secret_file=$dir/client.secret;
    astralform_connector p1 github client_id=github-cid client_secret_file=$dir/client.secret;
_EOC_
    }

    $http .= $o{extra} // '';

    my $config = <<'_EOC_';
    location /v1/ {
        astralform_api;
    }
_EOC_

    return { http_config => $http, config => $config, dir => $dir };
}

# One API request with a project key; JSON in and out.
#   user => 'u1', agent => 'a', key => $ADMIN, port => N, headers => [..]
sub api {
    my ($method, $path, $body, %o) = @_;
    my @h = ('Authorization' => 'Bearer ' . ($o{key} || $AGENT));
    push @h, 'X-Astralform-User' => $o{user} if defined $o{user};
    push @h, 'X-Astralform-Agent' => $o{agent} if defined $o{agent};
    push @h, 'Content-Type' => 'application/json' if defined $body;
    push @h, @{ $o{headers} || [] };
    my ($st, $h, $text) = http_req($method, $path, \@h,
                                   defined $body ? $JSON->encode($body)
                                                 : undef,
                                   { port => $o{port},
                                     timeout => $o{timeout} || 10 });
    my $res = eval { $JSON->decode($text) } // $text;
    return ($st, $h, $res);
}

sub admin_api { my ($m, $p, $b, %o) = @_; api($m, $p, $b, key => $ADMIN, %o) }

sub mock {
    my ($method, $path, $body) = @_;
    my ($st, $h, $text) = http_req($method, $path,
        [ 'Content-Type' => 'application/json' ],
        defined $body ? $JSON->encode($body) : undef,
        { port => $ENV{TEST_NGINX_MOCK_PORT} });
    return eval { $JSON->decode($text) } // { status => $st, text => $text };
}

sub behave { mock('POST', '/__mock/behaviour', { @_ }) }

sub browser {
    my $ua = LWP::UserAgent->new(max_redirect => 0, timeout => 10,
                                 cookie_jar => HTTP::Cookies->new);
    $ua->agent('Mozilla/5.0 (astralform test browser)');
    return $ua;
}

sub query_of {
    my ($url) = @_;
    my $u = URI->new($url);
    return { map { $_ => scalar $u->query_param($_) } $u->query_param };
}

# The authorization URL of a connect link: POST .../authorize.
sub start_link {
    my ($conn, $user, %o) = @_;
    my ($st, $h, $res) = api('POST',
        "/v1/projects/p1/users/$user/connections/$conn/authorize",
        $o{body} || {}, port => $o{port});
    return $st == 200 ? $res->{authorization_url} : undef;
}

# Walks a connect link like a browser: the gateway's authorize endpoint,
# the provider's consent page (which redirects at once), the callback.
# Returns { authorize => HTTP::Response, provider => .., callback => ..,
# callback_url => .. }.  stop_before_callback => 1 leaves the last step.
sub connect_flow {
    my ($ua, $link, %o) = @_;
    my %r;
    $r{confirm} = $ua->get($link);
    $r{authorize} = confirm($ua, $r{confirm}, %o);
    my $to = $r{authorize}->header('Location') or return \%r;
    $r{provider_url} = $to;
    $r{provider} = $ua->get($to);
    my $cb = $r{provider}->header('Location') or return \%r;

    # oidc-provider: login and consent interactions, then the callback
    my $n = 0;
    while ($cb !~ m{/v1/connectors/oauth/callback} && $n++ < 10) {
        $cb = URI->new_abs($cb, $r{provider}->base)->as_string;
        $r{provider} = $ua->get($cb);
        $cb = $r{provider}->header('Location') or return \%r;
    }

    if ($o{callback_port}) {
        $cb =~ s{^http://127\.0\.0\.1:\d+}{http://127.0.0.1:$o{callback_port}};
    }
    $r{callback_url} = $cb;
    my $q = query_of($cb);
    remember_secret($q->{code}) if defined $q->{code};
    return \%r if $o{stop_before_callback};
    $r{callback} = $ua->get($cb);
    return \%r;
}

# The confirmation page of a connect link (GET) and its form, POSTed as a
# browser does (the page's cookie, Origin of the form's action, same-origin
# fetch). Returns the POST's answer, or the page itself when it has no form.
#   form => { field => value }   overrides a field
#   headers => [..]              replaces Origin / Sec-Fetch-Site
sub confirm_form {
    my ($page) = @_;
    my $html = $page->decoded_content // '';
    my ($action) = $html =~ m{<form method="post" action="([^"]+)"};
    return undef unless defined $action;
    $action =~ s/&amp;/&/g;
    my %f;
    while ($html =~ m{<input type="hidden" name="(\w+)" value="([^"]*)">}g) {
        $f{$1} = $2;
    }
    return { action => $action, fields => \%f };
}

sub confirm {
    my ($ua, $page, %o) = @_;
    my $form = confirm_form($page) or return $page;
    my %f = (%{ $form->{fields} }, %{ $o{form} || {} });
    my $action = $form->{action};
    if ($o{port}) {
        $action =~ s{^(http://127\.0\.0\.1:)\d+}{$1$o{port}};
    }
    my $origin = $action =~ m{^(https?://[^/]+)} ? $1 : '';
    my @h = $o{headers} ? @{ $o{headers} }
                        : (Origin => $origin, 'Sec-Fetch-Site' => 'same-origin');
    return $ua->post($action, \%f, @h);
}

sub redis_keys {
    my ($pattern) = @_;
    return sort @{ redis_cmd('KEYS', $Prefix . $pattern) || [] };
}

sub remember_secret {
    for my $s (@_) {
        $Secrets{$s} = 1 if defined $s && length $s >= 8;
    }
}

# Every token, refresh token, code and verifier the mock saw or issued.
sub secrets_from_mock {
    my $t = mock('GET', '/__mock/tokens');
    for my $rec (@{ $t->{tokens} || [] }) {
        remember_secret($rec->{token}, $rec->{access_token},
                        $rec->{refresh_token});
    }
    my $c = mock('GET', '/__mock/codes');
    remember_secret(map { $_->{code} } @{ $c->{codes} || [] });
    my $r = mock('GET', '/__mock/requests');
    for my $req (@{ $r->{requests} || [] }) {
        my $f = $req->{form} || $req->{json} || {};
        next unless ref $f eq 'HASH';
        remember_secret(grep { !ref } @{$f}{qw(code code_verifier
            client_secret refresh_token token access_token)});
    }
}

# nginx core echoes the raw request (request line, arguments, headers) in
# its own debug lines before any module runs: those are not the module's
# and are left out; everything else of every log file must be clean.
my $CoreEcho = qr/\]\s\d+\#\d+:\s\*\d+\s(?:http\srequest\sline|http\suri|
                  http\sargs|http\sexten|http\sheader|http\scookie):/x;

sub scan_logs {
    my (@extra) = @_;
    remember_secret(@extra);
    my @files = (glob("$Astralform::Test::ServRoot/logs/*"),
                 glob("$ENV{TEST_NGINX_REPO}/t/tmp/$ENV{TEST_NGINX_SERVER_PORT}/*.log"),
                 @Astralform::OAuth::ExtraLogs);
    my ($leaks, $bytes) = (0, 0);
    for my $f (@files) {
        next unless -f $f;
        open my $fh, '<', $f or next;
        while (my $line = <$fh>) {
            $bytes += length $line;
            next if $line =~ $CoreEcho;
            for my $s (keys %Secrets) {
                if (index($line, $s) >= 0) {
                    $leaks++;
                    diag("secret found in $f: " . substr($line, 0, 200));
                }
            }
        }
    }
    ok(scalar(keys %Secrets) >= 5,
       'log scan: ' . scalar(keys %Secrets) . ' secrets collected');
    ok($bytes > 0, "log scan: $bytes bytes of " . scalar(@files) . ' files read');
    is($leaks, 0, 'log scan: no token, code or secret in any log');
}

our @ExtraLogs;

1;
