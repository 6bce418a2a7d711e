# A provider that closes a kept-alive connection as the gateway uses it
# (keepalive_timeout, keepalive_requests racing the next request): the
# agent's call must not fail for it.
#
# libcurl 7.88 retries such a request itself, on a fresh connection, when
# nothing of the answer came, but counts those retries per easy handle and
# never resets the count between transfers (only curl_easy_reset() does):
# the sixth dead connection a kept handle meets fails its transfer ("Recv
# failure: Connection reset by peer", or "Send failure: Broken pipe" when
# the send is what fails), the bench's 502s. The mock's reset rule (RST,
# no answer) on the next request of a kept-alive connection makes that
# deterministic: one worker, calls in sequence, so one kept handle. The
# gateway's own retry (src/ngx_astralform_http.c) takes over there: once,
# fresh connection, within the original timeout.
#
# On nginx's own connections (astralform_http_client nginx, the default;
# src/ngx_astralform_upstream.c) there is no libcurl retry: the gateway's
# retries every reset GET, and no POST once it was sent, as nginx's
# proxy_next_upstream does for non-idempotent methods. Both clients run.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use Astralform::Seal;
use JSON::PP;
use Time::HiRes qw(time);

my $mock = $ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock';

# oauth_config's master key (k1), the same as the sealed records below
my $KEY = '5a' x 32;
my $cfg = oauth_config(prefix => 't071:', dir => 't/tmp/071', key => $KEY);

sub run_client {
    my ($client) = @_;
    start_nginx(http_config => $cfg->{http_config}
                               . "\n    astralform_http_client $client;\n",
                config => $cfg->{config}, workers => 1)
        or BAIL_OUT("nginx: $Astralform::Test::StartError");
    my $log_from = length(error_log_text() // '');

    redis_flush();
    mock('POST', '/__mock/reset', { all => JSON::PP::true });

    my $github = mint(github => {});
    my $slack = mint(slack => { user => 'U0SLACK1', token_type => 'user' });
    plant('github', 'u1', $github);
    plant('slack', 'u1', $slack);

    # --- GET: every call answered although each one's kept connection dies ------

    my ($st, $h, $res) = call('github_list_repos', {});
    is($st, 200, 'first call: 200 (opens the kept-alive connection)')
        or diag($JSON->encode($res));

    my $N = 12;
    my @fail;
    for my $i (1 .. $N) {
        behave(prefix => '/github/api/user/repos', method => 'GET',
               reset => JSON::PP::true, count => 1);
        ($st, $h, $res) = call('github_list_repos', {});
        push @fail, "call $i: $st " . $JSON->encode($res) if $st != 200;
        my $left = grep { $_->{remaining} } @{ mock('GET', '/__mock/behaviour')->{rules} };
        mock('DELETE', '/__mock/behaviour');
        # the rule must have hit a request, or the call proves nothing
        push @fail, "call $i: the reset rule was not used" if $left;
    }
    is(scalar @fail, 0, "GET: $N calls whose reused connection is reset, all 200")
        or diag(join "\n", @fail);

    my $log = substr(error_log_text(), $log_from);
    my @retries = $log =~ /\[info\].*upstream request to "127\.0\.0\.1:$mock" failed on a reused connection \([^)]+\), retrying on a fresh one/g;
    ok(@retries >= 1, 'the gateway retried where libcurl gave up, logged at info')
        or diag(join "\n", grep { /astralform/ } split /\n/, $log);
    if ($client eq 'curl') {
        ok(@retries < $N, 'not every call needed the gateway retry (libcurl retries first)');
    } else {
        is(scalar @retries, $N, 'nginx connections: the gateway retried every reset call');
    }
    diag(scalar(@retries) . " of $N calls retried by the gateway ($client)");
    unlike($log, qr/\[error\].*upstream request .* failed/,
           'no failed upstream request logged');

    # --- the retry has only what is left of the timeout --------------------------

    # the provider reads the request on the kept connection and closes it after
    # 1.2 s without an answer; the retry's fresh connection (libcurl's own or
    # the gateway's) gets no answer for 6 s: 504 at the 2 s timeout. libcurl
    # 7.88 starts its timer again when it retries itself (3.2 s here), the
    # gateway's deadline holds the request as a whole.
    behave(prefix => '/github/api/user/repos', method => 'GET',
           hang_ms => 1200, count => 1);
    behave(prefix => '/github/api/user/repos', method => 'GET',
           hang_ms => 6000, count => 1);
    my $t0 = time;
    ($st, $h, $res) = call('github_list_repos', {});
    my $took = time - $t0;
    is($st, 504, 'slow dead connection, slow retry: 504') or diag($JSON->encode($res));
    ok($took < 2.35, sprintf('answered within the original timeout (%.2f s)', $took));
    mock('DELETE', '/__mock/behaviour');

    ($st, $h, $res) = call('github_list_repos', {});
    is($st, 200, 'and the next call is fine');

    # --- POST: not retried once the request went out -----------------------------

    # libcurl itself resends a POST that got nothing back on a reused connection
    # (its own rule); the gateway adds no retry once curl sent any byte of it,
    # so once curl gives up the call fails: the provider may have acted on it
    my ($posts_ok, $posts_502) = (0, 0);
    for my $i (1 .. $N) {
        behave(prefix => '/slack/api/chat.postMessage', method => 'POST',
               reset => JSON::PP::true, count => 1);
        ($st, $h, $res) = call('slack_send_message',
                               { channel => 'C0GENERAL01', text => "hello $i" });
        mock('DELETE', '/__mock/behaviour');
        $st == 200 ? $posts_ok++ : $st == 502 ? $posts_502++ : 0;
    }
    if ($client eq 'curl') {
        ok($posts_502 >= 1, "POST: libcurl's give-up is not retried ($posts_502 of $N calls 502)");
    } else {
        is($posts_502, $N, 'nginx connections: a POST that went out is never resent');
    }
    is($posts_ok + $posts_502, $N, 'POST: every other call 200');

    # --- no secret in the logs ----------------------------------------------------

    $log = join '', map { slurp($_) } glob("$Astralform::Test::ServRoot/logs/*");
    stop_nginx();
    for my $s ($KEY, $SECRET, $github->{access_token}, $slack->{access_token}) {
        ok(index($log, $s) < 0, 'no secret in the logs: ' . substr($s, 0, 6) . '...');
    }

}

for my $client (qw(curl nginx)) { run_client($client) }
done_testing();

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; my $s = <$fh>; $s }

sub redis_flush {
    my $keys = redis_cmd('KEYS', 't071:*');
    redis_cmd('DEL', @$keys) if @$keys;
}

sub mint {
    my ($provider, $o) = @_;
    return mock('POST', '/__mock/tokens', { provider => $provider, %$o });
}

sub plant {
    my ($conn, $user, $tok) = @_;
    redis_cmd('HSET', "t071:{p1}:tokens:$conn", $user,
              seal_token($KEY, 'k1', 'p1', $conn, $user,
                         { type => 'oauth',
                           access_token => $tok->{access_token},
                           expires_at => 0, obtained_at => time() }));
}

sub call {
    my ($name, $args) = @_;
    return api('POST', '/v1/projects/p1/tools/call',
               { name => $name, arguments => $args }, user => 'u1');
}
