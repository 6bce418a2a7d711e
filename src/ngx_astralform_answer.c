/*
 * The module's answers: a JSON body (with a provider's raw JSON spliced in
 * unchanged), the {"error","message"} envelope of every refusal, an
 * answer diverted to another door (the MCP servers turn the HTTP rows'
 * answers into their own), and the one finalization of a request.
 *
 * Life cycle (ngx_astralform_api.c): whatever a handler does,
 * synchronously or after Redis and provider callbacks, it ends with
 * exactly one ngx_astralform_finish().
 */


#include "ngx_astralform.h"
#include "ngx_astralform_scrub.h"
#include "ngx_astralform_record.h"


static ngx_int_t ngx_astralform_answer_dump(ngx_pool_t *pool, json_t *json,
    size_t room, ngx_str_t *out);
static void ngx_astralform_lower(u_char *dst, u_char *src, size_t n);
static ngx_uint_t ngx_astralform_memmem(u_char *hay, size_t len,
    u_char *needle, size_t n);
static ngx_int_t ngx_astralform_scrub_answer(ngx_astralform_ctx_t *ctx,
    json_t *head, ngx_str_t **raw);
static ngx_int_t ngx_astralform_answer_divert(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *head, const char *member, ngx_str_t *raw);


/* sends json (and releases it); answers 500 when json is NULL */
ngx_int_t
ngx_astralform_send_json(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *json)
{
    return ngx_astralform_send_json_raw(ctx, status, json, NULL, NULL);
}


/*
 * Sends the object head (and releases it) with one more member whose value
 * is raw JSON text the caller has checked: a provider's answer goes out
 * byte for byte, without being serialised again.
 */
/* jansson's dump of an answer, copied into the pool with room after it */

static ngx_int_t
ngx_astralform_answer_dump(ngx_pool_t *pool, json_t *json, size_t room,
    ngx_str_t *out)
{
    char    *text;
    size_t   len;

    /* 15 digits: 48.8534 stays 48.8534, not 48.853400000000001 */
    text = json_dumps(json, JSON_COMPACT|JSON_REAL_PRECISION(15));
    if (text == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(text);

    out->data = ngx_pnalloc(pool, len + room);
    if (out->data == NULL) {
        ngx_free(text);
        return NGX_ERROR;
    }

    out->len = len;
    ngx_memcpy(out->data, text, len);
    ngx_free(text);

    return NGX_OK;
}


ngx_int_t
ngx_astralform_send_json_raw(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *head, const char *member, ngx_str_t *raw)
{
    size_t               room;
    ngx_str_t            text;
    ngx_int_t            rc;
    ngx_uint_t           level;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (head == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->finalized) {
        /* work that outlived the answer (ngx_astralform_finish()) */
        level = ctx->cancelled ? NGX_LOG_INFO : NGX_LOG_ALERT;
        ngx_log_error(level, r->connection->log, 0,
                      "astralform: an answer after the request was "
                      "finalized, dropped");
        json_decref(head);
        return NGX_ERROR;
    }

    ngx_astralform_discard_body(r, status);
    ctx->answered = 1;

    if (ctx->secrets != NULL
        && ngx_astralform_scrub_answer(ctx, head, &raw) != NGX_OK)
    {
        json_decref(head);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->answer != NULL) {
        return ngx_astralform_answer_divert(ctx, status, head, member, raw);
    }

    room = 1;
    if (raw != NULL) {
        room += ngx_strlen(member) + raw->len + sizeof(",\"\":") - 1;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        json_decref(head);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_astralform_record_write(r->pool, head, room, &text);

    if (rc == NGX_DECLINED) {
        rc = ngx_astralform_answer_dump(r->pool, head, room, &text);
    }

    json_decref(head);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = text.data;
    b->last = text.data + text.len;
    b->start = b->pos;
    b->end = b->last + room;
    b->temporary = 1;

    if (raw != NULL) {
        /* "{...}" becomes "{...,"member":RAW}" */
        b->last--;
        if (text.len > 2) {
            *b->last++ = ',';
        }
        b->last = ngx_sprintf(b->last, "\"%s\":", member);
        b->last = ngx_cpymem(b->last, raw->data, raw->len);
        *b->last++ = '}';
    }

    *b->last++ = '\n';

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    /* answers carry per-user state: never cache them */
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * An answer sent before the body is read must discard the body (as
 * nginx's own special responses do): left on a keep-alive connection, a
 * body that is itself an HTTP request would be read as the next request.
 * A no-op once the body is read or discarded.
 */
void
ngx_astralform_discard_body(ngx_http_request_t *r, ngx_uint_t status)
{
    if (status >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* no "100 Continue" for a request that is refused */
        r->expect_tested = 1;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }
}


/*
 * No credential the gateway sent goes back (ngx_astralform_scrub.c). A raw
 * member is parsed again only when it may hold one: a form appears in it,
 * or a \u-escape could hide one.
 */
/*
 * ngx_strlow() eight bytes at a time: an ASCII letter A-Z, and only that,
 * gets 0x20 (the bytes over 0x7f are left as they are).
 */

static void
ngx_astralform_lower(u_char *dst, u_char *src, size_t n)
{
    uint64_t  w, low7, above_z, from_a, upper;

    for ( /* void */ ; n >= 8; n -= 8, src += 8, dst += 8) {
        ngx_memcpy(&w, src, 8);

        low7 = w & 0x7f7f7f7f7f7f7f7fULL;
        above_z = low7 + 0x2525252525252525ULL;   /* bit 7: over 'Z' */
        from_a = low7 + 0x3f3f3f3f3f3f3f3fULL;    /* bit 7: 'A' or over */
        upper = (from_a ^ above_z) & ~w & 0x8080808080808080ULL;

        w |= upper >> 2;
        ngx_memcpy(dst, &w, 8);
    }

    ngx_strlow(dst, src, n);
}


/* memmem() as a yes or no, for byte strings of any content */

static ngx_uint_t
ngx_astralform_memmem(u_char *hay, size_t len, u_char *needle, size_t n)
{
    return n != 0 && len >= n && memmem(hay, len, needle, n) != NULL;
}


static ngx_int_t
ngx_astralform_scrub_answer(ngx_astralform_ctx_t *ctx, json_t *head,
    ngx_str_t **raw)
{
    char        *text;
    u_char      *low;
    json_t      *body;
    ngx_str_t    out, *copy, *f;
    ngx_int_t    rc;
    ngx_uint_t   i, suspect;

    if (ngx_astralform_scrub_json(ctx->request->pool, ctx->secrets, head)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    if (*raw == NULL) {
        return NGX_OK;
    }

    /*
     * Any \u escape, or any form in any case, sends the answer through
     * the JSON walk. The forms are lower case: one lower-case copy of the
     * answer, then memmem() for each, is a tenth of the cost of a
     * case-insensitive scan per form over a large answer.
     */
    suspect = ngx_astralform_memmem((*raw)->data, (*raw)->len,
                                    (u_char *) "\\u", 2);

    if (!suspect) {
        low = ngx_pnalloc(ctx->request->pool, (*raw)->len);
        if (low == NULL) {
            return NGX_ERROR;
        }

        ngx_astralform_lower(low, (*raw)->data, (*raw)->len);

        f = ctx->secrets->elts;

        for (i = 0; !suspect && i < ctx->secrets->nelts; i++) {
            suspect = ngx_astralform_memmem(low, (*raw)->len, f[i].data,
                                            f[i].len);
        }
    }

    if (!suspect) {
        return NGX_OK;
    }

    body = json_loadb((char *) (*raw)->data, (*raw)->len, 0, NULL);
    if (body == NULL) {
        return NGX_ERROR;
    }

    /* nothing redacted: the bytes go as they are; a failure fails closed */
    rc = ngx_astralform_scrub_json(ctx->request->pool, ctx->secrets, body);

    if (rc != NGX_OK) {
        json_decref(body);
        return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    text = json_dumps(body, JSON_COMPACT|JSON_ENCODE_ANY
                            |JSON_REAL_PRECISION(15));
    json_decref(body);

    copy = ngx_palloc(ctx->request->pool, sizeof(ngx_str_t));

    if (text == NULL || copy == NULL
        || ngx_astralform_strdup(ctx->request->pool, &out, text) != NGX_OK)
    {
        ngx_free(text);
        return NGX_ERROR;
    }

    ngx_free(text);

    *copy = out;
    *raw = copy;

    return NGX_OK;
}


/*
 * Another door (the MCP endpoints) runs a handler and turns its answer
 * into its own: the whole answer goes to ctx->answer as one object.
 */
static ngx_int_t
ngx_astralform_answer_divert(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *head, const char *member, ngx_str_t *raw)
{
    json_t                    *v;
    ngx_astralform_answer_pt   answer;

    if (raw != NULL) {
        v = json_loadb((char *) raw->data, raw->len, JSON_DECODE_ANY, NULL);
        if (v == NULL) {
            v = json_stringn((char *) raw->data, raw->len);
        }

        json_object_set_new(head, member, v);
    }

    /* what the door sends goes out as it is */
    answer = ctx->answer;
    ctx->answer = NULL;

    return answer(ctx, status, head);
}


json_t *
ngx_astralform_error_json(ngx_astralform_ctx_t *ctx, const char *code,
    const char *fmt, va_list args)
{
    u_char   msg[512], *last, *p;
    json_t  *json, *text;

    last = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    *last = '\0';

    ctx->error.data = (u_char *) code;
    ctx->error.len = ngx_strlen(code);

    json = json_object();
    if (json == NULL) {
        return NULL;
    }

    json_object_set_new(json, "error", json_string(code));

    /* a message quoting the caller's bytes may not be UTF-8: mask those */
    text = json_stringn((char *) msg, last - msg);

    if (text == NULL) {
        for (p = msg; p < last; p++) {
            if (*p >= 0x80 || *p < 0x20) {
                *p = '?';
            }
        }

        text = json_stringn((char *) msg, last - msg);
    }

    json_object_set_new(json, "message", text);

    return json;
}


ngx_int_t
ngx_astralform_send_error(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    json_t   *json;
    va_list   args;

    va_start(args, fmt);
    json = ngx_astralform_error_json(ctx, code, fmt, args);
    va_end(args);

    return ngx_astralform_send_json(ctx, status, json);
}


ngx_int_t
ngx_astralform_send_error_with(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *extra, const char *code, const char *fmt, ...)
{
    json_t   *json;
    va_list   args;

    va_start(args, fmt);
    json = ngx_astralform_error_json(ctx, code, fmt, args);
    va_end(args);

    if (json != NULL && extra != NULL) {
        json_object_update(json, extra);
    }

    json_decref(extra);

    return ngx_astralform_send_json(ctx, status, json);
}


ngx_int_t
ngx_astralform_admin_required(ngx_astralform_ctx_t *ctx)
{
    return ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                     "admin_required",
                                     "this needs the project's admin key");
}


void
ngx_astralform_store_unavailable(ngx_astralform_ctx_t *ctx)
{
    ngx_astralform_finish(ctx,
        ngx_astralform_send_error(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable",
                                  "the token store is unavailable, "
                                  "try again shortly"));
}


/*
 * Once. nginx may keep a finalized request for a while (a lingering
 * close, a reader slower than the answer), and with it the work in its
 * pool: an MCP call answered as cancelled still has its provider call
 * running. What such work answers later is dropped, here and in
 * ngx_astralform_send_json_raw().
 */
void
ngx_astralform_finish(ngx_astralform_ctx_t *ctx, ngx_int_t rc)
{
    if (ctx->finalized) {
        if (!ctx->cancelled) {
            ngx_log_error(NGX_LOG_ALERT, ctx->request->connection->log, 0,
                          "astralform: a request finalized twice");
        }

        return;
    }

    if (rc != NGX_DONE) {
        ctx->finalized = 1;
    }

    ngx_http_finalize_request(ctx->request, rc);
}
