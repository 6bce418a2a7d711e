/*
 * The few nginx core functions the module files linked into the fuzzers
 * call, written small for the fuzzers (Debian's nginx-dev ships headers
 * only). Semantics follow the nginx 1.22 development guide and headers;
 * the implementations are our own and favour the sanitizers over speed:
 *
 *   - every pool allocation is its own malloc() block, so AddressSanitizer
 *     sees an overflow of any pool buffer at its first byte, and a pool is
 *     really freed by ngx_destroy_pool() (use after free is caught);
 *   - the ngx_sprintf() family aborts on a conversion nginx does not have
 *     and on printf habits nginx would print wrong ("%lld", "%zu");
 *   - ngx_log_error_core() formats every message (debug ones included) so
 *     a bad argument is caught, then hands it to a hook for the oracles.
 *
 * Test code only: never linked into the module.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "ngx_shim.h"


volatile ngx_cycle_t  *ngx_cycle;
volatile ngx_msec_t    ngx_current_msec;
volatile ngx_time_t   *ngx_cached_time;
ngx_uint_t             ngx_exiting;
sig_atomic_t           ngx_quit;
sig_atomic_t           ngx_terminate;

static ngx_time_t      ngx_shim_time;

ngx_shim_log_pt        ngx_shim_log_hook;
u_char                 ngx_shim_conf_error[NGX_MAX_CONF_ERRSTR];


void
ngx_shim_init(time_t now, ngx_msec_t msec)
{
    ngx_shim_time.sec = now;
    ngx_shim_time.msec = 0;
    ngx_shim_time.gmtoff = 0;
    ngx_cached_time = &ngx_shim_time;
    ngx_current_msec = msec;
}


/* pools */

ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *p;

    p = calloc(1, sizeof(ngx_pool_t));
    if (p == NULL) {
        return NULL;
    }

    p->max = size;
    p->current = p;
    p->log = log;

    return p;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_large_t    *l, *next;
    ngx_pool_cleanup_t  *c;

    /* last registered first, as nginx does; they may still allocate */

    for (c = pool->cleanup; c != NULL; c = c->next) {
        if (c->handler != NULL) {
            c->handler(c->data);
        }
    }

    for (l = pool->large; l != NULL; l = next) {
        next = l->next;
        free(l->alloc);
        free(l);
    }

    free(pool);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    void              *p;
    ngx_pool_large_t  *l;

    l = malloc(sizeof(ngx_pool_large_t));
    p = malloc(size);

    if (l == NULL || p == NULL) {
        free(l);
        free(p);
        return NULL;
    }

    l->alloc = p;
    l->next = pool->large;
    pool->large = l;

    return p;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p != NULL) {
        memset(p, 0, size);
    }

    return p;
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_pool_cleanup_t  *c;

    c = ngx_palloc(p, sizeof(ngx_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }

    c->data = NULL;

    if (size) {
        c->data = ngx_palloc(p, size);
        if (c->data == NULL) {
            return NULL;
        }
    }

    c->handler = NULL;
    c->next = p->cleanup;
    p->cleanup = c;

    return c;
}


ngx_array_t *
ngx_array_create(ngx_pool_t *p, ngx_uint_t n, size_t size)
{
    ngx_array_t  *a;

    a = ngx_palloc(p, sizeof(ngx_array_t));
    if (a == NULL) {
        return NULL;
    }

    if (ngx_array_init(a, p, n, size) != NGX_OK) {
        return NULL;
    }

    return a;
}


void *
ngx_array_push(ngx_array_t *a)
{
    void  *elts;

    if (a->nelts == a->nalloc) {
        /* nginx doubles the array; the old copy stays in the pool */
        elts = ngx_palloc(a->pool, 2 * a->size * a->nalloc);
        if (elts == NULL) {
            return NULL;
        }

        memcpy(elts, a->elts, a->size * a->nelts);
        a->elts = elts;
        a->nalloc *= 2;
    }

    return (u_char *) a->elts + a->size * a->nelts++;
}


void *
ngx_array_push_n(ngx_array_t *a, ngx_uint_t n)
{
    void        *elts;
    ngx_uint_t   nalloc;

    if (a->nelts + n > a->nalloc) {
        nalloc = 2 * ((n >= a->nalloc) ? n : a->nalloc);

        elts = ngx_palloc(a->pool, nalloc * a->size);
        if (elts == NULL) {
            return NULL;
        }

        memcpy(elts, a->elts, a->nelts * a->size);
        a->elts = elts;
        a->nalloc = nalloc;
    }

    elts = (u_char *) a->elts + a->size * a->nelts;
    a->nelts += n;

    return elts;
}


/* as nginx's: a new part of nalloc elements when the last is full */
void *
ngx_list_push(ngx_list_t *l)
{
    void             *elt;
    ngx_list_part_t  *last;

    last = l->last;

    if (last->nelts == l->nalloc) {
        last = ngx_palloc(l->pool, sizeof(ngx_list_part_t));
        if (last == NULL) {
            return NULL;
        }

        last->elts = ngx_palloc(l->pool, l->nalloc * l->size);
        if (last->elts == NULL) {
            return NULL;
        }

        last->nelts = 0;
        last->next = NULL;

        l->last->next = last;
        l->last = last;
    }

    elt = (u_char *) last->elts + l->size * last->nelts;
    last->nelts++;

    return elt;
}


ngx_buf_t *
ngx_create_temp_buf(ngx_pool_t *pool, size_t size)
{
    ngx_buf_t  *b;

    b = ngx_pcalloc(pool, sizeof(ngx_buf_t));
    if (b == NULL) {
        return NULL;
    }

    b->start = ngx_palloc(pool, size);
    if (b->start == NULL) {
        return NULL;
    }

    b->pos = b->start;
    b->last = b->start;
    b->end = b->start + size;
    b->temporary = 1;

    return b;
}


/* strings */

u_char *
ngx_pstrdup(ngx_pool_t *pool, ngx_str_t *src)
{
    u_char  *dst;

    dst = ngx_pnalloc(pool, src->len);
    if (dst != NULL) {
        memcpy(dst, src->data, src->len);
    }

    return dst;
}


void
ngx_explicit_memzero(void *buf, size_t n)
{
    explicit_bzero(buf, n);
}


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    while (n--) {
        c1 = tolower(*s1++);
        c2 = tolower(*s2++);

        if (c1 != c2) {
            return c1 < c2 ? -1 : 1;
        }

        if (c1 == 0) {
            return 0;
        }
    }

    return 0;
}


ngx_int_t
ngx_memn2cmp(u_char *s1, u_char *s2, size_t n1, size_t n2)
{
    int  z;

    z = memcmp(s1, s2, n1 < n2 ? n1 : n2);

    if (z != 0) {
        return z;
    }

    return n1 == n2 ? 0 : (n1 < n2 ? -1 : 1);
}


static int64_t
ngx_shim_decimal(u_char *line, size_t n, int64_t max)
{
    int64_t  value;

    if (n == 0) {
        return NGX_ERROR;
    }

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value > (max - (*line - '0')) / 10) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    return (ngx_int_t) ngx_shim_decimal(line, n, NGX_MAX_INT_T_VALUE);
}


time_t
ngx_atotm(u_char *line, size_t n)
{
    return (time_t) ngx_shim_decimal(line, n, NGX_MAX_TIME_T_VALUE);
}


ngx_int_t
ngx_hextoi(u_char *line, size_t n)
{
    int        d;
    ngx_int_t  value;

    if (n == 0) {
        return NGX_ERROR;
    }

    for (value = 0; n--; line++) {
        if (*line >= '0' && *line <= '9') {
            d = *line - '0';
        } else if (tolower(*line) >= 'a' && tolower(*line) <= 'f') {
            d = tolower(*line) - 'a' + 10;
        } else {
            return NGX_ERROR;
        }

        if (value > (NGX_MAX_INT_T_VALUE - d) / 16) {
            return NGX_ERROR;
        }

        value = value * 16 + d;
    }

    return value;
}


void
ngx_strlow(u_char *dst, u_char *src, size_t n)
{
    while (n--) {
        *dst++ = ngx_tolower(*src);
        src++;
    }
}


/* the lowercase copy and its ngx_hash() key, as the header tables want */
ngx_uint_t
ngx_hash_strlow(u_char *dst, u_char *src, size_t n)
{
    ngx_uint_t  key;

    key = 0;

    while (n--) {
        *dst = ngx_tolower(*src);
        key = ngx_hash(key, *dst);
        dst++;
        src++;
    }

    return key;
}


/* s2 is lowercase, n is its length minus one (nginx's contract) */
u_char *
ngx_strlcasestrn(u_char *s1, u_char *last, u_char *s2, size_t n)
{
    size_t  i;

    n++;

    for ( /* void */ ; s1 + n <= last; s1++) {
        for (i = 0; i < n; i++) {
            if (ngx_tolower(s1[i]) != s2[i]) {
                break;
            }
        }

        if (i == n) {
            return s1;
        }
    }

    return NULL;
}


/* RFC 3986 unreserved stay; only the component escaping is used */
uintptr_t
ngx_escape_uri(u_char *dst, u_char *src, size_t size, ngx_uint_t type)
{
    u_char            c;
    uintptr_t         n;
    static const char hex[] = "0123456789ABCDEF";

    if (type != NGX_ESCAPE_URI_COMPONENT) {
        fprintf(stderr, "ngx_shim: ngx_escape_uri() type %lu is not "
                "implemented\n", (unsigned long) type);
        abort();
    }

    n = 0;

    while (size--) {
        c = *src++;

        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (dst != NULL) {
                *dst++ = c;
            }
            continue;
        }

        if (dst != NULL) {
            *dst++ = '%';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];
        }

        n++;
    }

    return dst != NULL ? (uintptr_t) dst : n;
}


u_char *
ngx_cpystrn(u_char *dst, u_char *src, size_t n)
{
    if (n == 0) {
        return dst;
    }

    while (--n && *src) {
        *dst++ = *src++;
    }

    *dst = '\0';

    return dst;
}


void
ngx_encode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    static const char  std[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    u_char  *d, *s;
    size_t   len;

    s = src->data;
    d = dst->data;

    for (len = src->len; len >= 3; len -= 3, s += 3) {
        *d++ = std[s[0] >> 2];
        *d++ = std[((s[0] & 3) << 4) | (s[1] >> 4)];
        *d++ = std[((s[1] & 0xf) << 2) | (s[2] >> 6)];
        *d++ = std[s[2] & 0x3f];
    }

    if (len) {
        *d++ = std[s[0] >> 2];

        if (len == 1) {
            *d++ = std[(s[0] & 3) << 4];
            *d++ = '=';

        } else {
            *d++ = std[((s[0] & 3) << 4) | (s[1] >> 4)];
            *d++ = std[(s[1] & 0xf) << 2];
        }

        *d++ = '=';
    }

    dst->len = d - dst->data;
}


static const char  ngx_shim_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


void
ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    u_char  *d, *s;
    size_t   len;

    s = src->data;
    d = dst->data;

    for (len = src->len; len >= 3; len -= 3, s += 3) {
        *d++ = ngx_shim_b64url[s[0] >> 2];
        *d++ = ngx_shim_b64url[((s[0] & 3) << 4) | (s[1] >> 4)];
        *d++ = ngx_shim_b64url[((s[1] & 0xf) << 2) | (s[2] >> 6)];
        *d++ = ngx_shim_b64url[s[2] & 0x3f];
    }

    if (len == 1) {
        *d++ = ngx_shim_b64url[s[0] >> 2];
        *d++ = ngx_shim_b64url[(s[0] & 3) << 4];

    } else if (len == 2) {
        *d++ = ngx_shim_b64url[s[0] >> 2];
        *d++ = ngx_shim_b64url[((s[0] & 3) << 4) | (s[1] >> 4)];
        *d++ = ngx_shim_b64url[(s[1] & 0xf) << 2];
    }

    dst->len = d - dst->data;
}


static int
ngx_shim_b64url_value(u_char c)
{
    const char  *p;

    if (c == '\0') {
        return -1;
    }

    p = strchr(ngx_shim_b64url, c);

    return p ? (int) (p - ngx_shim_b64url) : -1;
}


/*
 * As nginx: decoding stops at the first "=" (what follows is ignored), a
 * character outside the alphabet before it is an error, as is a length
 * of 4n+1; unused low bits of the last character are ignored.
 */
ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    int       v[4];
    u_char   *d, *s;
    size_t    len, i, k;

    for (len = 0; len < src->len && src->data[len] != '='; len++) {
        if (ngx_shim_b64url_value(src->data[len]) < 0) {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    s = src->data;
    d = dst->data;

    for (i = 0; i < len; i += 4) {
        for (k = 0; k < 4; k++) {
            v[k] = i + k < len ? ngx_shim_b64url_value(s[i + k]) : 0;
        }

        *d++ = (u_char) (v[0] << 2 | v[1] >> 4);

        if (i + 2 < len) {
            *d++ = (u_char) (v[1] << 4 | v[2] >> 2);
        }

        if (i + 3 < len) {
            *d++ = (u_char) (v[2] << 6 | v[3]);
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


/* FUZZ_KNOWN lists the findings reported and not yet fixed */
static ngx_uint_t
ngx_shim_known(const char *tag)
{
    const char  *known;

    known = getenv("FUZZ_KNOWN");

    return known != NULL && strstr(known, tag) != NULL;
}


/* formatting: the nginx conversions, nothing else */

static u_char *
ngx_shim_num(u_char *buf, u_char *last, uint64_t ui64, u_char zero,
    ngx_uint_t hex, ngx_uint_t width)
{
    u_char             tmp[NGX_INT64_LEN + 1], *p;
    size_t             len;
    static const char  lower[] = "0123456789abcdef";
    static const char  upper[] = "0123456789ABCDEF";

    p = tmp + sizeof(tmp);

    do {
        if (hex) {
            *--p = (hex == 1 ? lower : upper)[ui64 & 0xf];
            ui64 >>= 4;

        } else {
            *--p = (u_char) (ui64 % 10 + '0');
            ui64 /= 10;
        }

    } while (ui64 != 0);

    len = (tmp + sizeof(tmp)) - p;

    while (len++ < width && buf < last) {
        *buf++ = zero;
    }

    len = (tmp + sizeof(tmp)) - p;

    if (buf + len > last) {
        len = last - buf;
    }

    memcpy(buf, p, len);

    return buf + len;
}


static u_char *
ngx_shim_str(u_char *buf, u_char *last, u_char *src, size_t len,
    ngx_uint_t hex)
{
    static const char  lower[] = "0123456789abcdef";
    static const char  upper[] = "0123456789ABCDEF";

    while (len-- && buf < last) {
        if (hex) {
            *buf++ = (hex == 1 ? lower : upper)[*src >> 4];
            if (buf < last) {
                *buf++ = (hex == 1 ? lower : upper)[*src & 0xf];
            }

        } else {
            *buf++ = *src;
        }

        src++;
    }

    return buf;
}


u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char       *p, zero;
    double        f;
    size_t        slen;
    int64_t       i64;
    uint64_t      ui64;
    ngx_str_t    *v;
    ngx_msec_t    ms;
    ngx_uint_t    width, sign, hex, frac, max_width;
    const char   *start;
    char          tmp[64];

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        start = fmt++;

        i64 = 0;
        ui64 = 0;
        zero = (u_char) ((*fmt == '0') ? '0' : ' ');
        width = 0;
        sign = 1;
        hex = 0;
        frac = 0;
        max_width = 0;
        slen = (size_t) -1;

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            switch (*fmt) {

            case 'u':
                sign = 0;
                fmt++;
                continue;

            case 'm':
                max_width = 1;
                fmt++;
                continue;

            case 'X':
                hex = 2;
                sign = 0;
                fmt++;
                continue;

            case 'x':
                hex = 1;
                sign = 0;
                fmt++;
                continue;

            case '.':
                fmt++;
                while (*fmt >= '0' && *fmt <= '9') {
                    frac = frac * 10 + (*fmt++ - '0');
                }
                continue;

            case '*':
                slen = va_arg(args, size_t);
                fmt++;
                continue;

            default:
                break;
            }

            break;
        }

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            buf = ngx_shim_str(buf, last, v->data, v->len, hex);
            fmt++;
            continue;

        case 's':
            p = va_arg(args, u_char *);
            if (slen == (size_t) -1) {
                slen = strlen((char *) p);
            }
            buf = ngx_shim_str(buf, last, p, slen, hex);
            fmt++;
            continue;

        case 'O':
            i64 = (int64_t) va_arg(args, off_t);
            sign = 1;
            break;

        case 'P':
            i64 = (int64_t) va_arg(args, ngx_pid_t);
            sign = 1;
            break;

        case 'T':
            i64 = (int64_t) va_arg(args, time_t);
            sign = 1;
            break;

        case 'M':
            ms = (ngx_msec_t) va_arg(args, ngx_msec_t);
            if ((ngx_msec_int_t) ms == -1) {
                sign = 1;
                i64 = -1;
            } else {
                sign = 0;
                ui64 = (uint64_t) ms;
            }
            break;

        case 'z':
            if (sign) {
                i64 = (int64_t) va_arg(args, ssize_t);
            } else {
                ui64 = (uint64_t) va_arg(args, size_t);
            }
            break;

        case 'i':
            if (sign) {
                i64 = (int64_t) va_arg(args, ngx_int_t);
            } else {
                ui64 = (uint64_t) va_arg(args, ngx_uint_t);
            }
            if (max_width) {
                width = NGX_INT_T_LEN;
            }
            break;

        case 'd':
            if (sign) {
                i64 = (int64_t) va_arg(args, int);
            } else {
                ui64 = (uint64_t) va_arg(args, u_int);
            }
            break;

        case 'l':
            if (sign) {
                i64 = (int64_t) va_arg(args, long);
            } else {
                ui64 = (uint64_t) va_arg(args, u_long);
            }
            break;

        case 'D':
            if (sign) {
                i64 = (int64_t) va_arg(args, int32_t);
            } else {
                ui64 = (uint64_t) va_arg(args, uint32_t);
            }
            break;

        case 'L':
            if (sign) {
                i64 = va_arg(args, int64_t);
            } else {
                ui64 = va_arg(args, uint64_t);
            }
            break;

        case 'A':
            if (sign) {
                i64 = (int64_t) va_arg(args, ngx_atomic_int_t);
            } else {
                ui64 = (uint64_t) va_arg(args, ngx_atomic_uint_t);
            }
            if (max_width) {
                width = NGX_ATOMIC_T_LEN;
            }
            break;

        case 'f':
            f = va_arg(args, double);
            snprintf(tmp, sizeof(tmp), "%0*.*f", (int) width, (int) frac, f);
            buf = ngx_shim_str(buf, last, (u_char *) tmp, strlen(tmp), 0);
            fmt++;
            continue;

        case 'r':
            i64 = (int64_t) va_arg(args, rlim_t);
            sign = 1;
            break;

        case 'p':
            ui64 = (uintptr_t) va_arg(args, void *);
            hex = 2;
            sign = 0;
            zero = '0';
            width = 2 * sizeof(void *);
            break;

        case 'c':
            *buf++ = (u_char) (va_arg(args, int) & 0xff);
            fmt++;
            continue;

        case 'Z':
            *buf++ = '\0';
            fmt++;
            continue;

        case 'N':
            *buf++ = LF;
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        default:
            fprintf(stderr, "ngx_shim: format \"%.20s\" has a conversion "
                    "nginx does not know\n", start);
            abort();
        }

        /*
         * "%lld", "%zu", "%lu": printf habits nginx prints as a number
         * followed by the letters ("-32601ld")
         */
        if ((*fmt == 'l' || *fmt == 'z')
            && (fmt[1] == 'l' || fmt[1] == 'd' || fmt[1] == 'u')
            && !ngx_shim_known("printf-format"))
        {
            fprintf(stderr, "ngx_shim: format \"%.20s\" is printf's, not "
                    "nginx's: the letters after %%%c are printed\n", start,
                    *fmt);
            abort();
        }

        if (sign) {
            if (i64 < 0) {
                *buf++ = '-';
                ui64 = (uint64_t) 0 - (uint64_t) i64;

            } else {
                ui64 = (uint64_t) i64;
            }
        }

        buf = ngx_shim_num(buf, last, ui64, zero, hex, width);

        fmt++;
    }

    return buf;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + max, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_slprintf(u_char *buf, u_char *last, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    return p;
}


/* logs: formatted, then handed to the oracles' hook */

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   buf[NGX_MAX_ERROR_STR], *p, *last;
    va_list  args;

    last = buf + sizeof(buf) - 1;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    if (err) {
        p = ngx_slprintf(p, last, " (%d: %s)", err, strerror(err));
    }

    *p = '\0';

    if (ngx_shim_log_hook != NULL) {
        ngx_shim_log_hook(level, buf, p - buf);
    }
}


void ngx_cdecl
ngx_conf_log_error(ngx_uint_t level, ngx_conf_t *cf, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    last = ngx_shim_conf_error + sizeof(ngx_shim_conf_error) - 1;

    va_start(args, fmt);
    p = ngx_vslprintf(ngx_shim_conf_error, last, fmt, args);
    va_end(args);

    if (err) {
        p = ngx_slprintf(p, last, " (%d: %s)", err, strerror(err));
    }

    *p = '\0';

    if (ngx_shim_log_hook != NULL) {
        ngx_shim_log_hook(level, ngx_shim_conf_error,
                          p - ngx_shim_conf_error);
    }
}


/* files */

ngx_int_t
ngx_conf_full_name(ngx_cycle_t *cycle, ngx_str_t *name, ngx_uint_t conf)
{
    u_char     *p;
    ngx_str_t  *prefix;

    if (name->len && name->data[0] == '/') {
        return NGX_OK;
    }

    prefix = conf ? &cycle->conf_prefix : &cycle->prefix;

    p = ngx_pnalloc(cycle->pool, prefix->len + name->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    memcpy(p, prefix->data, prefix->len);
    memcpy(p + prefix->len, name->data, name->len);
    p[prefix->len + name->len] = '\0';

    name->data = p;
    name->len += prefix->len;

    return NGX_OK;
}


ssize_t
ngx_read_file(ngx_file_t *file, u_char *buf, size_t size, off_t offset)
{
    ssize_t  n;

    n = pread(file->fd, buf, size, offset);

    if (n == -1) {
        return NGX_ERROR;
    }

    file->offset += n;

    return n;
}


ngx_int_t
ngx_open_dir(ngx_str_t *name, ngx_dir_t *dir)
{
    dir->dir = opendir((const char *) name->data);

    if (dir->dir == NULL) {
        return NGX_ERROR;
    }

    dir->valid_info = 0;

    return NGX_OK;
}


ngx_int_t
ngx_read_dir(ngx_dir_t *dir)
{
    dir->de = readdir(dir->dir);

    if (dir->de != NULL) {
        dir->type = dir->de->d_type;
        return NGX_OK;
    }

    return NGX_ERROR;
}


/* HTTP dates: RFC 1123, RFC 850 and asctime() forms */
time_t
ngx_parse_http_time(u_char *value, size_t len)
{
    char        buf[64], *end;
    struct tm   tm;
    ngx_uint_t  i;
    static const char  *formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
        NULL
    };

    if (len == 0 || len >= sizeof(buf) || memchr(value, '\0', len)) {
        return NGX_ERROR;
    }

    memcpy(buf, value, len);
    buf[len] = '\0';

    for (i = 0; formats[i]; i++) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(buf, formats[i], &tm);

        if (end != NULL && *end == '\0') {
            return timegm(&tm);
        }
    }

    return NGX_ERROR;
}


/* regular expressions: PCRE2 directly, the code freed with the pool */

static void
ngx_shim_regex_cleanup(void *data)
{
    pcre2_code_free(data);
}


ngx_int_t
ngx_regex_compile(ngx_regex_compile_t *rc)
{
    int                  errcode;
    u_char               errstr[128];
    uint32_t             n, options;
    PCRE2_SIZE           erroff;
    pcre2_code          *re;
    ngx_pool_cleanup_t  *cln;

    options = 0;

    if (rc->options & NGX_REGEX_CASELESS) {
        options |= PCRE2_CASELESS;
    }

    if (rc->options & NGX_REGEX_MULTILINE) {
        options |= PCRE2_MULTILINE;
    }

    re = pcre2_compile(rc->pattern.data, rc->pattern.len, options, &errcode,
                       &erroff, NULL);
    if (re == NULL) {
        pcre2_get_error_message(errcode, errstr, sizeof(errstr));
        rc->err.len = ngx_snprintf(rc->err.data, rc->err.len,
                                   "pcre2_compile() failed: %s in \"%V\"",
                                   errstr, &rc->pattern)
                      - rc->err.data;
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(rc->pool, 0);
    if (cln == NULL) {
        pcre2_code_free(re);
        return NGX_ERROR;
    }

    cln->handler = ngx_shim_regex_cleanup;
    cln->data = re;

    rc->regex = re;

    n = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &n);
    rc->captures = (int) n;

    n = 0;
    pcre2_pattern_info(re, PCRE2_INFO_NAMECOUNT, &n);
    rc->named_captures = (int) n;

    return NGX_OK;
}


ngx_int_t
ngx_regex_exec(ngx_regex_t *re, ngx_str_t *s, int *captures,
    ngx_uint_t size)
{
    int                rc;
    size_t            *ov;
    ngx_uint_t         i, n;
    pcre2_match_data  *md;

    md = pcre2_match_data_create(size / 3 + 1, NULL);
    if (md == NULL) {
        return PCRE2_ERROR_NOMEMORY;
    }

    rc = pcre2_match(re, s->data, s->len, 0, 0, md, NULL);

    if (rc > 0 && size) {
        n = pcre2_get_ovector_count(md);
        ov = pcre2_get_ovector_pointer(md);

        if (n > size / 3) {
            n = size / 3;
        }

        for (i = 0; i < n; i++) {
            captures[i * 2] = (int) ov[i * 2];
            captures[i * 2 + 1] = (int) ov[i * 2 + 1];
        }
    }

    pcre2_match_data_free(md);

    return rc;
}
