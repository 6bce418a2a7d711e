package AstralformFaults;

# Faults under load (issue 5, item 3): the scenarios shared by
# bench/faults/run.sh (full durations, prints PASS/FAIL lines) and
# t/070-faults.t (short durations, one ok() per check).
#
# Everything runs on loopback, with bounded counts and durations: a private
# redis-server (started and killed here, never the suite's), the mock
# providers (t/mock/providers.js: the suite's, or one started here), one
# nginx with ngx_astralform_module.so under a private prefix, load from wrk
# (bench/faults/load.lua) and precise single-request probes from Perl.
#
#   my $f = AstralformFaults->new(root => $repo, dir => $prefix,
#                                 port => $nginx_port, mock_port => $p,
#                                 [module => $so, copy => 0, nginx => $bin]);
#   $f->start_mock unless $p;  $f->start_redis;  $f->setup_data;
#   my $r = $f->redis_kill(duration => 8);     # or redis_slow,
#       # provider_faults, reload, worker_kill, leak (each: its options)
#   $r->{pass}, $r->{summary}, $r->{details} (lines),
#   $r->{checks} = [ [ ok, description, diagnostic, todo ], ... ]
#   $f->cleanup;                               # also from END
#
# Each scenario starts nginx with the workers and timeouts it needs and
# stops it at the end, keeping its logs as logs/<scenario>.{error,access}.log.

use strict;
use warnings;

use Cwd ();
use File::Copy ();
use File::Path qw(make_path);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

use Astralform::Seal qw(seal_token);
use Astralform::Test ();

my $JSON = JSON::PP->new->canonical;
my @LIVE;    # objects to clean up at exit

sub new {
    my ($class, %o) = @_;
    my $s = bless {
        root      => $o{root} || Cwd::cwd(),
        dir       => $o{dir},
        port      => $o{port},
        mock_port => $o{mock_port},
        nginx     => $o{nginx} || $ENV{NGINX} || '/usr/sbin/nginx',
        module    => $o{module},
        say       => $o{say} || sub { },
        pids      => {},
        owner     => $$,
    }, $class;
    die "dir and port are required\n" unless $s->{dir} && $s->{port};
    my $d = $s->{dir};
    make_path(map { "$d/$_" } qw(conf logs keys redis temp wrk));
    chmod 0755, $d, "$d/temp";
    # a private copy: a `make` elsewhere cannot swap the module under a
    # reload in the middle of a scenario. copy => 0 loads it in place (the
    # suite: make asan preloads that very file)
    my $src = $s->{module} || "$s->{root}/ngx_astralform_module.so";
    die "$src not built (run make)\n" unless -f $src;
    if ($o{copy} // 1) {
        File::Copy::copy($src, "$d/ngx_astralform_module.so")
            or die "copy $src: $!\n";
        $s->{module} = "$d/ngx_astralform_module.so";
    } else {
        $s->{module} = $src;
    }
    push @LIVE, $s;
    return $s;
}

END { $_->cleanup for grep { $_->{owner} == $$ } @LIVE }

sub say { my $s = shift; $s->{say}->(join '', @_) }

# N distinct free loopback ports (as t/run.sh does)
sub free_ports {
    my ($n) = @_;
    my (%seen, @held, @out);
    while (@out < $n) {
        my $p = 20000 + int(rand(12000));
        next if $seen{$p}++;
        my $sock = IO::Socket::INET->new(LocalAddr => '0.0.0.0',
                       LocalPort => $p, Listen => 1, Proto => 'tcp',
                       ReuseAddr => 0) or next;
        push @held, $sock;
        push @out, $p;
    }
    return @out;
}

sub spew { my ($f, $t) = @_; open my $fh, '>', $f or die "$f: $!\n"; print $fh $t; close $fh }
sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; my $t = <$fh>; $t // '' }

sub _spawn {
    my ($s, $name, $log, @cmd) = @_;
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        POSIX::setsid();
        exec(@cmd) or POSIX::_exit(127);
    }
    $s->{pids}{$name} = $pid;
    return $pid;
}

sub _reap {
    my ($s, $name, $sig) = @_;
    my $pid = delete $s->{pids}{$name} or return;
    kill $sig || 'TERM', $pid;
    my $deadline = time + 5;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.01;
    }
}

sub cleanup {
    my ($s) = @_;
    return if $s->{cleaned}++;
    # load generators and probes still running (an interrupted scenario)
    for my $pid (keys %{ $s->{kids} || {} }) {
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }
    $s->stop_nginx;
    $s->_reap($_) for keys %{ $s->{pids} };
}

# --- mock providers ------------------------------------------------------

sub start_mock {
    my ($s) = @_;
    my ($p) = free_ports(1);
    $s->_spawn(mock => "$s->{dir}/mock.log", 'node',
               "$s->{root}/t/mock/providers.js", '--port', $p);
    $s->{mock_port} = $p;
    for (1 .. 200) {
        my $r = $s->http(method => 'GET', path => '/__mock/health',
                         port => $p, timeout => 1);
        return 1 if $r->{status} eq '200';
        sleep 0.05;
    }
    die "mock providers did not start: " . slurp("$s->{dir}/mock.log");
}

sub mock {
    my ($s, $method, $path, $body) = @_;
    my $r = $s->http(method => $method, path => $path,
                     port => $s->{mock_port}, timeout => 10,
                     headers => [ 'Content-Type' => 'application/json' ],
                     body => defined $body ? $JSON->encode($body) : undef);
    return $r->{body} =~ /^\s*[\{\[]/ ? $JSON->decode($r->{body}) : $r->{body};
}

# --- redis ---------------------------------------------------------------

sub start_redis {
    my ($s, %o) = @_;
    $s->{redis_port} ||= (free_ports(1))[0];
    unlink "$s->{dir}/redis/dump.rdb" unless $o{keep_data};
    $s->_spawn(redis => "$s->{dir}/redis.log", 'redis-server',
               '--port', $s->{redis_port}, '--bind', '127.0.0.1',
               '--save', '', '--appendonly', 'no',
               '--dir', "$s->{dir}/redis", '--dbfilename', 'dump.rdb',
               '--enable-debug-command', 'local');
    my $deadline = time + 10;
    while (time < $deadline) {
        my $pong = eval { $s->redis('PING') };
        return time if defined $pong && $pong eq 'PONG';
        sleep 0.005;
    }
    die "redis-server did not start: " . slurp("$s->{dir}/redis.log");
}

sub kill_redis {
    my ($s, $sig) = @_;
    $s->_reap('redis', $sig || 'KILL');
}

sub _redis_req {
    my (@args) = @_;
    my $req = '*' . scalar(@args) . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for map { $_ // '' } @args;
    return $req;
}

sub _redis_reply {
    my ($sock, $buf, $timeout) = @_;
    my $read = sub {
        my ($n) = @_;
        while (1) {
            if (defined $n) {
                return substr($$buf, 0, $n, '') if length $$buf >= $n;
            } elsif ($$buf =~ s/^(.*?)\r\n//s) {
                return $1;
            }
            die "redis: timeout\n"
                unless IO::Select->new($sock)->can_read($timeout);
            sysread($sock, my $chunk, 65536) or die "redis: closed\n";
            $$buf .= $chunk;
        }
    };
    my $line = $read->();
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+';
    return $v + 0 if $t eq ':';
    die "redis error: $v\n" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        return substr($read->($v + 2), 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [ map { _redis_reply($sock, $buf, $timeout) } 1 .. $v ];
    }
    die "redis: bad reply '$line'\n";
}

sub redis {
    my ($s, @args) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                   PeerPort => $s->{redis_port}, Proto => 'tcp', Timeout => 2)
        or die "redis: connect: $!\n";
    print {$sock} _redis_req(@args);
    my $buf = '';
    my $r = _redis_reply($sock, \$buf, 5);
    close $sock;
    return $r;
}

# send a command and come back for the reply later (DEBUG SLEEP)
sub redis_send {
    my ($s, @args) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                   PeerPort => $s->{redis_port}, Proto => 'tcp', Timeout => 2)
        or die "redis: connect: $!\n";
    print {$sock} _redis_req(@args);
    return $sock;
}

sub redis_recv {
    my ($s, $sock, $timeout) = @_;
    my $buf = '';
    my $r = eval { _redis_reply($sock, \$buf, $timeout || 10) };
    close $sock;
    return $r // "ERR $@";
}

# --- keys, tokens --------------------------------------------------------

sub _rand_hex { my ($n) = @_; join '', map { sprintf '%02x', int rand 256 } 1 .. $n }

sub setup_data {
    my ($s) = @_;
    my $k = "$s->{dir}/keys";
    $s->{seal_key} = _rand_hex(32);
    $s->{admin_key} = 'faults-admin-' . _rand_hex(8);
    $s->{agent_key} = 'faults-agent-' . _rand_hex(8);
    $s->{client_secret} = 'faults-client-secret-' . _rand_hex(8);
    spew("$k/seal.key", "$s->{seal_key}\n");
    spew("$k/admin.keys", "$s->{admin_key}\n");
    spew("$k/agent.keys", "$s->{agent_key}\n");
    spew("$k/client.secret", "$s->{client_secret}\n");

    # the echo connector's token: the mock's /bench/echo does not check it
    $s->{echo_token} = 'faults-echo-token-' . _rand_hex(12);
    # a real mock GitHub token for the provider-fault calls
    my $gh = $s->mock('POST', '/__mock/tokens', { provider => 'github' });
    ref $gh && $gh->{access_token} or die "mock: no github token\n";
    $s->{github_token} = $gh->{access_token};
    $s->plant_tokens;
}

sub plant_tokens {
    my ($s) = @_;
    for ([ faults => $s->{echo_token} ], [ github => $s->{github_token} ]) {
        my ($conn, $tok) = @$_;
        $s->redis('HSET', "faults:{p1}:tokens:$conn", 'u1',
                  seal_token($s->{seal_key}, 'kf', 'p1', $conn, 'u1',
                             { type => 'oauth', access_token => $tok,
                               expires_at => 0, obtained_at => time() }));
    }
}

sub secrets {
    my ($s) = @_;
    return (github_token => $s->{github_token},
            echo_token => $s->{echo_token},
            seal_key => $s->{seal_key},
            client_secret => $s->{client_secret});
}

# --- nginx ---------------------------------------------------------------

sub conf {
    my ($s, %o) = @_;
    my $d = $s->{dir};
    my $M = "http://127.0.0.1:$s->{mock_port}";
    my $workers = $o{workers} || 1;
    my $rt = $o{redis_timeout} || '300ms';
    my $ht = $o{http_timeout} || '1s';
    my $extra = $o{extra_http} // "";
    # another deployment (sentinel=, cluster=) in place of the one Redis
    my $redis = $o{redis}
        // "127.0.0.1:$s->{redis_port} connect_timeout=$rt timeout=$rt";
    my $user = $> == 0 ? "user root;\n" : '';
    my $access = $o{access_log} // 1
        ? "access_log $d/logs/access.log audit;" : 'access_log off;';
    return <<"_EOC_";
load_module $s->{module};
${user}worker_processes $workers;
daemon on;
master_process on;
error_log $d/logs/error.log info;
pid $d/logs/nginx.pid;

events {
    worker_connections 1024;
    accept_mutex off;
    # the provider-fault probes connect from 127.0.0.2: full debug log for
    # them (to search it for secrets), not for the load
    debug_connection 127.0.0.2;
}

http {
    client_body_temp_path $d/temp/body;
    proxy_temp_path       $d/temp/proxy;
    fastcgi_temp_path     $d/temp/fastcgi;
    uwsgi_temp_path       $d/temp/uwsgi;
    scgi_temp_path        $d/temp/scgi;

    log_format audit '\$remote_addr "\$request" \$status \$request_time '
                     'tool=\$astralform_tool user=\$astralform_user '
                     'provider_status=\$astralform_provider_status '
                     'error=\$astralform_error';
    $access
    keepalive_requests 1000000;

    astralform_redis        $redis;
    astralform_redis_prefix faults:;
    astralform_key          kf $d/keys/seal.key;
    astralform_public_url   http://127.0.0.1:$s->{port};
    astralform_catalog      $s->{root}/conf/connectors;
    astralform_catalog      $s->{root}/bench/faults/faults.json;
    astralform_http_timeout $ht;
    astralform_provider     faults api_base=$M/bench/;
    astralform_provider     github api_base=$M/github/api/;
    astralform_project      p1 admin_key_file=$d/keys/admin.keys
                            agent_key_file=$d/keys/agent.keys;
    astralform_connector    p1 faults client_id=faults-cid
                            client_secret_file=$d/keys/client.secret;
    astralform_connector    p1 github client_id=github-cid
                            client_secret_file=$d/keys/client.secret;

$extra
    server {
        listen 127.0.0.1:$s->{port};
        location /v1/ {
            astralform_api;
        }
        # control: plain nginx, no module, same server
        location = /static {
            default_type application/json;
            return 200 '{"ok":true}';
        }
    }
}
_EOC_
}

sub _nginx_cmd {
    my ($s, @extra) = @_;
    return ($s->{nginx}, '-p', "$s->{dir}/", '-c', "$s->{dir}/conf/nginx.conf",
            '-e', "$s->{dir}/logs/error.log", @extra);
}

# run the nginx binary (start, or a signal); its output to a file, not a
# pipe (a daemon keeping the pipe open would hang us), and without $NGINX in
# its environment: nginx reads inherited listening sockets from that variable
sub _run_nginx {
    my ($s, @extra) = @_;
    my $log = "$s->{dir}/logs/nginx.out";
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        delete $ENV{NGINX};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        exec($s->_nginx_cmd(@extra)) or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return ($? >> 8, slurp($log));
}

sub master_pid {
    my ($s) = @_;
    my $pid = slurp("$s->{dir}/logs/nginx.pid");
    return undef unless $pid =~ /^\s*(\d+)\s*$/;
    $pid = $1;
    return undef unless slurp("/proc/$pid/cmdline") =~ /nginx/;
    return $pid;
}

sub _zombie { slurp("/proc/$_[0]/stat") =~ /^\d+ \(.*\) Z/s }

# live children of the master: [pid, "worker process" | "is shutting down"]
sub children {
    my ($s) = @_;
    my $m = $s->master_pid or return ();
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $t = slurp($stat);
        next unless $t =~ /^(\d+) \(.*\) (\S) (\d+) /s && $3 == $m && $2 ne 'Z';
        my $pid = $1;
        (my $cmd = slurp("/proc/$pid/cmdline")) =~ tr/\0/ /;
        push @kids, [ $pid, $cmd ];
    }
    return @kids;
}

sub worker_pids {
    my ($s) = @_;
    return sort { $a <=> $b } map { $_->[0] }
           grep { $_->[1] =~ /worker process/ && $_->[1] !~ /shutting down/ }
           $s->children;
}

sub start_nginx {
    my ($s, %o) = @_;
    $s->stop_nginx;
    spew("$s->{dir}/conf/nginx.conf", $s->conf(%o));
    for my $l (qw(error.log access.log)) { spew("$s->{dir}/logs/$l", '') }
    my ($rc, $out) = $s->_run_nginx;
    if ($rc) { $s->{start_error} = $out; return 0 }
    my $deadline = time + 5;
    while (time < $deadline) {
        if ($s->master_pid && (my @w = $s->worker_pids) >= ($o{workers} || 1)) {
            my $r = $s->http(method => 'GET', path => '/v1/health', timeout => 1);
            return 1 if $r->{status} eq '200';
        }
        sleep 0.02;
    }
    $s->{start_error} = 'nginx not ready: ' . slurp("$s->{dir}/logs/error.log");
    return 0;
}

sub stop_nginx {
    my ($s) = @_;
    my $pid = $s->master_pid or return;
    kill 'TERM', $pid;
    my $deadline = time + 5;
    while (kill(0, $pid) && !_zombie($pid) && time < $deadline) { sleep 0.01 }
    if (kill(0, $pid) && !_zombie($pid)) { kill 'KILL', -$pid; kill 'KILL', $pid }
    unlink "$s->{dir}/logs/nginx.pid";
    # keep each scenario's logs (the next start truncates them)
    if (my $n = delete $s->{current}) {
        File::Copy::copy("$s->{dir}/logs/$_.log", "$s->{dir}/logs/$n.$_.log")
            for qw(error access);
    }
}

sub reload_nginx {
    my ($s) = @_;
    my ($rc, $out) = $s->_run_nginx('-s', 'reload');
    return ($rc == 0, $out);
}

sub rss_kb {
    my ($pid) = @_;
    my $st = slurp("/proc/$pid/status");
    return $st =~ /^VmRSS:\s+(\d+)/m ? $1 : undef;
}

# ESTABLISHED client connections to the nginx port held by $pid
sub client_conns {
    my ($s, $pid) = @_;
    my %inode;
    opendir my $dh, "/proc/$pid/fd" or return 0;
    for (readdir $dh) {
        my $l = readlink "/proc/$pid/fd/$_" // next;
        $inode{$1} = 1 if $l =~ /^socket:\[(\d+)\]/;
    }
    my $n = 0;
    for my $line (split /\n/, slurp('/proc/net/tcp')) {
        my @f = split ' ', $line;
        next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/ && hex($1) == $s->{port};
        $n++ if $f[3] eq '01' && $inode{ $f[9] };
    }
    return $n;
}

sub error_log { slurp("$_[0]{dir}/logs/error.log") }

# [alert]/[crit]/[emerg] lines and worker deaths, minus the expected ones
sub bad_log_lines {
    my ($s, $expect) = @_;
    my @bad = grep { /\[(alert|crit|emerg)\]|exited on signal|core dumped/ }
              split /\n/, $s->error_log;
    @bad = grep { !/$expect/ } @bad if $expect;
    return @bad;
}

# --- HTTP ----------------------------------------------------------------

# one request on its own connection; { status, headers, body, secs, error }
sub http {
    my ($s, %o) = @_;
    my $port = $o{port} || $s->{port};
    my $t0 = time;
    my @h = @{ $o{headers} || [] };
    my $req = "$o{method} $o{path} HTTP/1.1\r\nHost: localhost\r\n"
            . "Connection: close\r\n";
    while (my ($k, $v) = splice @h, 0, 2) { $req .= "$k: $v\r\n" }
    $req .= 'Content-Length: ' . length($o{body}) . "\r\n" if defined $o{body};
    $req .= "\r\n" . ($o{body} // '');
    my $timeout = $o{timeout} || 5;
    my %sock = (PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                Timeout => $timeout);
    $sock{LocalAddr} = $o{local_addr} if $o{local_addr};
    my $sock = IO::Socket::INET->new(%sock)
        or return { status => '', body => '', secs => time - $t0,
                    error => "connect: $!" };
    binmode $sock;
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        last unless defined $n;
        $off += $n;
    }
    my ($raw, $err) = ('', undef);
    my $deadline = $t0 + $timeout;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left)) { $err = 'timeout'; last }
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) { $err = "read: $!"; last }
        last if !$n;
        $raw .= $buf;
    }
    close $sock;
    my $r = Astralform::Test::parse_http_response($raw);
    return { status => $r->{code}, body => $r->{body}, secs => time - $t0,
             error => $err, raw => $raw };
}

sub call_tool {
    my ($s, $name, %o) = @_;
    return $s->http(method => 'POST', path => '/v1/projects/p1/tools/call',
                    headers => [ Authorization => "Bearer $s->{agent_key}",
                                 'Content-Type' => 'application/json',
                                 'X-Astralform-User' => $o{user} || 'u1' ],
                    body => $JSON->encode({ name => $name,
                                            arguments => $o{args} || {} }),
                    timeout => $o{timeout} || 10,
                    local_addr => $o{local_addr});
}

sub connectors {
    my ($s, %o) = @_;
    return $s->http(method => 'GET', path => '/v1/connectors',
                    headers => [ Authorization => "Bearer $s->{agent_key}" ],
                    timeout => $o{timeout} || 10);
}

sub err_code {
    my ($body) = @_;
    return $body =~ /"error"\s*:\s*"([\w]+)"/ ? $1 : 'no_json_error';
}

sub key_of {
    my ($r) = @_;
    return $r->{error} && $r->{status} eq '' ? "conn_error($r->{error})"
         : $r->{status} eq '200' ? '200' : "$r->{status} " . err_code($r->{body});
}

# --- probes: single requests in a loop, in a child process ----------------

# what: 'call' (faults_echo tool call) or 'connectors' (GET /v1/connectors)
sub probe_start {
    my ($s, %o) = @_;
    my $file = "$s->{dir}/wrk/probe.$o{name}";
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        open my $fh, '>', $file or POSIX::_exit(1);
        my $end = time + $o{duration};
        while (time < $end) {
            my $t = time;
            my $r = $o{what} eq 'connectors' ? $s->connectors(timeout => 10)
                                             : $s->call_tool('faults_echo', timeout => 10);
            my $k = key_of($r);
            $k =~ s/\s+/_/g;
            printf $fh "%.6f %.6f %s\n", $t, $r->{secs}, $k;
            sleep $o{interval} if $o{interval};
        }
        close $fh;
        POSIX::_exit(0);
    }
    $s->{kids}{$pid} = 1;
    return { pid => $pid, file => $file };
}

sub probe_wait {
    my ($s, $p) = @_;
    waitpid($p->{pid}, 0);
    delete $s->{kids}{ $p->{pid} };
    return map { my ($t, $secs, $k) = split ' '; $k =~ s/_/ /; { t => $t, secs => $secs, key => $k } }
           grep { /\S/ } split /\n/, slurp($p->{file});
}

# --- wrk -----------------------------------------------------------------

sub wrk_start {
    my ($s, %o) = @_;
    my $name = $o{name};
    my $out = "$s->{dir}/wrk/$name.out";
    my $log = $o{log} ? "$s->{dir}/wrk/$name.log" : undef;
    unlink glob("$s->{dir}/wrk/$name.log.*");
    my %env = (FAULTS_KEY => $s->{agent_key}, FAULTS_USER => $o{user} || 'u1');
    if (($o{what} || 'call') eq 'connectors') {
        @env{qw(FAULTS_METHOD FAULTS_PATH)} = ('GET', '/v1/connectors');
    } elsif (($o{what} || "") eq "static") {
        @env{qw(FAULTS_METHOD FAULTS_PATH)} = ('GET', '/static');
    } else {
        $env{FAULTS_BODY} = $JSON->encode({ name => $o{tool} || 'faults_echo',
                                            arguments => {} });
    }
    $env{FAULTS_CLOSE} = 1 if $o{close};
    $env{FAULTS_LOG} = $log if $log;
    $env{FAULTS_QUOTA} = $o{quota} if $o{quota};
    $env{FAULTS_SECRET} = $o{secret} if $o{secret};
    my @cmd = ('wrk', '-t', $o{threads} || 1, '-c', $o{conns} || 8,
               '-d', POSIX::ceil($o{duration} || 10) . 's', '--timeout', ($o{timeout} || 5) . 's',
               '--latency', '-s', "$s->{root}/bench/faults/load.lua",
               "http://127.0.0.1:$s->{port}");
    my $t0 = time;
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        @ENV{ keys %env } = values %env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or POSIX::_exit(127);
    }
    $s->{kids}{$pid} = 1;
    return { pid => $pid, out => $out, log => $log, t0 => $t0, name => $name };
}

sub wrk_wait {
    my ($s, $w) = @_;
    waitpid($w->{pid}, 0);
    my $rc = $? >> 8;
    delete $s->{kids}{ $w->{pid} };
    my $text = slurp($w->{out});
    my %r = (rc => $rc, text => $text, counts => {}, requests => 0,
             errors => { connect => 0, read => 0, write => 0, timeout => 0 },
             leaks => 0, elapsed => time - $w->{t0});
    $r{requests} = $1 if $text =~ /^\s*(\d+) requests in/m;
    if ($text =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        @{ $r{errors} }{qw(connect read write timeout)} = ($1, $2, $3, $4);
    }
    $r{socket_errors} = 0;
    $r{socket_errors} += $_ for values %{ $r{errors} };
    $r{counts}{$1} = $2 while $text =~ /^faults_count (.+) (\d+)$/mg;
    $r{leaks} = $1 if $text =~ /^faults_leaks (\d+)/m;
    for my $p (qw(max p99 p50)) {
        $r{"lat_$p"} = $1 / 1e6 if $text =~ /^faults_latency_${p}_us (\d+)/m;
    }
    $r{sample} = $1 if $text =~ /^faults_sample (.*)$/m;
    my $n = 0;
    $n += $_ for values %{ $r{counts} };
    $r{answered} = $n;
    $r{ok} = $r{counts}{200} || 0;
    if ($w->{log}) {
        my @ev;
        for my $f (glob "$w->{log}.*") {
            for (split /\n/, slurp($f)) {
                my ($ms, $k) = /^(\d+) (.+)$/ or next;
                push @ev, [ $ms / 1000, $k ];
            }
        }
        $r{events} = [ sort { $a->[0] <=> $b->[0] } @ev ];
    }
    return \%r;
}

sub counts_str {
    my ($c) = @_;
    return join ' ', map { my $k = $_; (my $v = $k) =~ s/ /:/; "$v=$c->{$k}" }
                     sort { ($a eq '200' ? 0 : 1) <=> ($b eq '200' ? 0 : 1) || $a cmp $b }
                     keys %$c;
}

sub ms { my $v = 1000 * ($_[0] // 0); sprintf($v < 10 ? "%.1f" : "%.0f", $v) }

sub max_of { my $m; for (@_) { $m = $_ if !defined $m || $_ > $m } $m }

# --- results -------------------------------------------------------------

sub _result {
    my ($id, $name, $title) = @_;
    return { id => $id, name => $name, title => $title, checks => [],
             details => [], pass => 1 };
}

sub _check {
    my ($r, $ok, $desc, $diag) = @_;
    push @{ $r->{checks} }, [ $ok ? 1 : 0, $desc, $diag // '', $r->{todo} ];
    $r->{pass} = 0 unless $ok;
    return $ok;
}

sub _start {
    my ($s, $r, %conf) = @_;
    if ($s->start_nginx(%conf)) {
        $s->{current} = $r->{name};
        return 1;
    }
    _check($r, 0, 'nginx starts', $s->{start_error});
    $r->{summary} = 'nginx did not start';
    return 0;
}

# =========================================================================
# 1. Redis killed during a load of tool calls, then restarted
# =========================================================================

sub redis_kill {
    my ($s, %o) = @_;
    my $dur = $o{duration} // 8;
    my $kill_at = $o{kill_at} // 2;
    my $down = $o{down} // 3;
    my $r = _result(1, 'redis-kill', 'Redis killed (SIGKILL) during tool-call load, then restarted');
    $s->say("[1] redis-kill: ${dur}s of load, Redis killed at ${kill_at}s for ${down}s");
    $s->_start($r, workers => $o{workers} || 2) or return $r;

    my $sanity = $s->call_tool('faults_echo');
    _check($r, $sanity->{status} eq '200', 'a tool call works before the fault',
           key_of($sanity));
    $s->redis('SAVE');    # the restarted Redis loads the planted tokens
    my $master = $s->master_pid;
    my @workers = $s->worker_pids;

    my $w = $s->wrk_start(name => 'redis-kill', duration => $dur,
                          conns => $o{conns} || 8, threads => 2, log => 1);
    my $p = $s->probe_start(name => 'redis-kill', what => 'call',
                            duration => $dur - 0.3, interval => 0.02);
    sleep $kill_at;
    my $t_kill = time;
    $s->kill_redis('KILL');
    # reaped: a probe sent before this may still have been served (a call
    # takes about a millisecond), one sent after cannot
    my $t_dead = time;
    sleep max_of(0, $down - (time - $t_kill));
    my $t_spawn = time;
    my $t_up = $s->start_redis(keep_data => 1);
    my $res = $s->wrk_wait($w);
    my @probe = $s->probe_wait($p);

    my %c = %{ $res->{counts} };
    my $other = 0;
    $other += $c{$_} for grep { $_ ne '200' && $_ ne '503 store_unavailable' } keys %c;
    my @ev = @{ $res->{events} || [] };
    my @before = grep { $_->[0] < $t_kill } @ev;
    my @during = grep { $_->[0] >= $t_kill && $_->[0] < $t_up } @ev;
    my @after = grep { $_->[0] >= $t_up } @ev;
    my $bad_before = grep { $_->[1] ne '200' } @before;
    my $e503 = grep { $_->[1] eq '503 store_unavailable' } @during;
    my ($first503) = grep { $_->[1] ne '200' } @during;
    my ($first200) = grep { $_->[1] eq '200' } @after;
    my @late = grep { $_->[1] ne '200' } @after;
    my $last_err = @late ? $late[-1][0] - $t_up : 0;
    my $after2 = grep { $_->[1] ne '200' && $_->[0] > $t_up + 2 } @after;
    my @pd = grep { $_->{t} >= $t_dead && $_->{t} + $_->{secs} < $t_up } @probe;
    my $pd_max = max_of(map { $_->{secs} } @pd) // 0;
    my $pd_bad = grep { $_->{key} ne '503 store_unavailable' } @pd;

    _check($r, $res->{rc} == 0 && $res->{answered} > 0, 'wrk ran',
           $res->{text});
    _check($r, $res->{socket_errors} == 0,
           'every request got an answer (no connection error or timeout)',
           join ' ', %{ $res->{errors} });
    _check($r, $other == 0, 'answers are 200 or 503 store_unavailable only',
           counts_str(\%c) . ' ' . ($res->{sample} // ''));
    _check($r, $bad_before == 0, 'no error before the kill', $bad_before);
    _check($r, $e503 > 0, 'tool calls answer 503 store_unavailable while Redis is down',
           "503s while down: $e503");
    _check($r, defined $res->{lat_max} && $res->{lat_max} < 1,
           'every answer within 1 s (wrk max latency)',
           'max ' . ms($res->{lat_max}) . ' ms');
    _check($r, @pd > 0 && $pd_bad == 0 && $pd_max < 1,
           'probe calls while down: all 503 store_unavailable, each within 1 s',
           scalar(@pd) . " probes, $pd_bad not 503, max " . ms($pd_max) . ' ms');
    _check($r, defined $first200 && $first200->[0] - $t_up < 2,
           'normal answers again within 2 s of Redis being back',
           defined $first200 ? 'first 200 after ' . ms($first200->[0] - $t_up) . ' ms' : 'none');
    _check($r, $after2 == 0, 'no error later than 2 s after Redis is back',
           "$after2 errors; last error " . ms($last_err) . ' ms after');
    _check($r, ($s->master_pid // 0) == ($master // -1)
               && "@{[ $s->worker_pids ]}" eq "@workers",
           'no nginx restart: same master and workers',
           "master $master -> " . ($s->master_pid // 'none')
           . ", workers @workers -> @{[ $s->worker_pids ]}");
    my @bad = $s->bad_log_lines;
    _check($r, !@bad, 'no alert/crit/emerg or crashed worker in the error log',
           join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);

    my $recover = defined $first200 ? $first200->[0] - $t_up : undef;
    $r->{figures} = { requests => $res->{answered}, counts => \%c,
                      recovery_s => $recover, last_error_s => $last_err };
    $r->{summary} = sprintf 'answered=%d %s socket_errors=%d | down %.1fs: '
        . '503 %d (first %s ms after kill), probe max %s ms, wrk max %s ms | '
        . 'back: redis up %s ms after spawn, first 200 after %s ms, last error %s ms after | no restart',
        $res->{answered}, counts_str(\%c), $res->{socket_errors},
        $t_up - $t_kill, $e503,
        $first503 ? ms($first503->[0] - $t_kill) : '-', ms($pd_max),
        ms($res->{lat_max}), ms($t_up - $t_spawn),
        defined $recover ? ms($recover) : '-', ms($last_err);
    $r->{details} = [
        sprintf('phases: before kill %d answers (%d errors); down %d answers '
                . '(%d x 503); after restart %d answers (%d errors)',
                scalar @before, $bad_before, scalar @during, $e503,
                scalar @after, scalar @late),
        sprintf('wrk -t2 -c%d -d%ss: %d requests, p50 %s ms, p99 %s ms, max %s ms',
                $o{conns} || 8, $dur, $res->{requests}, ms($res->{lat_p50}),
                ms($res->{lat_p99}), ms($res->{lat_max})),
    ];
    $s->stop_nginx;
    return $r;
}

# =========================================================================
# 2. Redis slow: DEBUG SLEEP while tool calls and catalog reads go on
# =========================================================================

sub redis_slow {
    my ($s, %o) = @_;
    my $sleep = $o{sleep} // 3;
    my $at = $o{at} // 0.5;
    my $timeout_ms = $o{timeout_ms} // 300;
    my $dur = $at + $sleep + ($o{tail} // 1.5);
    my $r = _result(2, 'redis-slow', "Redis stalls (DEBUG SLEEP $sleep) under load, timeout=${timeout_ms}ms, 1 worker");
    $s->say("[2] redis-slow: DEBUG SLEEP $sleep at ${at}s, ${dur}s of load");
    $s->_start($r, workers => 1, redis_timeout => "${timeout_ms}ms") or return $r;
    my $T = $timeout_ms / 1000;

    my $w = $s->wrk_start(name => 'redis-slow', duration => $dur,
                          conns => $o{conns} || 4, threads => 1, log => 1);
    my $pc = $s->probe_start(name => 'slow-call', what => 'call',
                             duration => $dur - 0.3, interval => 0.01);
    my $pk = $s->probe_start(name => 'slow-connectors', what => 'connectors',
                             duration => $dur - 0.3, interval => 0.05);
    sleep $at;
    my $t_p = time;
    my $sock = $s->redis_send('DEBUG', 'SLEEP', $sleep);
    my $reply = $s->redis_recv($sock, $sleep + 5);
    my $t_e = time;
    my $res = $s->wrk_wait($w);
    my @calls = $s->probe_wait($pc);
    my @cats = $s->probe_wait($pk);

    _check($r, $reply eq 'OK', 'Redis really slept', "DEBUG SLEEP -> $reply, "
           . sprintf('%.2f s', $t_e - $t_p));
    # tool-call probes sent and answered inside the stall
    my @in = grep { $_->{t} > $t_p + 0.02 && $_->{t} + $_->{secs} < $t_e - 0.02 } @calls;
    my @in_bad = grep { $_->{key} ne '503 store_unavailable' } @in;
    my $in_max = max_of(map { $_->{secs} } @in) // 0;
    my $at_timeout = grep { $_->{secs} >= $T - 0.02 } @in;
    my @k = grep { $_->{t} >= $t_p && $_->{t} <= $t_e } @cats;
    my @k_bad = grep { $_->{key} ne '200' } @k;
    my $k_max = max_of(map { $_->{secs} } @k) // 0;
    my %c = %{ $res->{counts} };
    my $other = 0;
    $other += $c{$_} for grep { $_ ne '200' && $_ ne '503 store_unavailable' } keys %c;
    my @ev = @{ $res->{events} || [] };
    my $late = grep { $_->[1] ne '200' && $_->[0] > $t_e + 1 } @ev;
    my $first_ok = (map { $_->[0] - $t_e } grep { $_->[1] eq '200' && $_->[0] >= $t_e } @ev)[0];

    _check($r, @in >= 3 && !@in_bad,
           'tool calls during the stall: all 503 store_unavailable (JSON)',
           scalar(@in) . ' probes; not 503: ' . join(',', map { $_->{key} } @in_bad));
    _check($r, $in_max <= $T + 0.25,
           "each answered by the configured timeout (${timeout_ms} ms + 250 ms slack)",
           'slowest ' . ms($in_max) . ' ms');
    _check($r, $at_timeout > 0, 'some waited the timeout (the watchdog fired)',
           "$at_timeout of " . scalar(@in) . " took >= ${timeout_ms}ms-20ms");
    _check($r, @k >= 3 && !@k_bad && $k_max < 0.25,
           'GET /v1/connectors on the same worker not stalled (each < 250 ms)',
           scalar(@k) . ' probes, ' . scalar(@k_bad) . ' not 200, max ' . ms($k_max) . ' ms');
    _check($r, $res->{answered} > 0 && $res->{socket_errors} == 0 && $other == 0,
           'load: every request answered, 200 or 503 store_unavailable only',
           counts_str(\%c) . ' errors ' . join(' ', %{ $res->{errors} }));
    _check($r, defined $res->{lat_max} && $res->{lat_max} <= $T + 0.3,
           'load: no tool call waited for the stall (wrk max latency <= timeout + 300 ms)',
           'max ' . ms($res->{lat_max}) . ' ms');
    _check($r, $late == 0, 'all 200 again from 1 s after the stall',
           "$late errors later");
    my @bad = $s->bad_log_lines;
    _check($r, !@bad, 'no alert/crit/emerg or crashed worker in the error log',
           join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);

    my @lat = sort { $a <=> $b } map { $_->{secs} } @in;
    $r->{summary} = sprintf 'stall %.2fs: %d probe calls all 503 store_unavailable, '
        . 'latency min/median/max %s/%s/%s ms (%d at the %d ms timeout) | '
        . 'GET /v1/connectors: %d probes, max %s ms | load: %s, wrk max %s ms | '
        . 'first 200 %s ms after the stall',
        $t_e - $t_p, scalar @in, ms($lat[0]), ms($lat[ @lat / 2 ]),
        ms($lat[-1]), $at_timeout, $timeout_ms, scalar @k, ms($k_max),
        counts_str(\%c), ms($res->{lat_max}),
        defined $first_ok ? ms($first_ok) : '-';
    $s->stop_nginx;
    return $r;
}

# =========================================================================
# 3. Provider faults: reset, garbage, oversized, stall
# =========================================================================

sub provider_faults {
    my ($s, %o) = @_;
    my $k = $o{parallel} // 4;
    my $r = _result(3, 'provider-faults', "provider resets, garbage, oversized body, stall ($k concurrent calls each) under load, 1 worker");
    $s->say("[3] provider-faults: $k calls per fault from 127.0.0.2 under load");
    $s->_start($r, workers => 1, http_timeout => '1s') or return $r;
    $s->mock('DELETE', '/__mock/behaviour');
    $s->mock('POST', '/__mock/reset');

    my %sec = $s->secrets;
    my $prefix = '/github/api/user/repos';
    # [ name, mock rule (for every request while it is on: libcurl retries
    #   a request that fails on a reused connection), accepted answers ]
    my @faults = (
        [ reset => { reset => JSON::PP::true }, [ '502 provider_error' ] ],
        [ garbage => { garbage => JSON::PP::true }, [ '502 provider_error' ] ],
        # read the request, close 200 ms later without a word: 502, or 504
        # when libcurl's retries on the other pooled connections add up to
        # the 1 s timeout
        [ 'close-no-answer' => { hang_ms => 200 },
          [ '502 provider_error', '504 provider_timeout' ] ],
        [ oversized => { oversized_bytes => 6 * 1024 * 1024 }, [ '502 provider_error' ] ],
        [ 'oversized-chunked' => { oversized_bytes => 6 * 1024 * 1024,
                                   chunked => JSON::PP::true }, [ '502 provider_error' ] ],
        [ stall => { hang => JSON::PP::true }, [ '504 provider_timeout' ] ],
    );
    my $dur = $o{duration} // 7;
    my $w = $s->wrk_start(name => 'provider-faults', duration => $dur,
                          conns => $o{conns} || 4, threads => 1,
                          secret => $sec{echo_token});
    sleep 0.5;
    my $attempts = sub {
        my $l = $s->mock('GET', "/__mock/requests?prefix=$prefix");
        return ref $l ? scalar @{ $l->{requests} } : 0;
    };
    my (@lines, @bodies, @retries);
    for my $f (@faults) {
        my ($name, $rule, $want) = @$f;
        my $a0 = $attempts->();
        $s->mock('POST', '/__mock/behaviour',
                 { prefix => $prefix, count => -1, %$rule });
        my @res = $s->_parallel($k, sub {
            $s->call_tool('github_list_repos', local_addr => '127.0.0.2',
                          timeout => 10) });
        $s->mock('DELETE', '/__mock/behaviour');
        my $tries = $attempts->() - $a0;
        my %ok = map { $_ => 1 } @$want;
        my @got = map { key_of($_) } @res;
        my $ok = !grep { !$ok{$_} } @got;
        my $max = max_of(map { $_->{secs} } @res) // 0;
        my $min = (sort { $a <=> $b } map { $_->{secs} } @res)[0] // 0;
        my $timing = $name eq 'stall' ? ($min >= 0.9 && $max < 1.6) : $max < 1.6;
        _check($r, $ok && $timing, "$name: " . join(' or ', @$want),
               join(', ', @got) . ' in ' . ms($min) . '-' . ms($max) . ' ms');
        push @bodies, map { $_->{raw} } @res;
        my %n;
        $n{ (split ' ', $_)[0] }++ for @got;
        push @lines, sprintf '%s=%s(%sms)', $name,
            ($ok ? join('+', map { $n{$_} == $k ? $_ : "${_}x$n{$_}" } sort keys %n)
                 : 'WRONG:' . join('/', @got)), ms($max);
        push @retries, "$name $tries";
    }
    my $after = $s->call_tool('github_list_repos', local_addr => '127.0.0.2');
    _check($r, $after->{status} eq '200', 'a normal call works after the faults',
           key_of($after));
    my $res = $s->wrk_wait($w);

    # the token really went to the provider, so its absence below means something
    my $seen = $s->mock('GET', "/__mock/requests?prefix=$prefix");
    my $sent = grep { ($_->{headers}{authorization} // '') eq "Bearer $sec{github_token}" }
               @{ ref $seen ? $seen->{requests} : [] };
    _check($r, $sent > 0, 'the end user\'s token was sent to the provider', "$sent requests");
    my $errlog = $s->error_log;
    my $acclog = slurp("$s->{dir}/logs/access.log");
    my $debug = () = $errlog =~ /\[debug\]/g;
    _check($r, $debug > 0, 'the probes were logged at debug level', "$debug debug lines");
    my @leaks;
    for my $n (sort keys %sec) {
        my $v = $sec{$n};
        push @leaks, "$n in an answer" if grep { index($_, $v) >= 0 } @bodies, $after->{raw};
        push @leaks, "$n in error.log" if index($errlog, $v) >= 0;
        push @leaks, "$n in access.log" if index($acclog, $v) >= 0;
    }
    _check($r, !@leaks, 'no token, key or secret in any answer or log', join ', ', @leaks);
    my %c = %{ $res->{counts} };
    _check($r, $res->{socket_errors} == 0 && ($c{200} || 0) == $res->{answered}
               && $res->{answered} > 0 && $res->{leaks} == 0,
           'concurrent tool calls unaffected: all 200',
           counts_str(\%c) . ' errors ' . join(' ', %{ $res->{errors} }));
    _check($r, defined $res->{lat_max} && $res->{lat_max} < 0.5,
           'concurrent tool calls never waited for a faulty one (wrk max < 500 ms)',
           'max ' . ms($res->{lat_max}) . ' ms');
    my @bad = $s->bad_log_lines;
    _check($r, !@bad, 'no alert/crit/emerg or crashed worker in the error log',
           join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);

    $r->{details} = [ "provider requests for $k calls each (libcurl retries "
                      . 'a request that failed on a reused connection): '
                      . join(', ', @retries) ];
    $r->{summary} = sprintf '%s | after: %s | secrets found: %d (answers, error.log with %d debug lines, access.log) | '
        . 'concurrent load: %s, wrk p99 %s ms max %s ms',
        join(' ', @lines), key_of($after), scalar @leaks, $debug,
        counts_str(\%c), ms($res->{lat_p99}), ms($res->{lat_max});
    $s->stop_nginx;
    return $r;
}

# run $code in $n child processes at once; their results (hashes)
sub _parallel {
    my ($s, $n, $code) = @_;
    my @kids;
    for my $i (1 .. $n) {
        my $file = "$s->{dir}/wrk/par.$i";
        my $pid = fork // die "fork: $!\n";
        if (!$pid) {
            my $res = $code->();
            open my $fh, '>', $file or POSIX::_exit(1);
            print $fh $JSON->encode({ %$res, body => "$res->{body}", raw => "$res->{raw}" });
            close $fh;
            POSIX::_exit(0);
        }
        push @kids, [ $pid, $file ];
    }
    my @out;
    for (@kids) {
        waitpid($_->[0], 0);
        my $t = slurp($_->[1]);
        push @out, $t ? $JSON->decode($t) : { status => '', body => '', raw => '',
                                               secs => 0, error => 'child failed' };
        unlink $_->[1];
    }
    return @out;
}

# =========================================================================
# 4. nginx -s reload every second during load
# =========================================================================

sub reload {
    my ($s, %o) = @_;
    my $n = $o{reloads} // 10;
    my $close = $o{close} ? 1 : 0;
    my $conns = $o{conns} || 8;
    my $mode = $close ? 'a new connection per request' : 'keep-alive connections';
    my $r = _result(4, $close ? 'reload-close' : 'reload',
                    "nginx -s reload every second for ${n}s under load ($mode), 2 workers");
    $s->say("[4] reload: $n reloads, one a second, under load ($mode)");
    $s->_start($r, workers => 2) or return $r;
    my $master = $s->master_pid;
    my $rss0 = rss_kb($master);
    my $storm = sub {
        my ($name, $what) = @_;
        my $w = $s->wrk_start(name => $name, what => $what, duration => $n + 1,
                              conns => $conns, threads => 2, close => $close);
        my ($fails, @out) = (0);
        my $t0 = time;
        for my $i (1 .. $n) {
            sleep max_of(0, $t0 + $i - 0.5 - time);
            my ($ok, $out) = $s->reload_nginx;
            $fails++, push @out, $out unless $ok;
        }
        return ($s->wrk_wait($w), $fails, join '', @out);
    };
    my ($res, $fails, $out) = $storm->("reload-$close", 'call');
    my $deadline = time + 5;
    my @kids = $s->children;
    while (@kids != 2 && time < $deadline) { sleep 0.05; @kids = $s->children }
    my $rss1 = rss_kb($master);
    my @alerts = grep { /open socket .* left in connection/ } split /\n/, $s->error_log;

    # keep-alive: plain nginx closes an old worker's keep-alive connections
    # at a reload, and wrk does not retry a request that met the close
    # (RFC 9112 9.3.1 lets clients retry). The same storm against a plain
    # nginx location of the same server shows what that alone costs.
    my $ctl;
    if (!$close && $o{control}) {
        ($ctl) = $storm->("reload-control", 'static');
    }

    my %c = %{ $res->{counts} };
    my $e = $res->{errors};
    _check($r, $fails == 0, "$n reloads accepted", $out);
    _check($r, ($s->master_pid // 0) == $master, 'same master (never restarted)');
    if ($close) {
        _check($r, $res->{answered} > 0 && $res->{socket_errors} == 0,
               'zero connection errors', join(' ', %$e));
    } else {
        _check($r, $res->{answered} > 0 && $e->{connect} + $e->{write} + $e->{timeout} == 0
                   && $e->{read} <= $conns * $n,
               "connection errors: only nginx's close of keep-alive connections "
               . "at a reload (read errors <= $conns connections x $n reloads)",
               join(' ', %$e));
    }
    {
        local $r->{todo} = $o{todo};
        _check($r, $res->{answered} > 0 && ($c{200} || 0) == $res->{answered},
               'zero failed requests: every answer 200', counts_str(\%c)
               . ' ' . ($res->{sample} // ''));
        _check($r, !@alerts, 'old workers exit only when their requests are answered '
               . '(no "open socket left" alert)',
               scalar(@alerts) . " alerts, e.g. " . ($alerts[0] // ''));
    }
    _check($r, @kids == 2, 'old workers gone within 5 s of the last reload',
           join '; ', map { "$_->[0] $_->[1]" } @kids);
    my @bad = grep { !/open socket .* left in connection|\] \d+#\d+: aborting$/ }
              $s->bad_log_lines;
    _check($r, !@bad, 'no other alert/crit/emerg or crashed worker in the error log',
           join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
    $r->{summary} = sprintf '%d reloads: answered=%d %s | socket errors %d '
        . '(connect %d read %d write %d timeout %d)%s | "open socket left" alerts %d | '
        . 'wrk p99 %s ms max %s ms | master RSS %d -> %d kB | children after: %d',
        $n, $res->{answered}, counts_str(\%c), $res->{socket_errors},
        @$e{qw(connect read write timeout)},
        ($ctl ? sprintf(' [plain nginx control: %d answers, read errors %d]',
                        $ctl->{answered}, $ctl->{errors}{read}) : ''),
        scalar @alerts, ms($res->{lat_p99}), ms($res->{lat_max}),
        $rss0 // 0, $rss1 // 0, scalar @kids;
    $s->stop_nginx;
    return $r;
}

# =========================================================================
# 5. A worker killed with SIGKILL during load
# =========================================================================

sub worker_kill {
    my ($s, %o) = @_;
    my $dur = $o{duration} // 6;
    my $at = $o{at} // 2;
    my $r = _result(5, 'worker-kill', 'a worker killed with SIGKILL under load, 2 workers');
    $s->say("[5] worker-kill: SIGKILL to one of 2 workers at ${at}s of ${dur}s of load");
    $s->_start($r, workers => 2) or return $r;
    my $master = $s->master_pid;
    my $w = $s->wrk_start(name => 'worker-kill', duration => $dur,
                          conns => $o{conns} || 8, threads => 2, log => 1);
    sleep $at;
    my @before = $s->worker_pids;
    # the worker with the most client connections
    my %cc = map { $_ => $s->client_conns($_) } @before;
    my ($victim) = sort { $cc{$b} <=> $cc{$a} } @before;
    my $t_kill = time;
    kill 'KILL', $victim;
    my ($t_new, @now);
    while (time < $t_kill + 3) {
        @now = $s->worker_pids;
        if (@now == 2 && !grep { $_ == $victim } @now) { $t_new = time; last }
        sleep 0.005;
    }
    my $res = $s->wrk_wait($w);
    my @ok = map { $s->call_tool('faults_echo') } 1 .. 20;
    my $ok = grep { $_->{status} eq '200' } @ok;

    my %c = %{ $res->{counts} };
    my $non200 = $res->{answered} - ($c{200} || 0);
    my $failed = $res->{socket_errors} + $non200;
    my @ev = @{ $res->{events} || [] };
    my $late = grep { $_->[1] ne '200' && $_->[0] > $t_kill + 1 } @ev;
    my $after = grep { $_->[0] > $t_kill + 0.5 } @ev;
    _check($r, defined $t_new, 'the master started a new worker',
           "workers @before, killed $victim, now @now");
    _check($r, ($s->master_pid // 0) == $master, 'same master');
    _check($r, $failed <= $cc{$victim},
           'failed requests <= the connections the killed worker held',
           "failed $failed (socket errors $res->{socket_errors}, non-200 $non200), "
           . "connections on the victim $cc{$victim}");
    _check($r, $after > 0 && $late == 0, 'service continues: all 200 from 1 s after the kill',
           "$after answers after, $late errors");
    _check($r, $ok == 20, '20 calls after the run: all 200', "$ok of 20");
    my @bad = $s->bad_log_lines(qr/worker process $victim exited on signal 9/);
    _check($r, !@bad, 'error log: only the expected "exited on signal 9"',
           join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
    $r->{summary} = sprintf 'killed worker %d holding %d of %d connections; new worker after %s ms | '
        . 'failed %d (connect %d read %d write %d timeout %d, non-200 %d) of %d | '
        . 'after: %d answers, %d errors; 20/20 probe calls %s',
        $victim, $cc{$victim}, $o{conns} || 8,
        defined $t_new ? ms($t_new - $t_kill) : '-', $failed,
        @{ $res->{errors} }{qw(connect read write timeout)}, $non200,
        $res->{answered} + $res->{socket_errors}, $after, $late,
        $ok == 20 ? 'ok' : "only $ok ok";
    $s->stop_nginx;
    return $r;
}

# =========================================================================
# 6. Leak check: worker RSS over 200k tool calls
# =========================================================================

sub leak {
    my ($s, %o) = @_;
    my $step = $o{step} // 20000;
    my $steps = $o{steps} // 10;
    my $limit_kb = $o{limit_kb} // 10240;
    my $total = $step * $steps;
    # errors => 1: the provider answers every call 500 + JSON, so each tool
    # call takes the 502 provider_error path instead
    my $errors = $o{errors} ? 1 : 0;
    my $expect = $errors ? '502 provider_error' : '200';
    my $r = _result(6, $errors ? 'leak-errors' : 'leak',
                    sprintf 'worker RSS after %dk vs %dk tool calls%s, 1 worker',
                    $total / 1000, $step / 1000,
                    $errors ? ' answered 502 provider_error (provider 500)' : '');
    $s->say("[6] leak: $steps x $step tool calls ($expect), RSS after each");
    $s->_start($r, workers => 1, access_log => 0) or return $r;
    $s->mock('DELETE', '/__mock/behaviour');   # the mock's fast /bench/echo path
    $s->mock('POST', '/__mock/behaviour',
             { prefix => '/bench/echo', count => -1, status => 500,
               body => { error => 'internal', message => 'injected by bench/faults' } })
        if $errors;
    my ($worker) = $s->worker_pids;
    my $threads = 1;    # one wrk thread: its quota ends the run exactly
    my $calls = sub {
        my $st = $s->mock('GET', '/__mock/stats');
        return ref $st ? ($st->{requests_by_prefix}{bench} // 0) : 0;
    };
    # warm-up: connection caches, pools, allocator arenas
    my $wu = $s->wrk_wait($s->wrk_start(name => 'leak-warmup', duration => 60,
                                        conns => 8, threads => $threads,
                                        quota => int(($o{warmup} // 2000) / $threads)));
    my $base = $calls->();
    my $rss_start = rss_kb($worker);
    my (@points, $bad, $errs, $done_ok);
    $bad = $errs = $done_ok = 0;
    my $t0 = time;
    for my $i (1 .. $steps) {
        my $res = $s->wrk_wait($s->wrk_start(name => "leak-$i", duration => 300,
                                             conns => 8, threads => $threads,
                                             quota => int($step / $threads)));
        $bad += $res->{answered} - ($res->{counts}{$expect} || 0);
        $errs += $res->{socket_errors};
        $done_ok += $res->{counts}{$expect} || 0;
        my $n = $calls->() - $base;
        push @points, [ $n, rss_kb($worker) // 0 ];
        $s->say(sprintf '    after %d calls: VmRSS %d kB', $n, $points[-1][1]);
    }
    my $secs = time - $t0;
    my ($n1, $r1) = @{ $points[0] };
    my ($n2, $r2) = @{ $points[-1] };
    my $alive = ($s->worker_pids)[0] // 0;
    _check($r, $alive == $worker, 'the same worker served every call', "$worker -> $alive");
    _check($r, $bad == 0 && $errs == 0, "every call answered $expect",
           "other answers $bad, socket errors $errs");
    $s->mock('DELETE', '/__mock/behaviour') if $errors;
    _check($r, $n2 >= $total * 0.99, "about $total calls done", "$n2 calls");
    _check($r, $r2 - $r1 <= $limit_kb,
           sprintf('VmRSS after %d calls within %d MB of after %d', $n2, $limit_kb / 1024, $n1),
           "$r1 kB -> $r2 kB");
    $r->{summary} = sprintf 'VmRSS after %d calls: %d kB, after %d calls: %d kB, growth %+d kB '
        . '(limit %d kB) | start (after warm-up) %d kB | %d calls in %.0f s (%.0f/s), %s %d, other %d, socket errors %d',
        $n1, $r1, $n2, $r2, $r2 - $r1, $limit_kb, $rss_start // 0, $n2 + 0,
        $secs, $n2 / ($secs || 1), $expect =~ s/ /:/r, $done_ok, $bad, $errs;
    $r->{details} = [ 'RSS curve (calls:kB): ' . join ' ', map { "$_->[0]:$_->[1]" } @points ];
    $s->stop_nginx;
    return $r;
}

1;
