/*
 * nginx's own error answers in an astralform_api location, as the JSON
 * envelope the API promises: a body over client_max_body_size (413), a
 * broken chunked body (400), "deny" (403), a handler's 500 and the like
 * are answered by ngx_http_special_response_handler with an HTML page.
 * A header filter and a body filter replace that page, on its way out, by
 * {"error","message"} with the same status.
 *
 * The module's own answers (ctx->answered) pass untouched, so do answers
 * of other locations: an operator's error_page redirects the request
 * elsewhere and wins. Errors nginx answers before it has chosen a
 * location (a malformed request line or header, 414, 494) belong to the
 * server{} and keep nginx's page there.
 */


#include "ngx_astralform.h"


typedef struct {
    ngx_uint_t                    status;
    const char                   *code;
    const char                   *message;
} ngx_astralform_status_error_t;


static ngx_int_t ngx_astralform_errors_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_astralform_errors_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_buf_t *ngx_astralform_errors_envelope(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_astralform_status_error_t  ngx_astralform_status_errors[] = {
    { NGX_HTTP_BAD_REQUEST, "bad_request",
      "the request is malformed" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized",
      "the server wants credentials for this request" },
    { NGX_HTTP_FORBIDDEN, "forbidden",
      "the server does not allow this request" },
    { NGX_HTTP_NOT_FOUND, "not_found", "no such endpoint" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
      "this method is not allowed here" },
    { NGX_HTTP_REQUEST_TIME_OUT, "request_timeout",
      "the request was not sent in time" },
    { NGX_HTTP_LENGTH_REQUIRED, "length_required",
      "the request needs a Content-Length" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "body_too_large",
      "the request body is larger than the server accepts" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "uri_too_long",
      "the request URI is too long" },
    { NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
      "the request body has a type the server does not accept" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "too_many_requests",
      "too many requests, slow down" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "something went wrong on the server; try again" },
    { NGX_HTTP_NOT_IMPLEMENTED, "not_implemented",
      "the server does not implement this" },
    { NGX_HTTP_BAD_GATEWAY, "bad_gateway",
      "an upstream server answered badly" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "the service is unavailable; try again shortly" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "gateway_timeout",
      "an upstream server did not answer in time" },
    { 0, "http_error", "the request failed" }
};


ngx_int_t
ngx_astralform_errors_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_astralform_errors_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_astralform_errors_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_errors_header_filter(ngx_http_request_t *r)
{
    ngx_buf_t                 *b;
    ngx_astralform_ctx_t      *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    if (r->headers_out.status < NGX_HTTP_BAD_REQUEST || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->handler != ngx_astralform_api_handler) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_astralform_module);

    if (ctx != NULL && ctx->answered) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        /* refused before the content handler ran */
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_astralform_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->request = r;
        ngx_http_set_ctx(r, ctx, ngx_astralform_module);
    }

    b = ngx_astralform_errors_envelope(ctx, r->headers_out.status);
    if (b == NULL) {
        return NGX_ERROR;
    }

    ctx->envelope = b;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    ngx_str_null(&r->headers_out.charset);

    ngx_http_clear_content_length(r);
    r->headers_out.content_length_n = b->last - b->pos;

    return ngx_http_next_header_filter(r);
}


/* nginx's page is dropped; the envelope goes out with its last buffer */
static ngx_int_t
ngx_astralform_errors_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t             *b;
    ngx_uint_t             last;
    ngx_chain_t           *cl, out;
    ngx_astralform_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_astralform_module);

    if (ctx == NULL || ctx->envelope == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf || b->last_in_chain) {
            last = 1;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    out.buf = ctx->envelope;
    out.next = NULL;

    ctx->envelope = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_buf_t *
ngx_astralform_errors_envelope(ngx_astralform_ctx_t *ctx, ngx_uint_t status)
{
    char                           *text;
    size_t                          len;
    json_t                         *json;
    ngx_buf_t                      *b;
    ngx_astralform_status_error_t  *e;

    for (e = ngx_astralform_status_errors; e->status; e++) {
        if (e->status == status) {
            break;
        }
    }

    ctx->error.data = (u_char *) e->code;
    ctx->error.len = ngx_strlen(e->code);

    json = json_pack("{s:s, s:s}", "error", e->code, "message", e->message);
    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL) {
        return NULL;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(ctx->request->pool, len + 1);
    if (b == NULL) {
        ngx_free(text);
        return NULL;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';
    ngx_free(text);

    b->last_buf = 1;
    b->last_in_chain = 1;

    return b;
}
