# Redis as operators deploy it (issue 11, DESIGN 11): Sentinel and Cluster,
# failover without a reload. About 60 s. Everything runs on free loopback
# ports, started here: redis-server, redis-sentinel, redis-cli --cluster.
#
#   0 single mode pointed at a replica: /v1/health 503 "read-only", a write
#     503 store_unavailable, the READONLY error reply logged with its text
#   1 Sentinel (master + replica + 3 sentinels), SENTINEL FAILOVER under a
#     load of writes and reads: every request answered (200 or 503
#     store_unavailable, nothing else), writes 200 again within 5 s, no
#     acknowledged write lost, /v1/health names the new master
#   2 the same after kill -9 of the master (wait_replicas=1): writes 200
#     again after the promotion, no acknowledged write lost
#   3 Cluster of 3 masters, one seed node in nginx.conf: every project
#     works, its keys on its slot's master, no MOVED once the map is read
#   4 a project's slot migrated to another master under load (SETSLOT
#     MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE): every request 200, the
#     ASK and MOVED paths both taken
#
# Each scenario prints its outage: first failed and first good request
# (ms from the event), and the counts.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use IO::Socket::INET;
use lib 't/lib', 'bench/faults/lib';
use Astralform::Test qw(missing_part);

plan skip_all => 'timing-based, not under valgrind'
    if ($ENV{TEST_NGINX_SANITIZER} // '') eq 'valgrind';
for my $tool (qw(redis-server redis-sentinel redis-cli)) {
    missing_part("$tool not installed")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my ($module) = grep { /ngx_astralform_module\.so$/ } split ' ',
               $ENV{TEST_NGINX_LOAD_MODULES} // '';
plan skip_all => 'ngx_astralform_module.so not built' unless $module;

require AstralformFaults;

$SIG{TERM} = $SIG{INT} = sub { exit 1 };

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $root = $ENV{TEST_NGINX_SERVROOT} || "$repo/t/servroot";
my $f = AstralformFaults->new(
    root => $repo, dir => "$root/redis-ha", port => $ENV{TEST_NGINX_SERVER_PORT},
    mock_port => $ENV{TEST_NGINX_MOCK_PORT} || 9, module => $module, copy => 0,
    nginx => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
    say => sub { note($_[0]) });
my $dir = $f->{dir};
my @PROJECTS = map { "p$_" } 1 .. 9;
my $ADMIN = 'ha-admin-' . AstralformFaults::_rand_hex(8);

AstralformFaults::spew("$dir/keys/seal.key", AstralformFaults::_rand_hex(32) . "\n");
AstralformFaults::spew("$dir/keys/agent.keys", "ha-agent-key-0123456789\n");
AstralformFaults::spew("$dir/keys/client.secret", "ha-client-secret\n");
for my $p (@PROJECTS) {
    AstralformFaults::spew("$dir/keys/$p.admin", "$ADMIN-$p\n");
}
# p1 is in the shared configuration, with its admin key there
AstralformFaults::spew("$dir/keys/admin.keys", "$ADMIN-p1\n");
my $EXTRA = join '', map {
    "    astralform_project $_ admin_key_file=$dir/keys/$_.admin;\n"
} @PROJECTS[1 .. $#PROJECTS];

# --- Redis processes ------------------------------------------------------

sub cli {
    my ($port, @args) = @_;
    my $pid = open(my $fh, '-|') // return '';
    if (!$pid) {
        open STDERR, '>', '/dev/null';
        exec('redis-cli', '-h', '127.0.0.1', '-p', $port, @args)
            or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    $out =~ s/\s+\z//;
    return $out;
}

sub until_true {
    my ($secs, $what, $cb) = @_;
    my $end = time + $secs;
    while (time < $end) { return 1 if $cb->(); sleep 0.1 }
    diag("timed out: $what");
    return 0;
}

# ports whose port + 10000 (the cluster bus) is free too
sub free_ports {
    my ($n) = @_;
    my (@out, @held, %seen);
    while (@out < $n) {
        my $p = 20000 + int(rand(2000));
        next if $seen{$p}++;
        my @s = map { IO::Socket::INET->new(LocalAddr => '0.0.0.0',
                          LocalPort => $_, Listen => 1, Proto => 'tcp') }
                ($p, $p + 10000);
        next unless $s[0] && $s[1];
        push @held, @s;
        push @out, $p;
    }
    return @out;
}

sub redis_start {
    my ($name, $port, @args) = @_;
    mkdir "$dir/redis/$name";
    $f->_spawn($name, "$dir/redis/$name.log", 'redis-server', '--port', $port,
               '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
               '--dir', "$dir/redis/$name", '--repl-diskless-sync-delay', 0,
               @args);
    return until_true(10, "$name up", sub { cli($port, 'PING') eq 'PONG' });
}

sub sentinel_start {
    my ($name, $port, $master) = @_;
    my $conf = "$dir/redis/$name.conf";
    AstralformFaults::spew($conf, <<"_EOC_");
port $port
bind 127.0.0.1
dir $dir/redis
sentinel monitor mymaster 127.0.0.1 $master 2
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 4000
sentinel parallel-syncs mymaster 1
_EOC_
    $f->_spawn($name, "$dir/redis/$name.log", 'redis-sentinel', $conf);
    return until_true(10, "$name up", sub { cli($port, 'PING') eq 'PONG' });
}

sub sentinel_master {
    my ($port) = @_;
    my @a = split /\n/, cli($port, 'SENTINEL', 'get-master-addr-by-name',
                            'mymaster');
    return @a == 2 ? $a[1] : '';
}

# every sentinel names the master, sees the 2 other sentinels and n
# healthy replicas; the master has n replicas online
sub sentinels_settled {
    my ($master, $n, @s) = @_;
    for my $port (@s) {
        return 0 unless sentinel_master($port) eq $master;
        my $others = () = cli($port, 'SENTINEL', 'sentinels', 'mymaster')
                          =~ /^name$/mg;
        my $ok = () = cli($port, 'SENTINEL', 'replicas', 'mymaster')
                      =~ /^slave$/mg;
        return 0 unless $others >= 2 && $ok >= $n;
    }
    my $online = () = cli($master, 'INFO', 'replication') =~ /state=online/g;
    return $online >= $n;
}

# --- HTTP load ------------------------------------------------------------

sub admin_h { [ Authorization => "Bearer $ADMIN-$_[0]",
                'Content-Type' => 'application/json' ] }

sub put_agent {
    my ($p, $aid) = @_;
    return $f->http(method => 'PUT',
                    path => "/v1/projects/$p/agents/$aid/connectors",
                    headers => admin_h($p), body => '{"connectors":[]}',
                    timeout => 5);
}

sub get_agent {
    my ($p, $aid) = @_;
    return $f->http(method => 'GET',
                    path => "/v1/projects/$p/agents/$aid/connectors",
                    headers => admin_h($p), timeout => 5);
}

# procs children, each writing a fresh agent then reading it back, in turn
# over the projects, until duration has passed
sub load_start {
    my (%o) = @_;
    my @kids;
    for my $k (1 .. $o{procs}) {
        my $file = "$dir/wrk/ha.$o{name}.$k";
        my $pid = fork // die "fork: $!\n";
        if (!$pid) {
            open my $fh, '>', $file or POSIX::_exit(1);
            my $end = time + $o{duration};
            my $seq = 0;
            while (time < $end) {
                my $p = $o{projects}[$seq % @{ $o{projects} }];
                my $aid = "$o{name}-$k-" . $seq++;
                for my $op ('W', 'R') {
                    my $t = time;
                    my $r = $op eq 'W' ? put_agent($p, $aid)
                                       : get_agent($p, $aid);
                    (my $key = AstralformFaults::key_of($r)) =~ s/\s+/_/g;
                    printf $fh "%.6f %s %s %s %s\n", $t, $op, $p, $aid, $key;
                }
                sleep 0.004;
            }
            close $fh;
            POSIX::_exit(0);
        }
        $f->{kids}{$pid} = 1;
        push @kids, [ $pid, $file ];
    }
    return \@kids;
}

sub load_wait {
    my ($kids) = @_;
    my @rows;
    for my $k (@$kids) {
        waitpid($k->[0], 0);
        delete $f->{kids}{ $k->[0] };
        for (split /\n/, AstralformFaults::slurp($k->[1])) {
            my ($t, $op, $p, $aid, $key) = split ' ';
            push @rows, { t => $t, op => $op, p => $p, aid => $aid,
                          key => $key };
        }
    }
    return [ sort { $a->{t} <=> $b->{t} } @rows ];
}

sub ms { sprintf '%.0f', 1000 * $_[0] }

# the outage as seen from the load: figures, and the checks every
# scenario shares
sub outage {
    my ($name, $rows, $event, $limit) = @_;
    my @bad = grep { $_->{key} ne '200' } @$rows;
    my @wbad = grep { $_->{op} eq 'W' } @bad;
    my %by;
    $by{ $_->{key} }++ for @bad;
    my $summary = sprintf '%d requests, %d failed', scalar @$rows, scalar @bad;
    if (@bad) {
        my $last = $bad[-1]{t};
        my ($good) = grep { $_->{t} > $last && $_->{key} eq '200' } @$rows;
        $summary .= sprintf(' (%s), first failed +%s ms, last failed +%s ms,'
                            . ' first good after +%s ms, writes failed %d',
                            join(', ', map { "$by{$_} $_" } sort keys %by),
                            ms($bad[0]{t} - $event), ms($last - $event),
                            $good ? ms($good->{t} - $event) : 'never',
                            scalar @wbad);
    }
    diag("$name: $summary");

    ok(@$rows > 50, "$name: the load ran (" . scalar(@$rows) . ' requests)');
    my @odd = grep { $_->{key} ne '200' && $_->{key} ne '503_store_unavailable' }
              @$rows;
    ok(!@odd, "$name: every request answered 200 or 503 store_unavailable")
        or diag(join ', ', map { $_->{key} } @odd[0 .. ($#odd > 9 ? 9 : $#odd)]);
    if (defined $limit) {
        my $lastw = @wbad ? $wbad[-1]{t} - $event : 0;
        ok($lastw < $limit, "$name: writes succeed again within ${limit}s"
                            . ' (last failed write +' . ms($lastw) . ' ms)');
    }
    my @tail = grep { $_->{t} > $rows->[-1]{t} - 1 } @$rows;
    ok(@tail && !grep({ $_->{key} ne '200' } @tail),
       "$name: the last second of load is all 200, without a reload");
    return \@bad;
}

# every write answered 200 is in Redis: nothing acknowledged was lost
sub acknowledged_kept {
    my ($name, $rows, $port_of) = @_;
    is(acknowledged_lost($rows, $port_of), 0,
       "$name: no acknowledged write lost");
}

sub acknowledged_lost {
    my ($rows, $port_of) = @_;
    my (%want, $lost);
    push @{ $want{ $_->{p} } }, $_->{aid}
        for grep { $_->{op} eq 'W' && $_->{key} eq '200' } @$rows;
    $lost = 0;
    for my $p (keys %want) {
        my %have = map { $_ => 1 }
                   split /\n/, cli($port_of->($p), 'HKEYS', "faults:{$p}:agents");
        $lost += grep { !$have{$_} } @{ $want{$p} };
    }
    return $lost;
}

sub health { my $r = $f->http(method => 'GET', path => '/v1/health', timeout => 5);
             return ($r->{status}, $r->{body}) }

# up: health need not be 200 (a replica), only the workers running
sub start_nginx {
    my ($name, $redis, %o) = @_;
    my $down = delete $o{down};
    my $ok = $f->start_nginx(redis => $redis, extra_http => $EXTRA,
                             workers => 2, access_log => 0, %o);
    $ok ||= $down && $f->master_pid && scalar(() = $f->worker_pids);
    ok($ok, "$name: nginx starts") or diag($f->{start_error});
    $f->{current} = $name;
    return $ok;
}

sub log_clean {
    my ($name) = @_;
    my $log = $f->error_log;
    unlike($log, qr/\[(alert|crit|emerg)\]|ha-admin-|ha-client-secret/,
           "$name: no alert, crash or secret in the error log");
}

# =========================================================================
# Sentinel
# =========================================================================

my ($M, $R, $R2, $S1, $S2, $S3, $C1, $C2, $C3) = free_ports(9);
my @S = ($S1, $S2, $S3);
my %NAME = ($M => 'master', $R => 'replica', $R2 => 'replica2');

redis_start('master', $M) or BAIL_OUT('redis master');
for my $r ($R, $R2) {
    redis_start($NAME{$r}, $r, '--replicaof', '127.0.0.1', $M)
        or BAIL_OUT('replica');
}
sentinel_start("sentinel$_", $S[$_ - 1], $M) or BAIL_OUT('sentinel') for 1 .. 3;
until_true(20, 'sentinels settled', sub { sentinels_settled($M, 2, @S) })
    or BAIL_OUT('sentinels did not settle');

# --- 0: one Redis that is a replica: health and writes tell the truth ----

if (start_nginx('replica', "127.0.0.1:$R timeout=500ms", workers => 1,
                down => 1)) {
    my ($st, $body) = health();
    is($st, 503, 'replica: /v1/health is 503');
    like($body, qr/"redis":"read-only","mode":"single","master":"127\.0\.0\.1:$R"/,
         'replica: health says read-only and names the node');
    my $r = put_agent('p1', 'ro');
    is("$r->{status} " . AstralformFaults::err_code($r->{body}),
       '503 store_unavailable', 'replica: a write is 503 store_unavailable');
    like($f->error_log,
         qr/redis "127\.0\.0\.1:$R" answered HSET with an error: READONLY/,
         'replica: the READONLY error reply is logged with its text');
    $f->stop_nginx;
}

# --- 1, 2: SENTINEL FAILOVER under load, without and with WAIT ----------

my $SENT = join ',', map { "127.0.0.1:$_" } @S;
my $port_now = sub { sentinel_master($S1) };
my $TO = 'connect_timeout=300ms timeout=500ms';

sub failover {
    my ($name, $settle, $wait, $limit) = @_;
    my $from = sentinel_master($S1);
    until_true(30, "$name: sentinels settled",
               sub { sentinels_settled($from, $settle, @S) })
        or return;
    start_nginx($name, "sentinel=$SENT master=mymaster $TO$wait") or return;
    my ($st, $body) = health();
    like("$st $body", qr/^200 .*"mode":"sentinel","master":"127\.0\.0\.1:$from"/,
         "$name: health names the master");

    my $load = load_start(name => $name, procs => 3, duration => $limit + 3,
                          projects => [ 'p1', 'p2' ]);
    sleep 2;
    my $event = time;
    is(cli($S1, 'SENTINEL', 'failover', 'mymaster'), 'OK',
       "$name: SENTINEL FAILOVER accepted");
    my $rows = load_wait($load);
    until_true(10, 'failover done', sub { sentinel_master($S1) ne $from });
    my $to = sentinel_master($S1);
    outage($name, $rows, $event, $limit);
    my $lost = acknowledged_lost($rows, $port_now);
    if ($wait) {
        is($lost, 0, "$name: no acknowledged write lost");
    } else {
        # Sentinel promotes without fencing the old master first: writes it
        # takes before it is demoted are gone (what wait_replicas is for)
        diag("$name: $lost acknowledged writes lost (no WAIT)");
    }

    ($st, $body) = health();
    like("$st $body", qr/^200 .*"mode":"sentinel","master":"127\.0\.0\.1:$to"/,
         "$name: health names the new master");
    like($f->error_log, qr/\+switch-master mymaster .* 127\.0\.0\.1 $to/,
         "$name: +switch-master received");
    log_clean($name);
    $f->stop_nginx;
}

# Sentinel promotes a replica without fencing the old master first: what
# the old master takes until it is demoted is lost, unless WAIT made every
# replica take it too. wait_replicas=2 (all of them): no write acknowledged
# and lost, but writes fail (503) until the old master has rejoined as a
# replica, about 10 s later (Sentinel's pace)
failover('sentinel-failover', 2, '', 5);
failover('sentinel-failover-wait', 2, ' wait_replicas=2 wait_timeout=100ms',
         15);

# --- 3: kill -9 of the master ----------------------------------------------

my $victim = sentinel_master($S1);
until_true(30, 'sentinels settled', sub { sentinels_settled($victim, 2, @S) });

if (start_nginx('sentinel-kill', "sentinel=$SENT master=mymaster $TO")) {
    my $load = load_start(name => 'kill', procs => 3, duration => 9,
                          projects => [ 'p1', 'p2' ]);
    sleep 2;
    my $event = time;
    $f->_reap($NAME{$victim}, 'KILL');
    my $rows = load_wait($load);
    outage('sentinel-kill', $rows, $event, 6);
    my $now = sentinel_master($S1);
    ok($now && $now ne $victim, 'sentinel-kill: a replica was promoted');
    diag('sentinel-kill: ' . acknowledged_lost($rows, $port_now)
         . ' acknowledged writes lost (asynchronous replication)');
    my ($st, $body) = health();
    like("$st $body", qr/^200 .*"master":"127\.0\.0\.1:$now"/,
         'sentinel-kill: health names the promoted master');
    log_clean('sentinel-kill');
    $f->stop_nginx;
}

$f->_reap($_) for qw(sentinel1 sentinel2 sentinel3 master replica replica2);


# =========================================================================
# Cluster
# =========================================================================

my @C = ($C1, $C2, $C3);
for my $i (0 .. 2) {
    redis_start("cluster$i", $C[$i], '--cluster-enabled', 'yes',
                '--cluster-config-file', "nodes-$C[$i].conf",
                '--cluster-node-timeout', '2000') or BAIL_OUT('cluster node');
}
system("redis-cli --cluster create "
       . join(' ', map { "127.0.0.1:$_" } @C)
       . " --cluster-replicas 0 --cluster-yes >'$dir/redis/create.log' 2>&1")
    == 0
    or BAIL_OUT('redis-cli --cluster create');
until_true(20, 'cluster ok', sub {
    !grep { cli($_, 'CLUSTER', 'INFO') !~ /cluster_state:ok/ } @C
}) or BAIL_OUT('cluster did not come up');

my %ID = map { $_ => cli($_, 'CLUSTER', 'MYID') } @C;
my %PORT_OF_ID = reverse %ID;

sub slot_of { cli($C1, 'CLUSTER', 'KEYSLOT', "{$_[0]}") }

sub owner {
    my ($slot) = @_;
    for (split /\n/, cli($C1, 'CLUSTER', 'NODES')) {
        my @f = split ' ';
        next unless $f[2] =~ /master/;
        for my $r (@f[8 .. $#f]) {
            next if $r =~ /^\[/;
            my ($a, $b) = split /-/, $r;
            $b //= $a;
            return $1 if $slot >= $a && $slot <= $b && $f[1] =~ /:(\d+)@/;
        }
    }
    return '';
}

sub errorstat {
    my ($port, $what) = @_;
    return cli($port, 'INFO', 'errorstats') =~ /errorstat_$what:count=(\d+)/
           ? $1 : 0;
}

my %OWNER = map { $_ => owner(slot_of($_)) } @PROJECTS;
my %on = map { $_ => 1 } values %OWNER;
is(scalar keys %on, 3, 'cluster: the projects spread over the 3 masters')
    or diag(join ' ', map { "$_=$OWNER{$_}" } @PROJECTS);

if (start_nginx('cluster', "cluster=127.0.0.1:$C1 connect_timeout=300ms timeout=500ms")) {
    my ($st, $body) = health();
    like("$st $body", qr/^200 .*"mode":"cluster","masters":\[("127\.0\.0\.1:\d+",?){3}\]/,
         'cluster: health names the 3 masters');

    # --- 3: every project from one seed node, each on its master --------
    put_agent($_, 'warm') for @PROJECTS;      # each worker reads the map
    put_agent($_, 'warm') for @PROJECTS;
    my %moved0 = map { $_ => errorstat($_, 'MOVED') } @C;
    my $bad = 0;
    for my $p (@PROJECTS) {
        for my $i (1 .. 3) {
            my $w = put_agent($p, "a$i");
            my $r = get_agent($p, "a$i");
            next if $w->{status} eq '200' && $r->{status} eq '200'
                    && $r->{body} =~ /"connectors":\[\]/;
            diag("$p: $w->{status} $w->{body} / $r->{status} $r->{body}")
                unless $bad++;
        }
    }
    is($bad, 0, 'cluster: every project writes and reads through one seed');
    my $misplaced = grep {
        cli($OWNER{$_}, 'HEXISTS', "faults:{$_}:agents", 'a1') ne '1'
    } @PROJECTS;
    is($misplaced, 0, "cluster: each project's keys are on its slot's master");
    my $moved = 0;
    $moved += errorstat($_, 'MOVED') - $moved0{$_} for @C;
    is($moved, 0, 'cluster: no MOVED once the slot map is known');

    # --- 4: a project's slot migrated under load -------------------------
    my $pm = $PROJECTS[0];
    my $slot = slot_of($pm);
    my $A = $OWNER{$pm};
    my ($B) = grep { $_ != $A } @C;
    my $ask0 = errorstat($A, 'ASK');
    my $moved1 = errorstat($A, 'MOVED');

    my $load = load_start(name => 'migrate', procs => 3, duration => 7,
                          projects => [ $pm, $pm, grep({ $OWNER{$_} == $B } @PROJECTS) ]);
    sleep 1.5;
    my $event = time;
    cli($B, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $ID{$A});
    cli($A, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $ID{$B});
    sleep 1;
    my @keys = split /\n/, cli($A, 'CLUSTER', 'GETKEYSINSLOT', $slot, 1000);
    my $mig = cli($A, 'MIGRATE', '127.0.0.1', $B, '', 0, 5000, 'KEYS', @keys);
    is($mig, 'OK', "cluster-migrate: MIGRATE of slot ${slot}'s "
                   . scalar(@keys) . ' keys');
    sleep 1;                                   # the ASK window
    cli($_, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $ID{$B}) for ($B, $A, grep { $_ != $A && $_ != $B } @C);
    my $rows = load_wait($load);
    my $failed = outage('cluster-migrate', $rows, $event, undef);
    is(scalar @$failed, 0, 'cluster-migrate: every request answered 200');
    is(owner($slot), $B, "cluster-migrate: slot $slot is on the new master");
    acknowledged_kept('cluster-migrate', $rows, sub { owner(slot_of($_[0])) });
    my $asks = errorstat($A, 'ASK') - $ask0;
    my $moves = errorstat($A, 'MOVED') - $moved1;
    ok($asks > 0, "cluster-migrate: ASK redirections followed ($asks)");
    ok($moves > 0, "cluster-migrate: MOVED redirections followed ($moves)");
    diag("cluster-migrate: $asks ASK and $moves MOVED replies from the old master");
    log_clean('cluster');
    $f->stop_nginx;
}

done_testing();
