/*
 * Helpers of the OAuth files: the catalog's oauth settings, pool strings,
 * application/x-www-form-urlencoded both ways, HTTP Basic credentials.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


const char *
ngx_astralform_oauth_str(ngx_astralform_def_t *def, const char *key,
    const char *dflt)
{
    const char  *s;

    s = ngx_astralform_json_value(def->oauth, key);

    return (s != NULL && *s != '\0') ? s : dflt;
}


ngx_uint_t
ngx_astralform_oauth_flag(ngx_astralform_def_t *def, const char *key,
    ngx_uint_t dflt)
{
    json_t  *v;

    v = json_object_get(def->oauth, key);

    return json_is_boolean(v) ? json_is_true(v) : dflt;
}


ngx_int_t
ngx_astralform_oauth_pdup(ngx_pool_t *pool, ngx_str_t *dst, const char *src,
    size_t len)
{
    ngx_str_t  s;

    s.len = len;
    s.data = (u_char *) src;

    return ngx_astralform_str_copy(pool, dst, &s);
}


/* application/x-www-form-urlencoded from an object of strings */
ngx_int_t
ngx_astralform_oauth_form_encode(ngx_pool_t *pool, json_t *params,
    ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    json_t      *v;
    const char  *key;

    len = 0;

    json_object_foreach(params, key, v) {
        if (json_is_string(v)) {
            len += 3 * (ngx_strlen(key) + json_string_length(v)) + 2;
        }
    }

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    json_object_foreach(params, key, v) {
        if (!json_is_string(v)) {
            continue;
        }

        if (p != out->data) {
            *p++ = '&';
        }

        p += ngx_astralform_oauth_url_escape(p, (u_char *) key,
                                             ngx_strlen(key));
        *p++ = '=';
        p += ngx_astralform_oauth_url_escape(p, (u_char *) json_string_value(v),
                                             json_string_length(v));
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* RFC 3986 unreserved characters stay, everything else is %XX */
size_t
ngx_astralform_oauth_url_escape(u_char *dst, u_char *src, size_t len)
{
    u_char   c, *p;
    size_t   i;

    static u_char  hex[] = "0123456789ABCDEF";

    p = dst;

    for (i = 0; i < len; i++) {
        c = src[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            *p++ = c;
            continue;
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }

    return p - dst;
}


/* %XX and "+" decoded; refuses bad escapes and NUL */
ngx_int_t
ngx_astralform_oauth_unescape(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char      c, *p, *s, *last;
    ngx_int_t   hi, lo;

    p = ngx_pnalloc(pool, src->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;
    s = src->data;
    last = src->data + src->len;

    while (s < last) {
        c = *s++;

        if (c == '+') {
            c = ' ';

        } else if (c == '%') {
            if (last - s < 2) {
                return NGX_ERROR;
            }

            hi = ngx_hextoi(s, 1);
            lo = ngx_hextoi(s + 1, 1);

            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                return NGX_ERROR;
            }

            c = (u_char) (hi * 16 + lo);
            s += 2;
        }

        if (c == '\0') {
            return NGX_ERROR;
        }

        *p++ = c;
    }

    *p = '\0';
    dst->len = p - dst->data;

    return NGX_OK;
}


ngx_int_t
ngx_astralform_oauth_basic_auth(ngx_pool_t *pool, ngx_str_t *id,
    ngx_str_t *secret, ngx_str_t *out)
{
    ngx_str_t  plain, enc;

    plain.len = id->len + 1 + secret->len;
    plain.data = ngx_pnalloc(pool, plain.len);
    enc.data = ngx_pnalloc(pool, ngx_base64_encoded_length(plain.len));
    out->data = ngx_pnalloc(pool, sizeof("Basic ") - 1
                                  + ngx_base64_encoded_length(plain.len));

    if (plain.data == NULL || enc.data == NULL || out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(plain.data, "%V:%V", id, secret);
    ngx_encode_base64(&enc, &plain);
    ngx_astralform_oauth_wipe(&plain);

    out->len = ngx_sprintf(out->data, "Basic %V", &enc) - out->data;
    ngx_astralform_oauth_wipe(&enc);

    return NGX_OK;
}


ngx_uint_t
ngx_astralform_oauth_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


void
ngx_astralform_oauth_wipe(ngx_str_t *s)
{
    if (s->data != NULL && s->len) {
        ngx_explicit_memzero(s->data, s->len);
    }
}


/*
 * The value of the field called name in an application/x-www-form-
 * urlencoded body, unescaped into pool. NGX_DECLINED when absent;
 * NGX_ERROR when malformed or given twice (which one would count?).
 */
ngx_int_t
ngx_astralform_oauth_form_arg(ngx_pool_t *pool, ngx_str_t *body,
    const char *name, ngx_str_t *value)
{
    u_char     *p, *last, *amp, *eq;
    size_t      len;
    ngx_str_t   raw;
    ngx_int_t   rc;

    len = ngx_strlen(name);
    last = body->data + body->len;
    rc = NGX_DECLINED;

    for (p = body->data; p < last; p = amp + 1) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        if (eq == NULL || (size_t) (eq - p) != len
            || ngx_strncmp(p, name, len) != 0)
        {
            continue;
        }

        if (rc == NGX_OK) {
            return NGX_ERROR;
        }

        raw.data = eq + 1;
        raw.len = amp - raw.data;

        if (ngx_astralform_oauth_unescape(pool, &raw, value) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = NGX_OK;
    }

    return rc;
}
