# Disabling really revokes (DESIGN section 11): the tokens of a disabled
# connector (and of a user's disconnect) wait in Redis, sealed, and are
# revoked at the provider in the background until each is done or failed
# for good, however slow the provider; the progress reads back at
# GET /v1/projects/{pid}/connectors/{id}/revocations, also once the
# connector is gone; a reload hands the work over at once.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test;
use Astralform::OAuth;
use Astralform::Seal;
use Time::HiRes qw(time sleep);

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $KEY = '3d' x 32;
my $cfg = oauth_config(prefix => 't091:', dir => 't/tmp/091', key => $KEY,
                       connectors => 0);

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
            workers => 2, worker_connections => 1024)
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't091:*');
mock('POST', '/__mock/reset', { all => JSON::PP::true });

my $REVOKE = '/slack/api/auth.revoke';

sub enable {
    my ($st, $h, $res) = admin_api('POST', '/v1/projects/p1/connectors',
        { connector_slug => 'slack', oauth_client_id => 'slack-cid',
          oauth_client_secret => $SECRET });
    is($st, 201, 'slack enabled') or diag($JSON->encode($res));
}

# $n users connected with tokens the mock knows; their access tokens
sub connect_users {
    my ($tag, $n) = @_;
    my (@tokens, @hset);
    for my $i (1 .. $n) {
        my $user = "$tag$i";
        my $t = mock('POST', '/__mock/tokens', { provider => 'slack', user => "U$user" });
        push @tokens, $t->{access_token};
        push @hset, $user, seal_token($KEY, 'k1', 'p1', 'slack', $user,
            { type => 'oauth', access_token => $t->{access_token},
              expires_at => 0, obtained_at => int(time) });
    }
    redis_cmd('HSET', 't091:{p1}:tokens:slack', @hset);
    return @tokens;
}

sub revoked_at_mock {
    my %want = map { $_ => 1 } @_;
    return scalar grep { $want{ $_->{token} } && $_->{status} eq 'revoked' }
        @{ mock('GET', '/__mock/tokens?provider=slack')->{tokens} };
}

sub progress {
    my ($st, $h, $res) = admin_api('GET', '/v1/projects/p1/connectors/slack/revocations');
    return $st == 200 ? $res : { status => $st };
}

# polls the progress until nothing is pending; every answer seen
sub drain {
    my ($secs) = @_;
    my @seen;
    my $until = time + $secs;
    while (time < $until) {
        push @seen, progress();
        last if defined $seen[-1]{pending} && $seen[-1]{pending} == 0;
        sleep 0.25;
    }
    return @seen;
}

# --- a few hundred users, 200 ms per revocation ---------------------------------

enable();
my $N = 240;
my @tokens = connect_users('u', $N);
behave(prefix => $REVOKE, count => -1, delay_ms => 200);

my $t0 = time;
my ($st, $h, $res) = admin_api('DELETE', '/v1/projects/p1/connectors/slack');
my $took = time - $t0;
is($st, 200, 'disable: 200');
is($res->{deleted_tokens}, $N, "disable: $N tokens deleted here");
is($res->{revoked_tokens}, $N, 'disable: revoked_tokens kept for compatibility');
is($res->{pending_revocations}, $N, "disable: $N revocations pending at the provider");
ok($took < 0.5, sprintf('disable answers at once (%.3fs)', $took));
is(redis_cmd('EXISTS', 't091:{p1}:tokens:slack'), 0, 'disable: no live token hash left');

($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                      { name => 'slack_search_messages', arguments => { query => 'x' } },
                      user => 'u1');
is($st, 404, 'disable: the connector is gone for tools');

my @seen = drain(40);
my $done = time - $t0;
is($seen[-1]{pending}, 0, sprintf('every revocation finished (%.1fs)', $done));
is($seen[-1]{total}, $N, "progress: total $N");
is($seen[-1]{revoked}, $N, "progress: $N revoked");
is($seen[-1]{failed}, 0, 'progress: none failed');
ok((grep { defined $_->{revoked} && $_->{revoked} > 0 && $_->{revoked} < $N } @seen),
   'progress readable meanwhile: part revoked, part pending')
    or diag($JSON->encode(\@seen));
is(revoked_at_mock(@tokens), $N, "all $N tokens are revoked at the provider");
my $calls = grep { $_->{path} eq $REVOKE } @{ mock('GET', '/__mock/requests')->{requests} };
is($calls, $N, 'one revocation request per token');
ok($done > $N * 0.2 / 16, 'bounded concurrency: it took its time');
is_deeply([ redis_keys('{p1}:revoke_tokens:*'), redis_keys('{p1}:revoke_batch:*') ], [],
          'the batch is gone from Redis once drained');
is(redis_cmd('ZCARD', 't091:{p1}:revoke_batches'), 0, 'no batch left in the queue');
diag(sprintf('%d revocations at 200 ms each completed in %.1fs', $N, $done));

# --- a reload in the middle hands the work over ------------------------------------

mock('POST', '/__mock/reset');
enable();
my $M = 160;
@tokens = connect_users('r', $M);
behave(prefix => $REVOKE, count => -1, delay_ms => 200);
($st, $h, $res) = admin_api('DELETE', '/v1/projects/p1/connectors/slack');
is($res->{pending_revocations}, $M, "reload: $M pending");
sleep 1;
ok(reload_nginx(), 'reload while revoking');
$t0 = time;
@seen = drain(25);
is($seen[-1]{pending}, 0, sprintf('reload: the new workers finished the work (%.1fs after)', time - $t0));
is(revoked_at_mock(@tokens), $M, "reload: all $M revoked at the provider");

# --- a user's disconnect -----------------------------------------------------------

mock('POST', '/__mock/reset');
enable();
my ($one) = connect_users('d', 1);
my $before = progress();
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/d1/connections/slack');
is($st, 200, 'disconnect: 200');
ok($res->{disconnected}, 'disconnect: removed here');
is($res->{pending_revocations}, 1, 'disconnect: one revocation pending');
@seen = drain(10);
is($seen[-1]{total} - $before->{total}, 1, 'disconnect: counted in the progress');
is(revoked_at_mock($one), 1, 'disconnect: revoked at the provider');

# --- 5xx: tried again with backoff; 4xx: failed for good --------------------------

mock('POST', '/__mock/reset');
my ($again) = connect_users('e', 1);
behave(prefix => $REVOKE, count => 2, status => 503, body => 'busy');
$before = progress();
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/e1/connections/slack');
@seen = drain(15);
is($seen[-1]{revoked} - $before->{revoked}, 1, '503 twice, then revoked');
is(revoked_at_mock($again), 1, '503 twice: revoked at the provider in the end');
is(scalar(grep { $_->{path} eq $REVOKE } @{ mock('GET', '/__mock/requests')->{requests} }),
   3, '503 twice: three attempts');

mock('POST', '/__mock/reset');
my ($refused) = connect_users('f', 1);
behave(prefix => $REVOKE, count => -1, status => 400, body => { ok => JSON::PP::false });
$before = progress();
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/f1/connections/slack');
@seen = drain(10);
is($seen[-1]{failed} - $before->{failed}, 1, '400: failed for good');
is(scalar(grep { $_->{path} eq $REVOKE } @{ mock('GET', '/__mock/requests')->{requests} }),
   1, '400: not tried again');
mock('POST', '/__mock/reset');

# --- the answer's shape ---------------------------------------------------------------

($st, $h, $res) = api('GET', '/v1/projects/p1/connectors/slack/revocations');
is($st, 403, 'progress: an agent key gets 403');
is($res->{error}, 'admin_required', 'progress: admin_required');
($st, $h, $res) = admin_api('GET', '/v1/projects/p1/connectors/never/revocations');
is_deeply($res, { connector => 'never', total => 0, revoked => 0, failed => 0, pending => 0 },
          'progress of a connector without revocations: zeros');

secrets_from_mock();
stop_nginx();
scan_logs();
done_testing();
