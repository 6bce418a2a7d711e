/*
 * Credential scrubbing. A provider that echoes the request (an error body
 * quoting the Authorization header, pagination links carrying appid=KEY)
 * would hand the credential the gateway sent back to the agent. Every
 * credential sent for a request is registered (ctx->secrets) in the forms
 * it can come back in: as is, percent-encoded and JSON-escaped (matched in
 * any case, so %2f and %2F alike); every JSON answer is then walked,
 * string by string and key by key (so \u-escapes are decoded first), and
 * each form is replaced by "[redacted]".
 */


#include "ngx_astralform.h"
#include "ngx_astralform_scrub.h"


#define NGX_ASTRALFORM_SCRUB_MIN   8
#define NGX_ASTRALFORM_REDACTED    "[redacted]"


static ngx_int_t ngx_astralform_scrub_form(ngx_pool_t *pool,
    ngx_array_t *forms, u_char *data, size_t len);


ngx_int_t
ngx_astralform_scrub_add(ngx_pool_t *pool, ngx_array_t **forms,
    ngx_str_t *secret)
{
    u_char  *p, c;
    char    *text;
    size_t   n, i;
    json_t  *s;

    if (secret->len < NGX_ASTRALFORM_SCRUB_MIN) {
        return NGX_OK;
    }

    if (*forms == NULL) {
        *forms = ngx_array_create(pool, 4, sizeof(ngx_str_t));
        if (*forms == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_astralform_scrub_form(pool, *forms, secret->data, secret->len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    n = ngx_escape_uri(NULL, secret->data, secret->len,
                       NGX_ESCAPE_URI_COMPONENT);
    if (n) {
        p = ngx_pnalloc(pool, secret->len + 2 * n);
        if (p == NULL) {
            return NGX_ERROR;
        }

        n = (u_char *) ngx_escape_uri(p, secret->data, secret->len,
                                      NGX_ESCAPE_URI_COMPONENT) - p;

        if (ngx_astralform_scrub_form(pool, *forms, p, n) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /*
     * Printable ASCII with nothing JSON escapes (with JSON_ESCAPE_SLASH)
     * is its own JSON form, registered above: most tokens and keys are,
     * and jansson's dump costs more than the rest of this together.
     */
    for (i = 0; i < secret->len; i++) {
        c = secret->data[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '/') {
            break;
        }
    }

    if (i == secret->len) {
        return NGX_OK;
    }

    s = json_stringn((char *) secret->data, secret->len);
    text = s ? json_dumps(s, JSON_ENCODE_ANY|JSON_ESCAPE_SLASH) : NULL;
    json_decref(s);

    if (text == NULL) {
        /* not UTF-8: no JSON string can hold it */
        return NGX_OK;
    }

    n = ngx_strlen(text);

    if (n - 2 != secret->len
        && ngx_astralform_scrub_form(pool, *forms, (u_char *) text + 1, n - 2)
           != NGX_OK)
    {
        ngx_free(text);
        return NGX_ERROR;
    }

    ngx_free(text);

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_scrub_form(ngx_pool_t *pool, ngx_array_t *forms, u_char *data,
    size_t len)
{
    ngx_str_t  *f;

    f = ngx_array_push(forms);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->data = ngx_pnalloc(pool, len);
    if (f->data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(f->data, data, len);
    f->len = len;

    return NGX_OK;
}


/* NGX_OK: out is text with every form redacted; NGX_DECLINED: none found */
ngx_int_t
ngx_astralform_scrub_text(ngx_pool_t *pool, ngx_array_t *forms,
    ngx_str_t *in, ngx_str_t *out)
{
    u_char      *p, *last, *hit, *o;
    ngx_str_t    cur, *f;
    ngx_uint_t   i, found;

    if (forms == NULL) {
        return NGX_DECLINED;
    }

    cur = *in;
    found = 0;
    f = forms->elts;

    for (i = 0; i < forms->nelts; i++) {

        for ( ;; ) {
            last = cur.data + cur.len;

            hit = cur.len >= f[i].len
                  ? ngx_strlcasestrn(cur.data, last, f[i].data, f[i].len - 1)
                  : NULL;

            if (hit == NULL) {
                break;
            }

            p = ngx_pnalloc(pool, cur.len - f[i].len
                                  + sizeof(NGX_ASTRALFORM_REDACTED) - 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            o = ngx_cpymem(p, cur.data, hit - cur.data);
            o = ngx_cpymem(o, NGX_ASTRALFORM_REDACTED,
                           sizeof(NGX_ASTRALFORM_REDACTED) - 1);
            o = ngx_cpymem(o, hit + f[i].len, last - hit - f[i].len);

            cur.data = p;
            cur.len = o - p;
            found = 1;
        }
    }

    if (!found) {
        return NGX_DECLINED;
    }

    *out = cur;

    return NGX_OK;
}


/* every string and key of json, redacted in place; NGX_OK if any was */
ngx_int_t
ngx_astralform_scrub_json(ngx_pool_t *pool, ngx_array_t *forms, json_t *json)
{
    size_t       i;
    json_t      *v;
    ngx_int_t    rc, any;
    ngx_str_t    in, out;
    const char  *key;
    void        *tmp;

    if (forms == NULL || json == NULL) {
        return NGX_DECLINED;
    }

    any = NGX_DECLINED;

    switch (json_typeof(json)) {

    case JSON_STRING:
        in.data = (u_char *) json_string_value(json);
        in.len = json_string_length(json);

        rc = ngx_astralform_scrub_text(pool, forms, &in, &out);
        if (rc == NGX_OK) {
            json_string_setn(json, (char *) out.data, out.len);
        }
        return rc;

    case JSON_ARRAY:
        json_array_foreach(json, i, v) {
            rc = ngx_astralform_scrub_json(pool, forms, v);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }
            any = (rc == NGX_OK) ? NGX_OK : any;
        }
        return any;

    case JSON_OBJECT:
        json_object_foreach_safe(json, tmp, key, v) {
            rc = ngx_astralform_scrub_json(pool, forms, v);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }
            any = (rc == NGX_OK) ? NGX_OK : any;

            in.data = (u_char *) key;
            in.len = ngx_strlen(key);

            rc = ngx_astralform_scrub_text(pool, forms, &in, &out);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == NGX_OK) {
                /* a key holding a credential: renamed */
                json_incref(v);
                json_object_del(json, key);
                json_object_setn_new(json, (char *) out.data, out.len, v);
                any = NGX_OK;
            }
        }
        return any;

    default:
        return NGX_DECLINED;
    }
}
