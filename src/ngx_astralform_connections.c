/*
 * End users' connections: what each connector holds for one user (list),
 * an authorize link for an OAuth connector, the user's own API key for an
 * api_key connector, and disconnecting (with revocation at the provider).
 *
 * The user comes from the path, not from X-Astralform-User: the rows are
 * about the user named there.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_revocations.h"


#define NGX_ASTRALFORM_MAX_USER     128


typedef struct {
    ngx_astralform_ctx_t        *ctx;
    ngx_astralform_connector_t  *conn;
    json_t                      *item;
} ngx_astralform_conn_row_t;


static void ngx_astralform_connections_list(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_connections_got(redisReply *reply, void *data);
static void ngx_astralform_connections_send(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_connections_one(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_connections_authorize(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
static void ngx_astralform_connections_url(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_str_t *url);
static void ngx_astralform_connections_put(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
static void ngx_astralform_connections_stored(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_connections_delete(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
static void ngx_astralform_connections_deleted(redisReply *reply,
    void *data);
static ngx_int_t ngx_astralform_connections_user(ngx_astralform_ctx_t *ctx);


/*
 * HGET and HDEL in one step; the record moves to a revocation batch when
 * the provider can revoke it. Answers {removed, pending}.
 */
static const char  ngx_astralform_take_lua[] =
    "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if not v then return {0, 0} end "
    "redis.call('HDEL', KEYS[1], ARGV[1]) "
    "if ARGV[4] ~= '1' then return {1, 0} end "
    "redis.call('HSET', KEYS[2], ARGV[1], v) "
    "local bid, meta, moved = ARGV[2], ARGV[3], 1 "
    NGX_ASTRALFORM_SPOOL_LUA(2)
    "return {1, 1}";


ngx_int_t
ngx_astralform_connections_handler(ngx_astralform_ctx_t *ctx)
{
    if (ngx_astralform_connections_user(ctx) != NGX_OK) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_user",
                                         "the user id must be 1 to %d "
                                         "letters, digits or \"._:@-\"",
                                         NGX_ASTRALFORM_MAX_USER);
    }

    if (ctx->nseg == 6) {
        return ngx_astralform_load_project(ctx, 1,
                                           ngx_astralform_connections_list);
    }

    ctx->connector_id = ctx->seg[6];

    return ngx_astralform_load_project(ctx, 1,
                                       ngx_astralform_connections_one);
}


/* /v1/projects/{pid}/users/{uid}/...: the same rules as X-Astralform-User */
static ngx_int_t
ngx_astralform_connections_user(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t  *uid;

    uid = &ctx->seg[4];

    if (!ngx_astralform_valid_identity(uid)) {
        return NGX_ERROR;
    }

    ctx->user = *uid;

    return NGX_OK;
}


static void
ngx_astralform_connections_list(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t                    argv[3];
    ngx_uint_t                   i;
    ngx_astralform_conn_row_t   *row;
    ngx_astralform_connector_t  *conn;

    ctx->result = json_array();
    if (ctx->result == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->next = ngx_astralform_connections_send;
    conn = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {

        /* a remote MCP server holds nothing per user */
        if (conn[i].def->type == NGX_ASTRALFORM_REMOTE_MCP
            || !ngx_astralform_connector_visible(ctx, &conn[i]))
        {
            continue;
        }

        row = ngx_pcalloc(ctx->request->pool,
                          sizeof(ngx_astralform_conn_row_t));
        if (row == NULL) {
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        row->ctx = ctx;
        row->conn = &conn[i];

        /* the list keeps the connectors' order whatever Redis answers */
        row->item = json_object();
        if (row->item == NULL) {
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        json_array_append_new(ctx->result, row->item);

        ngx_str_set(&argv[0], "HGET");
        argv[2] = ctx->user;

        if (ngx_astralform_key(ctx, &argv[1], "tokens", &conn[i].id)
            != NGX_OK)
        {
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (ngx_astralform_redis_send(ctx->request->pool,
                                      ctx->request->connection->log,
                                      ngx_astralform_connections_got, row, 3,
                                      argv)
            == NULL)
        {
            ctx->failed = 1;
            break;
        }

        ctx->pending++;
    }

    if (ctx->pending == 0) {
        if (ctx->failed) {
            ngx_astralform_store_unavailable(ctx);
            return;
        }

        ngx_astralform_connections_send(ctx);
    }
}


static void
ngx_astralform_connections_got(redisReply *reply, void *data)
{
    ngx_astralform_conn_row_t *row = data;

    json_t                  *json;
    ngx_str_t                blob;
    ngx_astralform_ctx_t    *ctx;
    ngx_astralform_token_t   tok, *found;

    ctx = row->ctx;
    found = NULL;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ctx->failed = 1;
        ngx_astralform_step_done(ctx);
        return;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        blob.data = (u_char *) reply->str;
        blob.len = reply->len;

        /* a record that does not open counts as missing, as for calls */
        if (ngx_astralform_token_open(ctx, row->conn, &ctx->user, &blob,
                                      &tok, NULL)
            == NGX_OK)
        {
            found = &tok;
        }
    }

    json = ngx_astralform_connection_json(ctx, row->conn, found);

    if (json == NULL) {
        ctx->failed = 1;

    } else {
        json_object_update(row->item, json);
        json_decref(json);
    }

    ngx_astralform_step_done(ctx);
}


/*
 * connected: the user's credential is usable, or renewable (an expired
 * access token with a refresh token is renewed on the next call);
 * expired: past its expiry with nothing to renew it; missing: nothing
 * stored for the user (an api_key connector with the project's own key
 * counts as connected, with credential "project").
 */
json_t *
ngx_astralform_connection_json(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok)
{
    u_char                *p, *q, *last;
    json_t                *scopes;
    ngx_uint_t             renewable, has_key;
    const char            *status, *credential;
    ngx_astralform_def_t  *def;

    def = conn->def;
    scopes = json_array();
    credential = NULL;
    renewable = 0;

    if (tok != NULL) {
        credential = "user";

        renewable = !tok->is_api_key && tok->refresh_token.len
                    && !json_is_false(json_object_get(def->oauth,
                                                      "refresh"));

        if (!tok->is_api_key && tok->expires_at
            && tok->expires_at <= ngx_time() && !renewable)
        {
            status = "expired";

        } else {
            status = "connected";
        }

        /* a record without scopes has scope.data NULL */
        p = tok->scope.data;
        last = tok->scope.len ? p + tok->scope.len : p;

        while (p < last) {
            q = ngx_strlchr(p, last, ' ');
            if (q == NULL) {
                q = last;
            }

            if (q > p) {
                json_array_append_new(scopes,
                                      json_stringn((char *) p, q - p));
            }

            p = q + 1;
        }

    } else {
        has_key = def->type == NGX_ASTRALFORM_API_KEY
                  && (conn->api_key.len || conn->sealed_api_key.len);

        status = has_key ? "connected" : "missing";
        credential = has_key ? "project" : NULL;
    }

    return json_pack("{s:o, s:s%, s:s%, s:s, s:s, s:o, s:o, s:s?, s:b, "
                     "s:o}",
                     "connector", ngx_astralform_json_string(&conn->id),
                     "connector_slug", def->slug.data, def->slug.len,
                     "name", def->name.data, def->name.len,
                     "type", ngx_astralform_type_name(def->type),
                     "status", status,
                     "scopes", scopes,
                     "expires_at",
                     tok != NULL && tok->expires_at
                         ? json_integer((json_int_t) tok->expires_at)
                         : json_null(),
                     "credential", credential,
                     "refreshable", (int) renewable,
                     "account_id",
                     tok != NULL && tok->account_id.len
                         ? ngx_astralform_json_string(&tok->account_id)
                         : json_null());
}


static void
ngx_astralform_connections_send(ngx_astralform_ctx_t *ctx)
{
    json_t  *list;

    list = ctx->result;
    ctx->result = NULL;

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 json_pack("{s:s%, s:o}",
                                           "user", ctx->user.data,
                                           ctx->user.len,
                                           "connections", list)));
}


static void
ngx_astralform_connections_one(ngx_astralform_ctx_t *ctx)
{
    ngx_http_request_t          *r;
    ngx_astralform_connector_t  *conn;

    r = ctx->request;

    conn = ngx_astralform_find_connector(ctx, &ctx->connector_id);
    if (conn == NULL) {
        ngx_astralform_finish(ctx,
            ngx_astralform_connector_not_found(ctx, &ctx->connector_id));
        return;
    }

    /* the agent's assignment holds for one connection as for the list */
    if (!ngx_astralform_connector_visible(ctx, conn)) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                      "connector_not_assigned",
                                      "connector \"%V\" is not assigned to "
                                      "agent \"%V\"", &conn->id,
                                      &ctx->agent));
        return;
    }

    if (r->method == NGX_HTTP_POST) {
        ngx_astralform_connections_authorize(ctx, conn);
        return;
    }

    if (r->method == NGX_HTTP_PUT) {
        ngx_astralform_connections_put(ctx, conn);
        return;
    }

    ngx_astralform_connections_delete(ctx, conn);
}


static void
ngx_astralform_connections_authorize(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    json_t     *v;
    ngx_str_t   return_url, *rurl;

    if (conn->def->type != NGX_ASTRALFORM_OAUTH) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "not_oauth",
                                      "connector \"%V\" is not an OAuth "
                                      "connector", &conn->id));
        return;
    }

    if (!conn->allow_end_user_auth) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                      "end_user_auth_disabled",
                                      "end-user authorization is off for "
                                      "connector \"%V\"", &conn->id));
        return;
    }

    if (conn->client_id.len == 0) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_CONFLICT,
                                      "not_configured",
                                      "connector \"%V\" has no OAuth client "
                                      "id", &conn->id));
        return;
    }

    rurl = NULL;
    v = json_object_get(ctx->body, "return_url");

    if (v != NULL && !json_is_null(v)) {
        return_url.data = (u_char *) json_string_value(v);
        return_url.len = json_string_length(v);

        if (return_url.len > ctx->amcf->max_value_size) {
            ngx_astralform_finish(ctx,
                ngx_astralform_value_too_large(ctx, "return_url"));
            return;
        }

        if (!json_is_string(v)
            || ngx_astralform_oauth_return_url_ok(ctx->amcf, &return_url)
               != NGX_OK)
        {
            ngx_astralform_finish(ctx,
                ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                          "invalid_return_url",
                                          "\"return_url\" must start with "
                                          "an origin allowed by "
                                          "astralform_return_origin"));
            return;
        }

        rurl = &return_url;
    }

    ngx_astralform_oauth_connect_url(ctx, conn, rurl,
                                     ngx_astralform_connections_url);
}


static void
ngx_astralform_connections_url(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_str_t *url)
{
    if (rc == NGX_BUSY) {
        ngx_astralform_finish(ctx,
            ngx_astralform_quota_exceeded(ctx,
                                          NGX_ASTRALFORM_QUOTA_SESSIONS));
        return;
    }

    if (rc != NGX_OK) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
            json_pack("{s:o, s:o, s:I}",
                      "connector", ngx_astralform_json_string(
                                       &ctx->connector_id),
                      "authorization_url", ngx_astralform_json_string(url),
                      "expires_in",
                      (json_int_t) (ctx->amcf->session_ttl / 1000))));
}


static void
ngx_astralform_connections_put(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    json_t                  *v;
    ngx_astralform_token_t  *tok;

    if (conn->def->type != NGX_ASTRALFORM_API_KEY) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "not_api_key",
                                      "connector \"%V\" takes no API key: "
                                      "its users connect with OAuth",
                                      &conn->id));
        return;
    }

    if (!conn->allow_end_user_auth) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                      "end_user_auth_disabled",
                                      "connector \"%V\" does not take end "
                                      "users' own keys", &conn->id));
        return;
    }

    v = json_object_get(ctx->body, "api_key");

    if (!json_is_string(v) || json_string_length(v) == 0) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "invalid_request",
                                      "\"api_key\" must be a non-empty "
                                      "string"));
        return;
    }

    if (json_string_length(v) > ctx->amcf->max_value_size) {
        ngx_astralform_finish(ctx,
                              ngx_astralform_value_too_large(ctx, "api_key"));
        return;
    }

    tok = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_token_t));
    if (tok == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    tok->is_api_key = 1;
    tok->api_key.data = (u_char *) json_string_value(v);
    tok->api_key.len = json_string_length(v);
    tok->obtained_at = ngx_time();

    ctx->data = conn;

    ngx_astralform_token_put(ctx, conn, tok, NULL,
                             ngx_astralform_connections_stored);
}


static void
ngx_astralform_connections_stored(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    json_t                      *json;
    ngx_astralform_connector_t  *conn;

    if (rc == NGX_BUSY) {
        ngx_astralform_finish(ctx,
            ngx_astralform_quota_exceeded(ctx,
                                          NGX_ASTRALFORM_QUOTA_CREDENTIALS));
        return;
    }

    if (rc != NGX_OK) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    conn = ctx->data;

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: user \"%V\" of project \"%V\" set an API key "
                  "for \"%V\"", &ctx->user, &ctx->project->id, &conn->id);

    json = ngx_astralform_connection_json(ctx, conn, tok);

    ngx_astralform_finish(ctx, ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                                         json));
}


static void
ngx_astralform_connections_delete(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    ngx_str_t               argv[12];
    ngx_astralform_spool_t  spool;

    ctx->data = conn;

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_take_lua;
    argv[1].len = sizeof(ngx_astralform_take_lua) - 1;
    ngx_str_set(&argv[2], "5");

    if (ngx_astralform_key(ctx, &argv[3], "tokens", &conn->id) != NGX_OK
        || ngx_astralform_spool_init(ctx, conn, &spool) != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[4] = spool.tokens;
    argv[5] = spool.batch;
    argv[6] = spool.batches;
    argv[7] = spool.counters;
    argv[8] = ctx->user;
    argv[9] = spool.id;
    argv[10] = spool.meta;
    argv[11] = spool.revocable;

    if (ngx_astralform_redis(ctx, ngx_astralform_connections_deleted, 12,
                             argv)
        != NGX_OK)
    {
        ngx_astralform_finish(ctx, ngx_astralform_wait(ctx));
    }
}


static void
ngx_astralform_connections_deleted(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_uint_t                   removed, pending;
    ngx_astralform_connector_t  *conn;

    ctx->pending--;
    conn = ctx->data;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    removed = reply->element[0]->integer != 0;
    pending = reply->element[1]->integer != 0;

    if (removed) {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "astralform: user \"%V\" of project \"%V\" "
                      "disconnected \"%V\"", &ctx->user, &ctx->project->id,
                      &conn->id);
    }

    /* at the provider too, in the background, durably */
    if (pending) {
        ngx_astralform_revocations_kick();
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
            json_pack("{s:o, s:b, s:I}",
                      "connector", ngx_astralform_json_string(&conn->id),
                      "disconnected", (int) removed,
                      "pending_revocations", (json_int_t) pending)));
}
