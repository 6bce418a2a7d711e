/*
 * Server-sent events (WHATWG): lines end with CRLF, LF or CR; "data:"
 * lines of one event are joined with LF; an empty line ends the event.
 * Events of another type than "message", comments ("..."), "id",
 * "retry" and unknown fields are skipped. The body is whole (a server
 * ends the stream after its answer), so an event cut off by the end of
 * the stream still counts.
 */


#include "ngx_astralform_sse.h"


ngx_int_t
ngx_astralform_sse_init(ngx_astralform_sse_t *sse, ngx_pool_t *pool,
    ngx_str_t *body)
{
    sse->pos = body->data;
    sse->last = body->data + body->len;

    sse->data = ngx_pnalloc(pool, body->len + 1);
    if (sse->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_astralform_sse_next(ngx_astralform_sse_t *sse, ngx_str_t *data)
{
    u_char      *p, *last, *eol, *colon, *value, *d;
    size_t       len;
    ngx_uint_t   other;

    p = sse->pos;
    last = sse->last;
    d = sse->data;
    other = 0;

    for ( ;; ) {
        eol = p;
        while (eol < last && *eol != CR && *eol != LF) {
            eol++;
        }

        if (eol == p) {
            /* an empty line, or the end of the stream: dispatch */

            if (p < last) {
                p += (p[0] == CR && p + 1 < last && p[1] == LF) ? 2 : 1;
            }

            if (d > sse->data && !other) {
                sse->pos = p;

                /* without the LF of the last line */
                data->data = sse->data;
                data->len = d - sse->data - 1;
                return NGX_OK;
            }

            if (eol == last) {
                sse->pos = last;
                return NGX_DONE;
            }

            d = sse->data;
            other = 0;
            continue;
        }

        colon = ngx_strlchr(p, eol, ':');
        len = (colon ? colon : eol) - p;

        value = colon ? colon + 1 : eol;
        if (value < eol && *value == ' ') {
            value++;
        }

        if (len == sizeof("data") - 1 && ngx_strncmp(p, "data", len) == 0) {
            d = ngx_cpymem(d, value, eol - value);
            *d++ = LF;

        } else if (len == sizeof("event") - 1
                   && ngx_strncmp(p, "event", len) == 0)
        {
            other = !(eol - value == sizeof("message") - 1
                      && ngx_strncmp(value, "message",
                                     sizeof("message") - 1) == 0);
        }

        p = eol;

        if (p < last) {
            p += (p[0] == CR && p + 1 < last && p[1] == LF) ? 2 : 1;
        }
    }
}
