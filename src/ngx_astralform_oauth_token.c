/*
 * The provider's token endpoint, per the catalog's provider style: one call
 * for the authorization code grant (the callback) or the refresh token grant
 * (refresh), with the client authenticated as client_auth says and the
 * request encoded as token_request says; the answer, JSON or a form, read
 * per token_fields into a token record.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


/* ten years: longer lifetimes are treated as this (and never overflow) */
#define NGX_ASTRALFORM_MAX_EXPIRES_IN  (10 * 365 * 86400)


static ngx_uint_t ngx_astralform_token_chars(json_t *v);
static void ngx_astralform_exchange_done(ngx_astralform_http_req_t *hr);
static ngx_int_t ngx_astralform_exchange_fields(ngx_astralform_exchange_t *ex,
    json_t *json);
static ngx_uint_t ngx_astralform_grant_dead(ngx_astralform_def_t *def,
    const char *code);

static json_t *ngx_astralform_json_path(json_t *json, const char *path);
static ngx_int_t ngx_astralform_scopes(ngx_pool_t *pool, ngx_str_t *dst,
    json_t *value, const char *separators);
static json_t *ngx_astralform_form_decode(u_char *p, size_t len);


/* provider answers that mean the refresh token is dead for good */
static const char  *ngx_astralform_dead_grants[] = {
    "invalid_grant", "invalid_refresh_token", "bad_refresh_token",
    "token_revoked", "token_expired", "invalid_token", NULL
};


ngx_int_t
ngx_astralform_oauth_exchange_start(ngx_astralform_exchange_t *ex,
    json_t *params)
{
    char                        *text;
    ngx_int_t                    rc;
    ngx_str_t                    secret, basic, name, value, body, *h;
    ngx_uint_t                   i;
    const char                  *auth, *format;
    ngx_pool_t                  *pool;
    ngx_astralform_ctx_t        *ctx;
    ngx_astralform_def_t        *def;
    ngx_astralform_http_req_t   *hr;
    ngx_astralform_connector_t  *conn;

    ctx = ex->ctx;
    conn = ex->conn;
    def = conn->def;
    pool = ctx->request->pool;

    ex->rc = NGX_ERROR;
    ex->timed_out = 0;
    ngx_cpystrn(ex->reason, (u_char *) "token_exchange_failed",
                sizeof(ex->reason));

    rc = ngx_astralform_connector_secret(ctx, conn, "oauth_client_secret",
                                         &secret);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_str_null(&secret);
    }

    auth = ngx_astralform_oauth_str(def, "client_auth", "basic");
    format = ngx_astralform_oauth_str(def, "token_request", "form");

    hr = ngx_astralform_http_create(pool, ctx->request->connection->log);
    if (hr == NULL) {
        return NGX_ERROR;
    }

    ex->hr = hr;
    ngx_str_null(&basic);

    if (ngx_strcmp(auth, "basic") == 0 && secret.len) {
        if (ngx_astralform_oauth_basic_auth(pool, &conn->client_id, &secret,
                                            &basic) != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_str_set(&name, "Authorization");
        if (ngx_astralform_http_add_header(hr, &name, &basic) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        json_object_set_new(params, "client_id",
                            ngx_astralform_json_string(&conn->client_id));

        if (secret.len && ngx_strcmp(auth, "none") != 0) {
            json_object_set_new(params, "client_secret",
                                ngx_astralform_json_string(&secret));
        }
    }

    if (ngx_strcmp(format, "json") == 0) {
        text = json_dumps(params, JSON_COMPACT);
        if (text == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_astralform_strdup(pool, &body, text);
        ngx_explicit_memzero(text, ngx_strlen(text));
        ngx_free(text);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_str_set(&value, "application/json");

    } else {
        if (ngx_astralform_oauth_form_encode(pool, params, &body) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_str_set(&value, "application/x-www-form-urlencoded");
    }

    ngx_str_set(&name, "Content-Type");
    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    /* any provider may answer JSON; GitHub answers a form without this */
    ngx_str_set(&name, "Accept");
    ngx_str_set(&value, "application/json");
    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&hr->method, "POST");
    hr->url = def->token_url;
    hr->body = body;
    hr->timeout = ex->timeout;
    hr->done = ngx_astralform_exchange_done;
    hr->data = ex;

    rc = ngx_astralform_http_start(hr);

    /* curl has its own copies now */

    ngx_astralform_oauth_wipe(&body);
    ngx_astralform_oauth_wipe(&basic);

    h = hr->headers.elts;

    for (i = 0; i < hr->headers.nelts; i++) {
        if (h[i].len > 14
            && ngx_strncasecmp(h[i].data, (u_char *) "Authorization", 13)
               == 0)
        {
            ngx_astralform_oauth_wipe(&h[i]);
        }
    }

    return rc;
}


static void
ngx_astralform_exchange_done(ngx_astralform_http_req_t *hr)
{
    ngx_astralform_exchange_t *ex = hr->data;

    json_t                *json, *v;
    ngx_uint_t             ok, level;
    const char            *code, *what;
    ngx_astralform_def_t  *def;

    def = ex->conn->def;
    what = ex->refresh ? "refresh" : "exchange";

    ex->rc = NGX_ERROR;

    if (hr->error != NGX_ASTRALFORM_HTTP_OK) {
        /* the http module logged it, with the host */
        ex->timed_out = (hr->error == NGX_ASTRALFORM_HTTP_TIMEOUT);
        ngx_cpystrn(ex->reason, (u_char *) (ex->timed_out
                                            ? "provider_timeout"
                                            : "provider_unreachable"),
                    sizeof(ex->reason));
        ex->done(ex);
        return;
    }

    json = json_loadb((char *) hr->resp_body.data, hr->resp_body.len, 0,
                      NULL);

    if (json == NULL) {
        json = ngx_astralform_form_decode(hr->resp_body.data,
                                          hr->resp_body.len);
    }

    ngx_explicit_memzero(hr->resp_body.data, hr->resp_body.len);

    if (!json_is_object(json)) {
        json_decref(json);

        ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                      "astralform: token %s with \"%V\" failed: HTTP %ui "
                      "with an answer that is neither JSON nor a form",
                      what, &hr->host, hr->status);

        ngx_cpystrn(ex->reason, (u_char *) "provider_error",
                    sizeof(ex->reason));
        ex->done(ex);
        return;
    }

    code = ngx_astralform_json_value(json, "error");
    v = json_object_get(json, "ok");

    ok = hr->status >= 200 && hr->status < 300 && code == NULL
         && !json_is_false(v);

    if (ok) {
        if (ngx_astralform_exchange_fields(ex, json) == NGX_OK) {
            ex->rc = NGX_OK;
            json_decref(json);
            ex->done(ex);
            return;
        }

        json_decref(json);

        ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                      "astralform: token %s with \"%V\" failed: HTTP %ui "
                      "without an access token where connector \"%V\" "
                      "expects it", what, &hr->host, hr->status,
                      &def->slug);

        ngx_cpystrn(ex->reason, (u_char *) "provider_error",
                    sizeof(ex->reason));
        ex->done(ex);
        return;
    }

    /* provider error codes are [a-z_] words: anything else is not logged */

    if (code != NULL) {
        for (what = code; *what; what++) {
            if (!((*what >= 'a' && *what <= 'z') || *what == '_'
                  || (*what >= 'A' && *what <= 'Z')
                  || (*what >= '0' && *what <= '9'))
                || what - code > 48)
            {
                code = "(unrecognised error)";
                break;
            }
        }
    }

    what = ex->refresh ? "refresh" : "exchange";

    if (ex->refresh
        && ngx_astralform_grant_dead(def, code)
        && (hr->status < 300 || hr->status == 400 || hr->status == 401))
    {
        ex->rc = NGX_DECLINED;
    }

    if (!ex->refresh && hr->status < 500 && hr->status != 429) {
        ex->rc = NGX_DECLINED;
    }

    level = (ex->rc == NGX_DECLINED && ex->refresh) ? NGX_LOG_WARN
                                                      : NGX_LOG_ERR;

    ngx_log_error(level, hr->log, 0,
                  "astralform: token %s with \"%V\" failed: HTTP %ui %s",
                  what, &hr->host, hr->status,
                  code ? code : "(no error code)");

    ngx_cpystrn(ex->reason, (u_char *) (ex->rc == NGX_DECLINED
                                        ? "grant_refused" : "provider_error"),
                sizeof(ex->reason));

    json_decref(json);

    ex->done(ex);
}


/* reads the answer per the catalog's token_fields into ex->tok */
static ngx_int_t
ngx_astralform_exchange_fields(ngx_astralform_exchange_t *ex, json_t *json)
{
    json_t                  *fields, *v;
    ngx_int_t                n;
    ngx_str_t                s;
    const char              *path, *sep;
    ngx_pool_t              *pool;
    ngx_astralform_def_t    *def;
    ngx_astralform_token_t  *tok;

    def = ex->conn->def;
    pool = ex->ctx->request->pool;
    tok = &ex->tok;

    ngx_memzero(tok, sizeof(ngx_astralform_token_t));

    fields = NULL;

    if (ex->refresh) {
        fields = json_object_get(def->oauth, "refresh_token_fields");
    }

    if (!json_is_object(fields)) {
        fields = json_object_get(def->oauth, "token_fields");
    }

#define ngx_astralform_field(name)                                           \
    ngx_astralform_json_path(json,                                           \
        ngx_astralform_json_value(fields, name)                              \
        ? ngx_astralform_json_value(fields, name) : name)

    v = ngx_astralform_field("access_token");
    if (!json_is_string(v) || json_string_length(v) == 0
        || !ngx_astralform_token_chars(v)
        || ngx_astralform_oauth_pdup(pool, &tok->access_token,
                                     json_string_value(v),
                                     json_string_length(v))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = ngx_astralform_field("refresh_token");
    if (json_is_string(v) && !ngx_astralform_token_chars(v)) {
        return NGX_ERROR;
    }

    if (json_is_string(v)
        && ngx_astralform_oauth_pdup(pool, &tok->refresh_token,
                                     json_string_value(v),
                                     json_string_length(v))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = ngx_astralform_field("expires_in");
    n = 0;

    /* a provider's number is untrusted: clamp before any cast or sum */
    if (json_is_integer(v)) {
        n = json_integer_value(v) > NGX_ASTRALFORM_MAX_EXPIRES_IN
            ? NGX_ASTRALFORM_MAX_EXPIRES_IN
            : (ngx_int_t) json_integer_value(v);

    } else if (json_is_real(v)) {
        n = !(json_real_value(v) > 0) ? 0
            : json_real_value(v) > NGX_ASTRALFORM_MAX_EXPIRES_IN
              ? NGX_ASTRALFORM_MAX_EXPIRES_IN
              : (ngx_int_t) json_real_value(v);

    } else if (json_is_string(v)) {
        n = ngx_atoi((u_char *) json_string_value(v), json_string_length(v));
        n = ngx_min(n, NGX_ASTRALFORM_MAX_EXPIRES_IN);
    }

    tok->obtained_at = ngx_time();
    tok->expires_at = n > 0 ? tok->obtained_at + n : 0;

    sep = ngx_astralform_oauth_str(def, "scope_answer_separator", ", ");

    v = ngx_astralform_field("scope");
    if (ngx_astralform_scopes(pool, &tok->scope, v, sep) != NGX_OK) {
        return NGX_ERROR;
    }

    v = ngx_astralform_field("token_type");
    if (json_is_string(v)
        && ngx_astralform_oauth_pdup(pool, &tok->token_type,
                                     json_string_value(v),
                                     json_string_length(v)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    path = ngx_astralform_json_value(fields, "account_id");
    v = path ? ngx_astralform_json_path(json, path) : NULL;

    if (json_is_string(v)) {
        if (ngx_astralform_oauth_pdup(pool, &tok->account_id,
                                      json_string_value(v),
                                      json_string_length(v)) != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (json_is_integer(v)) {
        s.data = ngx_pnalloc(pool, NGX_INT64_LEN);
        if (s.data == NULL) {
            return NGX_ERROR;
        }

        s.len = ngx_sprintf(s.data, "%L", (int64_t) json_integer_value(v))
                - s.data;
        tok->account_id = s;
    }

#undef ngx_astralform_field

    return NGX_OK;
}


static ngx_uint_t
ngx_astralform_grant_dead(ngx_astralform_def_t *def, const char *code)
{
    size_t        i;
    json_t       *extra, *v;
    const char  **dead;

    if (code == NULL) {
        return 0;
    }

    for (dead = ngx_astralform_dead_grants; *dead; dead++) {
        if (ngx_strcmp(*dead, code) == 0) {
            return 1;
        }
    }

    extra = json_object_get(def->oauth, "refresh_dead_errors");

    json_array_foreach(extra, i, v) {
        if (json_is_string(v) && ngx_strcmp(json_string_value(v), code) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* ---------------------------------------------------------------------- */
/* reading answers */


/* "authed_user.access_token" */
static json_t *
ngx_astralform_json_path(json_t *json, const char *path)
{
    char         key[64];
    size_t       len;
    const char  *dot;

    while (json != NULL && path != NULL) {
        dot = ngx_strchr(path, '.');
        len = dot ? (size_t) (dot - path) : ngx_strlen(path);

        if (len >= sizeof(key)) {
            return NULL;
        }

        ngx_memcpy(key, path, len);
        key[len] = '\0';

        json = json_object_get(json, key);
        path = dot ? dot + 1 : NULL;
    }

    return json;
}


/* the granted scopes as the record keeps them: space-separated */
static ngx_int_t
ngx_astralform_scopes(ngx_pool_t *pool, ngx_str_t *dst, json_t *value,
    const char *separators)
{
    u_char      *p, *q, *last, *out;
    size_t       i, len;
    json_t      *v;
    ngx_str_t    s;

    ngx_str_null(dst);

    if (json_is_array(value)) {
        len = 0;
        json_array_foreach(value, i, v) {
            len += json_string_length(v) + 1;
        }

        out = ngx_pnalloc(pool, len + 1);
        if (out == NULL) {
            return NGX_ERROR;
        }

        p = out;
        json_array_foreach(value, i, v) {
            if (json_is_string(v) && json_string_length(v)) {
                if (p != out) {
                    *p++ = ' ';
                }
                p = ngx_cpymem(p, json_string_value(v), json_string_length(v));
            }
        }

        dst->data = out;
        dst->len = p - out;
        return NGX_OK;
    }

    if (!json_is_string(value)) {
        return NGX_OK;
    }

    s.data = (u_char *) json_string_value(value);
    s.len = json_string_length(value);

    out = ngx_pnalloc(pool, s.len + 1);
    if (out == NULL) {
        return NGX_ERROR;
    }

    p = out;
    last = s.data + s.len;

    for (q = s.data; q < last; q++) {
        if (ngx_strchr(separators, *q) != NULL || *q == ' ') {
            if (p != out && p[-1] != ' ') {
                *p++ = ' ';
            }
            continue;
        }

        *p++ = *q;
    }

    if (p != out && p[-1] == ' ') {
        p--;
    }

    dst->data = out;
    dst->len = p - out;

    return NGX_OK;
}


/* "a=b&c=d" (a form answer, GitHub's without Accept) as a JSON object */
static json_t *
ngx_astralform_form_decode(u_char *p, size_t len)
{
    u_char      *last, *amp, *eq, kbuf[64];
    json_t      *json;
    ngx_str_t    k, v, dk, dv;
    ngx_pool_t  *pool;

    last = p + len;

    if (len == 0 || ngx_strlchr(p, last, '=') == NULL) {
        return NULL;
    }

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    json = json_object();

    while (json != NULL && p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        if (eq == NULL || eq == p || (size_t) (eq - p) >= sizeof(kbuf)) {
            json_decref(json);
            json = NULL;
            break;
        }

        k.data = p;
        k.len = eq - p;
        v.data = eq + 1;
        v.len = amp - eq - 1;

        if (ngx_astralform_oauth_unescape(pool, &k, &dk) != NGX_OK
            || ngx_astralform_oauth_unescape(pool, &v, &dv) != NGX_OK
            || dk.len >= sizeof(kbuf))
        {
            json_decref(json);
            json = NULL;
            break;
        }

        ngx_memcpy(kbuf, dk.data, dk.len);
        kbuf[dk.len] = '\0';

        json_object_set_new(json, (char *) kbuf,
                            json_stringn((char *) dv.data, dv.len));

        ngx_explicit_memzero(dv.data, dv.len);

        p = amp + 1;
    }

    ngx_destroy_pool(pool);

    return json;
}


/*
 * A token is visible ASCII (RFC 6750 b64token and the like): one holding
 * a space or CR/LF would end up as a header injection, so it is refused.
 */
static ngx_uint_t
ngx_astralform_token_chars(json_t *v)
{
    size_t       i, len;
    const char  *s;

    s = json_string_value(v);
    len = json_string_length(v);

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] <= 0x20 || (u_char) s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}
