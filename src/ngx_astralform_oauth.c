/*
 * End-user OAuth: connect sessions, the authorize and callback endpoints,
 * the token endpoint per the catalog's provider style (code exchange and
 * refresh), and revocation at the provider.
 *
 * The authorize and callback endpoints are browser-facing: they answer
 * redirects and small HTML pages, never JSON, and never show a code.
 *
 *   connect_url()  {P}:session:<SID>  {connector, user, return_url, agent}
 *   authorize      GETDEL the session; {P}:state:<STATE> sealed {connector,
 *                  user, return_url, verifier, binding, issuer, token_url};
 *                  a cookie binds the flow to the browser that started it
 *   callback       GETDEL the state; checks the browser binding and the
 *                  issuer (RFC 9207); exchanges the code; stores the record
 *   refresh        {P}:lock:<C>:<U> with an owner and a lease; re-read
 *                  under the lock; compare-and-set write
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"


#define NGX_ASTRALFORM_OAUTH_RANDOM      32      /* 256-bit ids */
#define NGX_ASTRALFORM_OAUTH_ID_LEN      43      /* base64url of 32 bytes */
#define NGX_ASTRALFORM_OAUTH_BINDING     16
#define NGX_ASTRALFORM_OAUTH_LEASE       10000
#define NGX_ASTRALFORM_OAUTH_POLL        50
#define NGX_ASTRALFORM_OAUTH_MAX_URL     2048
#define NGX_ASTRALFORM_OAUTH_MAX_CODE    4096
#define NGX_ASTRALFORM_OAUTH_REVOKERS    8

#define NGX_ASTRALFORM_OAUTH_AUTHORIZE   "/v1/connectors/oauth/authorize"
#define NGX_ASTRALFORM_OAUTH_CALLBACK    "/v1/connectors/oauth/callback"
#define NGX_ASTRALFORM_OAUTH_COOKIE      "astralform_oauth_"
#define NGX_ASTRALFORM_OAUTH_COOKIE_ID   12      /* state chars in the name */

/* a possibly empty ngx_str_t as jansson's "s%" arguments */
#define ngx_astralform_str_or_empty(s)                                       \
    (s)->data ? (const char *) (s)->data : "", (s)->len


typedef struct ngx_astralform_exchange_s  ngx_astralform_exchange_t;

typedef void (*ngx_astralform_exchange_pt)(ngx_astralform_exchange_t *ex);


/* one call of a provider's token endpoint */
struct ngx_astralform_exchange_s {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_connector_t   *conn;
    ngx_astralform_http_req_t    *hr;
    ngx_astralform_exchange_pt    done;
    void                         *data;
    ngx_msec_t                    timeout;
    ngx_uint_t                    refresh;

    /*
     * NGX_OK: tok is filled; NGX_DECLINED: the grant is dead (refresh) or
     * the provider refused (code); NGX_ERROR: unavailable, try again later
     */
    ngx_int_t                     rc;
    ngx_uint_t                    timed_out;
    u_char                        reason[64];
    ngx_astralform_token_t        tok;
};


typedef struct {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_url_pt         handler;
    ngx_str_t                     url;
} ngx_astralform_connect_t;


/* a browser flow, from the session or the state record */
typedef struct {
    ngx_str_t                     id;           /* STATE */
    ngx_str_t                     connector;
    ngx_str_t                     return_url;
    ngx_str_t                     verifier;
    ngx_str_t                     binding;
    ngx_str_t                     issuer;
    ngx_str_t                     token_url;
    ngx_str_t                     code;
    ngx_str_t                     error;
    ngx_str_t                     iss;
    ngx_str_t                     cookie;       /* name=value */
    ngx_str_t                     location;
    ngx_astralform_connector_t   *conn;
    ngx_astralform_exchange_t     ex;
    unsigned                      has_iss:1;
} ngx_astralform_flow_t;


typedef struct ngx_astralform_refresh_s  ngx_astralform_refresh_t;

typedef void (*ngx_astralform_reread_pt)(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);


struct ngx_astralform_refresh_s {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_connector_t   *conn;
    ngx_astralform_token_pt       handler;
    ngx_astralform_token_t       *tok;          /* the latest read */
    ngx_str_t                     lock;
    ngx_str_t                     owner;
    ngx_msec_t                    deadline;
    ngx_event_t                   timer;
    ngx_connection_t              dummy;        /* ev->data of the timer */
    ngx_astralform_exchange_t     ex;
    ngx_astralform_reread_pt      reread;
    unsigned                      locked:1;
};


typedef struct {
    ngx_str_t                     user;
    ngx_str_t                     access_token;
    ngx_str_t                     refresh_token;
} ngx_astralform_revoke_job_t;


/* revocations after the answer: memory of their own, freed by the last */
typedef struct {
    ngx_pool_t                   *pool;
    ngx_log_t                    *log;
    ngx_astralform_def_t         *def;
    ngx_str_t                     connector;
    ngx_str_t                     client_id;
    ngx_str_t                     secret;
    ngx_array_t                   jobs;         /* of revoke_job_t */
    ngx_uint_t                    next;
    ngx_uint_t                    running;
    ngx_uint_t                    failed;
    ngx_msec_t                    deadline;
} ngx_astralform_revoke_t;


static void ngx_astralform_connect_stored(redisReply *reply, void *data);

static ngx_int_t ngx_astralform_oauth_project(ngx_astralform_ctx_t *ctx,
    ngx_str_t *value, ngx_str_t *id);
static void ngx_astralform_authorize_session(redisReply *reply, void *data);
static void ngx_astralform_authorize_loaded(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_authorize_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, ngx_str_t *state, ngx_str_t *url);
static void ngx_astralform_authorize_stored(redisReply *reply, void *data);

static void ngx_astralform_callback_state(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_callback_open(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, redisReply *reply);
static void ngx_astralform_callback_loaded(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_callback_exchanged(ngx_astralform_exchange_t *ex);
static void ngx_astralform_callback_stored(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static ngx_str_t *ngx_astralform_flow_name(ngx_astralform_flow_t *flow);
static ngx_int_t ngx_astralform_binding_ok(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow);
static void ngx_astralform_redact_arg(ngx_http_request_t *r,
    const char *name);
static ngx_int_t ngx_astralform_redact(ngx_pool_t *pool, ngx_str_t *s,
    const char *name);

static ngx_int_t ngx_astralform_exchange_start(ngx_astralform_exchange_t *ex,
    json_t *params);
static void ngx_astralform_exchange_done(ngx_astralform_http_req_t *hr);
static ngx_int_t ngx_astralform_exchange_fields(ngx_astralform_exchange_t *ex,
    json_t *json);
static ngx_uint_t ngx_astralform_grant_dead(ngx_astralform_def_t *def,
    const char *code);

static void ngx_astralform_refresh_lock(ngx_astralform_refresh_t *rf);
static void ngx_astralform_refresh_locked(redisReply *reply, void *data);
static void ngx_astralform_refresh_wake(ngx_event_t *ev);
static void ngx_astralform_refresh_read(ngx_astralform_refresh_t *rf,
    ngx_astralform_reread_pt next);
static void ngx_astralform_refresh_got(redisReply *reply, void *data);
static void ngx_astralform_refresh_polled(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_held(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_exchanged(ngx_astralform_exchange_t *ex);
static void ngx_astralform_refresh_stored(redisReply *reply, void *data);
static void ngx_astralform_refresh_settled(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_dead(ngx_astralform_refresh_t *rf);
static void ngx_astralform_refresh_deleted(redisReply *reply, void *data);
static void ngx_astralform_refresh_finish(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_ignore(redisReply *reply, void *data);
static void ngx_astralform_refresh_cleanup(void *data);

static void ngx_astralform_revoke_next(ngx_astralform_revoke_t *rv);
static ngx_int_t ngx_astralform_revoke_start(ngx_astralform_revoke_t *rv,
    ngx_astralform_revoke_job_t *job, ngx_msec_t timeout);
static void ngx_astralform_revoke_done(ngx_astralform_http_req_t *hr);
static void ngx_astralform_revoke_wipe(void *data);

static void ngx_astralform_page(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, const char *error, const char *title,
    const char *fmt, ...);
static void ngx_astralform_redirect(ngx_astralform_ctx_t *ctx,
    ngx_str_t *location, ngx_str_t *cookie);
static ngx_int_t ngx_astralform_send_text(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, const char *type, u_char *text, size_t len);
static ngx_int_t ngx_astralform_out_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);

static const char *ngx_astralform_oauth_str(ngx_astralform_def_t *def,
    const char *key, const char *dflt);
static ngx_uint_t ngx_astralform_oauth_flag(ngx_astralform_def_t *def,
    const char *key, ngx_uint_t dflt);
static ngx_int_t ngx_astralform_pdup(ngx_pool_t *pool, ngx_str_t *dst,
    const char *src, size_t len);
static ngx_int_t ngx_astralform_json_str(ngx_pool_t *pool, ngx_str_t *dst,
    json_t *json, const char *key);
static json_t *ngx_astralform_json_path(json_t *json, const char *path);
static ngx_int_t ngx_astralform_scopes(ngx_pool_t *pool, ngx_str_t *dst,
    json_t *value, const char *separators);
static ngx_int_t ngx_astralform_requested_scopes(ngx_pool_t *pool,
    ngx_astralform_connector_t *conn, const char *separator,
    ngx_str_t *dst);
static ngx_int_t ngx_astralform_form_encode(ngx_pool_t *pool,
    json_t *params, ngx_str_t *out);
static size_t ngx_astralform_url_escape(u_char *dst, u_char *src,
    size_t len);
static json_t *ngx_astralform_form_decode(u_char *p, size_t len);
static ngx_int_t ngx_astralform_unescape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
static ngx_int_t ngx_astralform_basic_auth(ngx_pool_t *pool, ngx_str_t *id,
    ngx_str_t *secret, ngx_str_t *out);
static ngx_int_t ngx_astralform_origin(ngx_str_t *url, ngx_str_t *origin);
static ngx_uint_t ngx_astralform_is_id(ngx_str_t *s);
static ngx_uint_t ngx_astralform_str_eq(ngx_str_t *a, ngx_str_t *b);
static void ngx_astralform_wipe(ngx_str_t *s);


/* DEL only if the caller still owns the lock */
static const char  ngx_astralform_unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  return redis.call('DEL', KEYS[1]) "
    "end "
    "return 0";


/* HDEL only if the field still holds the dead record */
static const char  ngx_astralform_forget_lua[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
    "  return redis.call('HDEL', KEYS[1], ARGV[1]) "
    "end "
    "return 0";


/* provider answers that mean the refresh token is dead for good */
static const char  *ngx_astralform_dead_grants[] = {
    "invalid_grant", "invalid_refresh_token", "bad_refresh_token",
    "token_revoked", "token_expired", "invalid_token", NULL
};


/* ---------------------------------------------------------------------- */
/* connect sessions */


void
ngx_astralform_oauth_connect_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *return_url,
    ngx_astralform_url_pt handler)
{
    u_char                    *p;
    char                      *text;
    json_t                    *json;
    ngx_str_t                  sid, argv[5];
    ngx_pool_t                *pool;
    ngx_astralform_connect_t  *cn;

    pool = ctx->request->pool;

    cn = ngx_pcalloc(pool, sizeof(ngx_astralform_connect_t));
    if (cn == NULL
        || ngx_astralform_random_token(pool, &sid,
                                       NGX_ASTRALFORM_OAUTH_RANDOM)
           != NGX_OK)
    {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    cn->ctx = ctx;
    cn->handler = handler;

    json = json_pack("{s:o, s:o, s:o, s:o}",
                     "connector", ngx_astralform_json_string(&conn->id),
                     "user", ngx_astralform_json_string(&ctx->user),
                     "return_url",
                     return_url && return_url->len
                         ? ngx_astralform_json_string(return_url)
                         : json_null(),
                     "agent",
                     ctx->agent.len ? ngx_astralform_json_string(&ctx->agent)
                                    : json_null());

    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL
        || ngx_astralform_pdup(pool, &argv[2], text, ngx_strlen(text))
           != NGX_OK)
    {
        ngx_free(text);
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    ngx_free(text);

    cn->url.len = ctx->amcf->public_url.len
                  + sizeof(NGX_ASTRALFORM_OAUTH_AUTHORIZE "?session=.") - 1
                  + ctx->project->id.len + sid.len;

    cn->url.data = ngx_pnalloc(pool, cn->url.len);
    argv[4].data = ngx_pnalloc(pool, NGX_INT_T_LEN);

    if (cn->url.data == NULL || argv[4].data == NULL
        || ngx_astralform_key(ctx, &argv[1], "session", &sid) != NGX_OK)
    {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    p = ngx_sprintf(cn->url.data, "%V" NGX_ASTRALFORM_OAUTH_AUTHORIZE
                    "?session=%V.%V", &ctx->amcf->public_url,
                    &ctx->project->id, &sid);
    cn->url.len = p - cn->url.data;

    ngx_str_set(&argv[0], "SET");
    ngx_str_set(&argv[3], "PX");
    argv[4].len = ngx_sprintf(argv[4].data, "%M", ctx->amcf->session_ttl)
                  - argv[4].data;

    if (ngx_astralform_redis_send(pool, ctx->request->connection->log,
                                  ngx_astralform_connect_stored, cn, 5, argv)
        == NULL)
    {
        handler(ctx, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_connect_stored(redisReply *reply, void *data)
{
    ngx_astralform_connect_t  *cn = data;

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        cn->handler(cn->ctx, NGX_ERROR, NULL);
        return;
    }

    cn->handler(cn->ctx, NGX_OK, &cn->url);
}


/*
 * Exactly an allowed origin (scheme, host and port as configured), then
 * nothing or a path, query or fragment. Userinfo, backslashes, encoded
 * slashes, whitespace and other schemes are refused, whatever a browser
 * would make of them.
 */
ngx_int_t
ngx_astralform_oauth_return_url_ok(ngx_astralform_main_conf_t *amcf,
    ngx_str_t *url)
{
    u_char      *p, *last, *auth_end;
    ngx_str_t   *origin;
    ngx_uint_t   i;

    if (amcf->return_origins == NULL || url->len == 0
        || url->len > NGX_ASTRALFORM_OAUTH_MAX_URL)
    {
        return NGX_DECLINED;
    }

    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '\\' || *p == '"' || *p == '<'
            || *p == '>' || *p == '`')
        {
            return NGX_DECLINED;
        }

        if (*p == '%' && last - p >= 3 && p[1] == '2'
            && (p[2] == 'f' || p[2] == 'F'))
        {
            return NGX_DECLINED;
        }

        if (*p == '%' && last - p >= 3 && p[1] == '5'
            && (p[2] == 'c' || p[2] == 'C'))
        {
            return NGX_DECLINED;
        }
    }

    origin = amcf->return_origins->elts;

    for (i = 0; i < amcf->return_origins->nelts; i++) {
        if (url->len < origin[i].len
            || ngx_strncasecmp(url->data, origin[i].data, origin[i].len)
               != 0)
        {
            continue;
        }

        auth_end = url->data + origin[i].len;

        /* "https://app.example.com.evil" or "...com:8443" is another host */
        if (auth_end == last || *auth_end == '/' || *auth_end == '?'
            || *auth_end == '#')
        {
            /* "https://a.example//evil" stays on a.example: a path */
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* ---------------------------------------------------------------------- */
/* GET /v1/connectors/oauth/authorize?session=<PID>.<SID> */


ngx_int_t
ngx_astralform_oauth_authorize_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t               value, sid, argv[2];
    ngx_astralform_flow_t  *flow;

    flow = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_flow_t));
    if (flow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = flow;

    if (ngx_http_arg(ctx->request, (u_char *) "session", 7, &value) != NGX_OK
        || ngx_astralform_oauth_project(ctx, &value, &sid) != NGX_OK)
    {
        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_session",
                            "This link is not valid",
                            "The connect link is incomplete or damaged. "
                            "Go back to the application and start again.");
        return NGX_DONE;
    }

    ngx_str_set(&argv[0], "GETDEL");

    if (ngx_astralform_key(ctx, &argv[1], "session", &sid) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_astralform_redis_send(ctx->request->pool,
                                  ctx->request->connection->log,
                                  ngx_astralform_authorize_session, ctx, 2,
                                  argv)
        == NULL)
    {
        ngx_astralform_authorize_session(NULL, ctx);
    }

    return NGX_DONE;
}


/* "<PID>.<ID>": sets ctx->project and id */
static ngx_int_t
ngx_astralform_oauth_project(ngx_astralform_ctx_t *ctx, ngx_str_t *value,
    ngx_str_t *id)
{
    u_char                    *dot;
    ngx_str_t                  pid;
    ngx_uint_t                 i;
    ngx_astralform_project_t  *project;

    dot = ngx_strlchr(value->data, value->data + value->len, '.');
    if (dot == NULL) {
        return NGX_ERROR;
    }

    pid.data = value->data;
    pid.len = dot - value->data;
    id->data = dot + 1;
    id->len = value->data + value->len - id->data;

    if (!ngx_astralform_is_id(id)) {
        return NGX_ERROR;
    }

    project = ctx->amcf->projects.elts;

    for (i = 0; i < ctx->amcf->projects.nelts; i++) {
        if (ngx_astralform_str_eq(&project[i].id, &pid)) {
            ctx->project = &project[i];
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static void
ngx_astralform_authorize_session(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    json_t                 *json;
    ngx_int_t               rc;
    ngx_pool_t             *pool;
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;
    pool = ctx->request->pool;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "store_unavailable", "Please try again",
                            "The service is briefly unavailable. Reload "
                            "this page in a moment.");
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_session",
                            "This link has expired",
                            "The connect link has expired or was already "
                            "used. Go back to the application and start "
                            "again.");
        return;
    }

    json = json_loadb(reply->str, reply->len, 0, NULL);

    rc = NGX_ERROR;

    if (json_is_object(json)
        && ngx_astralform_json_str(pool, &flow->connector, json, "connector")
           == NGX_OK
        && ngx_astralform_json_str(pool, &ctx->user, json, "user") == NGX_OK
        && ngx_astralform_json_str(pool, &flow->return_url, json,
                                   "return_url") == NGX_OK
        && ngx_astralform_json_str(pool, &ctx->agent, json, "agent")
           == NGX_OK
        && flow->connector.len && ctx->user.len)
    {
        rc = NGX_OK;
    }

    json_decref(json);

    if (rc != NGX_OK) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->connector_id = flow->connector;

    rc = ngx_astralform_load_project(ctx, 0, ngx_astralform_authorize_loaded);

    if (rc == NGX_DONE) {
        return;
    }

    if (rc == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_astralform_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "store_unavailable", "Please try again",
                            "The service is briefly unavailable. Go back to "
                            "the application and start again.");
        return;
    }

    ngx_astralform_finish(ctx, rc);
}


static void
ngx_astralform_authorize_loaded(ngx_astralform_ctx_t *ctx)
{
    u_char                 *p;
    char                   *text;
    json_t                 *json;
    ngx_str_t               state, binding, plain, aad, blob, url,
                            argv[5];
    ngx_pool_t             *pool;
    ngx_astralform_def_t   *def;
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;
    pool = ctx->request->pool;

    flow->conn = ngx_astralform_find_connector(ctx, &flow->connector);

    if (flow->conn == NULL
        || flow->conn->def->type != NGX_ASTRALFORM_OAUTH
        || flow->conn->client_id.len == 0)
    {
        ngx_astralform_page(ctx, NGX_HTTP_NOT_FOUND, "connector_not_found",
                            "This service is not available",
                            "The application no longer offers this "
                            "connection. Go back to the application.");
        return;
    }

    def = flow->conn->def;

    if (ngx_astralform_random_token(pool, &state,
                                    NGX_ASTRALFORM_OAUTH_RANDOM) != NGX_OK
        || ngx_astralform_random_token(pool, &binding,
                                       NGX_ASTRALFORM_OAUTH_BINDING)
           != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_astralform_oauth_flag(def, "pkce", 0)
        && ngx_astralform_random_token(pool, &flow->verifier,
                                       NGX_ASTRALFORM_OAUTH_RANDOM)
           != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the issuer the provider must name if it sends iss (RFC 9207) */
    p = (u_char *) ngx_astralform_oauth_str(def, "issuer", NULL);

    if (p != NULL) {
        flow->issuer.data = p;
        flow->issuer.len = ngx_strlen(p);

    } else if (ngx_astralform_origin(&def->authorize_url, &flow->issuer)
               != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    json = json_pack("{s:s%, s:s%, s:s%, s:s%, s:s%, s:s%, s:s%}",
                     "connector", flow->connector.data, flow->connector.len,
                     "user", ctx->user.data, ctx->user.len,
                     "return_url", ngx_astralform_str_or_empty(
                                       &flow->return_url),
                     "verifier", ngx_astralform_str_or_empty(&flow->verifier),
                     "binding", binding.data, binding.len,
                     "issuer", flow->issuer.data, flow->issuer.len,
                     "token_url", def->token_url.data, def->token_url.len);

    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    plain.data = (u_char *) text;
    plain.len = ngx_strlen(text);

    /* the verifier is a secret at rest too: the whole record is sealed */

    if (ngx_astralform_aad(pool, &aad, &ctx->project->id, &state,
                           "oauth_state", NULL) != NGX_OK
        || ngx_astralform_seal(pool, &ctx->amcf->keys, &aad, &plain, &blob)
           != NGX_OK)
    {
        ngx_explicit_memzero(text, plain.len);
        ngx_free(text);
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_explicit_memzero(text, plain.len);
    ngx_free(text);

    if (ngx_astralform_authorize_url(ctx, flow, &state, &url) != NGX_OK) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    flow->location = url;

    /* the cookie that binds the flow to this browser */

    flow->cookie.len = sizeof(NGX_ASTRALFORM_OAUTH_COOKIE "=; Path="
                              NGX_ASTRALFORM_OAUTH_CALLBACK
                              "; Max-Age=; HttpOnly; SameSite=Lax; Secure")
                       + NGX_ASTRALFORM_OAUTH_COOKIE_ID + binding.len
                       + NGX_TIME_T_LEN;
    flow->cookie.data = ngx_pnalloc(pool, flow->cookie.len);
    if (flow->cookie.data == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(flow->cookie.data,
                    NGX_ASTRALFORM_OAUTH_COOKIE "%*s=%V; Path="
                    NGX_ASTRALFORM_OAUTH_CALLBACK "; Max-Age=%T; HttpOnly; "
                    "SameSite=Lax",
                    (size_t) NGX_ASTRALFORM_OAUTH_COOKIE_ID, state.data,
                    &binding, (time_t) (ctx->amcf->state_ttl / 1000));

    if (ctx->amcf->public_url.len > 8
        && ngx_strncasecmp(ctx->amcf->public_url.data, (u_char *) "https:",
                           6) == 0)
    {
        p = ngx_cpymem(p, "; Secure", 8);
    }

    flow->cookie.len = p - flow->cookie.data;

    ngx_str_set(&argv[0], "SET");
    argv[2] = blob;
    ngx_str_set(&argv[3], "PX");
    argv[4].data = ngx_pnalloc(pool, NGX_INT_T_LEN);

    if (argv[4].data == NULL
        || ngx_astralform_key(ctx, &argv[1], "state", &state) != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[4].len = ngx_sprintf(argv[4].data, "%M", ctx->amcf->state_ttl)
                  - argv[4].data;

    if (ngx_astralform_redis_send(pool, ctx->request->connection->log,
                                  ngx_astralform_authorize_stored, ctx, 5,
                                  argv)
        == NULL)
    {
        ngx_astralform_authorize_stored(NULL, ctx);
    }
}


/* the provider's consent URL, per the catalog's parameters */
static ngx_int_t
ngx_astralform_authorize_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, ngx_str_t *state, ngx_str_t *url)
{
    json_t                *params, *extra, *v;
    ngx_str_t              scopes, query, challenge, s;
    const char            *key, *scope_param, *sep;
    ngx_pool_t            *pool;
    ngx_astralform_def_t  *def;

    pool = ctx->request->pool;
    def = flow->conn->def;

    scope_param = ngx_astralform_oauth_str(def, "scope_param", "scope");
    sep = ngx_astralform_oauth_str(def, "scope_separator", " ");

    if (ngx_astralform_requested_scopes(pool, flow->conn, sep, &scopes)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s.len = ctx->project->id.len + 1 + state->len;
    s.data = ngx_pnalloc(pool, s.len);
    if (s.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(s.data, "%V.%V", &ctx->project->id, state);

    params = json_object();
    if (params == NULL) {
        return NGX_ERROR;
    }

    json_object_set_new(params, "response_type", json_string("code"));
    json_object_set_new(params, "client_id",
                        ngx_astralform_json_string(&flow->conn->client_id));
    json_object_set_new(params, "redirect_uri",
                        json_pack("s%+", ctx->amcf->public_url.data,
                                  ctx->amcf->public_url.len,
                                  NGX_ASTRALFORM_OAUTH_CALLBACK));

    if (scopes.len) {
        json_object_set_new(params, scope_param,
                            ngx_astralform_json_string(&scopes));
    }

    json_object_set_new(params, "state", ngx_astralform_json_string(&s));

    if (flow->verifier.len) {
        if (ngx_astralform_sha256_b64url(pool, &flow->verifier, &challenge)
            != NGX_OK)
        {
            json_decref(params);
            return NGX_ERROR;
        }

        json_object_set_new(params, "code_challenge",
                            ngx_astralform_json_string(&challenge));
        json_object_set_new(params, "code_challenge_method",
                            json_string("S256"));
    }

    extra = json_object_get(def->oauth, "authorize_params");

    json_object_foreach(extra, key, v) {
        if (json_is_string(v) && json_object_get(params, key) == NULL) {
            json_object_set(params, key, v);
        }
    }

    if (ngx_astralform_form_encode(pool, params, &query) != NGX_OK) {
        json_decref(params);
        return NGX_ERROR;
    }

    json_decref(params);

    url->len = def->authorize_url.len + 1 + query.len;
    url->data = ngx_pnalloc(pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(url->data, "%V%c%V", &def->authorize_url,
                ngx_strlchr(def->authorize_url.data,
                            def->authorize_url.data + def->authorize_url.len,
                            '?')
                ? '&' : '?', &query);

    return NGX_OK;
}


static void
ngx_astralform_authorize_stored(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_astralform_flow_t  *flow;

    flow = ctx->data;

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        ngx_astralform_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "store_unavailable", "Please try again",
                            "The service is briefly unavailable. Go back to "
                            "the application and start again.");
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: user \"%V\" of project \"%V\" sent to "
                  "\"%V\" for consent", &ctx->user, &ctx->project->id,
                  &flow->connector);

    ngx_astralform_redirect(ctx, &flow->location, &flow->cookie);
}


/* ---------------------------------------------------------------------- */
/* GET /v1/connectors/oauth/callback?code=..&state=<PID>.<STATE>[&iss=..] */


ngx_int_t
ngx_astralform_oauth_callback_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t               value, argv[2];
    ngx_pool_t             *pool;
    ngx_http_request_t     *r;
    ngx_astralform_flow_t  *flow;

    r = ctx->request;
    pool = r->pool;

    flow = ngx_pcalloc(pool, sizeof(ngx_astralform_flow_t));
    if (flow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = flow;

    if (ngx_http_arg(r, (u_char *) "code", 4, &value) == NGX_OK
        && (value.len > NGX_ASTRALFORM_OAUTH_MAX_CODE
            || ngx_astralform_unescape(pool, &value, &flow->code) != NGX_OK))
    {
        ngx_str_null(&flow->code);
    }

    if (ngx_http_arg(r, (u_char *) "error", 5, &value) == NGX_OK
        && ngx_astralform_unescape(pool, &value, &flow->error) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "iss", 3, &value) == NGX_OK) {
        if (ngx_astralform_unescape(pool, &value, &flow->iss) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        flow->has_iss = 1;
    }

    /* the code is single-use, but the access log has no business with it */
    ngx_astralform_redact_arg(r, "code");

    if (ngx_http_arg(r, (u_char *) "state", 5, &value) != NGX_OK
        || ngx_astralform_oauth_project(ctx, &value, &flow->id) != NGX_OK)
    {
        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_state",
                            "This sign-in is not valid",
                            "The answer of the sign-in page is incomplete or "
                            "damaged. Go back to the application and start "
                            "again.");
        return NGX_DONE;
    }

    /* consumed first, whatever comes next: a state is good for one try */

    ngx_str_set(&argv[0], "GETDEL");

    if (ngx_astralform_key(ctx, &argv[1], "state", &flow->id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_astralform_redis_send(pool, r->connection->log,
                                  ngx_astralform_callback_state, ctx, 2, argv)
        == NULL)
    {
        ngx_astralform_callback_state(NULL, ctx);
    }

    return NGX_DONE;
}


static void
ngx_astralform_callback_state(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_int_t               rc;
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "store_unavailable", "Please try again",
                            "The service is briefly unavailable. Go back to "
                            "the application and start again.");
        return;
    }

    if (reply->type != REDIS_REPLY_STRING
        || ngx_astralform_callback_open(ctx, flow, reply) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "astralform: OAuth callback with an unknown, used or "
                      "expired state for project \"%V\"", &ctx->project->id);

        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_state",
                            "This sign-in has expired",
                            "This sign-in has expired or was already "
                            "completed. Go back to the application and start "
                            "again.");
        return;
    }

    ctx->connector_id = flow->connector;

    if (ngx_astralform_binding_ok(ctx, flow) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: OAuth callback for user \"%V\" of project "
                      "\"%V\" came from another browser than the one that "
                      "started it; refused", &ctx->user, &ctx->project->id);

        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "session_mismatch",
                            "Sign-in started elsewhere",
                            "This sign-in was started in another browser or "
                            "window. Go back to the application and start "
                            "again from this browser.");
        return;
    }

    rc = ngx_astralform_load_project(ctx, 0, ngx_astralform_callback_loaded);

    if (rc == NGX_DONE) {
        return;
    }

    if (rc == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_astralform_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "store_unavailable", "Please try again",
                            "The service is briefly unavailable. Go back to "
                            "the application and start again.");
        return;
    }

    ngx_astralform_finish(ctx, rc);
}


static ngx_int_t
ngx_astralform_callback_open(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, redisReply *reply)
{
    json_t      *json;
    ngx_int_t    rc;
    ngx_str_t    aad, blob, plain;
    ngx_pool_t  *pool;

    pool = ctx->request->pool;

    blob.data = (u_char *) reply->str;
    blob.len = reply->len;

    if (ngx_astralform_aad(pool, &aad, &ctx->project->id, &flow->id,
                           "oauth_state", NULL) != NGX_OK
        || ngx_astralform_open(pool, &ctx->amcf->keys, &aad, &blob, &plain,
                               NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    json = json_loadb((char *) plain.data, plain.len, 0, NULL);
    ngx_explicit_memzero(plain.data, plain.len);

    rc = NGX_ERROR;

    if (json_is_object(json)
        && ngx_astralform_json_str(pool, &flow->connector, json, "connector")
           == NGX_OK
        && ngx_astralform_json_str(pool, &ctx->user, json, "user") == NGX_OK
        && ngx_astralform_json_str(pool, &flow->return_url, json,
                                   "return_url") == NGX_OK
        && ngx_astralform_json_str(pool, &flow->verifier, json, "verifier")
           == NGX_OK
        && ngx_astralform_json_str(pool, &flow->binding, json, "binding")
           == NGX_OK
        && ngx_astralform_json_str(pool, &flow->issuer, json, "issuer")
           == NGX_OK
        && ngx_astralform_json_str(pool, &flow->token_url, json, "token_url")
           == NGX_OK
        && flow->connector.len && ctx->user.len && flow->binding.len)
    {
        rc = NGX_OK;
    }

    json_decref(json);

    return rc;
}


/* the cookie set by the authorize endpoint must come back with the state */
static ngx_int_t
ngx_astralform_binding_ok(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow)
{
    u_char      name[sizeof(NGX_ASTRALFORM_OAUTH_COOKIE)
                     + NGX_ASTRALFORM_OAUTH_COOKIE_ID];
    ngx_str_t   cookie, value;

    cookie.data = name;
    cookie.len = ngx_sprintf(name, NGX_ASTRALFORM_OAUTH_COOKIE "%*s",
                             (size_t) NGX_ASTRALFORM_OAUTH_COOKIE_ID,
                             flow->id.data)
                 - name;

    if (ngx_http_parse_multi_header_lines(&ctx->request->headers_in.cookies,
                                          &cookie, &value)
        == NGX_DECLINED)
    {
        return NGX_DECLINED;
    }

    if (!ngx_astralform_secret_eq(&value, &flow->binding)) {
        return NGX_DECLINED;
    }

    /* spent: the browser may forget it */

    flow->cookie.len = cookie.len + sizeof("=; Path="
                                           NGX_ASTRALFORM_OAUTH_CALLBACK
                                           "; Max-Age=0") - 1;
    flow->cookie.data = ngx_pnalloc(ctx->request->pool, flow->cookie.len);
    if (flow->cookie.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(flow->cookie.data, "%V=; Path=" NGX_ASTRALFORM_OAUTH_CALLBACK
                "; Max-Age=0", &cookie);

    return NGX_OK;
}


static void
ngx_astralform_callback_loaded(ngx_astralform_ctx_t *ctx)
{
    json_t                 *params;
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;

    flow->conn = ngx_astralform_find_connector(ctx, &flow->connector);

    /*
     * RFC 9207: an answer that names another issuer than the one the user
     * was sent to is a mix-up; a provider the catalog says always names
     * itself must do so.
     */

    if ((flow->has_iss && !ngx_astralform_str_eq(&flow->iss, &flow->issuer))
        || (!flow->has_iss && flow->conn != NULL
            && flow->conn->def->type == NGX_ASTRALFORM_OAUTH
            && ngx_astralform_oauth_flag(flow->conn->def,
                                         "authorization_response_iss", 0)))
    {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: OAuth callback for connector \"%V\" does "
                      "not name the issuer the user was sent to; refused",
                      &flow->connector);

        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "issuer_mismatch",
                            "Sign-in refused",
                            "The answer came from another service than the "
                            "one you were sent to. Go back to the "
                            "application and start again.");
        return;
    }

    if (flow->error.len) {

        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "astralform: user \"%V\" of project \"%V\" did not "
                      "connect \"%V\": the provider answered an error",
                      &ctx->user, &ctx->project->id, &flow->connector);

        if (ngx_astralform_str_is(&flow->error, "access_denied")) {
            ngx_astralform_page(ctx, NGX_HTTP_FORBIDDEN, "access_denied",
                                "Not connected",
                                "You did not allow access to %V, so it was "
                                "not connected. You can close this window, "
                                "or go back to the application to try again.",
                                ngx_astralform_flow_name(flow));
            return;
        }

        ngx_astralform_page(ctx, NGX_HTTP_BAD_GATEWAY, "provider_error",
                            "Not connected",
                            "%V could not complete the sign-in. Go back to "
                            "the application and try again.",
                            ngx_astralform_flow_name(flow));
        return;
    }

    if (flow->code.len == 0) {
        ngx_astralform_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_request",
                            "Not connected",
                            "The answer of the sign-in page has no "
                            "authorization. Go back to the application and "
                            "try again.");
        return;
    }

    /* the provider the user was sent to is the one the code goes to */

    if (flow->conn == NULL
        || flow->conn->def->type != NGX_ASTRALFORM_OAUTH
        || !ngx_astralform_str_eq(&flow->conn->def->token_url,
                                  &flow->token_url))
    {
        ngx_astralform_page(ctx, NGX_HTTP_CONFLICT, "connector_changed",
                            "Not connected",
                            "This connection was changed or removed while "
                            "you signed in. Go back to the application and "
                            "start again.");
        return;
    }

    params = json_pack("{s:s, s:o, s:s%+}",
                       "grant_type", "authorization_code",
                       "code", ngx_astralform_json_string(&flow->code),
                       "redirect_uri", ctx->amcf->public_url.data,
                       ctx->amcf->public_url.len,
                       NGX_ASTRALFORM_OAUTH_CALLBACK);

    if (params != NULL && flow->verifier.len) {
        json_object_set_new(params, "code_verifier",
                            ngx_astralform_json_string(&flow->verifier));
    }

    flow->ex.ctx = ctx;
    flow->ex.conn = flow->conn;
    flow->ex.done = ngx_astralform_callback_exchanged;
    flow->ex.data = flow;

    if (params == NULL
        || ngx_astralform_exchange_start(&flow->ex, params) != NGX_OK)
    {
        json_decref(params);
        ngx_astralform_page(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                            "internal_error", "Not connected",
                            "Something went wrong on our side. Go back to "
                            "the application and try again.");
        return;
    }

    json_decref(params);
}


static void
ngx_astralform_callback_exchanged(ngx_astralform_exchange_t *ex)
{
    ngx_astralform_ctx_t   *ctx;
    ngx_astralform_flow_t  *flow;

    ctx = ex->ctx;
    flow = ex->data;

    if (ex->rc != NGX_OK) {
        ctx->error.data = ex->reason;
        ctx->error.len = ngx_strlen(ex->reason);
        ctx->provider_status = ex->hr ? ex->hr->status : 0;

        ngx_astralform_page(ctx,
                            ex->timed_out ? NGX_HTTP_GATEWAY_TIME_OUT
                                          : NGX_HTTP_BAD_GATEWAY,
                            NULL, "Not connected",
                            "%V did not accept the sign-in, or could not be "
                            "reached. Go back to the application and try "
                            "again.", ngx_astralform_flow_name(flow));
        return;
    }

    ngx_astralform_token_put(ctx, flow->conn, &ex->tok, NULL,
                             ngx_astralform_callback_stored);
}


static void
ngx_astralform_callback_stored(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;

    if (rc != NGX_OK) {
        ngx_astralform_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                            "store_unavailable", "Not connected",
                            "The connection could not be saved. Go back to "
                            "the application and try again.");
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: user \"%V\" of project \"%V\" connected "
                  "\"%V\"", &ctx->user, &ctx->project->id, &flow->connector);

    if (flow->return_url.len
        && ngx_astralform_oauth_return_url_ok(ctx->amcf, &flow->return_url)
           == NGX_OK)
    {
        ngx_astralform_redirect(ctx, &flow->return_url, &flow->cookie);
        return;
    }

    ngx_astralform_page(ctx, NGX_HTTP_OK, NULL, "Connected",
                        "Connected to %V \xe2\x80\x94 you can close this "
                        "window.", ngx_astralform_flow_name(flow));
}


static ngx_str_t *
ngx_astralform_flow_name(ngx_astralform_flow_t *flow)
{
    static ngx_str_t  unknown = ngx_string("The service");

    if (flow->conn != NULL) {
        return &flow->conn->def->name;
    }

    return &unknown;
}


static void
ngx_astralform_redact_arg(ngx_http_request_t *r, const char *name)
{
    (void) ngx_astralform_redact(r->pool, &r->request_line, name);
    (void) ngx_astralform_redact(r->pool, &r->unparsed_uri, name);
    (void) ngx_astralform_redact(r->pool, &r->args, name);
}


/* a copy of s with the value of the query argument name blanked */
static ngx_int_t
ngx_astralform_redact(ngx_pool_t *pool, ngx_str_t *s, const char *name)
{
    u_char  *p, *last, *q, *start, *out, *o;
    size_t   len;

    len = ngx_strlen(name);

    p = ngx_strlchr(s->data, s->data + s->len, '?');
    p = p ? p + 1 : s->data;

    /* the request line ends with " HTTP/1.x" */
    last = ngx_strlchr(p, s->data + s->len, ' ');
    if (last == NULL) {
        last = s->data + s->len;
    }

    for (q = p; q < last; q = start + 1) {
        start = ngx_strlchr(q, last, '&');
        if (start == NULL) {
            start = last;
        }

        if ((size_t) (start - q) > len && q[len] == '='
            && ngx_strncmp(q, name, len) == 0)
        {
            out = ngx_pnalloc(pool, s->len + sizeof("[redacted]"));
            if (out == NULL) {
                return NGX_ERROR;
            }

            o = ngx_cpymem(out, s->data, q + len + 1 - s->data);
            o = ngx_cpymem(o, "[redacted]", sizeof("[redacted]") - 1);
            o = ngx_cpymem(o, start, s->data + s->len - start);

            s->data = out;
            s->len = o - out;

            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* ---------------------------------------------------------------------- */
/* the token endpoint */


static ngx_int_t
ngx_astralform_exchange_start(ngx_astralform_exchange_t *ex, json_t *params)
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
        if (ngx_astralform_basic_auth(pool, &conn->client_id, &secret,
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

        rc = ngx_astralform_pdup(pool, &body, text, ngx_strlen(text));
        ngx_explicit_memzero(text, ngx_strlen(text));
        ngx_free(text);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_str_set(&value, "application/json");

    } else {
        if (ngx_astralform_form_encode(pool, params, &body) != NGX_OK) {
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

    ngx_astralform_wipe(&body);
    ngx_astralform_wipe(&basic);

    h = hr->headers.elts;

    for (i = 0; i < hr->headers.nelts; i++) {
        if (h[i].len > 14
            && ngx_strncasecmp(h[i].data, (u_char *) "Authorization", 13)
               == 0)
        {
            ngx_astralform_wipe(&h[i]);
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
        || ngx_astralform_pdup(pool, &tok->access_token,
                               json_string_value(v), json_string_length(v))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = ngx_astralform_field("refresh_token");
    if (json_is_string(v)
        && ngx_astralform_pdup(pool, &tok->refresh_token,
                               json_string_value(v), json_string_length(v))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    v = ngx_astralform_field("expires_in");
    n = 0;

    if (json_is_integer(v)) {
        n = (ngx_int_t) json_integer_value(v);

    } else if (json_is_real(v)) {
        n = (ngx_int_t) json_real_value(v);

    } else if (json_is_string(v)) {
        n = ngx_atoi((u_char *) json_string_value(v), json_string_length(v));
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
        && ngx_astralform_pdup(pool, &tok->token_type, json_string_value(v),
                               json_string_length(v)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    path = ngx_astralform_json_value(fields, "account_id");
    v = path ? ngx_astralform_json_path(json, path) : NULL;

    if (json_is_string(v)) {
        if (ngx_astralform_pdup(pool, &tok->account_id, json_string_value(v),
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
/* refresh */


void
ngx_astralform_oauth_refresh(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_astralform_token_pt handler)
{
    ngx_str_t                  sub;
    ngx_pool_t                *pool;
    ngx_msec_t                 lease;
    ngx_pool_cleanup_t        *cln;
    ngx_astralform_refresh_t  *rf;

    pool = ctx->request->pool;

    rf = ngx_pcalloc(pool, sizeof(ngx_astralform_refresh_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (rf == NULL || cln == NULL) {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    cln->handler = ngx_astralform_refresh_cleanup;
    cln->data = rf;

    rf->ctx = ctx;
    rf->conn = conn;
    rf->tok = tok;
    rf->handler = handler;

    rf->dummy.fd = (ngx_socket_t) -1;
    rf->timer.handler = ngx_astralform_refresh_wake;
    rf->timer.data = &rf->dummy;
    rf->timer.log = ctx->request->connection->log;
    rf->timer.cancelable = 1;

    /*
     * The holder's provider call ends before its lease does. A waiter gives
     * up once a holder that died has had its lease run out and the next
     * holder has had a full turn.
     */

    lease = NGX_ASTRALFORM_OAUTH_LEASE;
    rf->ex.timeout = ngx_min(ctx->amcf->http.timeout, lease - 1000);
    rf->deadline = ngx_current_msec + 2 * lease + 1000;

    sub.len = conn->id.len + 1 + ctx->user.len;
    sub.data = ngx_pnalloc(pool, sub.len);

    if (sub.data == NULL
        || ngx_astralform_random_token(pool, &rf->owner, 16) != NGX_OK)
    {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    ngx_sprintf(sub.data, "%V:%V", &conn->id, &ctx->user);

    if (ngx_astralform_key(ctx, &rf->lock, "lock", &sub) != NGX_OK) {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    if (tok->is_api_key || tok->refresh_token.len == 0
        || !ngx_astralform_oauth_flag(conn->def, "refresh", 1))
    {
        /* nothing to renew it with: the provider's 401 was final */
        ngx_astralform_refresh_dead(rf);
        return;
    }

    ngx_astralform_refresh_lock(rf);
}


static void
ngx_astralform_refresh_lock(ngx_astralform_refresh_t *rf)
{
    u_char     lease[NGX_INT_T_LEN];
    ngx_str_t  argv[6];

    ngx_str_set(&argv[0], "SET");
    argv[1] = rf->lock;
    argv[2] = rf->owner;
    ngx_str_set(&argv[3], "NX");
    ngx_str_set(&argv[4], "PX");
    argv[5].data = lease;
    argv[5].len = ngx_sprintf(lease, "%M",
                              (ngx_msec_t) NGX_ASTRALFORM_OAUTH_LEASE)
                  - lease;

    if (ngx_astralform_redis_send(rf->ctx->request->pool,
                                  rf->ctx->request->connection->log,
                                  ngx_astralform_refresh_locked, rf, 6, argv)
        == NULL)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_refresh_locked(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS) {
        rf->locked = 1;

        /* a sibling may have finished between our read and the lock */
        ngx_astralform_refresh_read(rf, ngx_astralform_refresh_held);
        return;
    }

    /* a sibling holds it: wait for its result */

    if ((ngx_msec_int_t) (ngx_current_msec - rf->deadline) >= 0) {
        ngx_log_error(NGX_LOG_ERR, rf->ctx->request->connection->log, 0,
                      "astralform: gave up waiting for the token refresh of "
                      "user \"%V\" for connector \"%V\"", &rf->ctx->user,
                      &rf->conn->id);
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    ngx_add_timer(&rf->timer, NGX_ASTRALFORM_OAUTH_POLL);
}


static void
ngx_astralform_refresh_wake(ngx_event_t *ev)
{
    ngx_astralform_refresh_t  *rf;

    rf = (ngx_astralform_refresh_t *)
             ((u_char *) ev - offsetof(ngx_astralform_refresh_t, timer));

    ngx_astralform_refresh_read(rf, ngx_astralform_refresh_polled);
}


/* the stored record, then next(rf, rc, tok) as token_get() would answer */
static void
ngx_astralform_refresh_read(ngx_astralform_refresh_t *rf,
    ngx_astralform_reread_pt next)
{
    ngx_str_t              argv[3];
    ngx_astralform_ctx_t  *ctx;

    ctx = rf->ctx;
    rf->reread = next;

    ngx_str_set(&argv[0], "HGET");
    argv[2] = ctx->user;

    if (ngx_astralform_key(ctx, &argv[1], "tokens", &rf->conn->id) != NGX_OK
        || ngx_astralform_redis_send(ctx->request->pool,
                                     ctx->request->connection->log,
                                     ngx_astralform_refresh_got, rf, 3, argv)
           == NULL)
    {
        next(rf, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_refresh_got(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    ngx_str_t                blob;
    ngx_pool_t              *pool;
    ngx_astralform_ctx_t    *ctx;
    ngx_astralform_token_t  *tok;

    ctx = rf->ctx;
    pool = ctx->request->pool;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        rf->reread(rf, NGX_ERROR, NULL);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        rf->reread(rf, NGX_DECLINED, NULL);
        return;
    }

    tok = ngx_pcalloc(pool, sizeof(ngx_astralform_token_t));
    if (tok == NULL
        || ngx_astralform_pdup(pool, &blob, reply->str, reply->len)
           != NGX_OK)
    {
        rf->reread(rf, NGX_ERROR, NULL);
        return;
    }

    if (ngx_astralform_token_open(ctx, rf->conn, &ctx->user, &blob, tok,
                                  NULL)
        != NGX_OK)
    {
        rf->reread(rf, NGX_DECLINED, NULL);
        return;
    }

    rf->reread(rf, NGX_OK, tok);
}


/* a waiter's look: another access token means a sibling refreshed it */
static void
ngx_astralform_refresh_polled(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    if (rc != NGX_OK) {
        ngx_astralform_refresh_finish(rf, rc, NULL);
        return;
    }

    if (!ngx_astralform_str_eq(&tok->access_token, &rf->tok->access_token))
    {
        ngx_astralform_refresh_finish(rf, NGX_OK, tok);
        return;
    }

    /* the same token, maybe re-sealed: its blob is the one to compare */
    rf->tok = tok;

    ngx_astralform_refresh_lock(rf);
}


static void
ngx_astralform_refresh_held(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    json_t  *params;

    if (rc != NGX_OK) {
        ngx_astralform_refresh_finish(rf, rc, NULL);
        return;
    }

    if (!ngx_astralform_str_eq(&tok->access_token, &rf->tok->access_token))
    {
        ngx_astralform_refresh_finish(rf, NGX_OK, tok);
        return;
    }

    rf->tok = tok;

    if (tok->refresh_token.len == 0) {
        ngx_astralform_refresh_dead(rf);
        return;
    }

    params = json_pack("{s:s, s:o}", "grant_type", "refresh_token",
                       "refresh_token",
                       ngx_astralform_json_string(&tok->refresh_token));

    rf->ex.ctx = rf->ctx;
    rf->ex.conn = rf->conn;
    rf->ex.refresh = 1;
    rf->ex.done = ngx_astralform_refresh_exchanged;
    rf->ex.data = rf;

    if (params == NULL
        || ngx_astralform_exchange_start(&rf->ex, params) != NGX_OK)
    {
        json_decref(params);
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    json_decref(params);
}


static void
ngx_astralform_refresh_exchanged(ngx_astralform_exchange_t *ex)
{
    ngx_str_t                  key, blob;
    ngx_astralform_ctx_t      *ctx;
    ngx_astralform_token_t    *tok, *old;
    ngx_astralform_refresh_t  *rf;

    rf = ex->data;
    ctx = rf->ctx;

    if (ex->rc == NGX_ERROR) {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    if (ex->rc == NGX_DECLINED) {
        /* a holder whose lease ran out may have rotated it: look first */
        ngx_astralform_refresh_read(rf, ngx_astralform_refresh_settled);
        return;
    }

    tok = &ex->tok;
    old = rf->tok;

    /* an answer without refresh_token leaves the old one good */

    if (tok->refresh_token.len == 0) {
        tok->refresh_token = old->refresh_token;
    }

    if (tok->scope.len == 0) {
        tok->scope = old->scope;
    }

    if (tok->token_type.len == 0) {
        tok->token_type = old->token_type;
    }

    if (tok->account_id.len == 0) {
        tok->account_id = old->account_id;
    }

    /* compare-and-set: written only over the record the refresh used */

    if (ngx_astralform_token_seal(ctx, rf->conn, &ctx->user, tok, &blob)
        != NGX_OK
        || ngx_astralform_key(ctx, &key, "tokens", &rf->conn->id) != NGX_OK
        || ngx_astralform_hash_cas(ctx, &key, &ctx->user, &old->blob, &blob,
                                   ngx_astralform_refresh_stored, rf)
           != NGX_OK)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    tok->blob = blob;
}


static void
ngx_astralform_refresh_stored(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    if (reply->integer == 0) {
        /* another writer came first: what it stored is the truth */
        ngx_astralform_refresh_read(rf, ngx_astralform_refresh_settled);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rf->ctx->request->connection->log, 0,
                  "astralform: refreshed the token of user \"%V\" for "
                  "connector \"%V\"", &rf->ctx->user, &rf->conn->id);

    ngx_astralform_refresh_finish(rf, NGX_OK, &rf->ex.tok);
}


/* after a refusal or a lost write: what is stored, if it is new */
static void
ngx_astralform_refresh_settled(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    if (rc != NGX_OK) {
        ngx_astralform_refresh_finish(rf, rc, NULL);
        return;
    }

    if (!ngx_astralform_str_eq(&tok->access_token, &rf->tok->access_token))
    {
        ngx_astralform_refresh_finish(rf, NGX_OK, tok);
        return;
    }

    if (rf->ex.rc == NGX_DECLINED) {
        rf->tok = tok;
        ngx_astralform_refresh_dead(rf);
        return;
    }

    ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
}


/* the grant is dead: forget the record, unless it was replaced */
static void
ngx_astralform_refresh_dead(ngx_astralform_refresh_t *rf)
{
    ngx_str_t              argv[6];
    ngx_astralform_ctx_t  *ctx;

    ctx = rf->ctx;

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_forget_lua;
    argv[1].len = sizeof(ngx_astralform_forget_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[4] = ctx->user;
    argv[5] = rf->tok->blob;

    if (ngx_astralform_key(ctx, &argv[3], "tokens", &rf->conn->id) != NGX_OK
        || ngx_astralform_redis_send(ctx->request->pool,
                                     ctx->request->connection->log,
                                     ngx_astralform_refresh_deleted, rf, 6,
                                     argv)
           == NULL)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_refresh_deleted(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    if (reply->integer == 0) {
        /* replaced meanwhile (a new consent, a sibling): look again */
        rf->ex.rc = NGX_ERROR;
        ngx_astralform_refresh_read(rf, ngx_astralform_refresh_settled);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, rf->ctx->request->connection->log, 0,
                  "astralform: the token of user \"%V\" for connector \"%V\" "
                  "cannot be renewed; deleted", &rf->ctx->user,
                  &rf->conn->id);

    ngx_astralform_refresh_finish(rf, NGX_DECLINED, NULL);
}


static void
ngx_astralform_refresh_finish(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    ngx_str_t              argv[5];
    ngx_astralform_ctx_t  *ctx;

    ctx = rf->ctx;

    if (rf->timer.timer_set) {
        ngx_del_timer(&rf->timer);
    }

    if (rf->locked) {
        rf->locked = 0;

        ngx_str_set(&argv[0], "EVAL");
        argv[1].data = (u_char *) ngx_astralform_unlock_lua;
        argv[1].len = sizeof(ngx_astralform_unlock_lua) - 1;
        ngx_str_set(&argv[2], "1");
        argv[3] = rf->lock;
        argv[4] = rf->owner;

        /* best effort: the lease ends it anyway */
        (void) ngx_astralform_redis_send(ctx->request->pool,
                                         ctx->request->connection->log,
                                         ngx_astralform_refresh_ignore, rf,
                                         5, argv);
    }

    rf->handler(ctx, rc, tok);
}


static void
ngx_astralform_refresh_ignore(redisReply *reply, void *data)
{
}


static void
ngx_astralform_refresh_cleanup(void *data)
{
    ngx_astralform_refresh_t  *rf = data;

    if (rf->timer.timer_set) {
        ngx_del_timer(&rf->timer);
    }
}


/* ---------------------------------------------------------------------- */
/* revocation */


void
ngx_astralform_revoke_tokens(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, redisReply *tokens)
{
    size_t                        i;
    ngx_str_t                     user, blob, secret;
    ngx_int_t                     rc;
    ngx_pool_t                   *pool;
    ngx_pool_cleanup_t           *cln;
    ngx_astralform_def_t         *def;
    ngx_astralform_token_t        tok;
    ngx_astralform_revoke_t      *rv;
    ngx_astralform_revoke_job_t  *job;

    def = conn->def;

    if (tokens == NULL || tokens->type != REDIS_REPLY_ARRAY
        || tokens->elements < 2 || def->type != NGX_ASTRALFORM_OAUTH
        || def->revoke_url.len == 0)
    {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    rv = ngx_pcalloc(pool, sizeof(ngx_astralform_revoke_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (rv == NULL || cln == NULL
        || ngx_array_init(&rv->jobs, pool, tokens->elements / 2,
                          sizeof(ngx_astralform_revoke_job_t))
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    cln->handler = ngx_astralform_revoke_wipe;
    cln->data = rv;

    rv->pool = pool;
    rv->log = ngx_cycle->log;
    rv->def = def;
    rv->deadline = ngx_current_msec + ctx->amcf->revoke_timeout;

    if (ngx_astralform_pdup(pool, &rv->connector, (char *) conn->id.data,
                            conn->id.len) != NGX_OK
        || ngx_astralform_pdup(pool, &rv->client_id,
                               (char *) conn->client_id.data,
                               conn->client_id.len) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    rc = ngx_astralform_connector_secret(ctx, conn, "oauth_client_secret",
                                         &secret);

    if (rc == NGX_OK
        && ngx_astralform_pdup(pool, &rv->secret, (char *) secret.data,
                               secret.len) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    for (i = 0; i + 1 < tokens->elements; i += 2) {
        if (tokens->element[i]->type != REDIS_REPLY_STRING
            || tokens->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        user.data = (u_char *) tokens->element[i]->str;
        user.len = tokens->element[i]->len;
        blob.data = (u_char *) tokens->element[i + 1]->str;
        blob.len = tokens->element[i + 1]->len;

        if (ngx_astralform_token_open(ctx, conn, &user, &blob, &tok, NULL)
            != NGX_OK
            || tok.is_api_key)
        {
            continue;
        }

        job = ngx_array_push(&rv->jobs);
        if (job == NULL) {
            break;
        }

        if (ngx_astralform_pdup(pool, &job->user, (char *) user.data,
                                user.len) != NGX_OK
            || ngx_astralform_pdup(pool, &job->access_token,
                                   (char *) tok.access_token.data,
                                   tok.access_token.len) != NGX_OK
            || ngx_astralform_pdup(pool, &job->refresh_token,
                                   (char *) tok.refresh_token.data,
                                   tok.refresh_token.len) != NGX_OK)
        {
            rv->jobs.nelts--;
            break;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "astralform revoke: %ui tokens of connector \"%V\"",
                   rv->jobs.nelts, &conn->id);

    ngx_astralform_revoke_next(rv);
}


/* keeps a few revocations in flight; frees everything after the last */
static void
ngx_astralform_revoke_next(ngx_astralform_revoke_t *rv)
{
    ngx_msec_int_t                left;
    ngx_astralform_revoke_job_t  *job;

    job = rv->jobs.elts;

    while (rv->next < rv->jobs.nelts
           && rv->running < NGX_ASTRALFORM_OAUTH_REVOKERS)
    {
        left = (ngx_msec_int_t) (rv->deadline - ngx_current_msec);

        if (left <= 0) {
            break;
        }

        if (ngx_astralform_revoke_start(rv, &job[rv->next], (ngx_msec_t) left)
            == NGX_OK)
        {
            rv->running++;

        } else {
            rv->failed++;
        }

        rv->next++;
    }

    if (rv->running) {
        return;
    }

    if (rv->next < rv->jobs.nelts || rv->failed) {
        ngx_log_error(NGX_LOG_WARN, rv->log, 0,
                      "astralform: %ui of %ui tokens of connector \"%V\" "
                      "were not revoked at the provider (deleted here)",
                      rv->jobs.nelts - rv->next + rv->failed,
                      rv->jobs.nelts, &rv->connector);
    }

    ngx_destroy_pool(rv->pool);
}


static ngx_int_t
ngx_astralform_revoke_start(ngx_astralform_revoke_t *rv,
    ngx_astralform_revoke_job_t *job, ngx_msec_t timeout)
{
    u_char                     *p, *brace;
    char                       *text;
    json_t                     *json;
    ngx_str_t                   name, value, basic, *token;
    ngx_uint_t                  form;
    const char                 *style, *auth;
    ngx_astralform_def_t       *def;
    ngx_astralform_http_req_t  *hr;

    def = rv->def;

    hr = ngx_astralform_http_create(rv->pool, rv->log);
    if (hr == NULL) {
        return NGX_ERROR;
    }

    style = ngx_astralform_oauth_str(def, "revoke_style", "rfc7009");
    auth = ngx_astralform_oauth_str(def, "client_auth", "basic");

    /* token_form and RFC 7009 send a form, the others JSON */
    form = ngx_strcmp(style, "basic_json") != 0
           && ngx_strcmp(style, "github_grant") != 0;

    ngx_str_set(&hr->method, "POST");
    hr->url = def->revoke_url;
    ngx_str_null(&basic);
    json = NULL;

    if (ngx_strcmp(style, "token_form") == 0) {
        /* Slack: the token revokes itself */
        value.len = sizeof("Bearer ") - 1 + job->access_token.len;
        value.data = ngx_pnalloc(rv->pool, value.len);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(value.data, "Bearer %V", &job->access_token);
        ngx_str_set(&name, "Authorization");

        if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_astralform_wipe(&value);

        json = json_pack("{s:o}", "token",
                         ngx_astralform_json_string(&job->access_token));

    } else if (ngx_strcmp(style, "basic_json") == 0
               || ngx_strcmp(style, "github_grant") == 0)
    {
        if (rv->secret.len == 0) {
            return NGX_ERROR;
        }

        json = json_pack("{s:o}",
                         style[0] == 'b' ? "token" : "access_token",
                         ngx_astralform_json_string(&job->access_token));

        if (style[0] == 'g') {
            ngx_str_set(&hr->method, "DELETE");

            brace = ngx_strnstr(def->revoke_url.data, "{client_id}",
                                def->revoke_url.len);

            if (brace != NULL) {
                hr->url.len = def->revoke_url.len - 11
                              + 3 * rv->client_id.len;
                hr->url.data = ngx_pnalloc(rv->pool, hr->url.len);
                if (hr->url.data == NULL) {
                    json_decref(json);
                    return NGX_ERROR;
                }

                p = ngx_cpymem(hr->url.data, def->revoke_url.data,
                               brace - def->revoke_url.data);
                p += ngx_astralform_url_escape(p, rv->client_id.data,
                                               rv->client_id.len);
                p = ngx_cpymem(p, brace + 11, def->revoke_url.data
                                              + def->revoke_url.len
                                              - brace - 11);
                hr->url.len = p - hr->url.data;
            }
        }

        if (ngx_astralform_basic_auth(rv->pool, &rv->client_id, &rv->secret,
                                      &basic) != NGX_OK)
        {
            json_decref(json);
            return NGX_ERROR;
        }

    } else {
        /* RFC 7009: the refresh token, when there is one, ends the grant */
        token = job->refresh_token.len ? &job->refresh_token
                                       : &job->access_token;

        json = json_pack("{s:o, s:s}", "token",
                         ngx_astralform_json_string(token),
                         "token_type_hint",
                         job->refresh_token.len ? "refresh_token"
                                                : "access_token");

        if (json != NULL && rv->secret.len && ngx_strcmp(auth, "basic") == 0)
        {
            if (ngx_astralform_basic_auth(rv->pool, &rv->client_id,
                                          &rv->secret, &basic) != NGX_OK)
            {
                json_decref(json);
                return NGX_ERROR;
            }

        } else if (json != NULL) {
            json_object_set_new(json, "client_id",
                                ngx_astralform_json_string(&rv->client_id));

            if (rv->secret.len && ngx_strcmp(auth, "none") != 0) {
                json_object_set_new(json, "client_secret",
                                    ngx_astralform_json_string(&rv->secret));
            }
        }
    }

    if (json == NULL) {
        return NGX_ERROR;
    }

    if (basic.len) {
        ngx_str_set(&name, "Authorization");
        if (ngx_astralform_http_add_header(hr, &name, &basic) != NGX_OK) {
            json_decref(json);
            return NGX_ERROR;
        }
    }

    if (form) {
        if (ngx_astralform_form_encode(rv->pool, json, &hr->body) != NGX_OK)
        {
            json_decref(json);
            return NGX_ERROR;
        }

        ngx_str_set(&value, "application/x-www-form-urlencoded");

    } else {
        text = json_dumps(json, JSON_COMPACT);
        if (text == NULL
            || ngx_astralform_pdup(rv->pool, &hr->body, text,
                                   ngx_strlen(text)) != NGX_OK)
        {
            ngx_free(text);
            json_decref(json);
            return NGX_ERROR;
        }

        ngx_explicit_memzero(text, ngx_strlen(text));
        ngx_free(text);

        ngx_str_set(&value, "application/json");
    }

    json_decref(json);

    ngx_str_set(&name, "Content-Type");
    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "Accept");
    ngx_str_set(&value, "application/json");
    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    hr->timeout = timeout;
    hr->done = ngx_astralform_revoke_done;
    hr->data = rv;

    if (ngx_astralform_http_start(hr) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_astralform_wipe(&hr->body);

    return NGX_OK;
}


static void
ngx_astralform_revoke_done(ngx_astralform_http_req_t *hr)
{
    ngx_astralform_revoke_t *rv = hr->data;

    rv->running--;

    if (hr->error == NGX_ASTRALFORM_HTTP_OK
        && (hr->status < 200 || hr->status >= 300))
    {
        ngx_log_error(NGX_LOG_WARN, rv->log, 0,
                      "astralform: token revocation at \"%V\" for connector "
                      "\"%V\" answered HTTP %ui", &hr->host, &rv->connector,
                      hr->status);
    }

    if (hr->error != NGX_ASTRALFORM_HTTP_OK) {
        rv->failed++;
    }

    ngx_explicit_memzero(hr->resp_body.data, hr->resp_body.len);

    ngx_astralform_revoke_next(rv);
}


static void
ngx_astralform_revoke_wipe(void *data)
{
    ngx_astralform_revoke_t  *rv = data;

    ngx_uint_t                    i;
    ngx_astralform_revoke_job_t  *job;

    ngx_astralform_wipe(&rv->secret);

    job = rv->jobs.elts;

    for (i = 0; i < rv->jobs.nelts; i++) {
        ngx_astralform_wipe(&job[i].access_token);
        ngx_astralform_wipe(&job[i].refresh_token);
    }
}


/* ---------------------------------------------------------------------- */
/* browser answers */


static void
ngx_astralform_page(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    const char *error, const char *title, const char *fmt, ...)
{
    u_char   text[1024], *last, *page, *p;
    size_t   len, tlen;
    va_list  args;

    static u_char  head[] =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
        "<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, "
        "initial-scale=1\">\n<title>";
    static u_char  middle[] =
        "</title>\n</head>\n<body style=\"font-family: sans-serif; "
        "max-width: 36em; margin: 4em auto; padding: 0 1em\">\n<h1>";
    static u_char  para[] = "</h1>\n<p>";
    static u_char  tail[] = "</p>\n</body>\n</html>\n";

    if (error != NULL) {
        ctx->error.data = (u_char *) error;
        ctx->error.len = ngx_strlen(error);
    }

    va_start(args, fmt);
    last = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    tlen = ngx_strlen(title);

    len = sizeof(head) - 1 + sizeof(middle) - 1 + sizeof(para) - 1
          + sizeof(tail) - 1
          + 2 * (tlen + ngx_escape_html(NULL, (u_char *) title, tlen))
          + (last - text) + ngx_escape_html(NULL, text, last - text);

    page = ngx_pnalloc(ctx->request->pool, len);
    if (page == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(page, head, sizeof(head) - 1);
    p = (u_char *) ngx_escape_html(p, (u_char *) title, tlen);
    p = ngx_cpymem(p, middle, sizeof(middle) - 1);
    p = (u_char *) ngx_escape_html(p, (u_char *) title, tlen);
    p = ngx_cpymem(p, para, sizeof(para) - 1);
    p = (u_char *) ngx_escape_html(p, text, last - text);
    p = ngx_cpymem(p, tail, sizeof(tail) - 1);

    ngx_astralform_finish(ctx,
        ngx_astralform_send_text(ctx, status, "text/html; charset=utf-8",
                                 page, p - page));
}


static void
ngx_astralform_redirect(ngx_astralform_ctx_t *ctx, ngx_str_t *location,
    ngx_str_t *cookie)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_astralform_out_header(r, "Location", location) != NGX_OK
        || (cookie->len
            && ngx_astralform_out_header(r, "Set-Cookie", cookie) != NGX_OK))
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cookie->len = 0;

    ngx_astralform_finish(ctx,
        ngx_astralform_send_text(ctx, NGX_HTTP_MOVED_TEMPORARILY,
                                 "text/plain; charset=utf-8", NULL, 0));
}


static ngx_int_t
ngx_astralform_send_text(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    const char *type, u_char *text, size_t len)
{
    ngx_int_t               rc;
    ngx_str_t               v;
    ngx_buf_t              *b;
    ngx_chain_t             out;
    ngx_http_request_t     *r;
    ngx_astralform_flow_t  *flow;

    r = ctx->request;
    flow = ctx->data;

    /* browser pages: not cached, no referrer, no framing, no scripts */

    ngx_str_set(&v, "no-store");
    if (ngx_astralform_out_header(r, "Cache-Control", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "no-referrer");
    if (ngx_astralform_out_header(r, "Referrer-Policy", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "default-src 'none'; style-src 'unsafe-inline'; "
                "frame-ancestors 'none'");
    if (ngx_astralform_out_header(r, "Content-Security-Policy", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&v, "nosniff");
    if (ngx_astralform_out_header(r, "X-Content-Type-Options", &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a callback that consumed its state clears the binding cookie */

    if (flow != NULL && flow->cookie.len && status != NGX_HTTP_MOVED_TEMPORARILY
        && ngx_astralform_out_header(r, "Set-Cookie", &flow->cookie)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = text;
    b->last = text + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_astralform_out_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* ---------------------------------------------------------------------- */
/* helpers */


static const char *
ngx_astralform_oauth_str(ngx_astralform_def_t *def, const char *key,
    const char *dflt)
{
    const char  *s;

    s = ngx_astralform_json_value(def->oauth, key);

    return (s != NULL && *s != '\0') ? s : dflt;
}


static ngx_uint_t
ngx_astralform_oauth_flag(ngx_astralform_def_t *def, const char *key,
    ngx_uint_t dflt)
{
    json_t  *v;

    v = json_object_get(def->oauth, key);

    return json_is_boolean(v) ? json_is_true(v) : dflt;
}


static ngx_int_t
ngx_astralform_pdup(ngx_pool_t *pool, ngx_str_t *dst, const char *src,
    size_t len)
{
    dst->data = ngx_pnalloc(pool, len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->data[len] = '\0';
    dst->len = len;

    return NGX_OK;
}


/* a string member, or empty when absent or not a string */
static ngx_int_t
ngx_astralform_json_str(ngx_pool_t *pool, ngx_str_t *dst, json_t *json,
    const char *key)
{
    json_t  *v;

    v = json_object_get(json, key);

    if (!json_is_string(v)) {
        ngx_str_null(dst);
        return NGX_OK;
    }

    return ngx_astralform_pdup(pool, dst, json_string_value(v),
                               json_string_length(v));
}


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


/* the connector's scopes (or the catalog's defaults) joined by separator */
static ngx_int_t
ngx_astralform_requested_scopes(ngx_pool_t *pool,
    ngx_astralform_connector_t *conn, const char *separator, ngx_str_t *dst)
{
    u_char      *p;
    size_t       i, len, slen;
    json_t      *defaults, *v;
    ngx_str_t   *scope;
    ngx_uint_t   n;

    slen = ngx_strlen(separator);
    ngx_str_null(dst);

    if (conn->scopes != NULL) {
        scope = conn->scopes->elts;
        len = 0;

        for (n = 0; n < conn->scopes->nelts; n++) {
            len += scope[n].len + slen;
        }

        p = ngx_pnalloc(pool, len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        dst->data = p;

        for (n = 0; n < conn->scopes->nelts; n++) {
            if (n) {
                p = ngx_cpymem(p, separator, slen);
            }
            p = ngx_cpymem(p, scope[n].data, scope[n].len);
        }

        dst->len = p - dst->data;
        return NGX_OK;
    }

    defaults = json_object_get(conn->def->oauth, "default_scopes");
    len = 0;

    json_array_foreach(defaults, i, v) {
        len += json_string_length(v) + slen;
    }

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;

    json_array_foreach(defaults, i, v) {
        if (!json_is_string(v)) {
            continue;
        }

        if (p != dst->data) {
            p = ngx_cpymem(p, separator, slen);
        }

        p = ngx_cpymem(p, json_string_value(v), json_string_length(v));
    }

    dst->len = p - dst->data;

    return NGX_OK;
}


/* application/x-www-form-urlencoded from an object of strings */
static ngx_int_t
ngx_astralform_form_encode(ngx_pool_t *pool, json_t *params, ngx_str_t *out)
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

        p += ngx_astralform_url_escape(p, (u_char *) key, ngx_strlen(key));
        *p++ = '=';
        p += ngx_astralform_url_escape(p, (u_char *) json_string_value(v),
                                       json_string_length(v));
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* RFC 3986 unreserved characters stay, everything else is %XX */
static size_t
ngx_astralform_url_escape(u_char *dst, u_char *src, size_t len)
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

        if (ngx_astralform_unescape(pool, &k, &dk) != NGX_OK
            || ngx_astralform_unescape(pool, &v, &dv) != NGX_OK
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


/* %XX and "+" decoded; refuses bad escapes and NUL */
static ngx_int_t
ngx_astralform_unescape(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
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


static ngx_int_t
ngx_astralform_basic_auth(ngx_pool_t *pool, ngx_str_t *id, ngx_str_t *secret,
    ngx_str_t *out)
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
    ngx_astralform_wipe(&plain);

    out->len = ngx_sprintf(out->data, "Basic %V", &enc) - out->data;
    ngx_astralform_wipe(&enc);

    return NGX_OK;
}


/* "https://host:port" of an absolute URL */
static ngx_int_t
ngx_astralform_origin(ngx_str_t *url, ngx_str_t *origin)
{
    u_char  *p, *last;

    last = url->data + url->len;

    p = ngx_strnstr(url->data, "://", url->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    for (p += 3; p < last; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }
    }

    origin->data = url->data;
    origin->len = p - url->data;

    return NGX_OK;
}


/* a 256-bit id as base64url */
static ngx_uint_t
ngx_astralform_is_id(ngx_str_t *s)
{
    u_char      c;
    ngx_uint_t  i;

    if (s->len != NGX_ASTRALFORM_OAUTH_ID_LEN) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_astralform_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


static void
ngx_astralform_wipe(ngx_str_t *s)
{
    if (s->data != NULL && s->len) {
        ngx_explicit_memzero(s->data, s->len);
    }
}
