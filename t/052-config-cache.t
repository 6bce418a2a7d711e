# The configuration cache (astralform_config_cache_size): two instances of
# two workers each on one Redis of this file's own (so that it can be
# restarted); a change made through one instance is seen by the very next
# call on every worker of the other; warm calls read no connector hash from
# Redis; killing the invalidation connections, restarting Redis and a
# cache that is off stay correct.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';
missing_part('redis-server not installed')
    unless grep { -x "$_/redis-server" } split /:/, $ENV{PATH};

my $P1 = $ENV{TEST_NGINX_SERVER_PORT};
my $P2 = free_port();
my $root2 = "$ENV{TEST_NGINX_REPO}/t/servroot_$P1-b";
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/052";
File::Path::make_path($dir);

# --- a Redis of this file's own, on a free port ---------------------------

my $RP = free_port();
$ENV{TEST_NGINX_REDIS_PORT} = $RP;
my $redis_pid;

sub start_redis {
    $redis_pid = fork() // die "fork: $!";
    if (!$redis_pid) {
        open STDOUT, '>>', "$dir/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec('redis-server', '--port', $RP, '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no') or POSIX::_exit(127);
    }
    my $deadline = time() + 5;
    while (time() < $deadline) {
        my $pong = eval { redis_cmd('PING') } // '';
        return 1 if $pong eq 'PONG';
        sleep(0.05);
    }
    BAIL_OUT('redis-server did not start');
}

sub stop_redis {
    return unless $redis_pid;
    kill 'TERM', $redis_pid;
    waitpid($redis_pid, 0);
    undef $redis_pid;
}

END { stop_redis() }
$SIG{TERM} = $SIG{INT} = sub { exit 1 };

start_redis();

# --- two instances, two workers each --------------------------------------

my $M = Astralform::OAuth::mock_base();
my $WKEY = 'mock-openweather-key';
my $WRONG = 'wrong-openweather-key-0123';
remember_secret($WKEY, $WRONG);

sub config {
    my ($cache) = @_;
    my $cfg = oauth_config(prefix => 't052:', dir => 't/tmp/052',
        extra => "    astralform_provider openweather api_base=$M/openweather/data/2.5/;\n"
                 . (defined $cache ? "    astralform_config_cache_size $cache;\n" : ''));
    $cfg->{config} = <<'_EOC_';
    location /v1/ {
        add_header X-Worker $pid always;
        astralform_api;
    }
_EOC_
    return $cfg;
}

sub start_both {
    my ($cache) = @_;
    my $cfg = config($cache);
    start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config},
                workers => 2)
        or BAIL_OUT("nginx A: $Astralform::Test::StartError");
    second(sub {
        start_nginx(http_config => $cfg->{http_config},
                    config => $cfg->{config}, workers => 2, port => $P2)
            or BAIL_OUT("nginx B: $Astralform::Test::StartError");
    });
}

sub stop_both {
    second(sub { stop_nginx() });
    stop_nginx();
}

sub second { in_servroot($root2, @_) }

# one tool call on instance A: (status, error code, worker pid)
sub call {
    my (%o) = @_;
    my ($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                             { name => 'openweather_current',
                               arguments => { q => 'London' } },
                             user => 'u1', %o);
    my $err = ref $res eq 'HASH' ? ($res->{error} // '') : '';
    return ($st, $err, $h->{'x-worker'} // '');
}

# calls on A until both of its workers answered at least $n times each;
# every answer must be what $want says (status, error)
sub every_worker {
    my ($what, $want_st, $want_err, %o) = @_;
    my $n = delete $o{times} // 1;
    my $reconnecting = delete $o{reconnecting};
    my (%seen, @bad, $calls);
    while (($calls // 0) < 400) {
        my ($st, $err, $pid) = call(%o);
        $calls++;
        # a connection Redis closed: answered 503 until it is made again
        next if $reconnecting && $st == 503 && $err eq 'store_unavailable';
        push @bad, "$st $err (worker $pid)"
            if $st != $want_st || $err ne $want_err;
        $seen{$pid}++;
        last if keys %seen >= 2 && !grep { $_ < $n } values %seen;
    }
    is(scalar(keys %seen), 2, "$what: both workers of A answered ($calls calls)");
    is(scalar(@bad), 0, "$what: every call $want_st $want_err")
        or diag(join ', ', @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}

sub admin_b { my ($m, $p, $b) = @_; admin_api($m, $p, $b, port => $P2) }

sub enable_weather {
    my ($st) = admin_b('POST', '/v1/projects/p1/connectors',
                       { connector_slug => 'openweather', api_key => $WKEY });
    return $st;
}

sub commandstats {
    my $info = redis_cmd('INFO', 'commandstats');
    my %n;
    while ($info =~ /^cmdstat_([\w|]+):calls=(\d+)/mg) { $n{$1} = $2 }
    return \%n;
}

sub delta {
    my ($before, $after, $cmd) = @_;
    return ($after->{$cmd} // 0) - ($before->{$cmd} // 0);
}

mock('POST', '/__mock/reset', { all => JSON::PP::true });

# --- cache on (the default size) ------------------------------------------

start_both(undef);

is(enable_weather(), 201, 'B: openweather enabled with a service key');
every_worker('warm-up', 200, '', times => 3);

# tracking is set up: each command connection redirects to a subscriber
sub tracking_clients {
    my $list = redis_cmd('CLIENT', 'LIST');
    my (%sub, @redir);
    for my $line (split /\n/, $list) {
        my %f = map { /^(\w+)=(.*)$/ ? ($1, $2) : () } split / /, $line;
        $sub{$f{id}} = 1 if ($f{sub} // 0) > 0 || ($f{flags} // '') =~ /P/;
        push @redir, $f{redir} if defined $f{redir} && $f{redir} ne '-1';
    }
    return (scalar(grep { $sub{$_} } @redir), scalar(keys %sub));
}
my ($redirected, $subscribers) = tracking_clients();
is($subscribers, 4, 'CLIENT LIST: 4 invalidation subscribers (2 instances x 2 workers)');
is($redirected, 4, 'CLIENT LIST: 4 tracking connections redirect to them');

# warm calls: the user's record is read, the configuration is not
redis_cmd('CONFIG', 'RESETSTAT');
my $before = commandstats();
my $N = 40;
my ($ok) = (0);
for (1 .. $N) { my ($st) = call(); $ok++ if $st == 200 }
my $after = commandstats();
is($ok, $N, "$N warm calls: 200");
is(delta($before, $after, 'hgetall'), 0, "$N warm calls: no HGETALL of the connectors");
is(delta($before, $after, 'hget'), $N, "$N warm calls: one HGET each (the user's record)");
is(delta($before, $after, 'client|caching'), 0, '... and no CLIENT CACHING');

# a change through B is seen by the very next call on every worker of A
my ($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                   { api_key => $WRONG });
is($st, 200, 'B: the api key changed to a wrong one');
every_worker('after the key change', 401, 'auth_required');

($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                { api_key => $WKEY });
is($st, 200, 'B: the api key changed back');
every_worker('after the key changed back', 200, '', times => 3);

($st) = admin_b('DELETE', '/v1/projects/p1/connectors/openweather');
is($st, 200, 'B: openweather disabled');
every_worker('after disabling', 404, 'unknown_tool');

is(enable_weather(), 201, 'B: openweather enabled again');
every_worker('after enabling', 200, '', times => 3);

# the agent's assignment
($st) = admin_b('PUT', '/v1/projects/p1/agents/bot1/connectors',
                { connectors => ['slack'] });
is($st, 200, 'B: bot1 is assigned slack only');
every_worker('bot1 after its assignment', 403, 'tool_not_assigned',
             agent => 'bot1');
($st) = admin_b('PUT', '/v1/projects/p1/agents/bot1/connectors',
                { connectors => ['slack', 'openweather'] });
every_worker('bot1 after openweather is assigned', 200, '', agent => 'bot1',
             times => 3);

# a user's own key, then revoked: the user's record is never cached
($st) = api('PUT', '/v1/projects/p1/users/u1/connections/openweather',
            { api_key => $WRONG }, port => $P2);
is($st, 200, 'B: u1 brings a (wrong) key of their own');
every_worker("u1's own key is used", 401, 'auth_required');
($st) = api('DELETE', '/v1/projects/p1/users/u1/connections/openweather',
            undef, port => $P2);
ok($st == 200 || $st == 204, "B: u1's key revoked ($st)");
every_worker('after the revocation, the service key again', 200, '');

# --- the invalidation connections killed ----------------------------------

my $killed = redis_cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
is($killed, 4, 'the 4 invalidation connections killed');
($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                { api_key => $WRONG });
every_worker('a change right after the kill', 401, 'auth_required');
($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                { api_key => $WKEY });
every_worker('and back', 200, '', times => 3);

# subscribed again, tracking again: warm calls are cached again
my $deadline = time() + 5;
while (time() < $deadline) {
    ($redirected, $subscribers) = tracking_clients();
    last if $redirected == 4;
    call();                    # a configuration read reconnects them
    call(port => $P2);
    sleep(0.05);
}
is($subscribers, 4, 'after the kill: 4 subscribers again');
is($redirected, 4, 'after the kill: 4 tracking connections redirect to the new ones');
every_worker('warm again', 200, '', times => 3);
$before = commandstats();
for (1 .. $N) { call() }
$after = commandstats();
is(delta($before, $after, 'hgetall'), 0, 'after the kill: warm calls cached again');

($st) = admin_b('DELETE', '/v1/projects/p1/connectors/openweather');
every_worker('disabled after the re-subscription', 404, 'unknown_tool');
is(enable_weather(), 201, 'B: enabled again');
every_worker('enabled again', 200, '', times => 3);

# --- the command connections killed (the subscribers stay) ---------------

$killed = redis_cmd('CLIENT', 'KILL', 'TYPE', 'normal');
ok($killed >= 4, "the command connections killed ($killed)");
$deadline = time() + 5;
do {
    ($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                    { api_key => $WRONG });
} while ($st == 503 && time() < $deadline && sleep(0.02));
is($st, 200, 'B: a change once its connection is back');
every_worker('after the command connections were killed', 401,
             'auth_required', reconnecting => 1);
($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                { api_key => $WKEY });
every_worker('and back again', 200, '', times => 3);

# --- Redis restarted (empty: no persistence) ------------------------------

stop_redis();
start_redis();
# the first calls may meet the reconnection
$deadline = time() + 5;
while (time() < $deadline) {
    my ($s) = call();
    last if $s != 503;
    sleep(0.05);
}
every_worker('Redis restarted empty: nothing of the old cache', 404,
             'unknown_tool');
is(enable_weather(), 201, 'B: enabled in the new Redis');
every_worker('after the restart, enabled', 200, '', times => 3);
($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                { api_key => $WRONG });
every_worker('after the restart, a change', 401, 'auth_required');

# FLUSHALL: the nil invalidation empties every cache
redis_cmd('FLUSHALL');
# this client is Redis's own: Redis writes its answer in the same round as
# the invalidations, newest first, so this answer can leave a few
# microseconds before them (a change made through an instance reaches its
# client only after that instance's round trip)
sleep(0.02);
every_worker('after FLUSHALL', 404, 'unknown_tool');

# --- cache off ------------------------------------------------------------

stop_both();
start_both('off');
is(enable_weather(), 201, 'cache off: enabled');
every_worker('cache off: warm', 200, '', times => 2);
($redirected, $subscribers) = tracking_clients();
is($subscribers + $redirected, 0, 'cache off: no tracking, no subscriber');
$before = commandstats();
for (1 .. 10) { call() }
$after = commandstats();
is(delta($before, $after, 'hgetall'), 10, 'cache off: every call reads the connectors');
($st) = admin_b('DELETE', '/v1/projects/p1/connectors/openweather');
every_worker('cache off: disabled', 404, 'unknown_tool');

# --- a cache too small for the connectors: nothing kept, still right -----

stop_both();
start_both('300');
is(enable_weather(), 201, 'a 300-byte cache: enabled');
every_worker('a 300-byte cache: warm', 200, '', times => 2);
$before = commandstats();
for (1 .. 10) { call() }
$after = commandstats();
is(delta($before, $after, 'hgetall'), 10,
   'a 300-byte cache: the connectors do not fit, every call reads them');
($st) = admin_b('DELETE', '/v1/projects/p1/connectors/openweather');
every_worker('a 300-byte cache: disabled', 404, 'unknown_tool');

# --- Redis refuses CLIENT: logged once, read uncached ---------------------

stop_both();
redis_cmd('ACL', 'SETUSER', 'default', '-client');
start_both(undef);
is(enable_weather(), 201, 'CLIENT refused: enabled');
every_worker('CLIENT refused: warm', 200, '', times => 3);
$before = commandstats();
for (1 .. 10) { call() }
$after = commandstats();
is(delta($before, $after, 'hgetall'), 10, 'CLIENT refused: every call reads the connectors');
($st) = admin_b('PATCH', '/v1/projects/p1/connectors/openweather',
                { api_key => $WRONG });
every_worker('CLIENT refused: a change', 401, 'auth_required');
my $log = Astralform::Test::error_log_text();
my $refused = () = $log =~ /\[notice\].*refused CLIENT ID \(NOPERM[^)]*\): the configuration is read uncached/g;
is($refused, 2, 'CLIENT refused: one notice per worker of A');
redis_cmd('ACL', 'SETUSER', 'default', '+client');
($st) = admin_b('DELETE', '/v1/projects/p1/connectors/openweather');
every_worker('CLIENT refused: disabled', 404, 'unknown_tool');

# the tool list shares the loader
stop_both();
start_both(undef);
is(enable_weather(), 201, 'tool list: enabled');
my ($lst, $lh, $list);
for (1 .. 6) { ($lst, $lh, $list) = api('GET', '/v1/projects/p1/tools', undef, user => 'u1') }
my $has = grep { ($_->{name} // '') eq 'openweather_current' } @{ $list->{tools} || [] };
ok($has, 'tool list: openweather_current listed (warm)');
($st) = admin_b('DELETE', '/v1/projects/p1/connectors/openweather');
my %gone;
for (1 .. 40) {
    ($lst, $lh, $list) = api('GET', '/v1/projects/p1/tools', undef, user => 'u1');
    my $still = grep { ($_->{name} // '') eq 'openweather_current' } @{ $list->{tools} || [] };
    $gone{$lh->{'x-worker'} // ''} //= 0;
    $gone{$lh->{'x-worker'} // ''}++ if $still;
}
is(scalar(keys %gone), 2, 'tool list: both workers of A answered');
is((grep { $_ } values %gone), 0, 'tool list: no worker lists the disabled connector');

# --- a bad size: nginx -t names the directive -----------------------------

my $bad = config('lots');
my $conf = nginx_conf(http_config => $bad->{http_config},
                      config => $bad->{config}, servroot => $root2);
spew("$dir/bad.conf", $conf);
my $out = `$Astralform::Test::Binary -t -p $root2/ -c $dir/bad.conf -e $dir/bad-t.log 2>&1`;
like($out, qr/"astralform_config_cache_size" takes a size or "off", not "lots"/,
     'nginx -t: a bad size names the directive');

stop_both();
push @Astralform::OAuth::ExtraLogs, glob("$root2/logs/*");
scan_logs();
File::Path::remove_tree($root2) if Test::More->builder->is_passing;
done_testing();
