package Test::Nginx::Socket;

# Bundled implementation of the Test::Nginx::Socket interface (loaded by
# t/lib/Test/Nginx/Socket.pm only when openresty's module is not installed).
# It follows the real module's semantics and test names for this subset:
#
# Functions: plan (via `use ... 'no_plan'` or `tests => N`), run_tests,
#   blocks, no_shuffle, repeat_each, no_long_string, no_root_location,
#   log_level, master_on, master_off, workers, worker_connections,
#   env_to_nginx, add_block_preprocessor, server_port, server_name,
#   server_root, html_dir, timeout, check_accum_error_log, bail_out, is_str
#   and everything Test::Base / Test::More export.
#
# Sections: main_config, http_config, config, post_main_config, user_files,
#   init, request (string, or eval returning an arrayref of requests; then
#   the expectations are arrayrefs too), more_headers, timeout, abort,
#   wait, log_level, error_code, error_code_like, response_headers (!Name
#   means absent), response_headers_like, raw_response_headers_like,
#   raw_response_headers_unlike, response_body (string or qr//),
#   response_body_like, response_body_unlike, ignore_response, error_log,
#   no_error_log, grep_error_log, grep_error_log_out, must_die, plus
#   Test::Base's ONLY, SKIP, LAST and filters (eval, chomp, ...).
#
# Environment: TEST_NGINX_BINARY, TEST_NGINX_SERVER_PORT (1984),
#   TEST_NGINX_LOAD_MODULES, TEST_NGINX_SERVROOT (t/servroot),
#   TEST_NGINX_LOG_LEVEL (debug), TEST_NGINX_MASTER_PROCESS (on here; the
#   real module defaults to off, t/run.sh sets it to on for both),
#   TEST_NGINX_TIMEOUT (3), TEST_NGINX_NO_SHUFFLE,
#   TEST_NGINX_FORCE_RESTART_ON_TEST (1: a fresh nginx for every block;
#   0: keep nginx running while the generated nginx.conf is unchanged),
#   TEST_NGINX_NO_CLEAN (leave nginx running at the end), TEST_NGINX_VERBOSE.
#
# Deviations: a block whose nginx fails to start, or whose config uses an
# undefined $TEST_NGINX_ variable, fails instead of bailing out the run;
# --- init code is evaluated in package Test::Nginx::Util like the real one,
# so call helpers there fully qualified (Astralform::Test::redis_cmd).
# A block without --- config reuses the running nginx, as in the real one;
# if it has main_config, http_config or must_die it fails here, because the
# real one would silently ignore them (or bail out).

use strict;
use warnings;

use Astralform::Test qw(:all);
use Exporter ();
use List::Util qw(shuffle);
use Scalar::Util qw(looks_like_number);
use Test::Base ();
use Test::LongString ();
use Test::More ();
use Time::HiRes ();

our $VERSION = '0.01_compat';

our @EXPORT = qw(run_tests run_test repeat_each no_shuffle no_long_string
                 no_root_location log_level master_on master_off workers
                 worker_connections env_to_nginx add_block_preprocessor
                 server_port server_name server_root html_dir timeout
                 check_accum_error_log use_hup bail_out is_str);

our $RepeatEach = 1;
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString = 0;
our $NoRootLocation = 0;
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $Master = $ENV{TEST_NGINX_MASTER_PROCESS} || 'on';
our $Workers = 1;
our $WorkerConnections = 64;
our @EnvToNginx;
our @BlockPreprocessors;
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                  || 1984;
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $ForceRestart = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $Verbose = $ENV{TEST_NGINX_VERBOSE};
our $CheckAccumErrLog = 0;

my ($PrevConf, $Started, $ErrLogPos);

sub import {
    my $class = shift;
    my $caller = caller;

    # Test::Base reads the blocks from main::DATA, passes the plan to
    # Test::More and exports blocks(), plan(), is(), ... into the caller.
    Test::Base->import(-package => $caller, @_);
    Exporter::export($class, $caller, @EXPORT);
}

sub repeat_each { $RepeatEach = shift if @_; $RepeatEach }
sub no_shuffle { $NoShuffle = 1 }
sub no_long_string { $NoLongString = 1 }
sub no_root_location { $NoRootLocation = 1 }
sub log_level { $LogLevel = shift if @_; $LogLevel }
sub master_on { $Master = 'on' }
sub master_off { $Master = 'off' }
sub workers { $Workers = shift if @_; $Workers }
sub worker_connections { $WorkerConnections = shift if @_;
                         $WorkerConnections }
sub server_port { $ServerPort = shift if @_; $ServerPort }
sub server_name { 'localhost' }
sub server_root { $Astralform::Test::ServRoot }
sub html_dir { "$Astralform::Test::ServRoot/html" }
sub timeout { $Timeout = shift if @_; $Timeout }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub use_hup { }

sub env_to_nginx {
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }

# --- init code runs in package Test::Nginx::Util, where the real module
# keeps these
for my $f (qw(html_dir server_root server_port server_name bail_out
              repeat_each log_level timeout))
{
    no strict 'refs';
    *{"Test::Nginx::Util::$f"} = \&{$f};
}

sub bail_out {
    stop_nginx() if $Started && !$ENV{TEST_NGINX_NO_CLEAN};
    Test::More::BAIL_OUT(join '', @_);
}

sub is_str {
    my ($got, $expected, $desc) = @_;
    return Test::More::like($got, $expected, $desc)
        if ref $expected && ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

# A section value in scalar context (absent sections give undef, not ())
sub _sec {
    my ($block, $section) = @_;
    return scalar $block->$section;
}

sub run_tests {
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
    }

    _cleanup();
}

sub _cleanup {
    stop_nginx() if $Started && !$ENV{TEST_NGINX_NO_CLEAN};
    $Started = 0;
    undef $PrevConf;
}

END { _cleanup() }

# stop nginx when the run is interrupted, too
for my $sig (qw(INT TERM)) {
    next if $SIG{$sig} && $SIG{$sig} ne 'DEFAULT';
    $SIG{$sig} = sub { _cleanup(); exit($sig eq 'INT' ? 130 : 143) };
}

sub _conf {
    my ($block) = @_;
    my $level = _sec($block, 'log_level');
    $level =~ s/\s+//g if defined $level;
    return nginx_conf(main_config => _sec($block, 'main_config'),
                      http_config => _sec($block, 'http_config'),
                      config => _sec($block, 'config'),
                      post_main_config => _sec($block, 'post_main_config'),
                      workers => $Workers,
                      master => $Master,
                      log_level => $level || $LogLevel,
                      worker_connections => $WorkerConnections,
                      no_root_location => $NoRootLocation,
                      env => \@EnvToNginx,
                      port => $ServerPort);
}

sub run_test {
    my ($block) = @_;
    my $name = $block->name;

    my $conf = eval { _conf($block) };
    if (!defined $conf) {
        chomp(my $err = $@);
        Test::More::fail("$name - $err");
        return;
    }

    # Without a --- config section the real module starts nothing: it
    # reuses the previous server and ignores the block's other config
    # sections.  Fail where that would silently test something else.
    my $reuse = !defined _sec($block, 'config');
    if ($reuse) {
        my @ignored = grep { defined _sec($block, $_) }
                      qw(main_config http_config post_main_config must_die);
        if (@ignored) {
            Test::More::fail("$name - has --- @ignored but no --- config "
                             . 'section (may be empty): Test::Nginx::Socket '
                             . 'would reuse the previous nginx and ignore '
                             . 'them');
            return;
        }
        if (!defined $PrevConf || !nginx_running()) {
            Test::More::fail("$name - No '--- config' section specified and "
                             . 'could not get previous one');
            return;
        }
    }

    if (defined _sec($block, 'must_die')) {
        _run_must_die($block, $conf);
        return;
    }

    if (!$reuse && ($ForceRestart || !defined $PrevConf || $PrevConf ne $conf
                    || !nginx_running()))
    {
        warn "starting nginx for $name\n" if $Verbose;
        my ($status, $stderr) = start_nginx_raw($conf, port => $ServerPort,
            setup => sub { _write_user_files($block) });
        $Started = 1;
        if ($status != 0) {
            undef $PrevConf;
            Test::More::fail("$name - nginx failed to start (status "
                             . ($status == -1 ? -1 : $status >> 8) . ')');
            Test::More::diag($stderr, _tail(error_log_text(), 20));
            return;
        }
        $PrevConf = $conf;

    } else {
        _write_user_files($block);
        truncate_error_log();
    }
    $ErrLogPos = 0;

    if (defined _sec($block, 'init')) {
        eval 'package Test::Nginx::Util; ' . _sec($block, 'init');
        bail_out("$name - init failed: $@") if $@;
    }

    my @reqs = _build_requests($block);
    bail_out("$name - request empty") unless @reqs;

    for my $r (0 .. $RepeatEach - 1) {
        _run_requests($block, \@reqs, $r);
    }
}

sub _tail {
    my ($text, $n) = @_;
    my @l = split /\n/, $text // '';
    @l = @l[-$n .. -1] if @l > $n;
    return @l ? join("\n", 'error.log:', @l) . "\n" : '';
}

sub _write_user_files {
    my ($block) = @_;
    my $files = _sec($block, 'user_files');
    return unless defined $files;
    my @files;
    if (ref $files eq 'ARRAY') {
        @files = @$files;
    } else {
        my $cur;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)/) {
                push @files, $cur = [$1, ''];
            } elsif ($cur) {
                $cur->[1] .= $line;
            }
        }
    }
    for my $f (@files) {
        my ($fname, $body) = @$f;
        my $path = $fname =~ m{^/} ? $fname : html_dir() . "/$fname";
        if ($path =~ m{(.*)/}) {
            require File::Path;
            File::Path::make_path($1);
        }
        open my $out, '>', $path or bail_out("cannot write $path: $!");
        binmode $out;
        print $out expand_env($body // '');
        close $out;
    }
}

sub _run_must_die {
    my ($block, $conf) = @_;
    my $name = $block->name;
    my $must_die = _sec($block, 'must_die');
    chomp $must_die;

    for my $r (0 .. $RepeatEach - 1) {
        my ($status, $stderr) = start_nginx_raw($conf, port => $ServerPort,
            no_wait => 1, setup => sub { _write_user_files($block) });
        $Started = 1;
        undef $PrevConf;

        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command");
        } elsif ($status & 127) {
            Test::More::fail("$name - nginx died of signal "
                             . ($status & 127));
        } elsif (length $must_die && looks_like_number($must_die)) {
            Test::More::is($status >> 8, $must_die,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $ErrLogPos = 0;
        my $lines = _error_log_lines();
        push @$lines, map { "$_\n" } split /\n/, $stderr;
        _check_error_log($block, $lines, $r, 1);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it (req $r)\n";
            stop_nginx();
        }
    }
}

# --- requests ---------------------------------------------------------------

sub _build_requests {
    my ($block) = @_;
    my $name = $block->name;
    my $req = _sec($block, 'request');
    return () unless defined $req;

    my @reqs;
    if (ref $req eq 'ARRAY') {
        for my $one (@$req) {
            # a request given as packets: send them as one
            push @reqs, ref $one eq 'ARRAY'
                        ? join('', map { ref $_ ? $_->{value} : $_ } @$one)
                        : $one;
        }
    } else {
        1 while $req =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        @reqs = ($req);
    }

    my $more = _sec($block, 'more_headers') // '';
    my @out;
    for my $i (0 .. $#reqs) {
        my $hdr = ref $more eq 'ARRAY' ? $more->[$i] : $more;
        bail_out("$name - --- more_headers lacks data for request $i")
            unless defined $hdr;
        push @out, _build_request($name, $reqs[$i], $hdr);
    }
    return @out;
}

sub _build_request {
    my ($name, $req, $more) = @_;

    my ($first, $body) = split /\n/, $req, 2;
    $first //= '';
    $body //= '';
    $first =~ s/\r$//;
    my ($meth, $url, $ver) = split ' ', $first;
    bail_out("$name - Request line should be non-empty") unless defined $meth;
    $url //= '/';
    $ver //= 'HTTP/1.1';

    my ($hdrs, $chunked) = ('', 0);
    for my $h (split /\n+/, $more) {
        next if $h =~ /^\s*\#/ || $h !~ /\S/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $v =~ s/\r$//;
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $hdrs .= "$k: $v\r\n";
    }

    my $head = '';
    $head .= "Host: localhost\r\n" if $hdrs !~ /(?:^|\n)Host:/i;
    $head .= "Connection: close\r\n" if $hdrs !~ /(?:^|\n)Connection/i;
    $head .= $hdrs;
    if (!$chunked && $body ne '' && $hdrs !~ /(?:^|\n)Content-Length:/) {
        $body =~ s/^\s+|\s+$//gs;
        $head .= 'Content-Length: ' . length($body) . "\r\n";
    }
    utf8::encode($body) if utf8::is_utf8($body);

    return "$meth $url $ver\r\n$head\r\n$body";
}

# The expectation of section $section for request $i.
sub _indexed {
    my ($block, $section, $i, $need_array) = @_;
    my $value = _sec($block, $section);
    if (ref $value && ref $value eq 'ARRAY') {
        return $value->[$i];
    }
    bail_out($block->name . " - You asked for many requests, the expected "
             . "results should be arrays as well.") if $need_array;
    return $value;
}

sub _run_requests {
    my ($block, $reqs, $r) = @_;
    my $name = $block->name;
    my $timeout = _parse_time(_sec($block, 'timeout')) // $Timeout;
    my $need_array = @$reqs > 1;

    for my $i (0 .. $#$reqs) {
        warn "request: $reqs->[$i]\n" if $Verbose;
        my ($raw, $err) = http_raw($reqs->[$i], $timeout, $ServerPort);
        warn "response: $raw\n" if $Verbose;

        if (defined $err) {
            if ($err eq 'timeout') {
                Test::More::fail("ERROR: client socket timed out - $name\n")
                    unless defined _sec($block, 'abort');
            } else {
                Test::More::fail("ERROR: $err - $name\n");
            }
        }

        my $res = parse_http_response($raw);
        if (length $res->{left}) {
            warn "WARNING: $name - unexpected extra bytes after last chunk "
                 . "in response\n";
        }

        unless (defined _sec($block, 'ignore_response')) {
            _check_status($block, $res, $i, $need_array);
            _check_headers($block, $res, $i, $need_array);
            _check_body($block, $res, $r, $i, $need_array);
        }

        if ($i < $#$reqs) {
            Time::HiRes::sleep(_sec($block, 'wait')) if _sec($block, 'wait');
            _check_error_log($block, undef, $r);
        }
    }

    Time::HiRes::sleep(_sec($block, 'wait')) if _sec($block, 'wait');
    _check_error_log($block, undef, $r);
}

sub _parse_time {
    my ($t) = @_;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    $t =~ s/s$//;
    return $t;
}

# --- checks -----------------------------------------------------------------

sub _check_status {
    my ($block, $res, $i, $need_array) = @_;
    my $name = $block->name;
    my $code = $res->{code} // '';

    if (defined _sec($block, 'error_code_like')) {
        my $v = _indexed($block, 'error_code_like', $i, $need_array);
        Test::More::like($code, qr/$v/sm, "$name - status code ok");

    } elsif (defined _sec($block, 'error_code')) {
        my $v = _indexed($block, 'error_code', $i, $need_array);
        Test::More::is($code, $v, "$name - status code ok")
            or ($v // '') =~ /\n/
               && Test::More::diag("use '--- error_code: N' (a section on "
                                   . "its own line keeps the newline)");

    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

# Like the real parse_headers, but keeps the order of the lines.
sub _parse_header_spec {
    my ($s) = @_;
    my @h;
    for my $line (split /\n/, $s // '') {
        $line =~ s/^\s+|\s+$//g;
        next unless length $line;
        if ($line =~ s/^!\s*//) {
            push @h, [$line, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            push @h, [$k, $v // ''];
        }
    }
    return @h;
}

sub _check_headers {
    my ($block, $res, $i, $need_array) = @_;
    my $name = $block->name;
    my $raw = $res->{raw_headers};

    if (defined _sec($block, 'raw_response_headers_like')) {
        my $v = _indexed($block, 'raw_response_headers_like', $i,
                         $need_array);
        Test::More::like($raw, qr/$v/s, "$name - raw resp headers like");
    }

    if (defined _sec($block, 'raw_response_headers_unlike')) {
        my $v = _indexed($block, 'raw_response_headers_unlike', $i,
                         $need_array);
        Test::More::unlike($raw, qr/$v/s, "$name - raw resp headers unlike");
    }

    if (defined _sec($block, 'response_headers')) {
        my $spec = _indexed($block, 'response_headers', $i, $need_array);
        for my $h (_parse_header_spec($spec)) {
            my ($k, $v) = @$h;
            if (!defined $v) {
                Test::More::unlike($raw, qr/^\s*\Q$k\E\s*:/mi,
                    "$name - header $k not present in the raw headers");
                next;
            }
            $v =~ s/\$ServerPort\b/$ServerPort/g;
            my $got = $res->{headers}->header($k) // '';
            Test::More::is($got, $v, "$name - header $k ok");
        }

    } elsif (defined _sec($block, 'response_headers_like')) {
        my $spec = _indexed($block, 'response_headers_like', $i, $need_array);
        for my $h (_parse_header_spec($spec)) {
            my ($k, $v) = @$h;
            my $got = $res->{headers}->header($k) // '';
            Test::More::like($got, qr/^$v$/, "$name - header $k like ok");
        }
    }
}

sub _summary {
    my ($s) = @_;
    $s //= '';
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    $s = substr($s, 0, 200) . '...' if length $s > 200;
    return $s;
}

sub _check_body {
    my ($block, $res, $r, $i, $need_array) = @_;
    my $name = $block->name;
    my $content = $res->{body};

    if (defined _sec($block, 'response_body')) {
        my $expected = _indexed($block, 'response_body', $i, $need_array);
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected = eval { expand_env($expected) };
            bail_out("$name - $@") if $@;
        }
        my $desc = "$name - response_body - ";
        if (ref $expected) {
            Test::More::like($content, $expected,
                             "${desc}like (repeated req $r, req $i)");
        } else {
            is_str($content, $expected,
                   "${desc}response is expected (repeated req $r, req $i)");
        }

    } elsif (defined _sec($block, 'response_body_like')
             || defined _sec($block, 'response_body_unlike'))
    {
        my $like = defined _sec($block, 'response_body_like');
        my $type = $like ? 'like' : 'unlike';
        my $pat = _indexed($block, "response_body_$type", $i, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        my $desc = "$name - response_body_$type - response is expected ("
                   . _summary($content) . ')';
        if ($like) {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }
}

sub _error_log_lines {
    # the log phase may run after the response has been sent
    Time::HiRes::sleep(0.05);
    open my $in, '<', $Astralform::Test::ErrLog or return [];
    seek $in, $ErrLogPos, 0 if !$CheckAccumErrLog && $ErrLogPos;
    my @lines = <$in>;
    $ErrLogPos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub _patterns {
    my ($v) = @_;
    return [] unless defined $v;
    return [$v] if ref $v eq 'Regexp';
    return [@$v] if ref $v eq 'ARRAY';
    chomp $v;
    return [grep { length } split /\n+/, $v];
}

sub _mentions {
    my ($v, $s) = @_;
    return 0 unless defined $v;
    return scalar grep { _mentions($_, $s) } @$v if ref $v eq 'ARRAY';
    return "$v" =~ /\Q$s\E/;
}

sub _fmt {
    my ($s) = @_;
    $s = "$s";
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub _matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _check_error_log {
    my ($block, $lines, $r, $must_die) = @_;
    my $name = $block->name;
    $lines //= _error_log_lines();

    if (defined _sec($block, 'grep_error_log')) {
        my $grep = _sec($block, 'grep_error_log');
        chomp $grep unless ref $grep;
        my $expected = _sec($block, 'grep_error_log_out');
        bail_out("$name - No --- grep_error_log_out defined but "
                 . "--- grep_error_log is defined") unless defined $expected;
        $expected = $expected->[$r] if ref $expected eq 'ARRAY';
        $expected = expand_env($expected) unless ref $expected;
        my $out = '';
        for my $line (@$lines) {
            if (ref $grep ? $line =~ $grep : $line =~ /\Q$grep\E/) {
                $out .= "$&\n" if $& !~ /\n/;
            }
        }
        if (ref $expected eq 'Regexp') {
            Test::More::like($out, $expected,
                             "$name - grep_error_log_out (req $r)");
        } else {
            is_str($out, $expected, "$name - grep_error_log_out (req $r)");
        }
    }

    if (defined _sec($block, 'error_log')) {
        for my $pat (@{ _patterns(_sec($block, 'error_log')) }) {
            next unless defined $pat;
            if (grep { _matches($_, $pat) } @$lines) {
                Test::More::pass("$name - pattern \"$pat\" matches a line "
                                 . "in error.log (req $r)");
            } else {
                Test::More::fail("$name - pattern \"$pat\" should match a "
                                 . "line in error.log (req $r)");
            }
        }
    }

    if (defined _sec($block, 'no_error_log')) {
        for my $pat (@{ _patterns(_sec($block, 'no_error_log')) }) {
            next unless defined $pat;
            my $p = _fmt($pat);
            my ($hit) = grep { _matches($_, $pat) } @$lines;
            if (defined $hit) {
                Test::More::fail("$name - pattern \"$p\" should not match "
                                 . "any line in error.log but matches line \""
                                 . _fmt($hit) . "\" (req $r)");
            } else {
                Test::More::pass("$name - pattern \"$p\" does not match a "
                                 . "line in error.log (req $r)");
            }
        }
    }

    # like the real one: report, do not fail (and not for must_die, where
    # an [emerg] is the point)
    for my $level ($must_die ? () : qw(alert crit emerg)) {
        next if _mentions(_sec($block, 'error_log'), "[$level")
                || _mentions(_sec($block, 'no_error_log'), "[$level");
        for my $line (grep { /\[$level\]/ } @$lines) {
            warn "WARNING: $name - " . _fmt($line) . "\n";
        }
    }
}

1;
