# The store: Redis down or slow answers 503 store_unavailable fast (never a
# hang) and normal answers come back once Redis does, without restarting
# nginx; a reload keeps everything working; secrets in Redis are sealed,
# bound to their owner, and survive a key rotation.
#
# Besides the suite's Redis this file runs Redis servers of its own (a
# password, db=, a unix socket; stopped and started again), and a small
# "provider" server block that tells which credential a tool call carried
# without echoing it.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use File::Path ();
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP ();
use MIME::Base64 ();
use POSIX ();
use Time::HiRes qw(time sleep);

BEGIN { unshift @INC, ($ENV{TEST_NGINX_REPO} || '.') . '/t/fixtures' }
use Fixtures;

my $HAVE_GCM = eval { require Crypt::AuthEnc::GCM; 1 };

my $repo = $ENV{TEST_NGINX_REPO} || Cwd::cwd();
my $F = fixture_dir();
my $json = JSON::PP->new->canonical;
my $dir = "$repo/t/tmp/030-$$";
File::Path::make_path($dir);

my $ADMIN = fixture_line('p1-admin.keys');
my $AGENT = fixture_line('p1-agent.keys');
my $P2_ADMIN = fixture_line('p2-admin.keys');
my $P2_AGENT = fixture_line('p2-agent.keys');
my $PASSWORD = fixture_line('redis.password');
my $SERVICE_KEY = fixture_line('service-api.key');
my $MASTER_HEX = fixture_line('master.key');
my $OLD_HEX = fixture_line('old.key');
my $SLACK_SECRET = 'test-030-slack-secret-e4a91c07d3b2';
my $USER_KEY = 'test-030-user-own-api-key-7b20f9c1e6';
my @SECRETS = ($SLACK_SECRET, $USER_KEY);

my $SUITE_REDIS = $ENV{TEST_NGINX_REDIS_PORT}
    or plan skip_all => 'TEST_NGINX_REDIS_PORT is not set (use t/run.sh)';

my @children;    # redis-servers started here

END {
    for my $pid (@children) {
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }
    stop_nginx();
    File::Path::remove_tree($dir);
}


# --- helpers -----------------------------------------------------------------

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1, Proto => 'tcp')
        or die "free_port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# (status, decoded JSON or undef, raw body, seconds taken, headers)
sub api {
    my ($method, $path, $key, $body, %o) = @_;
    my @h = $key ? ('Authorization' => "Bearer $key") : ();
    push @h, %{ $o{headers} } if $o{headers};
    $body = $json->encode($body) if ref $body;
    my $t0 = time;
    my ($status, $headers, $raw) = http_req($method, $path, \@h, $body,
                                            { timeout => $o{timeout} || 5 });
    my $took = time - $t0;
    note(sprintf('%s %s -> %s in %.3f s', $method, $path, $status, $took));
    my $data = eval { $json->decode($raw) };
    return ($status, $data, $raw, $took, $headers);
}

sub health { my @r = api('GET', '/v1/health'); return @r }

# polls GET /v1/health until it answers 200 $n times in a row; returns the
# seconds it took, or undef after $max seconds
sub until_healthy {
    my ($max, $n) = @_;
    $n ||= 4;
    my ($t0, $ok) = (time, 0);
    while (time - $t0 < $max) {
        my ($status) = health();
        $ok = $status eq '200' ? $ok + 1 : 0;
        if ($ok >= $n) {
            note(sprintf('healthy after %.3f s', time - $t0));
            return time - $t0;
        }
        sleep 0.05;
    }
    return undef;
}

# the answer of api(): 503 store_unavailable in under 1.5 s
sub is_store_unavailable {
    my ($what, $status, $data, $raw, $took) = @_;
    is($status, 503, "$what: 503");
    is($data && $data->{error}, 'store_unavailable',
       "$what: error store_unavailable") or diag($raw);
    cmp_ok($took, '<', 1.5, "$what: answered in under 1.5 s");
}

sub nginx_workers {
    my $master = nginx_pid() or return ();
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // '';
        close $fh;
        push @pids, $1 if $line =~ /^(\d+) \(nginx\) \S+ (\d+)/
                          && $2 == $master;
    }
    return sort { $a <=> $b } @pids;
}

# one RESP exchange with any Redis: the commands are pipelined, the last
# reply is returned (an error reply dies)
sub redis_at {
    my ($where, @cmds) = @_;
    my $sock = $where =~ m{^/}
        ? IO::Socket::UNIX->new(Peer => $where)
        : IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $where,
                                Timeout => 2);
    die "redis_at $where: $!\n" unless $sock;
    binmode $sock;
    my $req = '';
    for my $c (@cmds) {
        $req .= '*' . @$c . "\r\n";
        $req .= '$' . length($_) . "\r\n$_\r\n" for @$c;
    }
    print {$sock} $req;
    my $buf = '';
    my $reply;
    $reply = resp_reply($sock, \$buf) for @cmds;
    close $sock;
    return $reply;
}

sub resp_read {
    my ($sock, $buf, $n) = @_;
    while (1) {
        if (defined $n) {
            return substr($$buf, 0, $n, '') if length $$buf >= $n;
        } elsif ($$buf =~ s/^(.*?)\r\n//s) {
            return $1;
        }
        IO::Select->new($sock)->can_read(5) or die "redis: timeout\n";
        sysread($sock, my $chunk, 65536) or die "redis: closed\n";
        $$buf .= $chunk;
    }
}

sub resp_reply {
    my ($sock, $buf) = @_;
    my $line = resp_read($sock, $buf);
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+';
    return $v + 0 if $t eq ':';
    die "redis error: $v\n" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        return substr(resp_read($sock, $buf, $v + 2), 0, $v);
    }
    return undef if $v < 0;
    return [map { resp_reply($sock, $buf) } 1 .. $v];
}

# a private redis-server; returns its pid once it answers
sub redis_start {
    my ($port, @opts) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/redis-$port.log";
        open STDERR, '>&', \*STDOUT;
        { exec 'redis-server', '--port', $port, '--bind', '127.0.0.1',
               '--save', '', '--appendonly', 'no', '--dir', $dir, @opts; }
        POSIX::_exit(127);
    }
    push @children, $pid;
    wait_port($port, 5) or die "redis-server on $port did not start\n";
    return $pid;
}

sub redis_kill {
    my ($pid) = @_;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    @children = grep { $_ != $pid } @children;
}

sub spew {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
}

sub clean_suite_redis {
    for my $p (qw(p1 p2)) {
        my $keys = redis_cmd('KEYS', "astralform:{$p}:*");
        redis_cmd('DEL', @$keys) if @$keys;
    }
}

# independent of the C code: opens a "v1.<kid>.<b64url>" blob
sub gcm_open {
    my ($key_hex, $aad, $blob) = @_;
    my ($v, $kid, $b64) = split /\./, $blob, 3;
    return undef unless defined $b64 && $v eq 'v1';
    my $raw = MIME::Base64::decode_base64url($b64);
    return undef if length $raw < 28;
    # plain copies: CryptX refuses substr()'s magic values
    my ($nonce, $ct, $tag) = (substr($raw, 0, 12),
                              substr($raw, 12, length($raw) - 28),
                              substr($raw, -16));
    return Crypt::AuthEnc::GCM::gcm_decrypt_verify(
        'AES', pack('H*', $key_hex), $nonce, "v1.$kid.$aad", $ct, $tag);
}

sub gcm_seal {
    my ($key_hex, $kid, $aad, $plain) = @_;
    my $nonce = join '', map { chr int rand 256 } 1 .. 12;
    my ($ct, $tag) = Crypt::AuthEnc::GCM::gcm_encrypt_authenticate(
        'AES', pack('H*', $key_hex), $nonce, "v1.$kid.$aad", $plain);
    return "v1.$kid." . MIME::Base64::encode_base64url($nonce . $ct . $tag);
}

sub stored_connector {
    my ($project, $id) = @_;
    my $text = redis_cmd('HGET', "astralform:{$project}:connectors", $id);
    return defined $text ? $json->decode($text) : undef;
}

# (re)start nginx, keeping the logs of the previous one for the scan
sub start {
    log_snapshot();
    start_nginx(@_) or BAIL_OUT("nginx: $Astralform::Test::StartError");
}

my $CATALOG = "$repo/conf/connectors";
my $PROJECTS = <<"_EOC_";
    astralform_public_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT;
    astralform_catalog $CATALOG;
    astralform_project p1 admin_key_file=$F/p1-admin.keys
                       agent_key_file=$F/p1-agent.keys;
    astralform_project p2 admin_key_file=$F/p2-admin.keys
                       agent_key_file=$F/p2-agent.keys;
_EOC_
my $API = "location /v1/ { astralform_api; }";

my %rows = (
    'list' => ['GET', '/v1/projects/p1/connectors', $ADMIN],
    'enable' => ['POST', '/v1/projects/p1/connectors', $ADMIN,
                 { connector_slug => 'openweather' }],
    'update' => ['PATCH', '/v1/projects/p1/connectors/openweather', $ADMIN,
                 { require_auth => JSON::PP::false }],
    'disable' => ['DELETE', '/v1/projects/p1/connectors/openweather',
                  $ADMIN],
    'agents' => ['PUT', '/v1/projects/p1/agents/a1/connectors', $ADMIN,
                 { connectors => [] }],
    'tools' => ['GET', '/v1/projects/p1/tools', $AGENT],
);


# --- 1. Redis down from the start ---------------------------------------------

my $dead = free_port();

start(http_config => <<"_EOC_", config => $API, workers => 2);
    astralform_redis 127.0.0.1:$dead connect_timeout=300ms timeout=500ms;
    astralform_key k1 $F/master.key;
$PROJECTS
_EOC_

for my $i (1 .. 3) {
    my ($status, $data, $raw, $took) = health();
    is_store_unavailable("nothing on :$dead, health #$i", $status, $data,
                         $raw, $took);
    is($data && $data->{redis}, 'down', "health #$i says redis is down");
}

for my $row (sort keys %rows) {
    is_store_unavailable("nothing on :$dead, $row", api(@{ $rows{$row} }));
}

{
    my ($status, $data) = api('GET', '/v1/connectors', $AGENT);
    is($status, 200, 'the catalog needs no Redis');
}

# an address that does not answer at all: connect_timeout=300ms
start(http_config => <<"_EOC_", config => $API);
    astralform_redis 10.255.255.1:6379 connect_timeout=300ms timeout=500ms;
    astralform_key k1 $F/master.key;
$PROJECTS
_EOC_

for my $i (1 .. 2) {
    is_store_unavailable("10.255.255.1, health #$i", health());
    is_store_unavailable("10.255.255.1, list #$i", api(@{ $rows{list} }));
}


# --- 2. the suite's Redis pauses: command timeouts ---------------------------

clean_suite_redis();

my $SUITE_CONFIG = <<"_EOC_";
    astralform_redis 127.0.0.1:$SUITE_REDIS timeout=500ms;
    astralform_key k1 $F/master.key;
$PROJECTS
_EOC_

start(http_config => $SUITE_CONFIG, config => $API, workers => 2);

ok(defined until_healthy(2), 'suite Redis: healthy');

redis_cmd('CLIENT', 'PAUSE', 1500, 'ALL');
{
    my $t0 = time;
    is_store_unavailable('CLIENT PAUSE, health', health());
    is_store_unavailable('CLIENT PAUSE, list', api(@{ $rows{list} }));
    cmp_ok(time - $t0, '<', 1.4, 'both answered while Redis was paused');
}

# the replies of a paused Redis come late: by then the requests have gone
{
    my $t = until_healthy(3);
    ok(defined $t, 'CLIENT PAUSE over: healthy again');
    cmp_ok($t // 99, '<', 2.5, 'CLIENT PAUSE over: healthy within 2.5 s');
}

# several requests in flight when Redis stops answering: every one 503
redis_cmd('CLIENT', 'PAUSE', 1500, 'ALL');
{
    my @kids;
    for my $i (1 .. 6) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $r;
            my ($status, $data, $raw, $took) =
                $i % 2 ? health() : api(@{ $rows{list} });
            print {$w} join("\t", $status, ($data && $data->{error}) // '',
                            $took), "\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my @results;
    for my $k (@kids) {
        my $line = readline($k->[1]) // '';
        waitpid($k->[0], 0);
        chomp $line;
        push @results, [split /\t/, $line];
    }
    is(scalar(grep { $_->[0] eq '503' && $_->[1] eq 'store_unavailable' }
              @results), 6, '6 concurrent requests during a pause: all 503')
        or diag(explain \@results);
    is(scalar(grep { ($_->[2] // 99) < 1.5 } @results), 6,
       '6 concurrent requests during a pause: all under 1.5 s');
}
ok(defined until_healthy(3), 'second pause over: healthy again');


# --- 3. a Redis of our own: password, db=, unix socket; stop and start ------

my $rport = free_port();
my $sock = "$dir/redis.sock";
my @ROPTS = ('--requirepass', $PASSWORD, '--unixsocket', $sock,
             '--unixsocketperm', '700', '--enable-debug-command', 'local');
my @AUTH = (['AUTH', $PASSWORD], ['SELECT', 3]);

my $private_config = sub {
    my ($where) = @_;
    return <<"_EOC_";
    astralform_redis $where db=3 password_file=$F/redis.password
                     connect_timeout=300ms timeout=500ms;
    astralform_key k1 $F/master.key;
$PROJECTS
_EOC_
};

# nginx first, Redis later
start(http_config => $private_config->("unix:$sock"), config => $API,
      workers => 2);
is_store_unavailable('unix socket, no Redis yet: health', health());

my $rpid = redis_start($rport, @ROPTS);
{
    my $t = until_healthy(3);
    ok(defined $t, 'unix socket: Redis started, healthy');
    cmp_ok($t // 99, '<', 2, 'unix socket: healthy within 2 s');
}

{
    my ($status, $data, $raw) = api('POST', '/v1/projects/p1/connectors',
        $ADMIN, { connector_slug => 'slack', oauth_client_id => 'cid',
                  oauth_client_secret => $SLACK_SECRET });
    is($status, 201, 'unix socket, password, db=3: enable') or diag($raw);
    my $stored = redis_at($sock, @AUTH,
                          ['HGET', 'astralform:{p1}:connectors', 'slack']);
    like($stored // '', qr/"connector_slug":"slack"/,
         'the connector is stored in db 3 of the Redis named');
    is(redis_at($sock, ['AUTH', $PASSWORD],
                ['EXISTS', 'astralform:{p1}:connectors']),
       0, 'nothing in db 0');
}

# the TCP address of the same Redis, after a reload
reload_nginx(http_config => $private_config->("127.0.0.1:$rport"),
             config => $API, workers => 2);
ok(defined until_healthy(2), 'TCP, password, db=3: healthy after a reload');
{
    my ($status, $data) = api(@{ $rows{list} });
    is($status, 200, 'TCP: list');
    is(scalar(grep { $_->{id} eq 'slack' } @{ $data->{connectors} || [] }),
       1, 'TCP: the connector stored over the unix socket is there');
}

# Redis goes away and comes back: nginx keeps running
my @workers = nginx_workers();
is(scalar @workers, 2, 'two workers');

redis_kill($rpid);
for my $i (1 .. 3) {
    is_store_unavailable("Redis killed, health #$i", health());
}
for my $row (sort keys %rows) {
    is_store_unavailable("Redis killed, $row", api(@{ $rows{$row} }));
}

sleep 1.2;    # the reconnect backoff has grown to its largest
is_store_unavailable('Redis still down after a while', health());

$rpid = redis_start($rport, @ROPTS);
{
    my $t = until_healthy(4, 8);
    ok(defined $t, 'Redis restarted: healthy again');
    cmp_ok($t // 99, '<', 2, 'Redis restarted: healthy within 2 s');
}
is_deeply([nginx_workers()], \@workers,
          'the same nginx workers answer: nothing was restarted');
{
    my ($status, $data, $raw) = api('POST', '/v1/projects/p1/connectors',
        $ADMIN, { connector_slug => 'openweather' });
    is($status, 201, 'Redis restarted: enable works') or diag($raw);
    ($status, $data) = api(@{ $rows{list} });
    is($status, 200, 'Redis restarted: list works');
}

# a Redis that stops answering (DEBUG SLEEP) times out the commands
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $rport) or die "$!";
    print {$s} "AUTH $PASSWORD\r\nDEBUG SLEEP 1.5\r\n";
    sleep 0.1;
    is_store_unavailable('DEBUG SLEEP: health', health());
    is_store_unavailable('DEBUG SLEEP: list', api(@{ $rows{list} }));
    close $s;
    ok(defined until_healthy(3), 'DEBUG SLEEP over: healthy again');
}

# a wrong password: Redis refuses, the gateway says so without the password
spew("$dir/wrong.password", "not-the-password-0123\n");
truncate_error_log();
reload_nginx(http_config => <<"_EOC_", config => $API, workers => 2);
    astralform_redis 127.0.0.1:$rport password_file=$dir/wrong.password
                     connect_timeout=300ms timeout=500ms;
    astralform_key k1 $F/master.key;
$PROJECTS
_EOC_
sleep 0.3;
is_store_unavailable('wrong password: health', health());
is_store_unavailable('wrong password: list', api(@{ $rows{list} }));
like(error_log_text(), qr/redis "127\.0\.0\.1:\d+" refused AUTH/,
     'wrong password: the error log says AUTH was refused');
unlike(error_log_text(), qr/not-the-password-0123/,
       'wrong password: the password is not logged');
push @SECRETS, 'not-the-password-0123';

reload_nginx(http_config => $private_config->("127.0.0.1:$rport"),
             config => $API, workers => 2);
ok(defined until_healthy(3), 'the right password again: healthy');


# --- 4. reload (HUP) on the suite's Redis ---------------------------------------

start(http_config => $SUITE_CONFIG, config => $API, workers => 2);
ok(defined until_healthy(2), 'before the reload: healthy');
{
    my ($status, $data, $raw) = api('POST', '/v1/projects/p1/connectors',
        $ADMIN, { connector_slug => 'slack', oauth_client_id => 'cid',
                  oauth_client_secret => $SLACK_SECRET });
    is($status, 201, 'before the reload: enable slack') or diag($raw);
}

my $master = nginx_pid();
@workers = nginx_workers();
reload_nginx();
sleep 0.3;
is(nginx_pid(), $master, 'reload: the same master');
isnt(join(',', nginx_workers()), join(',', @workers), 'reload: new workers');
ok(defined until_healthy(2), 'after the reload: healthy');
{
    my ($status, $data) = api(@{ $rows{list} });
    is($status, 200, 'after the reload: list');
    is_deeply([map { $_->{id} } @{ $data->{connectors} || [] }], ['slack'],
              'after the reload: the connector is there');
    my ($s2, $d2, $raw) = api('POST', '/v1/projects/p1/connectors', $ADMIN,
                              { connector_slug => 'openweather',
                                api_key => $SERVICE_KEY });
    is($s2, 201, 'after the reload: enable') or diag($raw);
}

# a reload with a changed configuration takes effect
reload_nginx(http_config => $SUITE_CONFIG . <<"_EOC_", config => $API,
    astralform_connector p1 github client_id=cfg-github
                         client_secret_file=$F/client.secret;
_EOC_
             workers => 2);
sleep 0.3;
{
    my ($status, $data) = api(@{ $rows{list} });
    is($status, 200, 'after a reload with a new connector: list');
    is_deeply([sort map { "$_->{id}:$_->{source}" }
                        @{ $data->{connectors} || [] }],
              ['github:config', 'openweather:api', 'slack:api'],
              'after a reload with a new connector: it is listed');
}
is(nginx_pid(), $master, 'still the same master');


# --- 5. sealed secrets: format, binding, tampering, rotation -----------------

clean_suite_redis();

my $echo = free_port();
my $provider = <<"_EOC_";
    astralform_http_timeout 3s;
    astralform_provider openweather api_base=http://127.0.0.1:$echo/data/;

    # the "provider": which credential came, never the credential itself
    map \$arg_appid \$af_echo_key {
        "$SERVICE_KEY"   service;
        "$USER_KEY"      user;
        ""               none;
        default          other;
    }
    log_format af_echo '\$af_echo_key';
    server {
        listen 127.0.0.1:$echo;
        error_log /dev/null;
        access_log $Astralform::Test::ServRoot/logs/echo.log af_echo;
        location / {
            default_type application/json;
            return 200 '{"key":"\$af_echo_key"}';
        }
    }
_EOC_

my $echo_log = "$Astralform::Test::ServRoot/logs/echo.log";
sub echo_calls {
    open my $fh, '<', $echo_log or return [];
    my @l = map { chomp; $_ } <$fh>;
    close $fh;
    return \@l;
}

sub weather {
    my ($project, %o) = @_;
    my @h = ('X-Astralform-Agent' => 'agent-1');
    push @h, 'X-Astralform-User' => $o{user} if $o{user};
    my $before = scalar @{ echo_calls() };
    my @r = api('POST', "/v1/projects/$project/tools/call",
                $project eq 'p1' ? $AGENT : $P2_AGENT,
                { name => 'openweather_current',
                  arguments => { q => 'London' } },
                headers => { @h });
    sleep 0.05;
    my $calls = echo_calls();
    return (@r, [@$calls[$before .. $#$calls]]);
}

# a failed call must fail closed: no provider call, no secret, an error
sub fails_closed {
    my ($what, $status, $data, $raw, $took, $headers, $calls) = @_;
    cmp_ok($status || 0, '>=', 400, "$what: the call fails");
    is_deeply($calls, [], "$what: the provider is not called");
    unlike($raw, qr/\Q$SERVICE_KEY\E|\Q$USER_KEY\E|v1\.\w+\./,
           "$what: no secret or blob in the answer");
    {
        like($headers->{'content-type'} // '', qr{^application/json},
             "$what: a JSON error");
        ok($data && $data->{error}, "$what: with an error code")
            or diag($raw);
    }
}

my $sealing_config = sub {
    my (@keys) = @_;
    return join('', map { "    astralform_key $_->[0] $F/$_->[1];\n" } @keys)
           . "    astralform_redis 127.0.0.1:$SUITE_REDIS timeout=1s;\n"
           . $PROJECTS . $provider;
};

start(http_config => $sealing_config->([old => 'old.key']), config => $API);

my ($status, $data, $raw, $took, $headers, $calls);

($status, $data, $raw) = api('POST', '/v1/projects/p1/connectors', $ADMIN,
    { connector_slug => 'openweather', api_key => $SERVICE_KEY });
is($status, 201, 'enable openweather with a service api_key') or diag($raw);
($status, $data, $raw) = api('POST', '/v1/projects/p1/connectors', $ADMIN,
    { connector_slug => 'slack', oauth_client_id => 'cid',
      oauth_client_secret => $SLACK_SECRET });
is($status, 201, 'enable slack with a client secret') or diag($raw);

my $ow = stored_connector('p1', 'openweather');
my $sl = stored_connector('p1', 'slack');
like($ow->{api_key} // '', qr/^v1\.old\.[A-Za-z0-9_-]+$/,
     'the api_key in Redis is a v1.old. blob');
like($sl->{oauth_client_secret} // '', qr/^v1\.old\.[A-Za-z0-9_-]+$/,
     'the client secret in Redis is a v1.old. blob');
my $all = redis_cmd('HGETALL', 'astralform:{p1}:connectors');
unlike(join("\n", @$all), qr/\Q$SERVICE_KEY\E|\Q$SLACK_SECRET\E/,
       'no plaintext secret in astralform:{p1}:connectors');
($status, $data, $raw) = api('PATCH', '/v1/projects/p1/connectors/openweather',
                             $ADMIN, { api_key => $SERVICE_KEY });
is($status, 200, 'the same api_key entered again') or diag($raw);
isnt(stored_connector('p1', 'openweather')->{api_key}, $ow->{api_key},
     'sealing the same secret again gives another blob (fresh nonce)');
$ow = stored_connector('p1', 'openweather');

SKIP: {
    skip 'Crypt::AuthEnc::GCM (libcryptx-perl) is not installed', 5
        unless $HAVE_GCM;
    is(gcm_open($OLD_HEX, 'astralform|p1|openweather|api_key|',
                $ow->{api_key}), $SERVICE_KEY,
       'the api_key blob opens with the old key and its AAD');
    is(gcm_open($OLD_HEX, 'astralform|p1|slack|oauth_client_secret|',
                $sl->{oauth_client_secret}), $SLACK_SECRET,
       'the client secret blob opens with the old key and its AAD');
    is(gcm_open($OLD_HEX, 'astralform|p2|openweather|api_key|',
                $ow->{api_key}), undef, 'not with another project in the AAD');
    is(gcm_open($OLD_HEX, 'astralform|p1|weather2|api_key|',
                $ow->{api_key}), undef, 'not with another connector id');
    is(gcm_open($MASTER_HEX, 'astralform|p1|openweather|api_key|',
                $ow->{api_key}), undef, 'not with another key');
}

($status, $data, $raw, $took, $headers, $calls) = weather('p1');
is($status, 200, 'a tool call with the service key') or diag($raw);
is_deeply($data && $data->{result}, { key => 'service' },
          'the provider got the service key');
is_deeply($calls, ['service'], 'one provider call');
unlike($raw, qr/\Q$SERVICE_KEY\E/, 'the answer does not hold the key');

# one byte changed in the sealed blob
{
    my $good = $json->encode($ow);
    my $bad = {%$ow};
    my $c = substr($bad->{api_key}, 20, 1);
    substr($bad->{api_key}, 20, 1) = $c eq 'A' ? 'B' : 'A';
    redis_cmd('HSET', 'astralform:{p1}:connectors', 'openweather',
              $json->encode($bad));
    fails_closed('a tampered blob', weather('p1'));
    redis_cmd('HSET', 'astralform:{p1}:connectors', 'openweather', $good);
    ($status) = weather('p1');
    is($status, 200, 'the blob restored: the call works again');
}

# the connector, blob and all, copied under another id of the project
{
    my $text = redis_cmd('HGET', 'astralform:{p1}:connectors',
                         'openweather');
    redis_cmd('HSET', 'astralform:{p1}:connectors', 'weather2', $text);
    redis_cmd('HDEL', 'astralform:{p1}:connectors', 'openweather');
    ($status, $data) = api('GET', '/v1/projects/p1/connectors/weather2',
                           $ADMIN);
    is($status, 200, 'the copy is listed as weather2');
    fails_closed('a blob copied under another connector id', weather('p1'));
    redis_cmd('HSET', 'astralform:{p1}:connectors', 'openweather', $text);
    redis_cmd('HDEL', 'astralform:{p1}:connectors', 'weather2');
}

# the blob copied into another project's connector
{
    ($status, $data, $raw) = api('POST', '/v1/projects/p2/connectors',
        $P2_ADMIN, { connector_slug => 'openweather' });
    is($status, 201, 'p2 enables openweather without a key') or diag($raw);
    my $p2 = stored_connector('p2', 'openweather');
    $p2->{api_key} = $ow->{api_key};
    redis_cmd('HSET', 'astralform:{p2}:connectors', 'openweather',
              $json->encode($p2));
    fails_closed('a blob copied into another project', weather('p2'));
}

# end users' records: a blob copied to another user's field does not open
my $u1_blob;
SKIP: {
    skip 'Crypt::AuthEnc::GCM (libcryptx-perl) is not installed', 6
        unless $HAVE_GCM;

    $u1_blob = gcm_seal($OLD_HEX, 'old',
                        'astralform|p1|openweather|token|u1',
                        $json->encode({ type => 'api_key',
                                        api_key => $USER_KEY }));
    redis_cmd('HSET', 'astralform:{p1}:tokens:openweather', 'u1', $u1_blob);

    ($status, $data, $raw, $took, $headers, $calls) = weather('p1',
                                                             user => 'u1');
    is($status, 200, 'u1 calls with their own key') or diag($raw);
    is_deeply($calls, ['user'], 'the provider got the key of u1');

    redis_cmd('HSET', 'astralform:{p1}:tokens:openweather', 'u2', $u1_blob);
    ($status, $data, $raw, $took, $headers, $calls) = weather('p1',
                                                             user => 'u2');
    is($status, 200, 'u2 with the record of u1: the call goes on') or diag($raw);
    is_deeply($calls, ['service'],
              'u2 with the record of u1: it does not open, so the service '
              . 'key is used, never the key of u1');
    unlike($raw, qr/\Q$USER_KEY\E/, 'u2: no key of u1 in the answer');
    like(error_log_text(), qr/credential of user "u2" for connector "openweather" does not open/,
         'u2: the error log says the record does not open');
}

# rotation: the new key first, the old one still configured
start(http_config => $sealing_config->([k1 => 'master.key'],
                                       [old => 'old.key']),
      config => $API);

($status, $data, $raw) = api('GET', '/v1/projects/p1/connectors/openweather',
                             $ADMIN);
ok($data && $data->{has_api_key}, 'after rotation: has_api_key');
($status, $data, $raw) = api('GET', '/v1/projects/p1/connectors/slack',
                             $ADMIN);
ok($data && $data->{has_secret}, 'after rotation: has_secret');
unlike($raw, qr/\Q$SLACK_SECRET\E/, 'after rotation: no secret in the answer');

($status, $data, $raw, $took, $headers, $calls) = weather('p1');
is($status, 200, 'after rotation: the old-key api_key still works')
    or diag($raw);
is_deeply($calls, ['service'], 'after rotation: the provider got the key');

{
    like(stored_connector('p1', 'openweather')->{api_key}, qr/^v1\.k1\./,
         'after rotation: a connector secret read is re-sealed with k1');
}

SKIP: {
    skip 'Crypt::AuthEnc::GCM (libcryptx-perl) is not installed', 4
        unless $HAVE_GCM;

    ($status, $data, $raw, $took, $headers, $calls) = weather('p1',
                                                             user => 'u1');
    is($status, 200, 'after rotation: the old-key record of u1 works')
        or diag($raw);
    is_deeply($calls, ['user'], 'after rotation: with the key of u1');
    my $now = redis_cmd('HGET', 'astralform:{p1}:tokens:openweather', 'u1');
    like($now, qr/^v1\.k1\./, 'the record of u1 was re-sealed with k1');
    is($json->decode(gcm_open($MASTER_HEX,
                              'astralform|p1|openweather|token|u1', $now)
                     // '{}')->{api_key},
       $USER_KEY, 'the re-sealed record opens with k1 and holds the key');
}

# a secret entered now is sealed with the first key
($status, $data, $raw) = api('PATCH', '/v1/projects/p1/connectors/slack',
                             $ADMIN, { oauth_client_secret => $SLACK_SECRET });
is($status, 200, 'after rotation: update the client secret') or diag($raw);
like(stored_connector('p1', 'slack')->{oauth_client_secret},
     qr/^v1\.k1\.[A-Za-z0-9_-]+$/, 'a new secret is sealed with k1');

# the old key removed: what it sealed no longer opens, and fails closed
start(http_config => $sealing_config->([k1 => 'master.key']), config => $API);
if (stored_connector('p1', 'openweather')->{api_key} =~ /^v1\.old\./) {
    fails_closed('the old key removed', weather('p1'));
} else {
    pass('the api_key was re-sealed before the old key went');
}
($status, $data, $raw) = api('PATCH', '/v1/projects/p1/connectors/openweather',
                             $ADMIN, { api_key => $SERVICE_KEY });
is($status, 200, 'the old key removed: the api_key entered again')
    or diag($raw);
($status, $data, $raw, $took, $headers, $calls) = weather('p1');
is($status, 200, 'the old key removed: the call works with the new blob')
    or diag($raw);
is_deeply($calls, ['service'], 'the old key removed: the service key went');

# a raw 32-byte key (its last byte a newline, which is key material)
start(http_config => $sealing_config->([raw => 'raw32.key'],
                                       [k1 => 'master.key']),
      config => $API);
($status, $data, $raw) = api('PATCH', '/v1/projects/p1/connectors/openweather',
                             $ADMIN, { api_key => $SERVICE_KEY });
is($status, 200, 'a raw key: the api_key entered again') or diag($raw);
like(stored_connector('p1', 'openweather')->{api_key}, qr/^v1\.raw\./,
     'a raw key: sealed with it');
($status, $data, $raw, $took, $headers, $calls) = weather('p1');
is_deeply($calls, ['service'], 'a raw key: the call works');
SKIP: {
    skip 'Crypt::AuthEnc::GCM (libcryptx-perl) is not installed', 1
        unless $HAVE_GCM;
    is(gcm_open(unpack('H*', fixture_text('raw32.key')),
                'astralform|p1|openweather|api_key|',
                stored_connector('p1', 'openweather')->{api_key}),
       $SERVICE_KEY, 'a raw key: the 32 bytes of the file, newline and all');
}

stop_nginx();
clean_suite_redis();


# --- no secret in any log ----------------------------------------------------

scan_logs(@SECRETS);

done_testing();
