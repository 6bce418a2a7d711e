# Key files and agents at start-up (`nginx -t`): a whitespace-only,
# BOM-prefixed or NUL-holding key fails, naming the directive, the file and
# the line, in admin_key_file=, agent_key_file= and astralform_agent
# key_file= alike; a key shorter than 32 characters or of little variety is
# a warning; astralform_agent names a known project and a valid agent id,
# and no key belongs to two owners; the quota directives take numbers and
# sizes.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use File::Temp ();

my $repo = $ENV{TEST_NGINX_REPO} || '.';
my $F = "$repo/t/fixtures";
my $binary = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $tmp = File::Temp::tempdir('astralform-084-XXXXXX', TMPDIR => 1,
                              CLEANUP => 1);
mkdir "$tmp/logs";
my $GOOD = 'k7Qp2Zx9Lm4Vb8Nc1Rt6Yw3Hs5Jd0FgAe';

sub spew {
    my ($name, $bytes) = @_;
    open my $fh, '>:raw', "$tmp/$name" or die "$tmp/$name: $!";
    print $fh $bytes;
    close $fh;
    return "$tmp/$name";
}

# (exit status, everything nginx -t printed)
sub conf_test {
    my ($http) = @_;
    my $conf = nginx_conf(http_config => <<"_EOC_" . $http,
    astralform_key k1 $F/master.key;
    astralform_public_url https://gw.example.com;
_EOC_
                          config => 'location /v1/ { astralform_api; }',
                          servroot => $tmp);
    open my $fh, '>', "$tmp/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $out = `$binary -t -p $tmp/ -c $tmp/nginx.conf 2>&1`;
    return ($? >> 8, $out);
}

my $admin = "$F/p1-admin.keys";
my $p1 = "    astralform_project p1 admin_key_file=$admin;\n";


# --- malformed keys fail, in every kind of key file -------------------------

my %bad = (
    'whitespace-only' => ["   \t  \n", 1, qr/that is only whitespace/],
    'BOM-prefixed' => ["\xef\xbb\xbf$GOOD\n", 1,
                       qr/that starts with a UTF-8 byte order mark/],
    'NUL-holding' => ["$GOOD\n${GOOD}x\0y\n", 2, qr/that holds a NUL byte/],
    'space-holding' => ["$GOOD\n$GOOD trailing\n", 2, qr/that holds whitespace/],
    'blank line' => ["$GOOD\n\n$GOOD-2\n", 2, qr/shorter than 16 characters/],
    'short' => ["short-key-12\n", 1, qr/shorter than 16 characters/],
);

for my $what (sort keys %bad) {
    my ($bytes, $line, $re) = @{ $bad{$what} };
    (my $name = $what) =~ s/\W/-/g;
    my $path = spew("$name.keys", $bytes);

    my @places = (
        ['astralform_project', "    astralform_project p1 admin_key_file=$path;\n"],
        ['astralform_project', "    astralform_project p1 admin_key_file=$admin agent_key_file=$path;\n"],
        ['astralform_agent', $p1 . "    astralform_agent p1 bot key_file=$path;\n"],
    );

    for my $place (@places) {
        my ($directive, $http) = @$place;
        my ($status, $out) = conf_test($http);
        isnt($status, 0, "$what key in $directive: nginx -t fails");
        like($out, qr/\[emerg\][^\n]*"\Q$directive\E" has a key in "\Q$path\E" $re \(line $line\)/,
             "$what key in $directive: the message names directive, file and line")
            or diag($out);
    }
}


# --- weak keys are warnings --------------------------------------------------

for my $weak (['20 characters', 'a1B2c3D4e5F6g7H8i9J0'],
              ['little variety', 'ab' x 20],
              ['one digit repeated', '7' x 40])
{
    my ($what, $key) = @$weak;
    (my $name = $what) =~ s/\W/-/g;
    my $path = spew("weak-$name.keys", "$key\n");
    my ($status, $out) = conf_test($p1 . "    astralform_agent p1 bot key_file=$path;\n");
    is($status, 0, "a key of $what: nginx -t passes") or diag($out);
    like($out, qr/\[warn\][^\n]*"astralform_agent" has a weak key in "\Q$path\E" \(line 1\): use 32 or more random characters/,
         "a key of $what: a warning naming the file and line");
}

my $good = spew('good.keys', "$GOOD\n");
my ($status, $out) = conf_test($p1 . "    astralform_agent p1 bot key_file=$good;\n");
is($status, 0, 'a strong key: nginx -t passes');
unlike($out, qr/weak key/, 'a strong key: no warning');


# --- astralform_agent --------------------------------------------------------

($status, $out) = conf_test($p1 . "    astralform_agent p9 bot key_file=$good;\n");
isnt($status, 0, 'astralform_agent of an unknown project fails');
like($out, qr/\[emerg\][^\n]*"astralform_agent p9 bot" names an unknown project in \Q$tmp\E\/nginx\.conf:\d+/,
     'the message names the directive, the project and where');

($status, $out) = conf_test($p1 . "    astralform_agent p1 bot/1 key_file=$good;\n");
isnt($status, 0, 'astralform_agent with a bad agent id fails');
like($out, qr/\[emerg\][^\n]*"astralform_agent" id "bot\/1" must be/,
     'the message names the id');

($status, $out) = conf_test($p1 . "    astralform_agent p1 bot keys=$good;\n");
isnt($status, 0, 'astralform_agent without key_file= fails');
like($out, qr/\[emerg\][^\n]*"astralform_agent" has an invalid parameter "keys=/,
     'the message names the parameter');

($status, $out) = conf_test($p1 . "    astralform_agent p1 bot key_file=$good;\n"
                            . "    astralform_agent p1 bot key_file=$good;\n");
isnt($status, 0, 'the same agent twice fails');
like($out, qr/\[emerg\][^\n]*"astralform_agent p1 bot" is duplicate/,
     'the message says duplicate');

my $other = spew('other.keys', "Zq8Wm3Nx7Rb2Kc6Vt1Py5Hd9Lj4Fs0Ga\n");
($status, $out) = conf_test($p1 . "    astralform_agent p1 bot key_file=$good;\n"
                            . "    astralform_agent p1 bot2 key_file=$good;\n");
isnt($status, 0, 'one key for two agents fails');
like($out, qr/\[emerg\][^\n]*one key is given twice, in "astralform_agent p1 bot" and in "astralform_agent p1 bot2"/,
     'the message names both owners');

($status, $out) = conf_test("    astralform_project p1 admin_key_file=$admin agent_key_file=$good;\n"
                            . "    astralform_agent p1 bot key_file=$good;\n");
isnt($status, 0, 'a bound key that is also a project-wide agent key fails');
like($out, qr/one key is given twice, in "astralform_project p1 agent_key_file=" and in "astralform_agent p1 bot"/,
     'the message names both owners');

($status, $out) = conf_test($p1 . "    astralform_project p2 admin_key_file=$F/p2-admin.keys;\n"
                            . "    astralform_agent p1 bot key_file=$good;\n"
                            . "    astralform_agent p2 bot key_file=$good;\n");
isnt($status, 0, 'one key for agents of two projects fails');

($status, $out) = conf_test("    astralform_project p1 admin_key_file=$admin agent_key_file=$admin;\n");
isnt($status, 0, 'one key file as admin and agent keys fails');
like($out, qr/one key is given twice, in "astralform_project p1 admin_key_file=" and in "astralform_project p1 agent_key_file="/,
     'the message names both');

# declared before its project: resolved once every project is known
($status, $out) = conf_test("    astralform_agent p1 bot key_file=$good;\n"
                            . "    astralform_agent p1 bot2 key_file=$other;\n" . $p1);
is($status, 0, 'astralform_agent before its astralform_project passes')
    or diag($out);


# --- the quota directives ------------------------------------------------------

for my $d (['astralform_max_credentials', 'many'],
           ['astralform_max_pending_sessions', '-1'],
           ['astralform_max_value_size', '2q'])
{
    ($status, $out) = conf_test($p1 . "    $d->[0] $d->[1];\n");
    isnt($status, 0, "$d->[0] $d->[1]: nginx -t fails");
    like($out, qr/\[emerg\][^\n]*"\Q$d->[0]\E" directive/, "$d->[0]: named");
}

($status, $out) = conf_test($p1 . "    astralform_max_credentials 100000;\n"
                            . "    astralform_max_pending_sessions 50;\n"
                            . "    astralform_max_value_size 8k;\n");
is($status, 0, 'the quota directives with good values pass') or diag($out);

done_testing();
