/*
 * HTTP/1.1 response framing (RFC 9112): see ngx_astralform_http1.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_astralform_http1.h"


/* a chunk size line: at most this many hex digits (16 fill off_t) */
#define NGX_ASTRALFORM_HTTP1_SIZE_DIGITS  15
/* a chunk extension or trailer line */
#define NGX_ASTRALFORM_HTTP1_MAX_LINE     4096


enum {
    sw_size = 0,
    sw_size_ws,         /* spaces after the size */
    sw_extension,       /* to the end of the size line */
    sw_size_lf,
    sw_data,
    sw_data_cr,
    sw_data_lf,
    sw_trailer_start,   /* start of a trailer line, or the last empty one */
    sw_trailer,
    sw_last_lf,
    sw_done
};


static ngx_int_t ngx_astralform_http1_status_line(u_char *p, u_char *last,
    ngx_astralform_http1_head_t *h, ngx_uint_t *http10);
static ngx_int_t ngx_astralform_http1_header(ngx_astralform_http1_head_t *h,
    ngx_table_elt_t *e, ngx_uint_t *chunked, ngx_uint_t *length,
    ngx_uint_t *close);
static ngx_uint_t ngx_astralform_http1_token(ngx_str_t *value,
    const char *token);
static ngx_int_t ngx_astralform_http1_hex(u_char ch);


size_t
ngx_astralform_http1_head_end(u_char *buf, size_t len, size_t from)
{
    u_char  *p, *last;

    /* "\n\r\n" or "\n\n": the line before may have ended either way */

    p = buf + (from > 2 ? from - 2 : 0);
    last = buf + len;

    while (p < last) {
        p = ngx_strlchr(p, last, LF);
        if (p == NULL) {
            return 0;
        }

        p++;

        if (p < last && *p == LF) {
            return p + 1 - buf;
        }

        if (last - p >= 2 && p[0] == CR && p[1] == LF) {
            return p + 2 - buf;
        }
    }

    return 0;
}


ngx_int_t
ngx_astralform_http1_parse_head(u_char *head, size_t len,
    ngx_uint_t head_request, ngx_astralform_http1_head_t *h,
    ngx_array_t *headers)
{
    u_char           *p, *last, *eol, *end, *colon, *name_end, *value;
    ngx_uint_t        http10, chunked, length, close;
    ngx_table_elt_t  *e;

    ngx_memzero(h, sizeof(ngx_astralform_http1_head_t));
    h->content_length = -1;

    if (ngx_strlchr(head, head + len, '\0') != NULL) {
        return NGX_ERROR;
    }

    last = head + len;

    eol = ngx_strlchr(head, last, LF);
    if (eol == NULL) {
        return NGX_ERROR;
    }

    end = (eol > head && eol[-1] == CR) ? eol - 1 : eol;

    if (ngx_astralform_http1_status_line(head, end, h, &http10) != NGX_OK) {
        return NGX_ERROR;
    }

    chunked = 0;
    length = 0;
    close = http10;

    for (p = eol + 1; p < last; p = eol + 1) {
        eol = ngx_strlchr(p, last, LF);
        if (eol == NULL) {
            return NGX_ERROR;
        }

        end = (eol > p && eol[-1] == CR) ? eol - 1 : eol;

        if (end == p) {
            break;                                  /* the empty line */
        }

        /* obsolete line folding: a framing header could hide in it */

        if (*p == ' ' || *p == '\t') {
            return NGX_ERROR;
        }

        colon = ngx_strlchr(p, end, ':');

        if (colon == NULL || colon == p) {
            continue;                               /* as libcurl: skipped */
        }

        name_end = colon;

        while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t'))
        {
            name_end--;
        }

        value = colon + 1;

        while (value < end && (*value == ' ' || *value == '\t')) {
            value++;
        }

        while (end > value && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        e = ngx_array_push(headers);
        if (e == NULL) {
            return NGX_ABORT;
        }

        /* the name and value are terminated where the line had : and CR */

        e->key.data = p;
        e->key.len = name_end - p;
        e->value.data = value;
        e->value.len = end - value;

        e->lowcase_key = ngx_pnalloc(headers->pool, e->key.len + 1);
        if (e->lowcase_key == NULL) {
            return NGX_ABORT;
        }

        e->hash = ngx_hash_strlow(e->lowcase_key, p, e->key.len);
        e->lowcase_key[e->key.len] = '\0';
        *name_end = '\0';
        *end = '\0';

        if (ngx_astralform_http1_header(h, e, &chunked, &length, &close)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* RFC 9112, 6.3 */

    if (head_request || h->status < 200 || h->status == 204
        || h->status == 304)
    {
        h->body = NGX_ASTRALFORM_HTTP1_NONE;
        h->content_length = -1;

    } else if (chunked) {
        h->body = NGX_ASTRALFORM_HTTP1_CHUNKED;

        /* both: chunked wins, and the connection is not to be trusted */

        if (length) {
            close = 1;
        }

        h->content_length = -1;

    } else if (length) {
        h->body = NGX_ASTRALFORM_HTTP1_LENGTH;

    } else {
        h->body = NGX_ASTRALFORM_HTTP1_EOF;
        close = 1;
    }

    h->keepalive = !close;

    return NGX_OK;
}


/* "HTTP/1.x 200 reason": HTTP/2 and later are not spoken here */

static ngx_int_t
ngx_astralform_http1_status_line(u_char *p, u_char *last,
    ngx_astralform_http1_head_t *h, ngx_uint_t *http10)
{
    if (last - p < 12
        || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || (p[7] != '0' && p[7] != '1')
        || p[8] != ' '
        || p[9] < '1' || p[9] > '5'
        || p[10] < '0' || p[10] > '9'
        || p[11] < '0' || p[11] > '9'
        || (last - p > 12 && p[12] != ' '))
    {
        return NGX_ERROR;
    }

    *http10 = (p[7] == '0');
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_http1_header(ngx_astralform_http1_head_t *h,
    ngx_table_elt_t *e, ngx_uint_t *chunked, ngx_uint_t *length,
    ngx_uint_t *close)
{
    off_t    n;
    u_char  *p, *last;

    if (e->key.len == sizeof("content-length") - 1
        && ngx_strcmp(e->lowcase_key, "content-length") == 0)
    {
        /* digits only; a repeat must say the same */

        if (e->value.len == 0 || e->value.len > 18) {
            return NGX_ERROR;
        }

        n = 0;
        last = e->value.data + e->value.len;

        for (p = e->value.data; p < last; p++) {
            if (*p < '0' || *p > '9') {
                return NGX_ERROR;
            }

            n = n * 10 + (*p - '0');
        }

        if (*length && n != h->content_length) {
            return NGX_ERROR;
        }

        *length = 1;
        h->content_length = n;

        return NGX_OK;
    }

    if (e->key.len == sizeof("transfer-encoding") - 1
        && ngx_strcmp(e->lowcase_key, "transfer-encoding") == 0)
    {
        /* only "chunked", once: anything else would need decoding */

        if (*chunked
            || e->value.len != sizeof("chunked") - 1
            || ngx_strncasecmp(e->value.data, (u_char *) "chunked",
                               sizeof("chunked") - 1)
               != 0)
        {
            return NGX_ERROR;
        }

        *chunked = 1;

        return NGX_OK;
    }

    if (e->key.len == sizeof("connection") - 1
        && ngx_strcmp(e->lowcase_key, "connection") == 0)
    {
        if (ngx_astralform_http1_token(&e->value, "close")) {
            *close = 1;
        }

        return NGX_OK;
    }

    if (e->key.len == sizeof("content-encoding") - 1
        && ngx_strcmp(e->lowcase_key, "content-encoding") == 0)
    {
        if (e->value.len != sizeof("identity") - 1
            || ngx_strncasecmp(e->value.data, (u_char *) "identity",
                               sizeof("identity") - 1)
               != 0)
        {
            h->encoded = 1;
        }
    }

    return NGX_OK;
}


/* whether a comma-separated list holds token, case-insensitively */

static ngx_uint_t
ngx_astralform_http1_token(ngx_str_t *value, const char *token)
{
    size_t   len;
    u_char  *p, *last, *start, *end;

    len = ngx_strlen(token);
    p = value->data;
    last = p + value->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_astralform_http1_chunked(ngx_astralform_http1_chunked_t *ctx,
    u_char *buf, size_t *len, size_t *rest)
{
    u_char     ch, *p, *last, *out;
    size_t     n;
    ngx_int_t  d;

    p = buf;
    last = buf + *len;
    out = buf;

    while (p < last && ctx->state != sw_done) {

        if (ctx->state == sw_data) {
            n = ngx_min((off_t) (last - p), ctx->size);

            /* the data moves towards buf: only size lines were between */

            if (out != p) {
                ngx_memmove(out, p, n);
            }

            out += n;
            p += n;
            ctx->size -= n;

            if (ctx->size == 0) {
                ctx->state = sw_data_cr;
            }

            continue;
        }

        ch = *p++;

        switch (ctx->state) {

        case sw_size:
            d = ngx_astralform_http1_hex(ch);

            if (d >= 0) {
                if (++ctx->line > NGX_ASTRALFORM_HTTP1_SIZE_DIGITS) {
                    return NGX_ERROR;
                }

                ctx->size = ctx->size * 16 + d;
                break;
            }

            if (ctx->line == 0) {
                return NGX_ERROR;
            }

            /* the size ended: what follows is read as after spaces */

            ctx->line = 0;
            ctx->state = sw_size_ws;

            /* fall through */

        case sw_size_ws:
            if (ch == ' ' || ch == '\t') {
                break;
            }

            if (ch == ';') {
                ctx->state = sw_extension;

            } else if (ch == CR) {
                ctx->state = sw_size_lf;

            } else if (ch == LF) {
                ctx->state = ctx->size ? sw_data : sw_trailer_start;

            } else {
                return NGX_ERROR;
            }

            break;

        case sw_extension:
            if (++ctx->line > NGX_ASTRALFORM_HTTP1_MAX_LINE || ch == '\0') {
                return NGX_ERROR;
            }

            if (ch == CR) {
                ctx->state = sw_size_lf;

            } else if (ch == LF) {
                ctx->line = 0;
                ctx->state = ctx->size ? sw_data : sw_trailer_start;
            }

            break;

        case sw_size_lf:
            if (ch != LF) {
                return NGX_ERROR;
            }

            ctx->line = 0;
            ctx->state = ctx->size ? sw_data : sw_trailer_start;
            break;

        case sw_data_cr:
            if (ch == CR) {
                ctx->state = sw_data_lf;

            } else if (ch == LF) {
                ctx->state = sw_size;

            } else {
                return NGX_ERROR;
            }

            break;

        case sw_data_lf:
            if (ch != LF) {
                return NGX_ERROR;
            }

            ctx->state = sw_size;
            break;

        case sw_trailer_start:
            if (ch == CR) {
                ctx->state = sw_last_lf;

            } else if (ch == LF) {
                ctx->state = sw_done;

            } else if (ch == '\0') {
                return NGX_ERROR;

            } else {
                ctx->line = 1;
                ctx->state = sw_trailer;
            }

            break;

        case sw_trailer:
            /* trailers are read past, not kept */

            if (++ctx->line > NGX_ASTRALFORM_HTTP1_MAX_LINE || ch == '\0') {
                return NGX_ERROR;
            }

            if (ch == LF) {
                ctx->line = 0;
                ctx->state = sw_trailer_start;
            }

            break;

        case sw_last_lf:
            if (ch != LF) {
                return NGX_ERROR;
            }

            ctx->state = sw_done;
            break;

        default:
            return NGX_ERROR;
        }
    }

    *len = out - buf;
    *rest = last - p;

    return ctx->state == sw_done ? NGX_OK : NGX_AGAIN;
}


static ngx_int_t
ngx_astralform_http1_hex(u_char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }

    ch |= 0x20;

    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }

    return -1;
}
