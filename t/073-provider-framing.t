# Answers framed in hostile ways, on the gateway's own provider connections
# (src/ngx_astralform_upstream.c, src/ngx_astralform_http1.c): a raw TCP
# "Slack" of this test writes each answer byte for byte as scripted.
#
# The one that matters most: bytes after an answer's Content-Length (a
# second, smuggled answer in the same write) must never become the next
# call's answer on a kept connection.

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

my $KEY = '5a' x 32;
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/073";
my $script = "$dir/script";          # the answer to the next request
my $seen = "$dir/seen";              # "conn N" per request

my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                Listen => 16, ReuseAddr => 1)
    or BAIL_OUT("listen: $!");
my $port = $srv->sockport;
my $pid = fork // BAIL_OUT("fork: $!");
if ($pid == 0) { serve($srv); exit 0 }
close $srv;

my $cfg = oauth_config(prefix => 't073:', dir => 't/tmp/073', key => $KEY);
my $http = $cfg->{http_config};
$http =~ s/^\s*astralform_provider slack .*\n//m;
$http .= "    astralform_provider slack api_base=http://127.0.0.1:$port/api/;\n";

start_nginx(http_config => $http, config => $cfg->{config}, workers => 1)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('HSET', 't073:{p1}:tokens:slack', 'u1',
          seal_token($KEY, 'k1', 'p1', 'slack', 'u1',
                     { type => 'oauth', access_token => 'xoxp-t073-token',
                       expires_at => 0, obtained_at => time() }));

my $OK = '{"ok":true,"channels":[{"id":"C1","name":"real"}]}';
sub answer { my ($body, @h) = @_;
    join('', "HTTP/1.1 200 OK\r\n", (map { "$_\r\n" } @h),
         'Content-Length: ' . length($body) . "\r\n\r\n", $body) }

# --- a smuggled second answer after the first's Content-Length -------------------

# the first answer larger than the gateway's first read (4 kB), so that its
# body's last read asks for exactly what Content-Length has left and the
# smuggled bytes stay behind in the socket
my $BIG = '{"ok":true,"channels":[{"id":"C1","name":"real","purpose":"'
        . ('x' x 6000) . '"}]}';
my $SMUGGLED = '{"ok":true,"channels":[{"id":"C666","name":"smuggled"}]}';
script(answer($BIG) . answer($SMUGGLED), answer($OK));
my ($st, $h, $res) = call();
is($st, 200, 'an answer followed by a second one in the same write: 200');
($st, $h, $res) = call();
is($st, 200, 'the next call: 200');
unlike($JSON->encode($res), qr/smuggled/, 'the next call does not get the smuggled answer');
like($JSON->encode($res), qr/"real"/, 'it gets its own');
my @conns = seen();
isnt($conns[-1], $conns[-2], 'the connection with bytes left over was not reused');

# --- kept-alive: a clean answer keeps its connection ----------------------------

script(answer($OK), answer($OK));
call(); call();
@conns = seen();
is($conns[-1], $conns[-2], 'a clean answer: the next call reuses the connection');

# --- chunked with extensions, trailers and LF-only lines; 100 Continue first ---

my $chunked = "HTTP/1.1 100 Continue\r\n\r\n"
            . "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"
            . sprintf("%x;ext=1\r\n%s\r\n", 10, substr($OK, 0, 10))
            . sprintf("%X\n%s\n", length($OK) - 10, substr($OK, 10))
            . "0\r\nX-Trailer: t\r\n\r\n";
script($chunked);
($st, $h, $res) = call();
is($st, 200, 'chunked with an extension, a trailer, LF-only lines after 100 Continue: 200');
like($JSON->encode($res), qr/"real"/, 'the body is decoded');

# --- refused framings --------------------------------------------------------------

for my $case (
    [ 'two different Content-Length', "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{\"ok\"" ],
    [ 'a transfer coding other than chunked', "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" ],
    [ 'obsolete line folding', "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n x\r\n\r\n{}" ],
    [ 'a broken chunk size', "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n" ],
    [ 'nine interim answers', ("HTTP/1.1 100 Continue\r\n\r\n" x 9) . answer($OK) ],
    [ 'an answer in a content coding not offered', answer($OK, 'Content-Encoding: gzip') ],
    [ 'HTTP/2 preface', "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" ],
) {
    my ($what, $raw) = @$case;
    script($raw);
    ($st, $h, $res) = call();
    is($st, 502, "$what: 502") or diag($JSON->encode($res));
    is($res->{error}, 'provider_error', "$what: provider_error");
}
like(error_log_text(), qr/too many interim answers/, 'the interim flood is named in the log');

script(answer($OK));
($st, $h, $res) = call();
is($st, 200, 'and the next call is fine');

my $log = join '', map { slurp($_) } glob("$Astralform::Test::ServRoot/logs/*");
ok(index($log, 'xoxp-t073-token') < 0, 'no token in the logs');
ok(index($log, $KEY) < 0, 'no key in the logs');

stop_nginx();
kill 'TERM', $pid;
waitpid $pid, 0;
done_testing();

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; my $s = <$fh>; $s }

sub call {
    return api('POST', '/v1/projects/p1/tools/call',
               { name => 'slack_list_channels', arguments => {} }, user => 'u1');
}

# the answers to the next requests, one file each
sub script {
    my @answers = @_;
    unlink glob("$script.*");
    for my $i (0 .. $#answers) {
        open my $fh, '>', "$script.$i" or die;
        binmode $fh;
        print $fh $answers[$i];
        close $fh;
    }
    open my $fh, '>', "$script.next" or die;
    print $fh "0";
    close $fh;
}

sub seen { split /\n/, slurp($seen) }

# Connections one after the other (one worker, calls in sequence): each
# request read up to its empty line gets the next scripted answer, in one
# write. A connection stays open until the gateway closes it.
sub serve {
    my ($srv) = @_;
    require IO::Select;
    my $sel = IO::Select->new($srv);
    my (%buf, %id);
    my $n = 0;
    while (1) {
        for my $s ($sel->can_read) {
            if ($s == $srv) {
                my $c = $srv->accept or next;
                $sel->add($c);
                $id{$c} = ++$n;
                $buf{$c} = '';
                next;
            }
            my $got = sysread($s, my $chunk, 65536);
            if (!$got) { $sel->remove($s); close $s; next }
            $buf{$s} .= $chunk;
            while ($buf{$s} =~ s/^.*?\r\n\r\n//s) {
                my $i = slurp("$script.next") || 0;
                my $raw = slurp("$script.$i");
                open my $fh, '>', "$script.next"; print $fh $i + 1; close $fh;
                open my $sf, '>>', $seen; print $sf "conn $id{$s}\n"; close $sf;
                syswrite($s, $raw) if length $raw;
            }
        }
    }
}
