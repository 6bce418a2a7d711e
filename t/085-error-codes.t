# The README's error code table is complete: every code the sources answer
# with (the code argument of ngx_astralform_send_error, _send_error_with
# and ngx_astralform_oauth_page, and codes chosen through a variable:
# `*code = "..."`) is a row of it, with a status; and every row names a
# code the sources still use.

use strict;
use warnings;
use Test::More;

my $repo = $ENV{TEST_NGINX_REPO} || '.';

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    return <$fh>;
}

my %src;
my $calls = 0;

for my $f (glob "$repo/src/*.c") {
    (my $t = slurp($f)) =~ s{/\*.*?\*/}{}gs;

    while ($t =~ /\bngx_astralform_(?:send_error(?:_with)?|oauth_page)
                  \s*(\(((?:[^()]|(?1))*)\))/gx)
    {
        my $args = $2;
        $calls++;
        # the extra members of send_error_with come first: not codes
        $args =~ s/json_pack\s*(\(((?:[^()]|(?1))*)\))//g;
        # the code is the string literal followed by the message literal
        $src{$1} = $f if $args =~ /"([a-z][a-z0-9_]*)"\s*,\s*"/;
    }

    $src{$1} = $f while $t =~ /\*\s*code\s*=\s*"([a-z][a-z0-9_]*)"/g;
}

ok($calls > 50, "the sources answer errors in $calls places");
ok(scalar(keys %src) > 30, scalar(keys %src) . ' distinct codes found');

my $readme = slurp("$repo/README.md");
my ($table) = $readme =~ /^### Error codes\n(.*?)(?=^#)/ms;
ok(defined $table, 'the README has an "Error codes" section');
$table //= '';

my %doc;
while ($table =~ /^\|\s*(\d{3})\s*\|\s*`([a-z0-9_]+)`\s*\|\s*(\S[^|]*)\|/mg) {
    $doc{$2} = $1;
}

for my $code (sort keys %src) {
    ok(exists $doc{$code}, "README lists `$code` (from $src{$code})");
}

for my $code (sort keys %doc) {
    ok(exists $src{$code}, "README's `$code` is still answered by src/");
}

# the ones the issue found missing
for my $code (qw(not_api_key not_oauth invalid_return_url invalid_session
                 invalid_state end_user_auth_disabled not_configured
                 agent_mismatch connector_not_assigned quota_exceeded
                 value_too_large))
{
    ok(exists $doc{$code} && exists $src{$code}, "`$code` is answered and listed");
}

done_testing();
