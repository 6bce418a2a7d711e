/*
 * The embedded files: the dashboard (astralform_dashboard, a location of
 * its own) and GET /v1/openapi.json (a row of the API).
 *
 * Both are byte arrays generated from html/ and docs/openapi.json at build
 * time (scripts/assets.pl into build/ngx_astralform_assets.h) and sent from
 * the module's memory.  The dashboard is a single-page app calling the API
 * of the same origin with the admin key as a bearer header (no cookie, so
 * no CSRF); its headers forbid any other origin, inline code and framing.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_dashboard.h"
#include "ngx_astralform_assets.h"


static ngx_astralform_asset_t *ngx_astralform_asset(const char *dir,
    ngx_str_t *name);
static ngx_int_t ngx_astralform_asset_send(ngx_http_request_t *r,
    ngx_astralform_asset_t *asset, ngx_uint_t page);


/*
 * 'self' only: the app's own script and style files and the API; nothing
 * inline, no other origin, never inside a frame.
 */
#define NGX_ASTRALFORM_DASHBOARD_CSP                                         \
    "default-src 'self'; script-src 'self'; style-src 'self'; "             \
    "img-src 'self'; connect-src 'self'; object-src 'none'; "               \
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


ngx_int_t
ngx_astralform_dashboard_handler(ngx_http_request_t *r)
{
    u_char                  *p;
    ngx_int_t                rc;
    ngx_str_t                name;
    ngx_astralform_asset_t  *asset;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* the last segment names the file; the location's own URI the page */
    p = r->uri.data + r->uri.len;
    while (p > r->uri.data && p[-1] != '/') {
        p--;
    }

    name.data = p;
    name.len = r->uri.data + r->uri.len - p;

    if (name.len == 0) {
        ngx_str_set(&name, "index.html");
    }

    asset = ngx_astralform_asset("html", &name);
    if (asset == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    return ngx_astralform_asset_send(r, asset, 1);
}


ngx_int_t
ngx_astralform_openapi_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t                name;
    ngx_astralform_asset_t  *asset;

    ngx_str_set(&name, "openapi.json");

    asset = ngx_astralform_asset("docs", &name);
    if (asset == NULL) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_NOT_FOUND,
                                         "not_found",
                                         "this build has no API "
                                         "description");
    }

    return ngx_astralform_asset_send(ctx->request, asset, 0);
}


static ngx_astralform_asset_t *
ngx_astralform_asset(const char *dir, ngx_str_t *name)
{
    size_t                   len;
    ngx_astralform_asset_t  *a;

    len = ngx_strlen(dir);

    for (a = ngx_astralform_assets; a->data != NULL; a++) {
        if (a->name.len == len + 1 + name->len
            && ngx_strncmp(a->name.data, dir, len) == 0
            && a->name.data[len] == '/'
            && ngx_strncmp(a->name.data + len + 1, name->data, name->len)
               == 0)
        {
            return a;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_astralform_asset_send(ngx_http_request_t *r,
    ngx_astralform_asset_t *asset, ngx_uint_t page)
{
    ngx_int_t  rc;

    static ngx_str_t  csp = ngx_string(NGX_ASTRALFORM_DASHBOARD_CSP);
    static ngx_str_t  deny = ngx_string("DENY");
    static ngx_str_t  nosniff = ngx_string("nosniff");
    static ngx_str_t  no_cache = ngx_string("no-cache");
    static ngx_str_t  no_referrer = ngx_string("no-referrer");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = asset->len;
    r->headers_out.content_type = asset->type;
    r->headers_out.content_type_len = asset->type.len;

    /* the not-modified filter answers 304 to a matching If-None-Match */
    r->headers_out.etag = ngx_list_push(&r->headers_out.headers);
    if (r->headers_out.etag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    r->headers_out.etag->hash = 1;
    ngx_str_set(&r->headers_out.etag->key, "ETag");
    r->headers_out.etag->value = asset->etag;

    if (ngx_astralform_out_header(r, "Cache-Control", &no_cache) != NGX_OK
        || ngx_astralform_out_header(r, "X-Content-Type-Options", &nosniff)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (page
        && (ngx_astralform_out_header(r, "Content-Security-Policy", &csp)
            != NGX_OK
            || ngx_astralform_out_header(r, "X-Frame-Options", &deny)
               != NGX_OK
            || ngx_astralform_out_header(r, "Referrer-Policy", &no_referrer)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_astralform_send_body(r, asset->data, asset->len);
}


ngx_int_t
ngx_astralform_send_body(ngx_http_request_t *r, u_char *data, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_astralform_out_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}
