# The MCP conformance suite (@modelcontextprotocol/conformance 0.1.16, from
# t/clients) in server mode against both MCP servers of the gateway
# (DESIGN 8): every scenario of `--suite all`, its per-scenario checks.json
# compared with t/clients/conformance-expected-failures.yml, and the
# scenarios any server must pass asserted to pass.
#
# The suite sends no headers of its own choosing: it has no option for them,
# its scenarios open the SDK's StreamableHTTPClientTransport on a bare URL and
# its DNS rebinding scenario sends fixed headers through undici.  So each
# endpoint is reached through a test-only `location` on the same server
# (same host and port: the Origin rules are unchanged) that proxies to the
# real endpoint and adds what a configured client would send: the bearer key
# and, for agents, X-Astralform-User.  The module's auth is untouched; the
# same suite pointed at the endpoint itself is refused with 401.

use strict;
use warnings;

use Test::More;
use File::Path ();
use Astralform::Test qw(:all);
use Astralform::OAuth;

my $REPO = $ENV{TEST_NGINX_REPO} // '.';
my $SUITE = "$REPO/t/clients/node_modules/.bin/conformance";
my $EXPECTED = "$REPO/t/clients/conformance-expected-failures.yml";
my $TMP = "$REPO/t/tmp/065";
my $PORT = $ENV{TEST_NGINX_SERVER_PORT};

-x $SUITE or missing_part('the MCP conformance suite is not installed '
                          . '(t/clients: npm ci)');
(`node --version 2>/dev/null` // '') =~ /^v(\d+)/ && $1 >= 22
    or missing_part('Node >= 22 is needed (t/node)');

my @MUST_PASS = qw(server-initialize ping tools-list dns-rebinding-protection);

# the expected results, read with the suite's own YAML parser
my $expected = do {
    my $js = q{const f = require('fs'), Y = require('yaml');
               process.stdout.write(JSON.stringify(
                   Y.parse(f.readFileSync(process.argv[1], 'utf8'))));};
    my $out = `cd $REPO/t/clients && node -e "$js" $EXPECTED`;
    $? == 0 or BAIL_OUT("cannot read $EXPECTED");
    $JSON->decode($out);
};
# scenario => [state, why, the failing check's message]
my %want;
for my $state (qw(fail informational)) {
    my $list = $expected->{$state} || {};
    $want{$_} = [substr($state, 0, 4), $list->{$_}{why} // '',
                 $list->{$_}{error}] for keys %$list;
}
ok(!grep({ $want{$_}[0] eq 'fail' && !length($want{$_}[2] // '') } keys %want)
   && !grep({ !length $want{$_}[1] } keys %want),
   'each scenario the file names says why, each failure its error');
ok(!$want{$_}, "$_ is not excused in the expected-failures file")
    for @MUST_PASS;

my $cfg = oauth_config(prefix => 't065:', dir => 't/tmp/065');

sub wipe { redis_cmd('DEL', $_) for @{ redis_cmd('KEYS', 't065:*') || [] } }
wipe();

# the test-only client side: key and user as a configured client sends them
sub door {
    my ($name, $path, @headers) = @_;
    my $set = join '', map { "        proxy_set_header $_;\n" } @headers;
    return <<"_EOC_";
    location = /conformance/$name {
        proxy_pass http://127.0.0.1:$PORT$path;
        proxy_http_version 1.1;
        proxy_buffering off;
        proxy_set_header Host \$http_host;
$set    }
_EOC_
}

my $config = $cfg->{config}
    . door('agent', '/v1/projects/p1/mcp', qq{Authorization "Bearer $AGENT"},
           'X-Astralform-User conformance-user')
    . door('admin', '/v1/mcp', qq{Authorization "Bearer $ADMIN"});

# info: at debug nginx core would echo the keys of the proxy_set_header
# lines above (script copies, the proxied request) into the error log
start_nginx(http_config => $cfg->{http_config}, config => $config,
            workers => 2, log_level => 'info')
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

# every server scenario the suite knows
my @known = map { /^\s+-\s+(\S+)/ ? $1 : () }
            `timeout 30 $SUITE list --server`;
ok(@known >= 30, scalar(@known) . ' server scenarios in the suite');

# runs the suite; returns ({scenario => [state, detail]}, exit code, output)
sub run_suite {
    my ($url, $dir, @args) = @_;
    File::Path::remove_tree($dir);
    File::Path::make_path($dir);
    my $out = `timeout 300 $SUITE server --url $url -o $dir/results @args 2>&1`;
    my $rc = $? >> 8;
    if (open my $fh, ">", "$dir/stdout.txt") {
        print $fh $out;
        close $fh;
    }

    my %res;
    for my $f (glob "$dir/results/*/checks.json") {
        my ($name) = $f =~ m{/server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z/checks\.json\z}
            or next;
        my $checks = eval {
            open my $c, '<', $f or die;
            local $/;
            $JSON->decode(<$c>);
        } || [];
        my %n;
        $n{ $_->{status} }++ for @$checks;
        my @bad = map { "$_->{id}: " . ($_->{errorMessage} // $_->{status}) }
                  grep { $_->{status} =~ /\A(?:FAILURE|WARNING)\z/ } @$checks;
        $res{$name} = @bad ? ['fail', join('; ', @bad)]
                    : $n{SUCCESS} ? ['pass', "$n{SUCCESS} checks"]
                    : ['info', 'only INFO checks'];
    }
    # a scenario the suite ran but could not finish leaves no checks.json
    for my $name ($out =~ /^=== Running scenario: (\S+) ===$/mg) {
        $res{$name} //= ['missing', 'no checks.json'];
    }
    return (\%res, $rc, $out);
}

my %seen;
for my $door (qw(agent admin)) {
    my $dir = "$TMP/$door";

    # the suite's own baseline rule agrees with ours: pass it the fail list
    open my $b, '>', "$dir.baseline.yml" or die $!;
    print $b "server:\n",
             map { "  - $_\n" } sort grep { $want{$_}[0] eq 'fail' } keys %want;
    close $b;

    my ($res, $rc, $out) = run_suite("http://127.0.0.1:$PORT/conformance/$door",
                                     $dir, '--suite', 'all',
                                     '--expected-failures', "$dir.baseline.yml");

    is_deeply([sort keys %$res], [sort @known],
              "$door: every scenario of the suite ran");
    is($rc, 0, "$door: the suite's own verdict against the baseline: exit 0")
        or diag($out =~ /((?:Stale|Unexpected).*)\z/s ? $1 : $out);

    for my $name (sort keys %$res) {
        my ($got, $detail) = @{ $res->{$name} };
        my ($exp, $why, $error) = @{ $want{$name} || ['pass', ''] };
        is($got, $exp, "$door: $name: $exp") or diag("  $detail");
        if ($exp eq 'fail' && $got eq 'fail') {
            ok(index($detail, $error) >= 0, "$door: $name: fails with $error")
                or diag("  $detail");
        }
        $seen{$name}{$door} = $got;
        (my $short = $why) =~ s/\s+/ /g;
        $short = substr($short, 0, 90) . '...' if length $short > 93;
        diag(sprintf('%-6s %-30s %-5s%s', $door, $name, $got,
                     $got eq 'pass' ? '' : $exp eq $got ? "  expected: $short"
                                                        : "  ($detail)"));
    }

    is($res->{$_} && $res->{$_}[0], 'pass', "$door: $_ passes") for @MUST_PASS;
}

ok(!grep({ !$seen{$_} } keys %want),
   'every scenario the file names was run')
    or diag(join ' ', grep { !$seen{$_} } keys %want);
is_deeply([grep { ($seen{$_}{agent} // '') ne ($seen{$_}{admin} // '') }
           sort keys %seen], [], 'both endpoints: the same results');

# without the client side's headers the endpoint refuses the suite
{
    my ($res, $rc, $out) = run_suite("http://127.0.0.1:$PORT/v1/projects/p1/mcp",
                                     "$TMP/bare", '--scenario', 'server-initialize');
    is($res->{'server-initialize'} && $res->{'server-initialize'}[0], 'fail',
       'the endpoint itself, no key: server-initialize fails');
    like($out, qr/invalid_api_key/, "no key: the gateway's 401 code");
}

unlike(error_log_text(), qr/\[(?:alert|crit|emerg)\]/, 'no alert in the log');
unlike(error_log_text(), qr/\Q$AGENT\E|\Q$ADMIN\E/, 'no key in the log');

stop_nginx();
wipe();
done_testing();
