/*
 * Browser answers of the OAuth endpoints: small HTML pages and redirects,
 * kept out of caches, referrers and frames. A callback that consumed its
 * state clears the browser-binding cookie with whatever it answers.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


static ngx_int_t ngx_astralform_send_text(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, const char *type, u_char *text, size_t len);


void
ngx_astralform_oauth_page(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    const char *error, const char *title, const char *fmt, ...)
{
    u_char   text[1024], *last, *page, *p;
    size_t   len, tlen;
    va_list  args;

    static u_char  head[] =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
        "<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, "
        "initial-scale=1\">\n<title>";
    static u_char  middle[] =
        "</title>\n</head>\n<body style=\"font-family: sans-serif; "
        "max-width: 36em; margin: 4em auto; padding: 0 1em\">\n<h1>";
    static u_char  para[] = "</h1>\n<p>";
    static u_char  tail[] = "</p>\n</body>\n</html>\n";

    if (error != NULL) {
        ctx->error.data = (u_char *) error;
        ctx->error.len = ngx_strlen(error);
    }

    va_start(args, fmt);
    last = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    tlen = ngx_strlen(title);

    len = sizeof(head) - 1 + sizeof(middle) - 1 + sizeof(para) - 1
          + sizeof(tail) - 1
          + 2 * (tlen + ngx_escape_html(NULL, (u_char *) title, tlen))
          + (last - text) + ngx_escape_html(NULL, text, last - text);

    page = ngx_pnalloc(ctx->request->pool, len);
    if (page == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(page, head, sizeof(head) - 1);
    p = (u_char *) ngx_escape_html(p, (u_char *) title, tlen);
    p = ngx_cpymem(p, middle, sizeof(middle) - 1);
    p = (u_char *) ngx_escape_html(p, (u_char *) title, tlen);
    p = ngx_cpymem(p, para, sizeof(para) - 1);
    p = (u_char *) ngx_escape_html(p, text, last - text);
    p = ngx_cpymem(p, tail, sizeof(tail) - 1);

    ngx_astralform_finish(ctx,
        ngx_astralform_send_text(ctx, status, "text/html; charset=utf-8",
                                 page, p - page));
}


void
ngx_astralform_oauth_html(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    u_char *html, size_t len)
{
    ngx_astralform_finish(ctx,
        ngx_astralform_send_text(ctx, status, "text/html; charset=utf-8",
                                 html, len));
}


void
ngx_astralform_oauth_redirect(ngx_astralform_ctx_t *ctx, ngx_str_t *location,
    ngx_str_t *cookie)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_astralform_out_header(r, "Location", location) != NGX_OK
        || (cookie->len
            && ngx_astralform_out_header(r, "Set-Cookie", cookie) != NGX_OK))
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cookie->len = 0;

    ngx_astralform_finish(ctx,
        ngx_astralform_send_text(ctx, NGX_HTTP_MOVED_TEMPORARILY,
                                 "text/plain; charset=utf-8", NULL, 0));
}


static ngx_int_t
ngx_astralform_send_text(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    const char *type, u_char *text, size_t len)
{
    ngx_int_t               rc;
    ngx_str_t               v;
    ngx_http_request_t     *r;
    ngx_astralform_flow_t  *flow;

    r = ctx->request;
    flow = ctx->data;

    ngx_astralform_discard_body(r, status);
    ctx->answered = 1;

    /* browser pages: not cached, no referrer, no framing, no scripts */

    ngx_str_set(&v, "no-store");
    if (ngx_astralform_out_header(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "no-referrer");
    if (ngx_astralform_out_header(r, "Referrer-Policy", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (flow != NULL && flow->csp.len) {
        v = flow->csp;

    } else {
        ngx_str_set(&v, "default-src 'none'; style-src 'unsafe-inline'; "
                    "frame-ancestors 'none'; base-uri 'none'; "
                    "form-action 'none'");
    }

    if (ngx_astralform_out_header(r, "Content-Security-Policy", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "DENY");
    if (ngx_astralform_out_header(r, "X-Frame-Options", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "nosniff");
    if (ngx_astralform_out_header(r, "X-Content-Type-Options", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a callback that consumed its state clears the binding cookie */

    if (flow != NULL && flow->cookie.len && status != NGX_HTTP_MOVED_TEMPORARILY
        && ngx_astralform_out_header(r, "Set-Cookie", &flow->cookie)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_astralform_send_body(r, text, len);
}
