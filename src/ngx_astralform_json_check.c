/*
 * The JSON check of a provider's answer (see ngx_astralform_json_check.h).
 * It follows jansson 2.14's decoder (json_loadb with no flags): an object
 * or an array at the top, RFC 8259 otherwise, strict UTF-8 everywhere.
 */


#include "ngx_astralform_json_check.h"


/* jansson stops at 2048; below that, depth is never the question */
#define NGX_ASTRALFORM_JSON_DEPTH   1024

/* numbers jansson's strtoll()/strtod() surely take without a range error */
#define NGX_ASTRALFORM_JSON_INT     18
#define NGX_ASTRALFORM_JSON_REAL    64


typedef struct {
    u_char      *p;
    u_char      *last;
} ngx_astralform_json_in_t;


/* bytes that stand for themselves in a string: 0x20-0x7f but '"' and '\\' */
static u_char  ngx_astralform_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x80-0xff: UTF-8, checked sequence by sequence */
};


static void ngx_astralform_json_ws(ngx_astralform_json_in_t *in);
static ngx_int_t ngx_astralform_json_value(ngx_astralform_json_in_t *in,
    int *type);
static ngx_int_t ngx_astralform_json_string(ngx_astralform_json_in_t *in,
    ngx_uint_t *escaped);
static ngx_int_t ngx_astralform_json_escape(ngx_astralform_json_in_t *in);
static ngx_int_t ngx_astralform_json_hex4(ngx_astralform_json_in_t *in,
    ngx_uint_t *cp);
static ngx_int_t ngx_astralform_json_utf8(ngx_astralform_json_in_t *in);
static ngx_int_t ngx_astralform_json_number(ngx_astralform_json_in_t *in,
    int *type);
static ngx_int_t ngx_astralform_json_literal(ngx_astralform_json_in_t *in,
    int *type);


ngx_int_t
ngx_astralform_json_check(u_char *p, size_t len, const char *key, int *type)
{
    int                        vtype;
    u_char                     stack[NGX_ASTRALFORM_JSON_DEPTH];
    u_char                    *kstart;
    size_t                     klen;
    ngx_int_t                  rc;
    ngx_uint_t                 depth, escaped, wanted;
    ngx_astralform_json_in_t   in;

    in.p = p;
    in.last = p + len;
    depth = 0;
    wanted = 0;
    klen = key ? ngx_strlen(key) : 0;

    if (type != NULL) {
        *type = -1;
    }

    ngx_astralform_json_ws(&in);

    /* like jansson without JSON_DECODE_ANY: an object or an array */
    if (in.p == in.last || (*in.p != '{' && *in.p != '[')) {
        return NGX_ERROR;
    }

value:

    ngx_astralform_json_ws(&in);
    if (in.p == in.last) {
        return NGX_ERROR;
    }

    if (*in.p == '{' || *in.p == '[') {
        if (depth == NGX_ASTRALFORM_JSON_DEPTH) {
            return NGX_DECLINED;
        }

        if (wanted) {
            *type = (*in.p == '{') ? JSON_OBJECT : JSON_ARRAY;
            wanted = 0;
        }

        stack[depth++] = *in.p++;
        ngx_astralform_json_ws(&in);

        if (in.p < in.last && *in.p == (stack[depth - 1] == '{' ? '}' : ']'))
        {
            in.p++;
            depth--;
            goto next;
        }

        if (stack[depth - 1] == '[') {
            goto value;
        }

        goto member;
    }

    rc = ngx_astralform_json_value(&in, &vtype);
    if (rc != NGX_OK) {
        return rc;
    }

    if (wanted) {
        *type = vtype;
        wanted = 0;
    }

next:

    ngx_astralform_json_ws(&in);

    if (depth == 0) {
        return in.p == in.last ? NGX_OK : NGX_ERROR;
    }

    if (in.p == in.last) {
        return NGX_ERROR;
    }

    if (*in.p == ',') {
        in.p++;

        if (stack[depth - 1] == '[') {
            goto value;
        }

        ngx_astralform_json_ws(&in);
        goto member;
    }

    if (*in.p != (stack[depth - 1] == '{' ? '}' : ']')) {
        return NGX_ERROR;
    }

    in.p++;
    depth--;
    goto next;

member:

    kstart = in.p + 1;

    rc = ngx_astralform_json_string(&in, &escaped);
    if (rc != NGX_OK) {
        return rc;
    }

    if (depth == 1 && key != NULL) {
        if (escaped) {
            /* "o\u006b" is "ok" to jansson: not worth decoding here */
            return NGX_DECLINED;
        }

        wanted = (size_t) (in.p - 1 - kstart) == klen
                 && ngx_strncmp(kstart, key, klen) == 0;

        if (wanted && type == NULL) {
            wanted = 0;
        }
    }

    ngx_astralform_json_ws(&in);
    if (in.p == in.last || *in.p++ != ':') {
        return NGX_ERROR;
    }

    goto value;
}


static void
ngx_astralform_json_ws(ngx_astralform_json_in_t *in)
{
    while (in->p < in->last
           && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n'
               || *in->p == '\r'))
    {
        in->p++;
    }
}


/* a scalar at in->p */

static ngx_int_t
ngx_astralform_json_value(ngx_astralform_json_in_t *in, int *type)
{
    ngx_uint_t  escaped;

    switch (*in->p) {

    case '"':
        *type = JSON_STRING;
        return ngx_astralform_json_string(in, &escaped);

    case 't':
    case 'f':
    case 'n':
        return ngx_astralform_json_literal(in, type);

    default:
        if (*in->p == '-' || (*in->p >= '0' && *in->p <= '9')) {
            return ngx_astralform_json_number(in, type);
        }

        return NGX_ERROR;
    }
}


static ngx_int_t
ngx_astralform_json_string(ngx_astralform_json_in_t *in, ngx_uint_t *escaped)
{
    u_char     c;
    ngx_int_t  rc;

    if (in->p == in->last || *in->p != '"') {
        return NGX_ERROR;
    }

    in->p++;
    *escaped = 0;

    while (in->p < in->last) {

        /*
         * The plain run first, one table lookup a byte (eight bytes at a
         * time measured slower: the strings of an answer are short).
         */
        while (in->p < in->last && ngx_astralform_json_plain[*in->p]) {
            in->p++;
        }

        if (in->p == in->last) {
            break;
        }

        c = *in->p;

        if (c == '"') {
            in->p++;
            return NGX_OK;
        }

        if (c < 0x20) {
            return NGX_ERROR;
        }

        if (c == '\\') {
            *escaped = 1;
            rc = ngx_astralform_json_escape(in);

        } else if (c >= 0x80) {
            rc = ngx_astralform_json_utf8(in);

        } else {
            in->p++;
            continue;
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_ERROR;
}


/* a backslash escape; \u as jansson decodes it, surrogate pairs included */

static ngx_int_t
ngx_astralform_json_escape(ngx_astralform_json_in_t *in)
{
    ngx_uint_t  cp, low;

    in->p++;

    if (in->p == in->last) {
        return NGX_ERROR;
    }

    switch (*in->p++) {

    case '"': case '\\': case '/': case 'b':
    case 'f': case 'n': case 'r': case 't':
        return NGX_OK;

    case 'u':
        break;

    default:
        return NGX_ERROR;
    }

    if (ngx_astralform_json_hex4(in, &cp) != NGX_OK) {
        return NGX_ERROR;
    }

    if (cp == 0) {
        return NGX_DECLINED;    /* jansson's JSON_ALLOW_NUL decides */
    }

    if (cp >= 0xdc00 && cp <= 0xdfff) {
        return NGX_ERROR;       /* a low surrogate alone */
    }

    if (cp < 0xd800 || cp > 0xdbff) {
        return NGX_OK;
    }

    if (in->last - in->p < 6 || in->p[0] != '\\' || in->p[1] != 'u') {
        return NGX_ERROR;
    }

    in->p += 2;

    if (ngx_astralform_json_hex4(in, &low) != NGX_OK
        || low < 0xdc00 || low > 0xdfff)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_json_hex4(ngx_astralform_json_in_t *in, ngx_uint_t *cp)
{
    u_char      c;
    ngx_uint_t  i;

    if (in->last - in->p < 4) {
        return NGX_ERROR;
    }

    *cp = 0;

    for (i = 0; i < 4; i++) {
        c = *in->p++;

        if (c >= '0' && c <= '9') {
            *cp = *cp * 16 + (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            *cp = *cp * 16 + ((c | 0x20) - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* one UTF-8 sequence as RFC 3629 has it: no overlong, no surrogate */

static ngx_int_t
ngx_astralform_json_utf8(ngx_astralform_json_in_t *in)
{
    u_char      c;
    size_t      n, i;
    ngx_uint_t  cp, min;

    c = *in->p;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2; cp = c & 0x1f; min = 0x80;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3; cp = c & 0x0f; min = 0x800;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4; cp = c & 0x07; min = 0x10000;

    } else {
        return NGX_ERROR;
    }

    if ((size_t) (in->last - in->p) < n) {
        return NGX_ERROR;
    }

    for (i = 1; i < n; i++) {
        if ((in->p[i] & 0xc0) != 0x80) {
            return NGX_ERROR;
        }
        cp = (cp << 6) | (in->p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return NGX_ERROR;
    }

    in->p += n;

    return NGX_OK;
}


/*
 * The grammar exactly; the range only as far as surely inside jansson's
 * (an integer of more digits, an exponent of more: jansson decides).
 */

static ngx_int_t
ngx_astralform_json_number(ngx_astralform_json_in_t *in, int *type)
{
    u_char      *start;
    ngx_uint_t   digits, exp_digits, real;

    start = in->p;
    real = 0;
    exp_digits = 0;

    if (*in->p == '-') {
        in->p++;
    }

    if (in->p == in->last || *in->p < '0' || *in->p > '9') {
        return NGX_ERROR;
    }

    digits = 0;

    if (*in->p == '0') {
        in->p++;
        digits = 1;

    } else {
        while (in->p < in->last && *in->p >= '0' && *in->p <= '9') {
            in->p++;
            digits++;
        }
    }

    if (in->p < in->last && *in->p == '.') {
        in->p++;
        real = 1;

        if (in->p == in->last || *in->p < '0' || *in->p > '9') {
            return NGX_ERROR;
        }

        while (in->p < in->last && *in->p >= '0' && *in->p <= '9') {
            in->p++;
        }
    }

    if (in->p < in->last && (*in->p == 'e' || *in->p == 'E')) {
        in->p++;
        real = 1;

        if (in->p < in->last && (*in->p == '+' || *in->p == '-')) {
            in->p++;
        }

        if (in->p == in->last || *in->p < '0' || *in->p > '9') {
            return NGX_ERROR;
        }

        while (in->p < in->last && *in->p >= '0' && *in->p <= '9') {
            in->p++;
            exp_digits++;
        }
    }

    /* "01": jansson ends the number at 0, and the 1 is an error */
    if (in->p < in->last && *in->p >= '0' && *in->p <= '9') {
        return NGX_ERROR;
    }

    *type = real ? JSON_REAL : JSON_INTEGER;

    if (real ? (exp_digits > 2
                || in->p - start > NGX_ASTRALFORM_JSON_REAL)
             : digits > NGX_ASTRALFORM_JSON_INT)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_json_literal(ngx_astralform_json_in_t *in, int *type)
{
    size_t  n;

    n = in->last - in->p;

    if (n >= 4 && ngx_strncmp(in->p, "true", 4) == 0) {
        *type = JSON_TRUE;
        in->p += 4;

    } else if (n >= 5 && ngx_strncmp(in->p, "false", 5) == 0) {
        *type = JSON_FALSE;
        in->p += 5;

    } else if (n >= 4 && ngx_strncmp(in->p, "null", 4) == 0) {
        *type = JSON_NULL;
        in->p += 4;

    } else {
        return NGX_ERROR;
    }

    return NGX_OK;
}
