# Remote MCP connectors on the wire: what the gateway sends, and how it
# reads what the SDK server never sends (SSE with other events and CRLF,
# JSON-RPC batches and errors, paging, 429, 5xx, redirects, odd versions,
# stateless servers, sessions lost for good, oversized answers, a call
# given up). A scripted MCP server runs in a child process; the path of
# the connector's mcp_url picks its behaviour. Then, against the real SDK
# server: concurrent first calls leave no session behind.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use JSON::PP;
use File::Path qw(make_path);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

my $real = $ENV{TEST_NGINX_MCP_PORT}
    or plan skip_all => 'no MCP test server (run through t/run.sh)';

my $json = JSON::PP->new->canonical;
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/060-wire";
make_path($dir);

my $ADMIN = 'w-admin-key-0123456789';
my $AGENT = 'w-agent-key-0123456789';

spew("$dir/k1.key", ('7e' x 32) . "\n");
spew("$dir/admin.keys", "$ADMIN\n");
spew("$dir/agent.keys", "$AGENT\n");

my $log = "$dir/requests.log";
our $SPORT;
my ($port, $server_pid) = scripted_server();
END { kill 'TERM', $server_pid if $server_pid && $$ != $server_pid }

my @behaviours = qw(page sse batch rpcerr limited broken redirect badver
                    stateless longsid lost big slowcall);
my $S = "http://127.0.0.1:$port";
my $connectors = join '', map {
    "    astralform_connector W remote_mcp id=$_ mcp_url=$S/$_;\n"
} @behaviours;

my $http_config = <<"_EOC_";
    astralform_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
    astralform_redis_prefix t060w:;
    astralform_key k1 $dir/k1.key;
    astralform_public_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT;
    astralform_catalog \$TEST_NGINX_REPO/conf/connectors;
    astralform_http_timeout 1500ms;
    astralform_http_max_response_size 64k;
    astralform_project W admin_key_file=$dir/admin.keys agent_key_file=$dir/agent.keys;
$connectors    astralform_connector W remote_mcp id=real mcp_url=http://127.0.0.1:$real/mcp;
_EOC_

start_nginx(http_config => $http_config,
            config => "location /v1/ { astralform_api; }")
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

# --- the handshake, as the specification says ----------------------------

my ($st, $res) = call('sse_echo', { text => 'hi' });
is($st, 200, 'sse: 200') or diag($json->encode($res));
is_deeply($res->{result}, { content => [ { type => 'text',
                                           text => "line one\nline two" } ] },
          'sse: the response among other events, multi-line data joined');

my @r = requests('sse');
is_deeply([ map { $_->{rpc}{method} // $_->{method} } @r ],
          [ 'initialize', 'notifications/initialized', 'tools/call' ],
          'sse: initialize, initialized, then the call');

my ($init, $note, $callreq) = @r;
is($init->{rpc}{params}{protocolVersion}, '2025-06-18',
   'initialize asks for 2025-06-18');
is_deeply($init->{rpc}{params}{capabilities}, {}, 'no client capabilities');
is($init->{rpc}{params}{clientInfo}{name}, 'astralform-gateway',
   'clientInfo names the gateway');
ok(defined $init->{rpc}{id} && !exists $init->{headers}{'mcp-session-id'},
   'initialize: a request, without a session');
ok(!exists $note->{rpc}{id}, 'initialized: a notification');
for my $r ($init, $note, $callreq) {
    is($r->{method}, 'POST', "$r->{label}: POST");
    is($r->{headers}{accept}, 'application/json, text/event-stream',
       "$r->{label}: Accept");
    is($r->{headers}{'content-type'}, 'application/json',
       "$r->{label}: Content-Type");
}
for my $r ($note, $callreq) {
    is($r->{headers}{'mcp-session-id'}, 'sid-sse-1', "$r->{label}: session");
    is($r->{headers}{'mcp-protocol-version'}, '2025-06-18',
       "$r->{label}: protocol version");
}
is_deeply($callreq->{rpc}{params}, { name => 'echo',
                                     arguments => { text => 'hi' } },
          'tools/call: name without the prefix, arguments as given');

# --- JSON answers: a batch, a JSON-RPC error ------------------------------

($st, $res) = call('batch_echo', { text => 'b' });
is($st, 200, 'batch: 200');
is($res->{result}{content}[0]{text}, 'from the batch',
   'batch: the response with our id picked');

($st, $res) = call('rpcerr_echo', {});
is($st, 502, 'JSON-RPC error: 502');
is($res->{error}, 'provider_error', 'JSON-RPC error: provider_error');
is($res->{provider_status}, 200, 'JSON-RPC error: provider_status');
is_deeply($res->{provider_body}, { code => -32602, message => 'bad args',
                                   data => { field => 'text' } },
          'JSON-RPC error: the error object');

# --- HTTP failures --------------------------------------------------------

($st, $res) = call('limited_echo', {});
is($st, 429, '429: 429');
is($res->{error}, 'rate_limited', '429: rate_limited');
is($res->{retry_after}, 7, '429: retry_after from Retry-After');

($st, $res) = call('broken_echo', {});
is($st, 502, '500: 502');
is($res->{error}, 'provider_error', '500: provider_error');
is($res->{provider_status}, 500, '500: provider_status');
is_deeply($res->{provider_body}, { oops => 'database down' },
          '500: provider_body');

($st, $res) = call('redirect_echo', {});
is($st, 502, 'redirect: 502');
is($res->{provider_status}, 302, 'redirect: not followed');
is(scalar(requests('elsewhere')), 0, 'redirect: target never contacted');

($st, $res) = call('big_echo', {});
is($st, 502, 'oversized answer: 502');
like($res->{message}, qr/too large/, 'oversized answer: says so');

# --- versions, sessions ---------------------------------------------------

($st, $res) = call('badver_echo', {});
is($st, 502, 'unknown protocol version: 502');
like($res->{message}, qr/MCP version/, 'unknown protocol version: says so');

($st, $res) = call('stateless_echo', { text => 's' });
is($st, 200, 'stateless server: 200');
($st, $res) = call('stateless_echo', { text => 's' });
@r = requests('stateless');
is_deeply([ map { $_->{rpc}{method} // '' } @r ],
          [ 'initialize', 'notifications/initialized', 'tools/call',
            'tools/call' ],
          'stateless server: initialized once');
ok(!grep({ exists $_->{headers}{'mcp-session-id'} } @r),
   'stateless server: no Mcp-Session-Id sent');
is($r[-1]{headers}{'mcp-protocol-version'}, '2025-06-18',
   'stateless server: protocol version sent');

($st, $res) = call('longsid_echo', {});
is($st, 502, 'session id over 256 bytes: refused');

($st, $res) = call('lost_echo', {});
is($st, 502, 'session lost for good: 502');
is($res->{provider_status}, 404, 'session lost for good: the 404');
is(scalar(grep { ($_->{rpc}{method} // '') eq 'initialize' }
           requests('lost')), 2,
   'session lost for good: initialized again once, not more');

# --- paging ---------------------------------------------------------------

my ($lst, $list) = req('GET', '/v1/projects/W/tools');
is($lst, 200, 'listing: 200');
my @names = map { $_->{name} } @{ $list->{tools} };
is_deeply([ grep { /^page_/ } @names ], [ 'page_one', 'page_two' ],
          'paging: nextCursor followed');
my @lists = grep { ($_->{rpc}{method} // '') eq 'tools/list' }
            requests('page');
is(scalar @lists, 2, 'paging: two pages asked');
is($lists[1]{rpc}{params}{cursor}, 'c2', 'paging: cursor sent');
ok(grep({ $_ eq 'sse_echo' } @names), 'listing: SSE server listed');
ok(grep({ $_ eq 'real_echo' } @names), 'listing: real server listed');
ok(!grep({ /^(?:broken|limited|badver|lost)_/ } @names),
   'listing: failing servers left out');
my $errlog = error_log_text();
like($errlog, qr/MCP connector "broken" of project "W" at "127\.0\.0\.1:$port" skipped in the tool list: HTTP 500/,
     'listing: a failing server is logged with its connector and host');
unlike($errlog, qr/database down|sid-/, 'listing: no bodies, no session ids logged');

# --- a call given up: the server is told -----------------------------------

my $t0 = time;
($st, $res) = call('slowcall_echo', {});
my $took = time - $t0;
is($st, 504, 'slow call: 504');
is($res->{error}, 'provider_timeout', 'slow call: provider_timeout');
ok($took < 2.5, sprintf('slow call: answered after %.2fs', $took));
my ($cancel) = wait_for(sub {
    grep { ($_->{rpc}{method} // '') eq 'notifications/cancelled' }
    requests('slowcall')
});
my ($slow) = grep { ($_->{rpc}{method} // '') eq 'tools/call' }
             requests('slowcall');
ok($cancel, 'slow call: notifications/cancelled sent');
is($cancel && $cancel->{rpc}{params}{requestId}, $slow && $slow->{rpc}{id},
   'slow call: for the request given up');

# the client goes away during a call: the server is told as well
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
        or die "connect: $!";
    my $body = $json->encode({ name => 'slowcall_echo', arguments => {} });
    print $s "POST /v1/projects/W/tools/call HTTP/1.1\r\nHost: x\r\n"
             . "Authorization: Bearer $AGENT\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    sleep 0.5;
    close $s;
}
my @cancels = wait_for(sub {
    my @c = grep { ($_->{rpc}{method} // '') eq 'notifications/cancelled' }
            requests('slowcall');
    @c == 2 ? @c : ();
});
my @calls = grep { ($_->{rpc}{method} // '') eq 'tools/call' }
            requests('slowcall');
is(scalar @cancels, 2, 'client gone: notifications/cancelled sent');
is($cancels[1] && $cancels[1]{rpc}{params}{requestId},
   $calls[1] && $calls[1]{rpc}{id}, 'client gone: for the call in flight');
($st) = call('stateless_echo', { text => 'still here' });
is($st, 200, 'client gone: the worker goes on');

unlike(error_log_text(), qr/\[(?:alert|crit|emerg)\]/,
       'no alert in the error log');

# --- concurrent first calls to the real server leave one session ---------

start_nginx(http_config => $http_config,
            config => "location /v1/ { astralform_api; }")
    or BAIL_OUT("nginx: $Astralform::Test::StartError");
mcp_hook('drop-sessions');
mcp_hook('reset-stats');

my @socks = map {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
        or die "connect: $!";
    my $body = $json->encode({ name => 'real_echo',
                               arguments => { text => "c$_" } });
    print $s "POST /v1/projects/W/tools/call HTTP/1.1\r\nHost: x\r\n"
             . "Connection: close\r\nAuthorization: Bearer $AGENT\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    $s;
} 1 .. 6;

my $ok = 0;
for my $s (@socks) {
    local $/;
    my $raw = <$s>;
    $ok++ if $raw =~ m{^HTTP/1\.1 200} && $raw =~ /"text":"c\d"/;
}
is($ok, 6, 'concurrent first calls: all answered');

my $stats = wait_for(sub {
    my $s = mcp_hook('stats', 'GET');
    $s->{active_sessions} == 1 ? $s : ();
}) || mcp_hook('stats', 'GET');
ok($stats->{initialize} >= 1, "concurrent first calls: $stats->{initialize}"
                              . ' initialize');
is($stats->{active_sessions}, 1,
   'concurrent first calls: the extra sessions were deleted');
is($stats->{sessions_created} - $stats->{sessions_deleted}, 1,
   'concurrent first calls: created - deleted = 1');

# a later call uses the session kept, without a new initialize
my $before = $stats->{initialize};
($st) = call('real_echo', { text => 'again' });
is($st, 200, 'later call: 200');
is(mcp_hook('stats', 'GET')->{initialize}, $before,
   'later call: the kept session used');

unlike(error_log_text(), qr/\[(?:error|alert|crit|emerg)\]/,
       'concurrent first calls: no error in the error log');

stop_nginx();
done_testing();


# --- helpers --------------------------------------------------------------

sub spew { my ($f, $t) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $t; close $fh }

sub req {
    my ($method, $path, $body) = @_;
    my ($st, $h, $raw) = http_req($method, $path,
        [ Authorization => "Bearer $AGENT",
          ($body ? ('Content-Type' => 'application/json') : ()) ],
        $body ? $json->encode($body) : undef, { timeout => 10 });
    my $res = eval { $json->decode($raw) } // { raw => $raw };
    return ($st, $res);
}

sub call {
    my ($tool, $args) = @_;
    return req('POST', '/v1/projects/W/tools/call',
               { name => $tool, arguments => $args });
}

sub mcp_hook {
    my ($hook, $method) = @_;
    my ($st, $h, $raw) = http_req($method // 'POST', "/__mcp/$hook", [], '',
                                  { port => $real });
    return eval { $json->decode($raw) } // {};
}

sub wait_for {
    my ($cond) = @_;
    for (1 .. 50) {
        my @got = $cond->();
        return wantarray ? @got : $got[0] if @got;
        sleep 0.1;
    }
    return;
}

# what the scripted server received on /NAME, in order
sub requests {
    my ($name) = @_;
    open my $fh, '<', $log or return ();
    my @out;
    while (my $line = <$fh>) {
        my $r = $json->decode($line);
        next unless $r->{path} eq "/$name";
        $r->{label} = $r->{rpc}{method} // $r->{method};
        push @out, $r;
    }
    return @out;
}

# A forking HTTP/1.1 server that answers as an MCP server would, or would
# not, depending on the path.
sub scripted_server {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 64, Proto => 'tcp',
                                  ReuseAddr => 1)
        or die "listen: $!";
    unlink $log;
    $SPORT = $l->sockport;

    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $l;
        return ($SPORT, $pid);
    }

    # prove waits for every holder of the test's stdout: hold none, and
    # go away with the test, however it ends
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    $SIG{CHLD} = 'IGNORE';
    $SIG{ALRM} = sub { POSIX::_exit(0) if getppid() != $parent; alarm 1 };
    alarm 1;

    my $n = 0;
    while (1) {
        my $c = $l->accept or next;
        $n++;
        my $child = fork;
        if (!defined $child || $child == 0) {
            serve($c, $n);
            POSIX::_exit(0);
        }
        close $c;
    }
    POSIX::_exit(0);
}

sub serve {
    my ($c, $conn) = @_;
    my $j = JSON::PP->new->canonical;
    binmode $c;

    while (1) {
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            my $got = sysread($c, $head, 4096, length $head);
            return unless $got;
        }
        my ($top, $rest) = split /\r\n\r\n/, $head, 2;
        my ($line, @hl) = split /\r\n/, $top;
        my ($method, $path) = split ' ', $line;
        my %h = map { my ($k, $v) = split /:\s*/, $_, 2; (lc $k, $v) } @hl;
        my $len = $h{'content-length'} // 0;
        while (length $rest < $len) {
            my $got = sysread($c, $rest, $len - length $rest, length $rest);
            return unless $got;
        }
        my $body = substr($rest, 0, $len);
        my $rpc = $len ? eval { $j->decode($body) } : undef;

        open my $lf, '>>', $log or die;
        flock $lf, 2;
        print $lf $j->encode({ method => $method, path => $path,
                               headers => \%h, rpc => $rpc }), "\n";
        close $lf;

        my ($status, $hdrs, $out) = answer($j, $method, $path, \%h, $rpc);
        my $res = "HTTP/1.1 $status X\r\nContent-Length: " . length($out)
                  . "\r\n$hdrs\r\n$out";
        syswrite($c, $res);
    }
}

sub answer {
    my ($j, $method, $path, $h, $rpc) = @_;
    my $name = substr($path, 1);
    my $sid = $h->{'mcp-session-id'};
    my $json_ct = "Content-Type: application/json\r\n";

    return (200, '', '') if $method eq 'DELETE';
    return (404, $json_ct, '{}') if $name eq 'elsewhere';
    return (302, "Location: http://127.0.0.1:$SPORT/elsewhere\r\n", '')
        if $name eq 'redirect';
    return (429, "Retry-After: 7\r\n$json_ct", '{"error":"slow down"}')
        if $name eq 'limited';
    return (500, $json_ct, '{"oops":"database down"}') if $name eq 'broken';

    my $m = $rpc->{method} // '';
    my $id = $rpc->{id};
    my $reply = sub {
        my ($result) = @_;
        return $j->encode({ jsonrpc => '2.0', id => $id, result => $result });
    };

    if ($m eq 'initialize') {
        my $hdrs = $json_ct;
        $hdrs .= 'Mcp-Session-Id: ' . ($name eq 'longsid' ? 'x' x 300
                                       : "sid-$name-1") . "\r\n"
            unless $name eq 'stateless';
        return (200, $hdrs, $reply->({
            protocolVersion => $name eq 'badver' ? '1999-01-01'
                               : '2025-06-18',
            capabilities => { tools => {} },
            serverInfo => { name => "scripted-$name", version => '0' } }));
    }

    return (404, $json_ct, '{"jsonrpc":"2.0","error":{"code":-32001,'
                           . '"message":"Session not found"},"id":null}')
        if $name eq 'lost' && defined $sid;

    return (202, '', '') if $m =~ m{^notifications/};

    if ($m eq 'tools/list') {
        my $tool = sub { { name => $_[0], description => "tool $_[0]",
                           inputSchema => { type => 'object' } } };
        if ($name eq 'page') {
            return (200, $json_ct, $reply->(
                ($rpc->{params}{cursor} // '') eq 'c2'
                ? { tools => [ $tool->('two') ] }
                : { tools => [ $tool->('one') ], nextCursor => 'c2' }));
        }
        return (200, $json_ct, $reply->({ tools => [ $tool->('echo') ] }));
    }

    if ($name eq 'sse') {
        my $resp = $reply->({ content => [ { type => 'text',
                                             text => "line one\nline two" } ] });
        # the response cut in two data lines (JSON allows the break)
        $resp =~ s/,"jsonrpc"/,\r\ndata: "jsonrpc"/;
        my $wrong = $j->encode({ jsonrpc => '2.0', id => $id,
                                 result => { content => [] } });
        my $sse = ": a comment\r\n\r\n"
                  . "event: message\r\ndata: "
                  . $j->encode({ jsonrpc => '2.0',
                                 method => 'notifications/progress',
                                 params => { progress => 1 } }) . "\r\n\r\n"
                  . "data: " . $j->encode({ jsonrpc => '2.0', id => $id,
                                            method => 'ping' }) . "\r\n\r\n"
                  . "event: other\r\ndata: $wrong\r\n\r\n"
                  . "id: 1\r\nevent: message\r\ndata: $resp\r\n\r\n";
        return (200, "Content-Type: text/event-stream\r\n", $sse);
    }

    if ($name eq 'batch') {
        return (200, $json_ct, $j->encode([
            { jsonrpc => '2.0', method => 'notifications/message',
              params => { level => 'info', data => 'x' } },
            { jsonrpc => '2.0', id => $id + 1000, result => {} },
            { jsonrpc => '2.0', id => $id,
              result => { content => [ { type => 'text',
                                         text => 'from the batch' } ] } },
        ]));
    }

    if ($name eq 'rpcerr') {
        return (200, $json_ct, $j->encode({ jsonrpc => '2.0', id => $id,
            error => { code => -32602, message => 'bad args',
                       data => { field => 'text' } } }));
    }

    return (200, $json_ct, $reply->({ content => [], pad => 'z' x 100000 }))
        if $name eq 'big';

    sleep 4 if $name eq 'slowcall';

    return (200, $json_ct,
            $reply->({ content => [ { type => 'text',
                                      text => $rpc->{params}{arguments}{text}
                                              // '' } ] }));
}
