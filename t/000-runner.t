# Self-test of the test runner with plain nginx features only; it must pass
# under the bundled Test::Nginx::Socket and under openresty's.

use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
log_level('info');

run_tests();

__DATA__

=== TEST 1: plain return
--- config
    location = /t {
        return 200 "hi\n";
    }
--- request
GET /t
--- response_body
hi
--- no_error_log
[error]



=== TEST 2: status code, headers and an absent header
--- config
    location = /t {
        add_header X-Foo bar always;
        return 404 "nope";
    }
--- request
GET /t
--- error_code: 404
--- response_headers
X-Foo: bar
Content-Type: text/plain
!X-Absent
--- response_body chomp
nope



=== TEST 3: request bodies and more_headers (PUT and GET through dav)
--- config
    location /dav/ {
        root html;
        dav_methods PUT DELETE;
        create_full_put_path on;
        add_header X-Who "$http_x_who" always;
    }
--- more_headers
X-Who: alice
--- request eval
["PUT /dav/x.txt\n" . "a" x 3 . "bc\n", "GET /dav/x.txt",
 "DELETE /dav/x.txt"]
--- error_code eval
[201, 200, 204]
--- response_headers eval
["X-Who: alice", "X-Who: alice\nContent-Length: 5", "X-Who: alice"]
--- response_body eval
["", "aaabc", ""]



=== TEST 4: response_body eval and regex forms
--- config
    location = /t {
        return 200 "x=1\ny=2\n";
    }
--- request
GET /t
--- response_body eval
"x=1\n" . "y=2\n"



=== TEST 5: response_body_like with an eval regex
--- config
    location = /t {
        return 200 "token abc123 end";
    }
--- request
GET /t
--- response_body_like eval
qr/abc\d+/



=== TEST 6: error_log and no_error_log
--- config
    location = /t {
        deny all;
    }
--- request
GET /t
--- error_code: 403
--- error_log
access forbidden
--- no_error_log eval
[qr/\[(?:alert|emerg)\]/, "this string never appears"]



=== TEST 7: must_die on an unknown directive
--- config
    location = /t {
        no_such_directive_here on;
    }
--- must_die
--- error_log
unknown directive "no_such_directive_here"



=== TEST 8: TEST_NGINX_ variables expand in config
--- config
    location = /t {
        return 200 "port $TEST_NGINX_SERVER_PORT\n";
    }
--- request
GET /t
--- response_body_like
^port \d+$



=== TEST 9: several requests in one block
--- config
    location = /a { return 200 "a"; }
    location = /b { return 201 "b"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 201]
--- response_body eval
["a", "b"]
--- no_error_log
[error]



=== TEST 10: user_files, a chunked body, response_headers_like
--- user_files
>>> static/a.txt
a chunk of text
--- config
    location /static/ {
        root html;
        default_type text/plain;
        sub_filter 'chunk' 'CHUNK';
        sub_filter_types text/plain;
        add_header X-Num 42;
    }
--- request
GET /static/a.txt
--- raw_response_headers_like chomp
Transfer-Encoding: chunked\r\n
--- response_headers_like
X-Num: \d+
--- response_body
a CHUNK of text



=== TEST 11: init runs before the request
--- init
my $f = html_dir() . '/init.txt';
open my $out, '>', $f or die "$f: $!";
print $out "written by init\n";
close $out;
--- config
    location = /init.txt {
        root html;
    }
--- request
GET /init.txt
--- response_body
written by init
--- wait: 0.1



=== TEST 12: timeout with abort: a throttled body is cut short
--- config eval
"location = /slow {
    limit_rate_after 200;
    limit_rate 1;
    return 200 '" . "0123456789" x 30 . "';
}"
--- request
GET /slow
--- timeout: 300ms
--- abort
--- response_body_like: ^\d{10,200}$
--- no_error_log
[error]



=== TEST 13: SKIP leaves a block out
--- SKIP
--- config
    location = /t {
        return 500;
    }
--- request
GET /t
--- response_body
never checked
