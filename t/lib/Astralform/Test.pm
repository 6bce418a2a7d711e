package Astralform::Test;

# Helpers for multi-step Perl test scripts (plain Test::More), usable under
# both the bundled Test::Nginx::Socket and the real one.  Everything talks to
# the servers started by t/run.sh through the TEST_NGINX_* environment.
#
#   use Test::More;
#   use lib 't/lib';
#   use Astralform::Test;
#
#   start_nginx(http_config => '...',
#               config => 'location /v1/ { astralform_api; }')
#       or BAIL_OUT("nginx: $Astralform::Test::StartError");
#       # same sections as the data blocks: main_config, http_config, config;
#       # start_nginx($string) means config => $string.  $TEST_NGINX_FOO is
#       # expanded, TEST_NGINX_LOAD_MODULES are loaded, the server runs from
#       # $TEST_NGINX_SERVROOT or t/servroot (daemon, master on, error_log
#       # debug) and listens on $TEST_NGINX_SERVER_PORT.  Any running nginx
#       # of that servroot is stopped first; the error log is truncated.
#       # Other options: workers, master, log_level, worker_connections,
#       # env (arrayref), post_main_config, no_root_location, port.
#
#   nginx_conf(%sections)     # (export it) the nginx.conf text; servroot =>
#                             # DIR puts its logs/pid elsewhere, e.g. for
#                             # `nginx -t -p DIR/`
#
#   my ($status, $headers, $body) = http_req('POST', '/v1/x',
#           ['Authorization' => 'Bearer k',
#            'Content-Type' => 'application/json'],
#           '{"a":1}', { timeout => 5 });
#       # headers in: arrayref of pairs or hashref; Host and Connection: close
#       # are added unless given, Content-Length whenever a body is given.
#       # $headers out: hashref, lowercased names, repeated headers joined
#       # with ", "; $body is de-chunked.  $status is '' when nothing came
#       # back (refused or timed out).  Options: timeout (s, default 5), port.
#
#   redis_cmd('HGETALL', 'some:key')
#       # one command over RESP to 127.0.0.1:$TEST_NGINX_REDIS_PORT; returns a
#       # string, integer, undef (nil) or arrayref; dies on an error reply.
#
#   reload_nginx(%sections)   # rewrite nginx.conf (if sections given), HUP,
#                             # wait for the old workers to exit
#   stop_nginx()              # TERM the master and wait until it is gone
#   error_log_text()          # contents of t/servroot/logs/error.log
#   truncate_error_log()
#   free_port()               # a port nothing listens on, for a 2nd server
#   in_servroot($dir, sub { start_nginx(..., port => free_port()) })
#       # runs the code with every helper pointed at servroot $dir: a second
#       # nginx instance

use strict;
use POSIX ();
use warnings;

use Cwd ();
use Exporter 'import';
use File::Path ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes ();

our @EXPORT = qw(start_nginx stop_nginx reload_nginx http_req redis_cmd
                 error_log_text truncate_error_log parallel);
our @EXPORT_OK = (@EXPORT, qw(nginx_conf expand_env nginx_pid nginx_running
                              start_nginx_raw http_raw parse_http_response
                              prepare_servroot wait_port $ServRoot $ErrLog
                              free_port in_servroot missing_part));
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $ServRoot = $ENV{TEST_NGINX_SERVROOT}
                || Cwd::cwd() . '/t/servroot';
our $ConfFile = "$ServRoot/conf/nginx.conf";
our $ErrLog = "$ServRoot/logs/error.log";
our $PidFile = "$ServRoot/logs/nginx.pid";
our $StderrFile = "$ServRoot/logs/stderr.log";
our $Binary = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $StartError = '';

# A real part (a browser, a Redis tool) the file needs is missing: the run
# fails, unless ASTRALFORM_TEST_ALLOW_SKIP=1 asks to skip (as t/run.sh does
# for the servers it starts).
sub missing_part {
    my ($why) = @_;
    Test::More::BAIL_OUT("$why (set ASTRALFORM_TEST_ALLOW_SKIP=1 to skip)")
        unless $ENV{ASTRALFORM_TEST_ALLOW_SKIP};
    Test::More::plan(skip_all => $why);
}

sub server_port { $ENV{TEST_NGINX_SERVER_PORT} || 1984 }

# Replace $TEST_NGINX_FOO by the environment variable, as Test::Nginx does.
sub expand_env {
    my ($text) = @_;
    return $text unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : die "No environment $1 defined.\n"
    }ge;
    return $text;
}

# Build nginx.conf the way Test::Nginx::Socket lays it out.  Options:
# main_config http_config config post_main_config workers master log_level
# worker_connections no_root_location env (arrayref) port, and servroot
# (default $ServRoot) for a config run elsewhere: even `nginx -t` creates
# the pid file it names, and an empty one in the servroot confuses
# Test::Nginx::Socket.
sub nginx_conf {
    my %o = @_;
    my $root = $o{servroot} || $ServRoot;
    my $port = $o{port} || server_port();
    my $workers = $o{workers} || 1;
    my $master = $o{master} || $ENV{TEST_NGINX_MASTER_PROCESS} || 'on';
    my $level = $o{log_level} || $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
    my $wc = $o{worker_connections} || 64;
    my $main = expand_env($o{main_config} // '');
    my $http = expand_env($o{http_config} // '');
    my $config = expand_env($o{config} // '');
    my $post = expand_env($o{post_main_config} // '');

    my @mods = grep { length } split /\s+/,
                                     $ENV{TEST_NGINX_LOAD_MODULES} // '';
    my $load = join '', map { "load_module $_;\n" } @mods;

    my $env = join '', map { my $v = $_; $v = "'$v'" if $v =~ /\s/;
                             "env $v;\n" } @{ $o{env} || [] };

    my $temp = '';
    for my $t (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $http =~ /\b${t}_temp_path\b/;
        $temp .= "    ${t}_temp_path $root/${t}_temp;\n";
    }

    my $root_loc = $o{no_root_location} ? '' : <<"_EOC_";
        location / {
            root $root/html;
            index index.html index.htm;
        }
_EOC_

    my $user = '';
    if (defined $ENV{TEST_NGINX_WORKER_USER}) {
        $user = "user $ENV{TEST_NGINX_WORKER_USER};\n";
    } elsif ($> == 0) {
        $user = "user root;\n";
    }

    return <<"_EOC_";
${load}worker_processes  $workers;
daemon on;
master_process $master;
error_log $root/logs/error.log $level;
pid       $root/logs/nginx.pid;
$user$env
$main

http {
    access_log $root/logs/access.log;
$temp
    default_type text/plain;
    keepalive_timeout  68;

$http

    server {
        listen          $port;
        server_name     'localhost';
        client_max_body_size 30M;

        # Begin test case config...
$config
        # End test case config.

$root_loc    }
}

$post

events {
    accept_mutex off;
    worker_connections  $wc;
}
_EOC_
}

# Fresh html/ and temp dirs for a new server, as Test::Nginx does.
sub prepare_servroot {
    File::Path::remove_tree(glob("$ServRoot/*_temp"), "$ServRoot/html");
    for my $d ('', qw(/conf /logs /html)) {
        File::Path::make_path("$ServRoot$d") unless -d "$ServRoot$d";
    }
    _spew("$ServRoot/html/index.html",
          '<html><head><title>It works!</title></head>'
          . '<body>It works!</body></html>');
}

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

sub _spew {
    my ($f, $s) = @_;
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $s;
    close $fh or die "$f: $!\n";
}

sub nginx_pid {
    my $pid = _slurp($PidFile);
    return undef unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    return $1;
}

# True when $pid is alive and is an nginx process (a stale pid file must not
# make us signal an unrelated process).
sub _is_nginx {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    my $cmd = _slurp("/proc/$pid/cmdline");
    return 1 unless defined $cmd;    # no procfs: trust kill 0
    return $cmd =~ /nginx/ ? 1 : 0;
}

sub nginx_running { _is_nginx(nginx_pid()) }

# The daemonized master is not our child: once it exits it stays a zombie
# until init reaps it, which can take a second.
sub _alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    my $stat = _slurp("/proc/$pid/stat");
    return 1 unless defined $stat;
    return $stat =~ /^\d+ \(.*\) Z/s ? 0 : 1;
}

sub stop_nginx {
    my $pid = nginx_pid();
    if (_is_nginx($pid)) {
        kill 'TERM', $pid;
        my $deadline = Time::HiRes::time() + 5;
        while (_alive($pid)) {
            last if Time::HiRes::time() > $deadline;
            Time::HiRes::sleep(0.01);
        }
        if (_alive($pid)) {
            warn "nginx $pid ignored SIGTERM, killing its process group\n";
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            Time::HiRes::sleep(0.1);
        }
    }
    unlink $PidFile;
    return 1;
}

sub truncate_error_log {
    if (-e $ErrLog) {
        truncate $ErrLog, 0 or warn "truncate $ErrLog: $!\n";
    }
}

sub error_log_text { _slurp($ErrLog) // '' }

# Is a TCP socket listening on $port?  Read from procfs, because a probe
# connection would leave a "client closed connection" line in the log;
# undef when procfs cannot tell.
sub _listening {
    my ($port) = @_;
    my $seen;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        $seen = 1;
        while (<$in>) {
            my (undef, undef, $local, undef, $state) = split /\s+/;
            next unless defined $state && $state eq '0A';
            return 1 if $local =~ /:([0-9A-F]{4})$/ && hex($1) == $port;
        }
    }
    return $seen ? 0 : undef;
}

sub wait_port {
    my ($port, $timeout, $quiet) = @_;
    my $deadline = Time::HiRes::time() + ($timeout || 5);
    while (1) {
        my $l = $quiet ? _listening($port) : undef;
        if (defined $l) {
            return 1 if $l;
            return 0 if Time::HiRes::time() > $deadline;
            Time::HiRes::sleep(0.02);
            next;
        }
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      Timeout => 1);
        if ($s) {
            close $s;
            return 1;
        }
        return 0 if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# Write the config, stop the old server, start nginx.  Returns
# (exit_status, stderr_text): status 0 means it started (daemonized), and then
# the pid file and the listening port have been waited for.  keep_log => 1
# leaves the error log alone.
sub start_nginx_raw {
    my ($conf, %o) = @_;
    stop_nginx();
    prepare_servroot();
    $o{setup}->() if $o{setup};
    _spew($ConfFile, $conf);
    unlink $StderrFile;
    if ($o{keep_log}) {
        # nothing
    } elsif (-e $ErrLog) {
        truncate_error_log();
    }

    my $cmd = join ' ', map { _shq($_) } $Binary, '-p', "$ServRoot/",
                                         '-c', $ConfFile, '-e', $ErrLog;
    system("$cmd >/dev/null 2>" . _shq($StderrFile));
    my $status = $?;
    my $stderr = _slurp($StderrFile) // '';
    return ($status, $stderr) if $status != 0 || $o{no_wait};

    my $deadline = Time::HiRes::time() + 5;
    until (nginx_pid() || Time::HiRes::time() > $deadline) {
        Time::HiRes::sleep(0.01);
    }
    wait_port($o{port} || server_port(), 5, 1)
        or return (-1, $stderr . "nginx does not accept connections\n");
    return (0, $stderr);
}

sub _shq {
    my ($s) = @_;
    return $s if $s =~ m{^[-\w./=:,+]+$};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

sub start_nginx {
    my %o = @_ == 1 ? (config => $_[0]) : @_;
    my $conf = eval { nginx_conf(%o) };
    if (!defined $conf) {
        $StartError = $@;
        return 0;
    }
    my ($status, $stderr) = start_nginx_raw($conf, port => $o{port});
    $StartError = $status == 0 ? '' : "exit status $status: $stderr";
    return $status == 0;
}

# Rewrite the config (when sections are given) and send SIGHUP; returns once
# the workers that were running have exited (at most 5 s), so the next
# request is served with the new configuration.
sub reload_nginx {
    my %o = @_ == 1 ? (config => $_[0]) : @_;
    my $pid = nginx_pid();
    return 0 unless _is_nginx($pid);
    _spew($ConfFile, nginx_conf(%o)) if %o;
    my @old = _children($pid);
    kill 'HUP', $pid;
    my $deadline = Time::HiRes::time() + 5;
    while (grep { _alive($_) } @old) {
        last if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.01);
    }
    return 1;
}

sub _children {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = _slurp($stat) // next;
        push @kids, $1 if $s =~ /^(\d+) \(.*\) \S+ (\d+) /s && $2 == $ppid;
    }
    return @kids;
}

# Send raw bytes, read until the peer closes or $timeout seconds pass.
# Returns ($response, $error) where $error is undef, 'timeout' or a connect
# error message.
sub http_raw {
    my ($req, $timeout, $port) = @_;
    $timeout ||= 3;
    $port ||= server_port();
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => $timeout)
        or return ('', "connect to 127.0.0.1:$port failed: $!");
    binmode $sock;
    my $deadline = Time::HiRes::time() + $timeout;
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $req) {
        my $left = $deadline - Time::HiRes::time();
        return ('', 'timeout') if $left <= 0 || !$sel->can_write($left);
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        last unless defined $n;    # peer closed early: read what it said
        $off += $n;
    }
    my $resp = '';
    while (1) {
        my $left = $deadline - Time::HiRes::time();
        return ($resp, 'timeout') if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, my $buf, 65536);
        last if !$n;
        $resp .= $buf;
    }
    close $sock;
    record_answer($req, $resp);
    return ($resp, undef);
}

# With TEST_NGINX_ANSWERS set (t/run.sh does), every whole answer of the
# API is appended to that file as a JSON line {method, path, status, type,
# body}; t/098-openapi.t checks them all against docs/openapi.json.
sub record_answer {
    my ($req, $resp) = @_;
    my $file = $ENV{TEST_NGINX_ANSWERS} or return;
    my ($method, $path) = $req =~ m{\A([A-Z]+) (/v1/\S*) HTTP/1\.[01]\r\n}
        or return;
    my $r = eval { parse_http_response($resp) } or return;
    return unless $r->{code} =~ /\A\d{3}\z/;
    require JSON::PP;
    my $line = JSON::PP->new->canonical->encode({
        method => $method, path => $path, status => 0 + $r->{code},
        type => scalar($r->{headers}->header('Content-Type')) // '',
        body => $r->{body} });
    open my $fh, '>>', $file or return;
    print $fh "$line\n";
    close $fh;
}

# Split a raw HTTP/1.x response.  Returns a hashref: code, message,
# raw_headers (up to the blank line), headers (HTTP::Headers), body
# (de-chunked), left (bytes after the last chunk).
sub parse_http_response {
    my ($raw) = @_;
    require HTTP::Headers;
    my %r = (code => '', message => '', raw_headers => '', body => '',
             left => '', headers => HTTP::Headers->new);
    return \%r unless defined $raw && length $raw;
    my ($head, $body) = split /\r?\n\r?\n/, $raw, 2;
    $body //= '';
    $r{raw_headers} = "$head\r\n";
    my @lines = split /\r?\n/, $head;
    my $status = shift @lines // '';
    @r{qw(code message)} = ($1, $2 // '')
        if $status =~ m{^HTTP/\d\.\d\s+(\d{3})(?:\s+(.*))?};
    my $last;
    for my $l (@lines) {
        if ($l =~ /^\s+(.*)/ && defined $last) {
            $r{headers}->push_header($last, $1);
        } elsif ($l =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
            $r{headers}->push_header($1, $2);
            $last = $1;
        }
    }
    my $te = $r{headers}->header('Transfer-Encoding') // '';
    if ($te =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r?\n//) {
            my $n = hex $1;
            if ($n == 0) {
                $body =~ s/^(?:[^\r\n]+\r?\n)*\r?\n//;    # trailers
                last;
            }
            $out .= substr($body, 0, $n, '');
            $body =~ s/^\r?\n//;
        }
        $r{left} = $body;
        $body = $out;
    }
    $r{body} = $body;
    return \%r;
}

sub http_req {
    my ($method, $path, $headers, $body, $opt) = @_;
    $opt ||= {};
    utf8::encode($body) if defined $body && utf8::is_utf8($body);
    my @h = ref $headers eq 'HASH' ? %$headers : @{ $headers || [] };
    my (%seen, $req);
    $req = "$method $path HTTP/1.1\r\n";
    while (my ($k, $v) = splice @h, 0, 2) {
        $seen{lc $k} = 1;
        $req .= "$k: $v\r\n";
    }
    $req .= "Host: localhost\r\n" unless $seen{host};
    $req .= "Connection: close\r\n" unless $seen{connection};
    if (defined $body && !$seen{'content-length'}
        && !$seen{'transfer-encoding'})
    {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    }
    $req .= "\r\n" . ($body // '');

    my ($raw) = http_raw($req, $opt->{timeout} || 5, $opt->{port});
    my $r = parse_http_response($raw);
    my %out;
    for my $k ($r->{headers}->header_field_names) {
        $out{lc $k} = scalar $r->{headers}->header($k);
    }
    return ($r->{code}, \%out, $r->{body}, $r->{raw_headers});
}

# --- Redis -----------------------------------------------------------------

sub _redis_read {
    my ($sock, $buf, $n) = @_;    # $n bytes, or a line when undef
    while (1) {
        if (defined $n) {
            return substr($$buf, 0, $n, '') if length $$buf >= $n;
        } elsif ($$buf =~ s/^(.*?)\r\n//s) {
            return $1;
        }
        my $sel = IO::Select->new($sock);
        die "redis: timeout\n" unless $sel->can_read(5);
        my $got = sysread($sock, my $chunk, 65536);
        die "redis: connection closed\n" unless $got;
        $$buf .= $chunk;
    }
}

sub _redis_reply {
    my ($sock, $buf) = @_;
    my $line = _redis_read($sock, $buf);
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+';
    return $v + 0 if $t eq ':';
    die "redis error: $v\n" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        my $s = _redis_read($sock, $buf, $v + 2);
        return substr($s, 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [map { _redis_reply($sock, $buf) } 1 .. $v];
    }
    die "redis: bad reply line '$line'\n";
}

sub redis_cmd {
    my @args = @_;
    my $port = $ENV{TEST_NGINX_REDIS_PORT}
        or die "redis_cmd: TEST_NGINX_REDIS_PORT is not set\n";
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => 5)
        or die "redis_cmd: connect to 127.0.0.1:$port failed: $!\n";
    binmode $sock;
    my $req = '*' . scalar(@args) . "\r\n";
    for my $arg (@args) {
        $arg //= '';
        utf8::encode($arg) if utf8::is_utf8($arg);
        $req .= '$' . length($arg) . "\r\n$arg\r\n";
    }
    print {$sock} $req or die "redis_cmd: write failed: $!\n";
    my $buf = '';
    my $reply = _redis_reply($sock, \$buf);
    close $sock;
    return $reply;
}

sub free_port {
    for (1 .. 50) {
        my $p = 20000 + int(rand(12000));
        my $s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $p,
                                      Listen => 1, Proto => 'tcp') or next;
        close $s;
        return $p;
    }
    die "no free port\n";
}

sub in_servroot {
    my ($root, $code) = @_;
    local $ServRoot = $root;
    local $ConfFile = "$root/conf/nginx.conf";
    local $ErrLog = "$root/logs/error.log";
    local $PidFile = "$root/logs/nginx.pid";
    local $StderrFile = "$root/logs/stderr.log";
    return $code->();
}


# runs $n copies of $code at once in child processes; their results, in
# order (what each printed: its return value, or "died")
sub parallel {
    my ($n, $code) = @_;
    my @kids;
    for (1 .. $n) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            print $wr (eval { $code->() } // 'died');
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [ $pid, $rd ];
    }
    my @out;
    for my $k (@kids) {
        my $rd = $k->[1];
        local $/;
        push @out, scalar(<$rd>) // '';
        waitpid($k->[0], 0);
    }
    return @out;
}

1;
