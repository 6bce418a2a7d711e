/*
 * End-user OAuth, the browser side: connect sessions, the authorize and
 * callback endpoints.
 *
 * The authorize and callback endpoints are browser-facing: they answer
 * redirects and small HTML pages (ngx_astralform_oauth_page.c), never JSON,
 * and never show a code.
 *
 *   connect_url()  {P}:session:<SID>  {connector, user, return_url, agent},
 *                  counted in {P}:sessions (ngx_astralform_quota.c)
 *   authorize      GETDEL the session; {P}:state:<STATE> sealed {connector,
 *                  user, return_url, verifier, binding, issuer, token_url};
 *                  a cookie binds the flow to the browser that started it
 *   callback       GETDEL the state; checks the browser binding and the
 *                  issuer (RFC 9207); exchanges the code
 *                  (ngx_astralform_oauth_token.c); stores the record
 *
 * Refresh is in ngx_astralform_oauth_refresh.c, revocation at the provider
 * in ngx_astralform_oauth_revoke.c.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


#define NGX_ASTRALFORM_OAUTH_RANDOM      32      /* 256-bit ids */
#define NGX_ASTRALFORM_OAUTH_ID_LEN      43      /* base64url of 32 bytes */
#define NGX_ASTRALFORM_OAUTH_BINDING     16
#define NGX_ASTRALFORM_OAUTH_MAX_CODE    4096

#define NGX_ASTRALFORM_OAUTH_AUTHORIZE   "/v1/connectors/oauth/authorize"
#define NGX_ASTRALFORM_OAUTH_CALLBACK    "/v1/connectors/oauth/callback"
#define NGX_ASTRALFORM_OAUTH_COOKIE      "astralform_oauth_"
#define NGX_ASTRALFORM_OAUTH_COOKIE_ID   12      /* state chars in the name */

/* a possibly empty ngx_str_t as jansson's "s%" arguments */
#define ngx_astralform_str_or_empty(s)                                       \
    (s)->data ? (const char *) (s)->data : "", (s)->len


typedef struct {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_url_pt         handler;
    ngx_str_t                     url;
} ngx_astralform_connect_t;


static void ngx_astralform_connect_stored(redisReply *reply, void *data);

static ngx_int_t ngx_astralform_oauth_project(ngx_astralform_ctx_t *ctx,
    ngx_str_t *value, ngx_str_t *id);
static void ngx_astralform_authorize_session(redisReply *reply, void *data);
static void ngx_astralform_authorize_loaded(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_authorize_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, ngx_str_t *state, ngx_str_t *url);
static void ngx_astralform_authorize_stored(redisReply *reply, void *data);

static void ngx_astralform_callback_state(redisReply *reply, void *data);
static void ngx_astralform_callback_consumed(redisReply *reply, void *data);
static void ngx_astralform_callback_expired(ngx_astralform_ctx_t *ctx);
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

static ngx_int_t ngx_astralform_requested_scopes(ngx_pool_t *pool,
    ngx_astralform_connector_t *conn, const char *separator,
    ngx_str_t *dst);
static ngx_uint_t ngx_astralform_is_id(ngx_str_t *s);


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
    ngx_str_t                  sid, value;
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

    if (text == NULL || ngx_astralform_strdup(pool, &value, text) != NGX_OK)
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

    if (cn->url.data == NULL) {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    p = ngx_sprintf(cn->url.data, "%V" NGX_ASTRALFORM_OAUTH_AUTHORIZE
                    "?session=%V.%V", &ctx->amcf->public_url,
                    &ctx->project->id, &sid);
    cn->url.len = p - cn->url.data;

    /* one place of astralform_max_pending_sessions until opened */
    if (ngx_astralform_quota_session(ctx, &sid, &value,
                                     ngx_astralform_connect_stored, cn)
        != NGX_OK)
    {
        handler(ctx, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_connect_stored(redisReply *reply, void *data)
{
    ngx_astralform_connect_t  *cn = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        cn->handler(cn->ctx, NGX_ERROR, NULL);
        return;
    }

    cn->handler(cn->ctx, reply->integer ? NGX_OK : NGX_BUSY, &cn->url);
}


/*
 * Exactly an allowed origin (scheme, host and port as configured), then
 * nothing or a path, query or fragment. Userinfo, backslashes, encoded
 * slashes, whitespace and other schemes are refused, whatever a browser
 * would make of them: the same check as for astralform_mcp_allowed_origin.
 */
ngx_int_t
ngx_astralform_oauth_return_url_ok(ngx_astralform_main_conf_t *amcf,
    ngx_str_t *url)
{
    return ngx_astralform_url_in_origins(amcf->return_origins, url);
}


/* ---------------------------------------------------------------------- */
/*
 * GET /v1/connectors/oauth/authorize?session=<PID>.<SID>: the confirmation
 * page (ngx_astralform_oauth_confirm.c); POST of its form: the session is
 * spent, the state stored, the browser sent to the provider.
 */


ngx_int_t
ngx_astralform_oauth_authorize_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_str_t               value, sid, argv[2];
    ngx_astralform_flow_t  *flow;

    flow = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_flow_t));
    if (flow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = flow;

    if (ctx->request->method == NGX_HTTP_POST) {
        /* the confirmation page's form: Origin, cookie and token checked */
        flow->confirmed = 1;

        rc = ngx_astralform_oauth_confirm_check(ctx, flow, &value);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (ngx_http_arg(ctx->request, (u_char *) "session", 7, &value)
               != NGX_OK)
    {
        ngx_str_null(&value);
    }

    if (value.len == 0
        || ngx_astralform_oauth_project(ctx, &value, &sid) != NGX_OK)
    {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_session",
                                  "This link is not valid",
                                  "The connect link is incomplete or damaged. "
                                  "Go back to the application and start "
                                  "again.");
        return NGX_DONE;
    }

    flow->session = value;

    if (flow->confirmed
        && ngx_astralform_oauth_confirm_token_ok(ctx, flow) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: connect confirmation for project \"%V\" "
                      "without its browser cookie or token; refused",
                      &ctx->project->id);

        ngx_astralform_oauth_page(ctx, NGX_HTTP_FORBIDDEN,
                                  "confirmation_failed",
                                  "Please confirm again",
                                  "This confirmation did not come from the "
                                  "page this browser was shown. Open the "
                                  "connect link again.");
        return NGX_DONE;
    }

    /* the page only reads the session; its confirmation spends it */
    if (flow->confirmed) {
        ngx_str_set(&argv[0], "GETDEL");

    } else {
        ngx_str_set(&argv[0], "GET");
    }

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
        return NGX_DONE;
    }

    /* spent: the session leaves astralform_max_pending_sessions */
    if (flow->confirmed) {
        ngx_astralform_quota_session_done(ctx, &sid);
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
        if (ngx_astralform_oauth_str_eq(&project[i].id, &pid)) {
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

    json_t                     *json;
    ngx_int_t                   rc;
    ngx_pool_t                 *pool;
    ngx_astralform_flow_t      *flow;
    ngx_astralform_json_str_t   session[] = {
        { "connector", NULL }, { "user", NULL }, { "return_url", NULL },
        { "agent", NULL }, { NULL, NULL }
    };

    flow = ctx->data;
    pool = ctx->request->pool;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable", "Please try again",
                                  "The service is briefly unavailable. Reload "
                                  "this page in a moment.");
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_session",
                                  "This link has expired",
                                  "The connect link has expired or was already "
                                  "used. Go back to the application and start "
                                  "again.");
        return;
    }

    json = json_loadb(reply->str, reply->len, 0, NULL);

    rc = NGX_ERROR;

    session[0].dst = &flow->connector;
    session[1].dst = &ctx->user;
    session[2].dst = &flow->return_url;
    session[3].dst = &ctx->agent;

    if (ngx_astralform_json_strings(pool, json, session) == NGX_OK
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

    /* NGX_DONE, or the answer already sent (503 when Redis is down) */
    rc = ngx_astralform_load_project(ctx, 0, ngx_astralform_authorize_loaded);

    if (rc != NGX_DONE) {
        ngx_astralform_finish(ctx, rc);
    }
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
        ngx_astralform_oauth_page(ctx, NGX_HTTP_NOT_FOUND,
                                  "connector_not_found",
                                  "This service is not available",
                                  "The application no longer offers this "
                                  "connection. Go back to the application.");
        return;
    }

    /* the connector may have changed since the link was made */
    if (!flow->conn->allow_end_user_auth) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_FORBIDDEN,
                                  "end_user_auth_disabled",
                                  "Connecting is turned off",
                                  "The application no longer lets you connect "
                                  "%V yourself. Go back to the application.",
                                  &flow->conn->def->name);
        return;
    }

    if (!flow->confirmed) {
        ngx_astralform_oauth_confirm_page(ctx, flow);
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

    } else if (ngx_astralform_oauth_origin(&def->authorize_url, &flow->issuer)
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

    if (ngx_astralform_oauth_form_encode(pool, params, &query) != NGX_OK) {
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
        ngx_astralform_oauth_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable", "Please try again",
                                  "The service is briefly unavailable. Go back "
                                  "to the application and start again.");
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: user \"%V\" of project \"%V\" sent to "
                  "\"%V\" for consent", &ctx->user, &ctx->project->id,
                  &flow->connector);

    ngx_astralform_oauth_redirect(ctx, &flow->location, &flow->cookie);
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
            || ngx_astralform_oauth_unescape(pool, &value, &flow->code)
               != NGX_OK))
    {
        ngx_str_null(&flow->code);
    }

    if (ngx_http_arg(r, (u_char *) "error", 5, &value) == NGX_OK
        && ngx_astralform_oauth_unescape(pool, &value, &flow->error) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "iss", 3, &value) == NGX_OK) {
        if (ngx_astralform_oauth_unescape(pool, &value, &flow->iss) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        flow->has_iss = 1;
    }

    /* the code is single-use, but the access log has no business with it */
    ngx_astralform_redact_arg(r, "code");

    if (ngx_http_arg(r, (u_char *) "state", 5, &value) != NGX_OK
        || ngx_astralform_oauth_project(ctx, &value, &flow->id) != NGX_OK)
    {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_state",
                                  "This sign-in is not valid",
                                  "The answer of the sign-in page is "
                                  "incomplete or damaged. Go back to the "
                                  "application and start again.");
        return NGX_DONE;
    }

    /*
     * Read first, consumed only once the browser binding is checked: a
     * stranger's callback (without the cookie) must not burn the real
     * browser's sign-in. Then GETDEL keeps a state good for one try.
     */

    ngx_str_set(&argv[0], "GET");

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

    ngx_str_t               argv[2];
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable", "Please try again",
                                  "The service is briefly unavailable. Go back "
                                  "to the application and start again.");
        return;
    }

    if (reply->type != REDIS_REPLY_STRING
        || ngx_astralform_callback_open(ctx, flow, reply) != NGX_OK)
    {
        ngx_astralform_callback_expired(ctx);
        return;
    }

    ctx->connector_id = flow->connector;

    if (ngx_astralform_binding_ok(ctx, flow) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: OAuth callback for user \"%V\" of project "
                      "\"%V\" came from another browser than the one that "
                      "started it; refused", &ctx->user, &ctx->project->id);

        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "session_mismatch",
                                  "Sign-in started elsewhere",
                                  "This sign-in was started in another browser "
                                  "or window. Go back to the application and "
                                  "start again from this browser.");
        return;
    }

    /* the browser is the right one: now the state is spent */

    ngx_str_set(&argv[0], "GETDEL");

    if (ngx_astralform_key(ctx, &argv[1], "state", &flow->id) != NGX_OK) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_astralform_redis_send(ctx->request->pool,
                                  ctx->request->connection->log,
                                  ngx_astralform_callback_consumed, ctx, 2,
                                  argv)
        == NULL)
    {
        ngx_astralform_callback_consumed(NULL, ctx);
    }
}


/* the state read before must be the one deleted: a race lost is a replay */
static void
ngx_astralform_callback_consumed(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_int_t               rc;
    ngx_astralform_flow_t  *flow;

    flow = ctx->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable", "Please try again",
                                  "The service is briefly unavailable. Go back "
                                  "to the application and start again.");
        return;
    }

    if (reply->type != REDIS_REPLY_STRING
        || reply->len != flow->blob.len
        || ngx_memcmp(reply->str, flow->blob.data, reply->len) != 0)
    {
        ngx_astralform_callback_expired(ctx);
        return;
    }

    /* NGX_DONE, or the answer already sent (503 when Redis is down) */
    rc = ngx_astralform_load_project(ctx, 0, ngx_astralform_callback_loaded);

    if (rc != NGX_DONE) {
        ngx_astralform_finish(ctx, rc);
    }
}


static void
ngx_astralform_callback_expired(ngx_astralform_ctx_t *ctx)
{
    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: OAuth callback with an unknown, used or "
                  "expired state for project \"%V\"", &ctx->project->id);

    ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_state",
                              "This sign-in has expired",
                              "This sign-in has expired or was already "
                              "completed. Go back to the application and "
                              "start again.");
}


static ngx_int_t
ngx_astralform_callback_open(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, redisReply *reply)
{
    json_t                     *json;
    ngx_int_t                   rc;
    ngx_str_t                   aad, blob, plain;
    ngx_pool_t                 *pool;
    ngx_astralform_json_str_t   state[] = {
        { "connector", NULL }, { "user", NULL }, { "return_url", NULL },
        { "verifier", NULL }, { "binding", NULL }, { "issuer", NULL },
        { "token_url", NULL }, { NULL, NULL }
    };

    pool = ctx->request->pool;

    if (ngx_astralform_oauth_pdup(pool, &flow->blob, reply->str, reply->len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    blob = flow->blob;

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

    state[0].dst = &flow->connector;
    state[1].dst = &ctx->user;
    state[2].dst = &flow->return_url;
    state[3].dst = &flow->verifier;
    state[4].dst = &flow->binding;
    state[5].dst = &flow->issuer;
    state[6].dst = &flow->token_url;

    if (ngx_astralform_json_strings(pool, json, state) == NGX_OK
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

    if ((flow->has_iss
         && !ngx_astralform_oauth_str_eq(&flow->iss, &flow->issuer))
        || (!flow->has_iss && flow->conn != NULL
            && flow->conn->def->type == NGX_ASTRALFORM_OAUTH
            && ngx_astralform_oauth_flag(flow->conn->def,
                                         "authorization_response_iss", 0)))
    {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: OAuth callback for connector \"%V\" does "
                      "not name the issuer the user was sent to; refused",
                      &flow->connector);

        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "issuer_mismatch",
                                  "Sign-in refused",
                                  "The answer came from another service than "
                                  "the one you were sent to. Go back to the "
                                  "application and start again.");
        return;
    }

    if (flow->error.len) {

        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "astralform: user \"%V\" of project \"%V\" did not "
                      "connect \"%V\": the provider answered an error",
                      &ctx->user, &ctx->project->id, &flow->connector);

        if (ngx_astralform_str_is(&flow->error, "access_denied")) {
            ngx_astralform_oauth_page(ctx, NGX_HTTP_FORBIDDEN, "access_denied",
                                      "Not connected",
                                      "You did not allow access to %V, so it "
                                      "was not connected. You can close this "
                                      "window, or go back to the application "
                                      "to try again.",
                                      ngx_astralform_flow_name(flow));
            return;
        }

        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_GATEWAY, "provider_error",
                                  "Not connected",
                                  "%V could not complete the sign-in. Go back "
                                  "to the application and try again.",
                                  ngx_astralform_flow_name(flow));
        return;
    }

    if (flow->code.len == 0) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_BAD_REQUEST, "invalid_request",
                                  "Not connected",
                                  "The answer of the sign-in page has no "
                                  "authorization. Go back to the application "
                                  "and try again.");
        return;
    }

    /* the provider the user was sent to is the one the code goes to */

    if (flow->conn == NULL
        || flow->conn->def->type != NGX_ASTRALFORM_OAUTH
        || !ngx_astralform_oauth_str_eq(&flow->conn->def->token_url,
                                        &flow->token_url))
    {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_CONFLICT, "connector_changed",
                                  "Not connected",
                                  "This connection was changed or removed "
                                  "while you signed in. Go back to the "
                                  "application and start again.");
        return;
    }

    if (!flow->conn->allow_end_user_auth) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_FORBIDDEN,
                                  "end_user_auth_disabled",
                                  "Connecting is turned off",
                                  "The application turned off connecting %V "
                                  "while you signed in. Go back to the "
                                  "application.", &flow->conn->def->name);
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
        || ngx_astralform_oauth_exchange_start(&flow->ex, params) != NGX_OK)
    {
        json_decref(params);
        ngx_astralform_oauth_page(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error", "Not connected",
                                  "Something went wrong on our side. Go back "
                                  "to the application and try again.");
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

        ngx_astralform_oauth_page(ctx,
                                  ex->timed_out ? NGX_HTTP_GATEWAY_TIME_OUT
                                                : NGX_HTTP_BAD_GATEWAY,
                                  NULL, "Not connected",
                                  "%V did not accept the sign-in, or could not "
                                  "be reached. Go back to the application and "
                                  "try again.", ngx_astralform_flow_name(flow));
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

    if (rc == NGX_BUSY) {
        ngx_astralform_quota_log(ctx, NGX_ASTRALFORM_QUOTA_CREDENTIALS);
        ngx_astralform_oauth_page(ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                  "quota_exceeded", "Not connected",
                                  "This application cannot store more "
                                  "connections. Tell its operator.");
        return;
    }

    if (rc != NGX_OK) {
        ngx_astralform_oauth_page(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable", "Not connected",
                                  "The connection could not be saved. Go back "
                                  "to the application and try again.");
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: user \"%V\" of project \"%V\" connected "
                  "\"%V\"", &ctx->user, &ctx->project->id, &flow->connector);

    if (flow->return_url.len
        && ngx_astralform_oauth_return_url_ok(ctx->amcf, &flow->return_url)
           == NGX_OK)
    {
        ngx_astralform_oauth_redirect(ctx, &flow->return_url, &flow->cookie);
        return;
    }

    ngx_astralform_oauth_page(ctx, NGX_HTTP_OK, NULL, "Connected",
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


/* every API request: "?code=" never reaches a log, whatever the route */
void
ngx_astralform_redact_code(ngx_http_request_t *r)
{
    if (r->args.len) {
        ngx_astralform_redact_arg(r, "code");
    }
}


static void
ngx_astralform_redact_arg(ngx_http_request_t *r, const char *name)
{
    (void) ngx_astralform_redact(r->pool, &r->request_line, name);
    (void) ngx_astralform_redact(r->pool, &r->unparsed_uri, name);
    (void) ngx_astralform_redact(r->pool, &r->args, name);
}


/*
 * A copy of s with the value of every query argument called name (in any
 * case: ngx_http_arg() takes "CODE" for "code") blanked.
 */
static ngx_int_t
ngx_astralform_redact(ngx_pool_t *pool, ngx_str_t *s, const char *name)
{
    u_char      *p, *last, *q, *start, *out, *o, *from;
    size_t       len, n;
    ngx_uint_t   found;

    len = ngx_strlen(name);

    p = ngx_strlchr(s->data, s->data + s->len, '?');
    p = p ? p + 1 : s->data;

    /* the request line ends with " HTTP/1.x" */
    last = ngx_strlchr(p, s->data + s->len, ' ');
    if (last == NULL) {
        last = s->data + s->len;
    }

    found = 0;

    for (q = p; q < last; q = start + 1) {
        start = ngx_strlchr(q, last, '&');
        if (start == NULL) {
            start = last;
        }

        if ((size_t) (start - q) > len && q[len] == '='
            && ngx_strncasecmp(q, (u_char *) name, len) == 0)
        {
            found++;
        }
    }

    if (found == 0) {
        return NGX_DECLINED;
    }

    out = ngx_pnalloc(pool, s->len + found * sizeof("[redacted]"));
    if (out == NULL) {
        return NGX_ERROR;
    }

    o = out;
    from = s->data;

    for (q = p; q < last; q = start + 1) {
        start = ngx_strlchr(q, last, '&');
        if (start == NULL) {
            start = last;
        }

        if ((size_t) (start - q) > len && q[len] == '='
            && ngx_strncasecmp(q, (u_char *) name, len) == 0)
        {
            n = q + len + 1 - from;
            o = ngx_cpymem(o, from, n);
            o = ngx_cpymem(o, "[redacted]", sizeof("[redacted]") - 1);
            from = start;
        }
    }

    o = ngx_cpymem(o, from, s->data + s->len - from);

    s->data = out;
    s->len = o - out;

    return NGX_OK;
}


/* ---------------------------------------------------------------------- */
/* helpers */


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


/* "https://host:port" of an absolute URL */
ngx_int_t
ngx_astralform_oauth_origin(ngx_str_t *url, ngx_str_t *origin)
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
