/*
 * Server-sent events (the WHATWG event stream), read from a whole body:
 * what an MCP server's text/event-stream answer carries.
 */

#ifndef _NGX_ASTRALFORM_SSE_H_INCLUDED_
#define _NGX_ASTRALFORM_SSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    u_char                       *pos;
    u_char                       *last;
    u_char                       *data;         /* body->len + 1 bytes */
} ngx_astralform_sse_t;


/* the reader of body, its buffer in pool; NGX_ERROR: out of memory */
ngx_int_t ngx_astralform_sse_init(ngx_astralform_sse_t *sse,
    ngx_pool_t *pool, ngx_str_t *body);

/*
 * The data of the next "message" event (its "data:" lines joined with
 * LF, valid until the next call), or NGX_DONE at the end of the body.
 */
ngx_int_t ngx_astralform_sse_next(ngx_astralform_sse_t *sse,
    ngx_str_t *data);


#endif /* _NGX_ASTRALFORM_SSE_H_INCLUDED_ */
