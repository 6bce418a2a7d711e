# Provider host names on the gateway's own connections
# (astralform_http_client nginx, src/ngx_astralform_upstream.c): a name is
# resolved by the http{} "resolver" (here a tiny DNS server of this test,
# answering 127.0.0.1 for *.test and NXDOMAIN for anything else), TLS
# names the host in SNI and verifies the certificate against it.
#
#   github -> http://mock.test:MOCK/github/api/    plain HTTP, by name
#   slack  -> https://slack.test:TLS/api/          TLS, certificate for
#                                                  slack.test: verified
#   notion -> https://wrong.test:TLS/v1/           the same certificate:
#                                                  refused (name mismatch)
#   then github -> http://gone.invalid:MOCK/...    NXDOMAIN

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::OAuth;
use Astralform::Seal;
use IO::Socket::INET;
use JSON::PP;

my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';
system('openssl version >/dev/null 2>&1') == 0
    or plan skip_all => 'no openssl';

my $KEY = '5a' x 32;
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/072";
my $dns_log = "$dir/dns.log";

# --- a CA and a certificate for slack.test -------------------------------------

system("mkdir -p $dir && cd $dir && rm -f dns.log && "
       . "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=t072-ca "
       . "-keyout ca.key -out ca.pem 2>/dev/null && "
       . "openssl req -newkey rsa:2048 -nodes -subj /CN=slack.test "
       . "-keyout srv.key -out srv.csr 2>/dev/null && "
       . "printf 'subjectAltName=DNS:slack.test\\n' > ext.cnf && "
       . "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
       . "-CAcreateserial -days 2 -extfile ext.cnf -out srv.pem 2>/dev/null") == 0
    or BAIL_OUT('cannot make the certificates');

# --- the DNS server --------------------------------------------------------------

my $dns_sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'udp')
    or BAIL_OUT("udp: $!");
my $dns_port = $dns_sock->sockport;
my $dns_pid = fork // BAIL_OUT("fork: $!");
if ($dns_pid == 0) {
    dns_serve($dns_sock);
    exit 0;
}
close $dns_sock;

my $tls = free_port();
my $cfg = oauth_config(prefix => 't072:', dir => 't/tmp/072', key => $KEY);
my $http = $cfg->{http_config};
$http =~ s/^\s*astralform_provider (?:slack|notion|github) .*\n//mg;
$http .= <<"_EOC_";
    resolver 127.0.0.1:$dns_port valid=1s ipv6=off;
    resolver_timeout 2s;
    astralform_http_ca_file $dir/ca.pem;
    astralform_provider github api_base=http://mock.test:$mock/github/api/;
    astralform_provider slack api_base=https://slack.test:$tls/api/;
    astralform_provider notion api_base=https://wrong.test:$tls/v1/;

    log_format t072_sni '\$ssl_server_name \$http_authorization';
    server {
        listen 127.0.0.1:$tls ssl;
        ssl_certificate $dir/srv.pem;
        ssl_certificate_key $dir/srv.key;
        access_log $dir/tls.log t072_sni;
        location /api/ {
            default_type application/json;
            return 200 '{"ok":true,"channels":[{"id":"C072","name":"by-name"}]}';
        }
    }
_EOC_
unlink "$dir/tls.log";

start_nginx(http_config => $http, config => $cfg->{config}, workers => 1)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $github = mock('POST', '/__mock/tokens', { provider => 'github' });
plant('github', $github->{access_token});
plant('slack', 'xoxp-t072-slack-token');
plant('notion', 'secret_t072_notion_token');

# --- a name over plain HTTP --------------------------------------------------------

my ($st, $h, $res) = call('github_list_repos', {});
is($st, 200, 'github by name (mock.test): 200') or diag($JSON->encode($res));
like(slurp($dns_log), qr/^mock\.test A$/m, 'the resolver asked for mock.test');

# --- a name over TLS: SNI, verified ----------------------------------------------

($st, $h, $res) = call('slack_list_channels', {});
is($st, 200, 'slack by name over TLS (slack.test): 200') or diag($JSON->encode($res));
like($JSON->encode($res), qr/by-name/, 'the answer is the TLS server\'s');
like(slurp("$dir/tls.log"), qr/^slack\.test Bearer xoxp-t072-slack-token$/m,
     'SNI named slack.test, the user\'s token went');

($st, $h, $res) = call('slack_list_channels', {});
is($st, 200, 'a second call (a kept connection): 200');

# --- the wrong name for the certificate -----------------------------------------

truncate_error_log();
($st, $h, $res) = call('notion_search', {});
ok($st >= 500, "notion at wrong.test (certificate for slack.test): $st")
    or diag($JSON->encode($res));
like(error_log_text(), qr/certificate of "wrong\.test:$tls" was not verified/,
     'the refusal is logged with the host');
unlike(slurp("$dir/tls.log"), qr/secret_t072_notion_token/,
       'the token never went to the unverified server');

# --- a name that does not resolve --------------------------------------------------

stop_nginx();
$http =~ s{http://mock\.test:}{http://gone.invalid:};
start_nginx(http_config => $http, config => $cfg->{config}, workers => 1)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");
($st, $h, $res) = call('github_list_repos', {});
ok($st >= 500, "github at gone.invalid (NXDOMAIN): $st") or diag($JSON->encode($res));
like(error_log_text(), qr/"gone\.invalid" could not be resolved/,
     'the resolver failure is logged');

my $log = join '', map { slurp($_) } glob("$Astralform::Test::ServRoot/logs/*");
for my $s ($KEY, $github->{access_token}, 'secret_t072_notion_token') {
    ok(index($log, $s) < 0, 'no secret in the gateway logs: ' . substr($s, 0, 8) . '...');
}

stop_nginx();
kill 'TERM', $dns_pid;
waitpid $dns_pid, 0;
done_testing();

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; my $s = <$fh>; $s }

sub plant {
    my ($conn, $token) = @_;
    redis_cmd('HSET', "t072:{p1}:tokens:$conn", 'u1',
              seal_token($KEY, 'k1', 'p1', $conn, 'u1',
                         { type => 'oauth', access_token => $token,
                           expires_at => 0, obtained_at => time() }));
}

sub call {
    my ($name, $args) = @_;
    return api('POST', '/v1/projects/p1/tools/call',
               { name => $name, arguments => $args }, user => 'u1');
}

# A DNS server for A queries: *.test is 127.0.0.1 (TTL 1), anything else
# NXDOMAIN; each question is logged as "name TYPE".
sub dns_serve {
    my ($sock) = @_;
    while (1) {
        my $q;
        my $peer = $sock->recv($q, 512) // next;
        next if length $q < 17;
        my ($id, $flags, $qd) = unpack 'n n n', $q;
        my ($pos, @labels) = (12);
        while ($pos < length $q) {
            my $n = ord substr $q, $pos, 1;
            $pos++;
            last if $n == 0;
            push @labels, substr $q, $pos, $n;
            $pos += $n;
        }
        my ($qtype) = unpack 'n', substr $q, $pos, 2;
        my $question = substr $q, 12, $pos + 4 - 12;
        my $name = lc join '.', @labels;
        if (open my $fh, '>>', $dns_log) {
            print $fh "$name " . ($qtype == 1 ? 'A' : $qtype) . "\n";
            close $fh;
        }
        my $ok = $name =~ /\.test$/;
        my $an = ($ok && $qtype == 1) ? 1 : 0;
        my $resp = pack('n n n n n n', $id, 0x8180 | ($ok ? 0 : 3), 1, $an, 0, 0)
                   . $question;
        $resp .= pack('n n n N n C4', 0xc00c, 1, 1, 1, 4, 127, 0, 0, 1) if $an;
        $sock->send($resp, 0, $peer);
    }
}
