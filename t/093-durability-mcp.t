# Remote MCP sessions (DESIGN section 11), against the real SDK server in
# t/servers: concurrent first calls on a cold worker open ONE session, not
# one each; disabling the connector closes the sessions of every worker at
# the server (DELETE with Mcp-Session-Id) right away, not at the idle sweep.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use POSIX ();
use Time::HiRes qw(time sleep);

$ENV{TEST_NGINX_MCP_PORT} && $ENV{TEST_NGINX_MOCK_PORT}
    or plan skip_all => 'no MCP server';

my $cfg = oauth_config(prefix => 't093:', dir => 't/tmp/093', connectors => 0,
    extra => "    astralform_mcp_allowed_origin http://127.0.0.1:\$TEST_NGINX_MCP_PORT;\n");
my $URL = "http://127.0.0.1:$ENV{TEST_NGINX_MCP_PORT}/mcp";

sub mcp {
    my ($method, $path) = @_;
    my ($st, $h, $text) = http_req($method, $path, [], $method eq 'POST' ? '' : undef,
                                   { port => $ENV{TEST_NGINX_MCP_PORT} });
    return eval { $JSON->decode($text) } // {};
}

sub enable {
    my ($st, $h, $res) = admin_api('POST', '/v1/projects/p1/connectors',
        { connector_slug => 'remote_mcp', id => 'docs', mcp_url => $URL,
          require_auth => JSON::PP::false });
    is($st, 201, 'remote MCP connector enabled') or diag($JSON->encode($res));
}

sub echo_call {
    my ($st) = api('POST', '/v1/projects/p1/tools/call',
                   { name => 'docs_echo', arguments => { text => 'hi' } }, user => 'u1');
    return $st;
}

sub wait_for {
    my ($what, $secs) = @_;
    my $until = time + $secs;
    while (time < $until) {
        return 1 if $what->();
        sleep 0.05;
    }
    return 0;
}

for my $workers (1, 2) {
    start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
                workers => $workers, worker_connections => 1024)
        or BAIL_OUT("nginx: $Astralform::Test::StartError");
    redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                      . "redis.call('DEL', k) end", 0, 't093:*');
    mcp('POST', '/__mcp/drop-sessions');
    mcp('POST', '/__mcp/reset-stats');

    enable();

    # concurrent first calls on cold workers
    my @st = parallel(30, \&echo_call);
    is(scalar(grep { $_ == 200 } @st), 30, "$workers worker(s): 30 concurrent first calls: all 200")
        or diag(join ' ', @st);
    my $s = mcp('GET', '/__mcp/stats');
    ok($s->{sessions_created} >= 1 && $s->{sessions_created} <= $workers,
       "$workers worker(s): $s->{sessions_created} session(s) opened, at most one per worker");
    is($s->{initialize}, $s->{sessions_created}, "$workers worker(s): one initialize per session");
    is($s->{sessions_deleted}, 0, "$workers worker(s): none opened only to be deleted");
    is($s->{tools_call}, 30, "$workers worker(s): 30 tool calls");
    my $open = $s->{active_sessions};
    # a session id lets its bearer act in the session: never in our log
    my $sid = $s->{last_request}{headers}{'mcp-session-id'};
    my $sealed = redis_cmd('HVALS', 't093:{p1}:mcp_sessions:docs') || [];
    is(scalar @$sealed, $open, "$workers worker(s): each session recorded in Redis");
    unlike(join(' ', @$sealed), qr/\Q$sid\E/, "$workers worker(s): sealed there");
    remember_secret(@$sealed);

    # disable: every worker's session closed at the server at once
    my ($st, $h, $res) = admin_api('DELETE', '/v1/projects/p1/connectors/docs');
    is($st, 200, "$workers worker(s): disable: 200");
    ok(wait_for(sub { mcp('GET', '/__mcp/stats')->{active_sessions} == 0 }, 3),
       "$workers worker(s): disable: no session left open at the server");
    $s = mcp('GET', '/__mcp/stats');
    is($s->{sessions_deleted}, $open, "$workers worker(s): disable: $open DELETE(s) with the session id");
    is($s->{unknown_session_404}, 0, "$workers worker(s): no DELETE of an unknown session");
    is_deeply([ redis_keys('{p1}:mcp_sessions:*') ], [], "$workers worker(s): the session record is gone");
    ok($sid && index(error_log_text(), $sid) < 0, "$workers worker(s): the session id is in no log line");

    stop_nginx();
}

remember_secret($SECRET);
scan_logs();
done_testing();

