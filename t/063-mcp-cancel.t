# The agents' MCP server, a cancelled tools/call (DESIGN 8): it is
# answered -32800 at once, and the provider's answer that comes later must
# not answer or finalize the request a second time. nginx keeps a
# finalized request (and so its pool, and the provider call in it) while
# the connection lingers or the answer waits for a slow reader;
# "lingering_close always" and a client that keeps its socket open make
# that window certain here. Then the messages the shared JSON-RPC check
# refuses.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes ();
use Astralform::Test qw(:all);
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or missing_part('the mock providers did not start');

my $M = Astralform::OAuth::mock_base();
my $wkey = mock('POST', '/__mock/tokens', { provider => 'openweather' })
           ->{access_token}
    or missing_part('the mock issued no openweather key');

my $cfg = oauth_config(prefix => 't063:', dir => 't/tmp/063');
spew("$cfg->{dir}/ow.key", "$wkey\n");
remember_secret($wkey);

my $http = $cfg->{http_config} . <<"_EOC_";
    astralform_provider openweather api_base=$M/openweather/data/2.5/;
    astralform_connector p1 openweather api_key_file=$cfg->{dir}/ow.key;
    lingering_close always;
    lingering_timeout 10s;
_EOC_

sub wipe { redis_cmd('DEL', $_) for @{ redis_cmd('KEYS', 't063:*') || [] } }
wipe();

start_nginx(http_config => $http, config => $cfg->{config}, workers => 1)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

my $PATH = '/v1/projects/p1/mcp';

sub rpc_text {
    my ($msg, $sid) = @_;
    my $body = $JSON->encode($msg);
    return "POST $PATH HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
         . "Authorization: Bearer $AGENT\r\n"
         . "Content-Type: application/json\r\n"
         . "Accept: application/json, text/event-stream\r\n"
         . "X-Astralform-User: u1\r\n"
         . ($sid ? "Mcp-Session-Id: $sid\r\n" : '')
         . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
}

sub rpc {
    my ($msg, $sid) = @_;
    my ($raw) = http_raw(rpc_text($msg, $sid), 10);
    my $r = parse_http_response($raw);
    return ($r->{code}, scalar $r->{headers}->header('Mcp-Session-Id'),
            eval { $JSON->decode($r->{body}) } // {});
}

my ($st, $sid) = rpc({ jsonrpc => '2.0', id => 1, method => 'initialize',
                       params => { protocolVersion => '2025-11-25',
                                   capabilities => {},
                                   clientInfo => { name => 't063',
                                                   version => '1' } } });
is($st, 200, 'initialize');
ok($sid, 'a session');

my $call = { name => 'openweather_current', arguments => { q => 'London' } };
my ($s, undef, $d) = rpc({ jsonrpc => '2.0', id => 2, method => 'tools/call',
                           params => $call }, $sid);
ok(!$d->{result}{isError}, 'the tool works') or diag(explain($d));

# the provider answers, but only after the call was cancelled
mock('POST', '/__mock/behaviour', { prefix => '/openweather/data/2.5/weather',
                                    delay_ms => 1500, count => 1 });
truncate_error_log();

my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    Time::HiRes::sleep(0.4);
    rpc({ jsonrpc => '2.0', method => 'notifications/cancelled',
          params => { requestId => 3, reason => 'test' } }, $sid);
    exit 0;
}

my $t0 = Time::HiRes::time();
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => Astralform::Test::server_port(), Proto => 'tcp')
    or die "connect: $!";
binmode $sock;
print {$sock} rpc_text({ jsonrpc => '2.0', id => 3, method => 'tools/call',
                         params => $call }, $sid);
my ($raw, $sel) = ('', IO::Select->new($sock));
while ($sel->can_read(5)) {
    my $n = sysread($sock, my $buf, 65536);
    last if !$n;
    $raw .= $buf;
}
my $took = Time::HiRes::time() - $t0;

# the socket stays open while the provider's late answer arrives
Time::HiRes::sleep(2.5);
close $sock;
waitpid($pid, 0);
Time::HiRes::sleep(0.3);

my $r = parse_http_response($raw);
my $a = eval { $JSON->decode($r->{body}) } // {};
is($a->{error}{code}, -32800, 'cancelled: -32800') or diag($raw);
ok($took < 1.4, sprintf('answered at once (%.1fs), not after the provider',
                        $took));
is(() = $raw =~ m{HTTP/1\.1 }g, 1, 'one answer on the connection');

my $log = error_log_text();
my @bad = grep { /\[(?:alert|crit|emerg)\]|header already sent/ }
          split /\n/, $log;
ok(!@bad, 'the late provider answer is neither sent nor finalized')
    or diag(join "\n", @bad);
like($log, qr/an answer after the request was finalized, dropped/,
     'the late answer was there, and dropped');
ok(index($log, $wkey) < 0, 'the key is not in the log');

# the worker is alive and the session still serves
($s, undef, $d) = rpc({ jsonrpc => '2.0', id => 4, method => 'ping' }, $sid);
is($s, 200, 'the worker still serves');

# --- messages JSON-RPC 2.0 does not allow (ngx_astralform_jsonrpc.c) -------

for my $bad (
    [ { jsonrpc => '2.0' }, 'neither a request nor a response' ],
    [ { jsonrpc => '2.0', id => 5, method => 'ping', params => 5 },
      'params neither object nor array' ],
    [ { jsonrpc => '2.0', id => 6, result => {}, error => { code => 1, message => 'x' } },
      'a result and an error' ],
    [ { jsonrpc => '2.0', id => 7, error => { code => 'x' } },
      'an error without an integer code' ],
    [ { jsonrpc => '2.0', id => 1.5, method => 'ping' }, 'a real id' ])
{
    my ($m, $why) = @$bad;
    ($s, undef, $d) = rpc($m, $sid);
    is($s, 400, "$why: 400");
    is($d->{error}{code}, -32600, "$why: -32600");
    is_deeply($d->{id}, ref $m->{id} || !defined $m->{id} || $m->{id} =~ /\./
                        ? undef : $m->{id}, "$why: the id if usable");
}

($s, undef, $d) = rpc({ jsonrpc => '2.0', id => 8, method => 'ping', params => [] }, $sid);
is($s, 200, 'params as an array: fine');
($s) = rpc({ jsonrpc => '2.0', id => 9, error => { code => -1, message => 'm' } }, $sid);
is($s, 202, 'an error response: 202');

stop_nginx();
wipe();
done_testing();
