/*
 * HTTP/1.1 response framing, for the gateway's own provider connections
 * (ngx_astralform_upstream.c): where a response head ends, what it says
 * (status, headers, how the body is framed, whether the connection may be
 * kept), and the chunked transfer coding. Pure functions over buffers: no
 * I/O, no nginx events, so the fuzzer drives them as they are.
 *
 * Every byte is the provider's and hostile. The framing headers are read
 * strictly (a response smuggled past them would be read as the next call's
 * answer on a kept connection); the other headers as leniently as libcurl
 * reads them, since callers only look at a few of them.
 */

#ifndef _NGX_ASTRALFORM_HTTP1_H_INCLUDED_
#define _NGX_ASTRALFORM_HTTP1_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_ASTRALFORM_HTTP1_LENGTH = 0,    /* Content-Length bytes */
    NGX_ASTRALFORM_HTTP1_CHUNKED,       /* Transfer-Encoding: chunked */
    NGX_ASTRALFORM_HTTP1_EOF,           /* until the provider closes */
    NGX_ASTRALFORM_HTTP1_NONE           /* no body (HEAD, 1xx, 204, 304) */
} ngx_astralform_http1_body_e;


typedef struct {
    ngx_uint_t                    status;
    ngx_astralform_http1_body_e   body;
    off_t                         content_length;   /* LENGTH only */
    unsigned                      keepalive:1;      /* may be reused */
    unsigned                      encoded:1;        /* a Content-Encoding
                                                       other than identity */
} ngx_astralform_http1_head_t;


typedef struct {
    ngx_uint_t                    state;
    off_t                         size;             /* left in this chunk */
    size_t                        line;             /* bytes of this size or
                                                       trailer line */
} ngx_astralform_http1_chunked_t;


/*
 * The length of the response head at the start of buf[0, len), its empty
 * line included, or 0 if it has not ended yet. from: how much of buf an
 * earlier call has already seen (the search resumes there).
 */
size_t ngx_astralform_http1_head_end(u_char *buf, size_t len, size_t from);

/*
 * Parses a complete head (as head_end() measured it). Headers are pushed
 * to headers (of ngx_table_elt_t, names as sent, values trimmed, both
 * NUL-terminated, lowcase_key and hash set), pointing into head, which
 * must therefore outlive them; head is changed in place. head_request: the
 * request was HEAD. NGX_ERROR: not HTTP/1.x, or framing that cannot be
 * trusted (a bad or repeated Content-Length, a transfer coding other than
 * chunked); NGX_ABORT: out of memory.
 */
ngx_int_t ngx_astralform_http1_parse_head(u_char *head, size_t len,
    ngx_uint_t head_request, ngx_astralform_http1_head_t *h,
    ngx_array_t *headers);

/*
 * Decodes chunked data in place: buf[0, *len) holds received bytes; on
 * return buf[0, *len) holds the body bytes they carried (chunk sizes,
 * extensions and trailers removed) and *rest how many of the received
 * bytes follow the end of the body (not consumed; a reused connection must
 * have none). NGX_OK: the body ended; NGX_AGAIN: more is needed;
 * NGX_ERROR: not chunked coding.
 */
ngx_int_t ngx_astralform_http1_chunked(ngx_astralform_http1_chunked_t *ctx,
    u_char *buf, size_t *len, size_t *rest);


#endif /* _NGX_ASTRALFORM_HTTP1_H_INCLUDED_ */
