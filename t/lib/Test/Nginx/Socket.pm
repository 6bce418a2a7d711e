package Test::Nginx::Socket;

# Stand-in for openresty's Test::Nginx::Socket, which Debian does not package.
#
# When the real module is installed anywhere else on @INC it is loaded
# instead of this one, whatever the @INC order, so t/lib may be put on @INC
# freely (t/run.sh does, for Astralform::Test).  TEST_NGINX_COMPAT=1 forces
# the bundled implementation, Test::Nginx::Compat, which supports the subset
# of data-block sections this suite uses; see the top of that file.
# Either way Astralform::Test is loaded too, for --- init code.

use strict;
use warnings;

BEGIN {
    require Cwd;

    my $me = Cwd::abs_path(__FILE__);
    my $real;

    unless ($ENV{TEST_NGINX_COMPAT}) {
        for my $dir (grep { !ref } @INC) {
            my $f = "$dir/Test/Nginx/Socket.pm";
            next unless -f $f;
            my $abs = Cwd::abs_path($f);
            next if !defined $abs || $abs eq $me;
            $real = $abs;
            last;
        }
    }

    if (defined $real) {
        $INC{'Test/Nginx/Socket.pm'} = $real;
        my $ok = do $real;
        die $@ if $@;
        die "cannot load $real: $!\n" unless $ok;

    } else {
        require Test::Nginx::Compat;
    }

    # --- init code may call Astralform::Test::redis_cmd() and friends
    require Astralform::Test;
}

1;
