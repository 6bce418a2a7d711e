/*
 * Tool arguments against the tool's JSON input schema.
 *
 * The subset catalogs use: type (or a list of types), properties,
 * required, additionalProperties (false unless the schema allows them),
 * enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
 * minLength, maxLength, pattern, items, minItems, maxItems,
 * minProperties, maxProperties. Unknown keywords are annotations.
 * The first problem found is reported with the path of the value, e.g.
 * "arguments.limit must be at most 1000".
 */


#include "ngx_astralform.h"
#include "ngx_astralform_schema.h"


#define NGX_ASTRALFORM_SCHEMA_DEPTH  16


typedef struct {
    ngx_pool_t   *pool;
    u_char       *err;
    u_char       *last;
    ngx_uint_t    top;
} ngx_astralform_schema_ctx_t;


static ngx_int_t ngx_astralform_schema_value(ngx_astralform_schema_ctx_t *sc,
    json_t *schema, json_t *value, const char *path, ngx_uint_t depth);
static ngx_int_t ngx_astralform_schema_type(json_t *type, json_t *value);
static ngx_int_t ngx_astralform_schema_object(ngx_astralform_schema_ctx_t *sc,
    json_t *schema, json_t *value, const char *path, ngx_uint_t depth);
static ngx_int_t ngx_astralform_schema_array(ngx_astralform_schema_ctx_t *sc,
    json_t *schema, json_t *value, const char *path, ngx_uint_t depth);
static ngx_int_t ngx_astralform_schema_string(
    ngx_astralform_schema_ctx_t *sc, json_t *schema, json_t *value,
    const char *path);
static ngx_int_t ngx_astralform_schema_number(
    ngx_astralform_schema_ctx_t *sc, json_t *schema, json_t *value,
    const char *path);
static ngx_int_t ngx_astralform_schema_fail(ngx_astralform_schema_ctx_t *sc,
    const char *path, const char *fmt, ...);
static ngx_int_t ngx_astralform_schema_fail_list(
    ngx_astralform_schema_ctx_t *sc, const char *path, const char *what,
    json_t *list);
static size_t ngx_astralform_utf8_length(const char *s, size_t len);


ngx_int_t
ngx_astralform_schema_check(ngx_pool_t *pool, json_t *schema, json_t *value,
    u_char *err, size_t size)
{
    ngx_astralform_schema_ctx_t  sc;

    sc.pool = pool;
    sc.err = err;
    sc.last = err + size - 1;
    sc.top = 1;
    err[0] = '\0';

    return ngx_astralform_schema_value(&sc, schema, value, "arguments", 0);
}


static ngx_int_t
ngx_astralform_schema_value(ngx_astralform_schema_ctx_t *sc, json_t *schema,
    json_t *value, const char *path, ngx_uint_t depth)
{
    size_t   i;
    json_t  *v, *e;

    if (!json_is_object(schema)) {
        return NGX_OK;
    }

    if (depth > NGX_ASTRALFORM_SCHEMA_DEPTH) {
        return ngx_astralform_schema_fail(sc, path, "is nested too deeply");
    }

    v = json_object_get(schema, "type");
    if (v != NULL && ngx_astralform_schema_type(v, value) != NGX_OK) {
        return ngx_astralform_schema_fail(sc, path, "must be %s",
                   json_is_string(v) ? json_string_value(v)
                                     : "of another type");
    }

    v = json_object_get(schema, "enum");
    if (json_is_array(v)) {
        json_array_foreach(v, i, e) {
            if (json_equal(e, value)) {
                break;
            }
        }

        if (i == json_array_size(v)) {
            return ngx_astralform_schema_fail_list(sc, path, "must be one of",
                                                   v);
        }
    }

    v = json_object_get(schema, "const");
    if (v != NULL && !json_equal(v, value)) {
        return ngx_astralform_schema_fail(sc, path, "must be the constant "
                                          "value");
    }

    switch (json_typeof(value)) {

    case JSON_OBJECT:
        return ngx_astralform_schema_object(sc, schema, value, path, depth);

    case JSON_ARRAY:
        return ngx_astralform_schema_array(sc, schema, value, path, depth);

    case JSON_STRING:
        return ngx_astralform_schema_string(sc, schema, value, path);

    case JSON_INTEGER:
    case JSON_REAL:
        return ngx_astralform_schema_number(sc, schema, value, path);

    default:
        return NGX_OK;
    }
}


static ngx_int_t
ngx_astralform_schema_type(json_t *type, json_t *value)
{
    size_t       i;
    json_t      *t;
    const char  *s;

    if (json_is_array(type)) {
        json_array_foreach(type, i, t) {
            if (ngx_astralform_schema_type(t, value) == NGX_OK) {
                return NGX_OK;
            }
        }

        return NGX_DECLINED;
    }

    s = json_string_value(type);
    if (s == NULL) {
        return NGX_OK;
    }

    if (ngx_strcmp(s, "object") == 0) {
        return json_is_object(value) ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_strcmp(s, "array") == 0) {
        return json_is_array(value) ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_strcmp(s, "string") == 0) {
        return json_is_string(value) ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_strcmp(s, "integer") == 0) {
        /* 2.0 is an integer; the range test keeps the cast defined */
        return json_is_integer(value)
               || (json_is_real(value)
                   && json_real_value(value) > -9.0e18
                   && json_real_value(value) < 9.0e18
                   && json_real_value(value)
                      == (double) (json_int_t) json_real_value(value))
               ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_strcmp(s, "number") == 0) {
        return json_is_number(value) ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_strcmp(s, "boolean") == 0) {
        return json_is_boolean(value) ? NGX_OK : NGX_DECLINED;
    }

    if (ngx_strcmp(s, "null") == 0) {
        return json_is_null(value) ? NGX_OK : NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_schema_object(ngx_astralform_schema_ctx_t *sc, json_t *schema,
    json_t *value, const char *path, ngx_uint_t depth)
{
    u_char      *sub;
    size_t       i, len;
    json_t      *props, *req, *v, *extra, *n;
    ngx_int_t    rc;
    const char  *key;

    props = json_object_get(schema, "properties");
    extra = json_object_get(schema, "additionalProperties");

    req = json_object_get(schema, "required");
    if (json_is_array(req)) {
        json_array_foreach(req, i, n) {
            if (json_is_string(n)
                && json_object_get(value, json_string_value(n)) == NULL)
            {
                return ngx_astralform_schema_fail(sc, path,
                                                  "needs \"%s\"",
                                                  json_string_value(n));
            }
        }
    }

    v = json_object_get(schema, "minProperties");
    if (json_is_integer(v)
        && (json_int_t) json_object_size(value) < json_integer_value(v))
    {
        return ngx_astralform_schema_fail(sc, path, "needs at least %L "
                                          "members",
                                          (int64_t) json_integer_value(v));
    }

    v = json_object_get(schema, "maxProperties");
    if (json_is_integer(v)
        && (json_int_t) json_object_size(value) > json_integer_value(v))
    {
        return ngx_astralform_schema_fail(sc, path, "allows at most %L "
                                          "members",
                                          (int64_t) json_integer_value(v));
    }

    json_object_foreach(value, key, v) {
        len = ngx_strlen(path) + ngx_strlen(key) + 2;

        sub = ngx_pnalloc(sc->pool, len);
        if (sub == NULL) {
            return NGX_ERROR;
        }
        ngx_sprintf(sub, "%s.%s%Z", path, key);

        n = json_object_get(props, key);

        if (n == NULL) {
            /*
             * The top level rejects unknown arguments unless the schema
             * says otherwise: a typo must not silently drop an argument.
             */
            if (json_is_false(extra) || (sc->top && extra == NULL)) {
                return ngx_astralform_schema_fail_list(sc, (char *) sub,
                           "is not a known argument; known:", props);
            }

            n = json_is_object(extra) ? extra : NULL;
            if (n == NULL) {
                continue;
            }
        }

        sc->top = 0;
        rc = ngx_astralform_schema_value(sc, n, v, (char *) sub, depth + 1);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    sc->top = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_schema_array(ngx_astralform_schema_ctx_t *sc, json_t *schema,
    json_t *value, const char *path, ngx_uint_t depth)
{
    u_char     *sub;
    size_t      i;
    json_t     *v, *items, *e;
    ngx_int_t   rc;

    v = json_object_get(schema, "minItems");
    if (json_is_integer(v)
        && (json_int_t) json_array_size(value) < json_integer_value(v))
    {
        return ngx_astralform_schema_fail(sc, path, "needs at least %L "
                                          "items",
                                          (int64_t) json_integer_value(v));
    }

    v = json_object_get(schema, "maxItems");
    if (json_is_integer(v)
        && (json_int_t) json_array_size(value) > json_integer_value(v))
    {
        return ngx_astralform_schema_fail(sc, path, "allows at most %L "
                                          "items",
                                          (int64_t) json_integer_value(v));
    }

    items = json_object_get(schema, "items");
    if (!json_is_object(items)) {
        return NGX_OK;
    }

    json_array_foreach(value, i, e) {
        sub = ngx_pnalloc(sc->pool, ngx_strlen(path) + NGX_INT_T_LEN + 3);
        if (sub == NULL) {
            return NGX_ERROR;
        }
        ngx_sprintf(sub, "%s[%uz]%Z", path, i);

        rc = ngx_astralform_schema_value(sc, items, e, (char *) sub,
                                         depth + 1);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_schema_string(ngx_astralform_schema_ctx_t *sc, json_t *schema,
    json_t *value, const char *path)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    size_t               len;
    json_t              *v;
    ngx_int_t            n;
    ngx_str_t            subject;
    ngx_regex_compile_t  rc;

    len = ngx_astralform_utf8_length(json_string_value(value),
                                     json_string_length(value));

    v = json_object_get(schema, "minLength");
    if (json_is_integer(v) && (json_int_t) len < json_integer_value(v)) {
        return ngx_astralform_schema_fail(sc, path, "must be at least %L "
                                          "characters",
                                          (int64_t) json_integer_value(v));
    }

    v = json_object_get(schema, "maxLength");
    if (json_is_integer(v) && (json_int_t) len > json_integer_value(v)) {
        return ngx_astralform_schema_fail(sc, path, "must be at most %L "
                                          "characters",
                                          (int64_t) json_integer_value(v));
    }

    v = json_object_get(schema, "pattern");
    if (!json_is_string(v)) {
        return NGX_OK;
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));
    rc.pattern.data = (u_char *) json_string_value(v);
    rc.pattern.len = json_string_length(v);
    rc.pool = sc->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        /* a catalog bug, not the caller's: do not block the call on it */
        return NGX_OK;
    }

    subject.data = (u_char *) json_string_value(value);
    subject.len = json_string_length(value);

    n = ngx_regex_exec(rc.regex, &subject, NULL, 0);

    if (n == NGX_REGEX_NO_MATCHED) {
        return ngx_astralform_schema_fail(sc, path, "must match the "
                                          "pattern %V", &rc.pattern);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_schema_number(ngx_astralform_schema_ctx_t *sc, json_t *schema,
    json_t *value, const char *path)
{
    char        *num;
    double       x, bound;
    json_t      *v;
    ngx_int_t    rc;
    ngx_uint_t   i;
    static const char  *keys[] = {
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"
    };
    static const char  *says[] = {
        "at least", "at most", "more than", "less than"
    };

    x = json_number_value(value);

    for (i = 0; i < 4; i++) {
        v = json_object_get(schema, keys[i]);
        if (!json_is_number(v)) {
            continue;
        }

        bound = json_number_value(v);

        if ((i == 0 && x < bound) || (i == 1 && x > bound)
            || (i == 2 && x <= bound) || (i == 3 && x >= bound))
        {
            /* the bound as JSON writes it: 1000, 0.5 */
            num = json_dumps(v, JSON_ENCODE_ANY);
            rc = ngx_astralform_schema_fail(sc, path, "must be %s %s",
                                            says[i], num ? num : "the bound");
            free(num);
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_schema_fail(ngx_astralform_schema_ctx_t *sc, const char *path,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_slprintf(sc->err, sc->last, "%s ", path);

    va_start(args, fmt);
    p = ngx_vslprintf(p, sc->last, fmt, args);
    va_end(args);

    *p = '\0';

    return NGX_DECLINED;
}


/*
 * "path what a, b, c": the allowed values of an enum (compact JSON) or the
 * names of an object's properties, as many as the message has room for.
 */
static ngx_int_t
ngx_astralform_schema_fail_list(ngx_astralform_schema_ctx_t *sc,
    const char *path, const char *what, json_t *list)
{
    u_char      *p;
    char        *text;
    size_t       i;
    json_t      *v;
    const char  *key, *sep;

    p = ngx_slprintf(sc->err, sc->last, "%s %s", path, what);
    sep = " ";

    if (json_is_array(list)) {
        json_array_foreach(list, i, v) {
            text = json_dumps(v, JSON_COMPACT|JSON_ENCODE_ANY);
            if (text == NULL) {
                break;
            }
            p = ngx_slprintf(p, sc->last, "%s%s", sep, text);
            ngx_free(text);
            sep = ", ";
        }

    } else if (json_is_object(list)) {
        json_object_foreach(list, key, v) {
            p = ngx_slprintf(p, sc->last, "%s\"%s\"", sep, key);
            sep = ", ";
        }
    }

    if (*sep == ' ') {
        p = ngx_slprintf(p, sc->last, " none");
    }

    *p = '\0';

    return NGX_DECLINED;
}


/* JSON Schema lengths count characters, not bytes */
static size_t
ngx_astralform_utf8_length(const char *s, size_t len)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (((u_char) s[i] & 0xC0) != 0x80) {
            n++;
        }
    }

    return n;
}
