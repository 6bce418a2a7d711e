# Request desync and nginx's own errors (issue 8).
#
# An answer sent before the request body is read must discard the body:
# a body that is itself an HTTP request must never become a second request
# on the keep-alive connection (request smuggling behind a pooling proxy).
# And every answer of an astralform_api location is the JSON envelope,
# nginx's own errors (413 over client_max_body_size, 400 for a broken
# chunked body, 403 from "deny") included.

use strict;
use warnings;
use Test::More;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes ();
use lib 't/lib';
use Astralform::Test qw(:all);

my $ADMIN = 'af_test_p1_admin_16cc35d122244636173ea428';
my $AGENT = 'af_test_p1_agent_e175c5c50729dcc375458d80';

my $http = <<'_EOC_';
    astralform_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix t080:;
    astralform_key k1 $TEST_NGINX_REPO/t/fixtures/master.key;
    astralform_public_url https://gw.example.com;
    astralform_catalog $TEST_NGINX_REPO/conf/connectors;
    astralform_project p1 admin_key_file=$TEST_NGINX_REPO/t/fixtures/p1-admin.keys
                          agent_key_file=$TEST_NGINX_REPO/t/fixtures/p1-agent.keys;
_EOC_

my $config = <<'_EOC_';
    location /v1/ {
        client_max_body_size 2k;
        astralform_api;
    }
    location /v1/denied/ {
        deny all;
        astralform_api;
    }
_EOC_

start_nginx(http_config => $http, config => $config)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $SMUGGLED = "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";

# Sends $req on one connection and reads whatever comes back until the
# connection has been idle for $idle seconds (or closes); returns the
# statuses of every answer and the raw bytes.
sub exchange {
    my ($req, %o) = @_;
    my $idle = $o{idle} || 1.0;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT},
                                     Proto => 'tcp', Timeout => 3)
        or die "connect: $!";
    binmode $sock;
    syswrite($sock, $req);
    my $sel = IO::Select->new($sock);
    my $raw = '';
    my $then = $o{then};
    while ($sel->can_read($idle)) {
        my $n = sysread($sock, my $buf, 65536);
        last unless $n;
        $raw .= $buf;
        if (defined $then && $raw =~ /\r\n\r\n/) {
            # the first answer is in: send the follow-up request
            Time::HiRes::sleep(0.1);
            syswrite($sock, $then);
            undef $then;
        }
    }
    close $sock;
    my @st = $raw =~ m{(?:^|\n)HTTP/1\.1 (\d{3}) }g;
    return (\@st, $raw);
}

sub post_with_body {
    my ($method, $path, $body, @h) = @_;
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "$_\r\n" for @h;
    $req .= "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $req;
}

sub chunked {
    my ($method, $path, $body, @h) = @_;
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "$_\r\n" for @h;
    $req .= "Transfer-Encoding: chunked\r\n\r\n";
    $req .= sprintf("%x\r\n%s\r\n", length $body, $body) . "0\r\n\r\n";
    return $req;
}

# --- 1. early answers discard the body ------------------------------------

my @early = (
    [ 'unknown route', 'POST', '/v1/nowhere', [], 404, 'not_found' ],
    [ 'no key', 'POST', '/v1/projects/p1/tools/call', [], 401,
      'invalid_api_key' ],
    [ 'wrong key', 'POST', '/v1/projects/p1/tools/call',
      [ 'Authorization: Bearer not-a-key-0123456789' ], 401,
      'invalid_api_key' ],
    [ 'wrong method', 'POST', '/v1/health', [], 405, 'method_not_allowed' ],
    [ 'wrong method (PUT)', 'PUT', '/v1/connectors',
      [ "Authorization: Bearer $AGENT" ], 405, 'method_not_allowed' ],
    [ 'another project', 'POST', '/v1/projects/p2/tools/call',
      [ "Authorization: Bearer $AGENT" ], 404, 'project_not_found' ],
    [ 'bad identity header', 'POST', '/v1/projects/p1/tools/call',
      [ "Authorization: Bearer $AGENT", 'X-Astralform-User: a b' ], 400,
      'invalid_header' ],
    [ 'admin_required', 'POST', '/v1/projects/p1/connectors',
      [ "Authorization: Bearer $AGENT", 'Content-Type: application/json' ],
      '40[03]', 'admin_required' ],
    [ 'a GET route with a body', 'GET', '/v1/nowhere/at/all', [], 404,
      'not_found' ],
);

for my $t (@early) {
    my ($name, $method, $path, $h, $status, $code) = @$t;

    for my $enc ('length', 'chunked') {
        my $req = $enc eq 'length'
                ? post_with_body($method, $path, $SMUGGLED, @$h)
                : chunked($method, $path, $SMUGGLED, @$h);
        my ($st, $raw) = exchange($req);
        is(scalar @$st, 1, "$name ($enc): exactly one answer on the "
                           . "connection") or diag($raw);
        like($st->[0] // '', qr/^$status$/, "$name ($enc): $status");
        my $r = parse_http_response($raw);
        my $json = eval { decode_json($r->{body}) } || {};
        # admin_required reads the body first: its JSON is not a body
        # (the smuggled request is not JSON), invalid_json is the answer
        if ($code eq 'admin_required') {
            like($json->{error} // '', qr/^(?:admin_required|invalid_json)$/,
                 "$name ($enc): refused");
        } else {
            is($json->{error}, $code, "$name ($enc): $code");
        }
    }
}

# the connection stays usable: the next real request is answered
{
    my ($st, $raw) = exchange(post_with_body('POST', '/v1/nowhere',
                                             $SMUGGLED),
                              then => "GET /v1/connectors HTTP/1.1\r\n"
                                      . "Host: localhost\r\n"
                                      . "Authorization: Bearer $AGENT\r\n"
                                      . "Connection: close\r\n\r\n");
    is_deeply($st, [404, 200], 'keep-alive: 404, then the next real '
                               . 'request: 200') or diag($raw);
}

# Expect: 100-continue on a refused request: no "100 Continue", one answer
{
    my $req = "POST /v1/nowhere HTTP/1.1\r\nHost: localhost\r\n"
              . "Expect: 100-continue\r\nContent-Length: "
              . length($SMUGGLED) . "\r\n\r\n$SMUGGLED";
    my ($st, $raw) = exchange($req);
    is_deeply($st, [404], 'Expect: 100-continue: only the 404')
        or diag($raw);
}

# --- 2. nginx's own errors are the JSON envelope --------------------------

sub envelope_ok {
    my ($name, $raw, $status, $code) = @_;
    my $r = parse_http_response($raw);
    is($r->{code}, $status, "$name: $status");
    like($r->{headers}->header('Content-Type') // '',
         qr{^application/json}, "$name: application/json");
    unlike($r->{body}, qr/<html|<center|nginx/i, "$name: no HTML page");
    my $json = eval { decode_json($r->{body}) };
    ok($json && !ref $json->{error} && defined $json->{message},
       "$name: {\"error\",\"message\"}") or diag($r->{body});
    is($json && $json->{error}, $code, "$name: error $code");
    is(length $r->{body}, $r->{headers}->header('Content-Length'),
       "$name: Content-Length matches") if defined
       $r->{headers}->header('Content-Length');
}

{
    my $big = '{"x":"' . ('a' x 4096) . '"}';
    my ($raw) = http_raw("POST /v1/projects/p1/tools/call HTTP/1.1\r\n"
                         . "Host: localhost\r\nConnection: close\r\n"
                         . "Authorization: Bearer $AGENT\r\n"
                         . "Content-Length: " . length($big)
                         . "\r\n\r\n$big", 5);
    envelope_ok('over client_max_body_size (Content-Length)', $raw, 413,
                'body_too_large');

    my $req = chunked('POST', '/v1/projects/p1/tools/call', $big,
                      "Authorization: Bearer $AGENT", 'Connection: close');
    ($raw) = http_raw($req, 5);
    envelope_ok('over client_max_body_size (chunked)', $raw, 413,
                'body_too_large');

    ($raw) = http_raw("POST /v1/projects/p1/tools/call HTTP/1.1\r\n"
                      . "Host: localhost\r\nConnection: close\r\n"
                      . "Authorization: Bearer $AGENT\r\n"
                      . "Transfer-Encoding: chunked\r\n\r\n"
                      . "zz\r\nnot a chunk\r\n0\r\n\r\n", 5);
    envelope_ok('a broken chunked body', $raw, 400, 'bad_request');

    ($raw) = http_raw("GET /v1/denied/x HTTP/1.1\r\nHost: localhost\r\n"
                      . "Connection: close\r\n\r\n", 5);
    envelope_ok('deny all', $raw, 403, 'forbidden');

    ($raw) = http_raw("HEAD /v1/denied/x HTTP/1.1\r\nHost: localhost\r\n"
                      . "Connection: close\r\n\r\n", 5);
    my $r = parse_http_response($raw);
    is($r->{code}, 403, 'HEAD deny: 403');
    like($r->{headers}->header('Content-Type') // '', qr{^application/json},
         'HEAD deny: application/json');

    # the module's own answers are untouched
    ($raw) = http_raw("GET /v1/nowhere HTTP/1.1\r\nHost: localhost\r\n"
                      . "Connection: close\r\n\r\n", 5);
    envelope_ok('the module\'s own 404', $raw, 404, 'not_found');
    like(parse_http_response($raw)->{body}, qr/no such endpoint/,
         'the module\'s own message');

    # a server location without astralform_api keeps nginx's page
    ($raw) = http_raw("GET /nothing-here HTTP/1.1\r\nHost: localhost\r\n"
                      . "Connection: close\r\n\r\n", 5);
    like(parse_http_response($raw)->{body}, qr/<html/,
         'other locations keep nginx\'s own page');
}

my $log = error_log_text();
unlike($log, qr/\[(?:alert|emerg|crit)\]/, 'no alert in the error log');
unlike($log, qr/open socket .* left in connection/, 'no socket left');

stop_nginx();
done_testing();
