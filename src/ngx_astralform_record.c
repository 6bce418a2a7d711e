/*
 * Flat JSON records, read and written (see ngx_astralform_record.h).
 */


#include "ngx_astralform_record.h"


typedef struct {
    u_char      *p;
    u_char      *last;
    ngx_uint_t   write;     /* 0: only check, the buffer stays as it is */
} ngx_astralform_record_in_t;


static ngx_int_t ngx_astralform_record_scan(u_char *buf, size_t len,
    ngx_astralform_record_field_t *fields, ngx_uint_t write);
static void ngx_astralform_record_ws(ngx_astralform_record_in_t *in);
static ngx_int_t ngx_astralform_record_string(ngx_astralform_record_in_t *in,
    ngx_str_t *out);
static ngx_int_t ngx_astralform_record_integer(ngx_astralform_record_in_t *in,
    int64_t *out);
static ngx_int_t ngx_astralform_record_literal(ngx_astralform_record_in_t *in);
static size_t ngx_astralform_record_size(json_t *v);
static u_char *ngx_astralform_record_put(u_char *p, json_t *v);
static size_t ngx_astralform_record_string_size(const char *s, size_t len);
static u_char *ngx_astralform_record_put_string(u_char *p, const char *s,
    size_t len);
static ngx_astralform_record_field_t *ngx_astralform_record_field(
    ngx_astralform_record_field_t *fields, ngx_str_t *key);


/*
 * Checked whole before anything is written: a declined record is left
 * intact for jansson.
 */

ngx_int_t
ngx_astralform_record_read(u_char *buf, size_t len,
    ngx_astralform_record_field_t *fields)
{
    if (ngx_astralform_record_scan(buf, len, fields, 0) != NGX_OK) {
        return NGX_DECLINED;
    }

    return ngx_astralform_record_scan(buf, len, fields, 1);
}


static ngx_int_t
ngx_astralform_record_scan(u_char *buf, size_t len,
    ngx_astralform_record_field_t *fields, ngx_uint_t write)
{
    int64_t                         num;
    uint64_t                        seen, bit;
    ngx_str_t                       key, str;
    ngx_astralform_record_in_t      in;
    ngx_astralform_record_field_t  *f;

    in.p = buf;
    in.last = buf + len;
    in.write = write;
    seen = 0;

    ngx_astralform_record_ws(&in);
    if (in.p == in.last || *in.p++ != '{') {
        return NGX_DECLINED;
    }

    ngx_astralform_record_ws(&in);
    if (in.p < in.last && *in.p == '}') {
        in.p++;
        goto done;
    }

    for ( ;; ) {
        if (ngx_astralform_record_string(&in, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        ngx_astralform_record_ws(&in);
        if (in.p == in.last || *in.p++ != ':') {
            return NGX_DECLINED;
        }
        ngx_astralform_record_ws(&in);

        if (in.p == in.last) {
            return NGX_DECLINED;
        }

        /* a field twice: jansson's last-wins across types is not ours */
        f = ngx_astralform_record_field(fields, &key);
        if (f != NULL && !write) {
            bit = (uint64_t) 1 << ((f - fields) & 63);
            if (seen & bit) {
                return NGX_DECLINED;
            }
            seen |= bit;
            f = NULL;
        }

        if (*in.p == '"') {
            if (ngx_astralform_record_string(&in, &str) != NGX_OK) {
                return NGX_DECLINED;
            }
            if (f != NULL && f->str != NULL) {
                *f->str = str;
            }

        } else if (*in.p == '-' || (*in.p >= '0' && *in.p <= '9')) {
            if (ngx_astralform_record_integer(&in, &num) != NGX_OK) {
                return NGX_DECLINED;
            }
            if (f != NULL && f->num != NULL) {
                *f->num = num;
            }

        } else if (ngx_astralform_record_literal(&in) != NGX_OK) {
            return NGX_DECLINED;
        }

        ngx_astralform_record_ws(&in);
        if (in.p == in.last) {
            return NGX_DECLINED;
        }

        if (*in.p == '}') {
            in.p++;
            break;
        }

        if (*in.p++ != ',') {
            return NGX_DECLINED;
        }
        ngx_astralform_record_ws(&in);
    }

done:

    ngx_astralform_record_ws(&in);

    return in.p == in.last ? NGX_OK : NGX_DECLINED;
}


static void
ngx_astralform_record_ws(ngx_astralform_record_in_t *in)
{
    while (in->p < in->last
           && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n'
               || *in->p == '\r'))
    {
        in->p++;
    }
}


/*
 * A string at in->p, unescaped in place (the result never grows) and
 * NUL-terminated, as a C string for the callers that need one.
 */

static ngx_int_t
ngx_astralform_record_string(ngx_astralform_record_in_t *in, ngx_str_t *out)
{
    u_char  c, *dst;

    if (in->p == in->last || *in->p != '"') {
        return NGX_DECLINED;
    }

    in->p++;
    out->data = in->p;
    dst = in->p;

    while (in->p < in->last) {
        c = *in->p++;

        if (c == '"') {
            out->len = dst - out->data;
            if (in->write) {
                *dst = '\0';   /* over the quote or what unescaping freed */
            }
            return NGX_OK;
        }

        if (c < 0x20 || c > 0x7e) {
            return NGX_DECLINED;
        }

        if (c == '\\') {
            if (in->p == in->last) {
                return NGX_DECLINED;
            }

            switch (*in->p++) {
            case '"':  c = '"';  break;
            case '\\': c = '\\'; break;
            case '/':  c = '/';  break;
            case 'b':  c = '\b'; break;
            case 'f':  c = '\f'; break;
            case 'n':  c = '\n'; break;
            case 'r':  c = '\r'; break;
            case 't':  c = '\t'; break;
            default:   return NGX_DECLINED;   /* \u: jansson's job */
            }
        }

        if (in->write) {
            *dst = c;
        }
        dst++;
    }

    return NGX_DECLINED;
}


/* an integer of at most 18 digits: anything longer or fractional declines */

static ngx_int_t
ngx_astralform_record_integer(ngx_astralform_record_in_t *in, int64_t *out)
{
    int64_t     v;
    ngx_uint_t  neg, digits;

    neg = 0;
    if (*in->p == '-') {
        neg = 1;
        in->p++;
    }

    v = 0;
    digits = 0;

    while (in->p < in->last && *in->p >= '0' && *in->p <= '9') {
        if (++digits > 18 || (digits == 2 && v == 0)) {
            return NGX_DECLINED;    /* too long, or a leading zero */
        }
        v = v * 10 + (*in->p++ - '0');
    }

    if (digits == 0
        || (in->p < in->last
            && (*in->p == '.' || *in->p == 'e' || *in->p == 'E')))
    {
        return NGX_DECLINED;
    }

    *out = neg ? -v : v;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_record_literal(ngx_astralform_record_in_t *in)
{
    size_t            n;
    ngx_uint_t        i;
    static ngx_str_t  literals[] = {
        ngx_string("true"), ngx_string("false"), ngx_string("null")
    };

    n = in->last - in->p;

    for (i = 0; i < sizeof(literals) / sizeof(literals[0]); i++) {
        if (n >= literals[i].len
            && ngx_strncmp(in->p, literals[i].data, literals[i].len) == 0)
        {
            in->p += literals[i].len;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_astralform_record_field_t *
ngx_astralform_record_field(ngx_astralform_record_field_t *fields,
    ngx_str_t *key)
{
    for ( /* void */ ; fields->key != NULL; fields++) {
        if (ngx_strlen(fields->key) == key->len
            && ngx_strncmp(fields->key, key->data, key->len) == 0)
        {
            return fields;
        }
    }

    return NULL;
}


ngx_int_t
ngx_astralform_record_write(ngx_pool_t *pool, json_t *obj, size_t room,
    ngx_str_t *out)
{
    u_char      *p;
    size_t       size, n;
    json_t      *v;
    const char  *key;

    if (!json_is_object(obj)) {
        return NGX_DECLINED;
    }

    size = sizeof("{}") - 1;

    json_object_foreach(obj, key, v) {
        n = ngx_astralform_record_size(v);
        if (n == 0) {
            return NGX_DECLINED;
        }
        size += ngx_astralform_record_string_size(key, ngx_strlen(key))
                + sizeof(":,") - 1 + n;
    }

    p = ngx_pnalloc(pool, size + room);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    *p++ = '{';

    json_object_foreach(obj, key, v) {
        if (p != out->data + 1) {
            *p++ = ',';
        }
        p = ngx_astralform_record_put_string(p, key, ngx_strlen(key));
        *p++ = ':';
        p = ngx_astralform_record_put(p, v);
    }

    *p++ = '}';
    out->len = p - out->data;

    return NGX_OK;
}


/* what a member's value takes, 0 for one this writer does not write */

static size_t
ngx_astralform_record_size(json_t *v)
{
    switch (json_typeof(v)) {

    case JSON_STRING:
        return ngx_astralform_record_string_size(json_string_value(v),
                                                 json_string_length(v));
    case JSON_INTEGER:
        return NGX_INT64_LEN;

    case JSON_TRUE:
    case JSON_NULL:
        return sizeof("true") - 1;

    case JSON_FALSE:
        return sizeof("false") - 1;

    default:
        return 0;
    }
}


static u_char *
ngx_astralform_record_put(u_char *p, json_t *v)
{
    switch (json_typeof(v)) {

    case JSON_STRING:
        return ngx_astralform_record_put_string(p, json_string_value(v),
                                                json_string_length(v));
    case JSON_INTEGER:
        return ngx_sprintf(p, "%L", (int64_t) json_integer_value(v));

    case JSON_TRUE:
        return ngx_cpymem(p, "true", 4);

    case JSON_FALSE:
        return ngx_cpymem(p, "false", 5);

    default:
        return ngx_cpymem(p, "null", 4);
    }
}


/* jansson's escaping: '"', '\\' and the control characters, nothing else */

static size_t
ngx_astralform_record_string_size(const char *s, size_t len)
{
    size_t  i, size;

    size = len + 2;

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] < 0x20 || s[i] == '"' || s[i] == '\\') {
            size += sizeof("\\u0000") - 2;
        }
    }

    return size;
}


static u_char *
ngx_astralform_record_put_string(u_char *p, const char *s, size_t len)
{
    u_char  c;
    size_t  i;

    *p++ = '"';

    for (i = 0; i < len; i++) {
        c = (u_char) s[i];

        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = c;
            continue;
        }

        *p++ = '\\';

        switch (c) {
        case '"':  *p++ = '"';  break;
        case '\\': *p++ = '\\'; break;
        case '\b': *p++ = 'b';  break;
        case '\f': *p++ = 'f';  break;
        case '\n': *p++ = 'n';  break;
        case '\r': *p++ = 'r';  break;
        case '\t': *p++ = 't';  break;
        default:   p = ngx_sprintf(p, "u%04Xd", (u_int) c);
        }
    }

    *p++ = '"';

    return p;
}
