/*
 * Project connectors through the API: list, enable, read, update, disable;
 * agent assignments; the tool list an agent sees.
 *
 * Connectors declared in nginx.conf are listed with source "config" and
 * are read-only here: the configuration file stays the truth for them.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_mcp_client.h"
#include "ngx_astralform_revocations.h"


static void ngx_astralform_connectors_list(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_connectors_enable(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_connectors_enabled(redisReply *reply, void *data);
static void ngx_astralform_connectors_one(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_connectors_updated(redisReply *reply, void *data);
static void ngx_astralform_connectors_disabled(redisReply *reply,
    void *data);
static const char *ngx_astralform_connector_fields(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_uint_t creating);
static const char *ngx_astralform_seal_field(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *field, ngx_str_t *dst);
static json_t *ngx_astralform_connector_stored(
    ngx_astralform_connector_t *conn);
static ngx_int_t ngx_astralform_connector_save(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *cmd,
    ngx_astralform_redis_pt handler);
static void ngx_astralform_finish_with(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc);
static void ngx_astralform_agents_get(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_agents_put(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_agents_saved(redisReply *reply, void *data);
static json_t *ngx_astralform_assignment_json(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_tools_list(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_tools_list_send(ngx_astralform_ctx_t *ctx);
static u_char *ngx_astralform_ids(ngx_astralform_ctx_t *ctx, u_char *buf,
    size_t size, ngx_uint_t catalog);


/*
 * Disabling removes the connector, every end-user token of it, and the
 * connector from every agent's assignment, in one atomic step that is
 * short at any size: the tokens hash is renamed into a revocation batch
 * (drained in the background, ngx_astralform_revocations.c), or unlinked
 * when the provider has nothing to revoke. Answers {removed, deleted,
 * pending}.
 */
static const char  ngx_astralform_disable_lua[] =
    "local removed = redis.call('HDEL', KEYS[1], ARGV[1]) "
    "if removed == 0 then return {0, 0, 0} end "
    "local agents = redis.call('HGETALL', KEYS[3]) "
    "for i = 1, #agents, 2 do "
    "  local ok, ids = pcall(cjson.decode, agents[i + 1]) "
    "  if ok and type(ids) == 'table' then "
    "    local kept = {} "
    "    for _, v in ipairs(ids) do "
    "      if v ~= ARGV[1] then kept[#kept + 1] = v end "
    "    end "
    "    if #kept ~= #ids then "
    "      local text = '[]' "
    "      if #kept > 0 then text = cjson.encode(kept) end "
    "      redis.call('HSET', KEYS[3], agents[i], text) "
    "    end "
    "  end "
    "end "
    "local moved = redis.call('HLEN', KEYS[2]) "
    "if moved == 0 then return {1, 0, 0} end "
    "if ARGV[4] ~= '1' then "
    "  redis.call('UNLINK', KEYS[2]) "
    "  return {1, moved, 0} "
    "end "
    "redis.call('RENAME', KEYS[2], KEYS[4]) "
    "local bid, meta = ARGV[2], ARGV[3] "
    NGX_ASTRALFORM_SPOOL_LUA(4)
    "return {1, moved, moved}";


ngx_int_t
ngx_astralform_connectors_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    if (!ngx_astralform_is_admin(ctx)) {
        return ngx_astralform_admin_required(ctx);
    }

    r = ctx->request;

    if (ctx->nseg == 4) {
        return ngx_astralform_load_project(ctx, 0,
                   r->method == NGX_HTTP_GET
                   ? ngx_astralform_connectors_list
                   : ngx_astralform_connectors_enable);
    }

    ctx->connector_id = ctx->seg[4];

    return ngx_astralform_load_project(ctx, 0, ngx_astralform_connectors_one);
}


static void
ngx_astralform_connectors_list(ngx_astralform_ctx_t *ctx)
{
    json_t                      *list;
    ngx_uint_t                   i;
    ngx_astralform_connector_t  *conn;

    list = json_array();
    conn = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        json_array_append_new(list,
                              ngx_astralform_connector_json(ctx, &conn[i]));
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 json_pack("{s:o}", "connectors", list)));
}


static void
ngx_astralform_connectors_enable(ngx_astralform_ctx_t *ctx)
{
    json_t                      *v;
    ngx_str_t                    slug;
    ngx_uint_t                   i;
    const char                  *problem;
    u_char                       known[512];
    ngx_astralform_def_t        *def;
    ngx_astralform_connector_t   conn, *other;

    v = json_object_get(ctx->body, "connector_slug");
    if (!json_is_string(v)) {
        ngx_astralform_finish_with(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "invalid_request",
                                      "\"connector_slug\" must be one of "
                                      "the catalog's slugs: %s",
                                      ngx_astralform_ids(ctx, known,
                                                         sizeof(known), 1)));
        return;
    }

    slug.data = (u_char *) json_string_value(v);
    slug.len = json_string_length(v);

    def = ngx_astralform_catalog_find(&ctx->amcf->catalog, &slug);
    if (def == NULL) {
        ngx_astralform_finish_with(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "unknown_connector",
                                      "the catalog has no connector "
                                      "\"%V\"; known slugs: %s", &slug,
                                      ngx_astralform_ids(ctx, known,
                                                         sizeof(known), 1)));
        return;
    }

    ngx_memzero(&conn, sizeof(ngx_astralform_connector_t));
    conn.def = def;
    conn.id = def->slug;
    conn.require_auth = 1;
    conn.allow_end_user_auth = 1;

    problem = ngx_astralform_connector_fields(ctx, &conn, 1);
    if (problem != NULL) {
        ngx_astralform_finish_with(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "invalid_request", "%s", problem));
        return;
    }

    ctx->connector_id = conn.id;
    other = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (other[i].id.len == conn.id.len
            && ngx_strncmp(other[i].id.data, conn.id.data, conn.id.len) == 0)
        {
            ngx_astralform_finish_with(ctx,
                ngx_astralform_send_error(ctx, NGX_HTTP_CONFLICT,
                                          "duplicate_id",
                                          "the project already has a "
                                          "connector \"%V\"", &conn.id));
            return;
        }

        /* catalog tool names are global: one instance of a slug */
        if (other[i].def == def && def->type != NGX_ASTRALFORM_REMOTE_MCP) {
            ngx_astralform_finish_with(ctx,
                ngx_astralform_send_error(ctx, NGX_HTTP_CONFLICT,
                                          "already_enabled",
                                          "\"%V\" is already enabled as "
                                          "\"%V\"", &def->slug,
                                          &other[i].id));
            return;
        }
    }

    other = ngx_array_push(&ctx->connectors);
    if (other == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    *other = conn;
    ctx->data = other;

    ngx_astralform_finish_with(ctx,
        ngx_astralform_connector_save(ctx, other, "HSETNX",
                                      ngx_astralform_connectors_enabled));
}


static void
ngx_astralform_connectors_enabled(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_astralform_connector_t  *conn;

    ctx->pending--;
    conn = ctx->data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    if (reply->integer == 0) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_CONFLICT, "duplicate_id",
                                      "the project already has a connector "
                                      "\"%V\"", &conn->id));
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: project \"%V\" enabled connector \"%V\"",
                  &ctx->project->id, &conn->id);

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_CREATED,
                                 ngx_astralform_connector_json(ctx, conn)));
}


static void
ngx_astralform_connectors_one(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t                    argv[14];
    const char                  *problem;
    ngx_http_request_t          *r;
    ngx_astralform_spool_t       spool;
    ngx_astralform_connector_t  *conn;

    r = ctx->request;

    conn = ngx_astralform_find_connector(ctx, &ctx->connector_id);
    if (conn == NULL) {
        ngx_astralform_finish(ctx,
            ngx_astralform_connector_not_found(ctx, &ctx->connector_id));
        return;
    }

    if (r->method == NGX_HTTP_GET) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                     ngx_astralform_connector_json(ctx,
                                                                   conn)));
        return;
    }

    if (conn->from_config) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_CONFLICT, "read_only",
                                      "connector \"%V\" is declared in "
                                      "nginx.conf; change it there",
                                      &conn->id));
        return;
    }

    ctx->data = conn;

    if (r->method == NGX_HTTP_PATCH) {
        problem = ngx_astralform_connector_fields(ctx, conn, 0);
        if (problem != NULL) {
            ngx_astralform_finish(ctx,
                ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                          "invalid_request", "%s", problem));
            return;
        }

        ngx_astralform_finish_with(ctx,
            ngx_astralform_connector_save(ctx, conn, "HSET",
                                          ngx_astralform_connectors_updated));
        return;
    }

    /* DELETE */

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_disable_lua;
    argv[1].len = sizeof(ngx_astralform_disable_lua) - 1;
    ngx_str_set(&argv[2], "7");

    if (ngx_astralform_key(ctx, &argv[3], "connectors", NULL) != NGX_OK
        || ngx_astralform_key(ctx, &argv[4], "tokens", &conn->id) != NGX_OK
        || ngx_astralform_key(ctx, &argv[5], "agents", NULL) != NGX_OK
        || ngx_astralform_spool_init(ctx, conn, &spool) != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[6] = spool.tokens;
    argv[7] = spool.batch;
    argv[8] = spool.batches;
    argv[9] = spool.counters;
    argv[10] = conn->id;
    argv[11] = spool.id;
    argv[12] = spool.meta;
    argv[13] = spool.revocable;

    if (ngx_astralform_redis(ctx, ngx_astralform_connectors_disabled, 14,
                             argv)
        != NGX_OK)
    {
        ngx_astralform_finish(ctx, ngx_astralform_wait(ctx));
    }
}


static void
ngx_astralform_connectors_updated(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ctx->pending--;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 ngx_astralform_connector_json(ctx,
                                                               ctx->data)));
}


static void
ngx_astralform_connectors_disabled(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_uint_t                   i;
    long long                    n[3];
    ngx_astralform_connector_t  *conn;

    ctx->pending--;
    conn = ctx->data;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    for (i = 0; i < 3; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
            ngx_astralform_store_unavailable(ctx);
            return;
        }

        n[i] = reply->element[i]->integer;
    }

    if (n[0] == 0) {
        ngx_astralform_finish(ctx,
            ngx_astralform_connector_not_found(ctx, &conn->id));
        return;
    }

    /* provider-side revocation runs in the background, durably */
    if (n[2]) {
        ngx_astralform_revocations_kick();
    }

    if (conn->def->type == NGX_ASTRALFORM_REMOTE_MCP) {
        ngx_astralform_mcp_close_sessions(ctx, conn);
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: project \"%V\" disabled connector \"%V\", "
                  "%L end-user tokens deleted, %L revocations pending",
                  &ctx->project->id, &conn->id, n[1], n[2]);

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 json_pack("{s:o, s:b, s:I, s:I, s:I}",
                                     "id",
                                     ngx_astralform_json_string(&conn->id),
                                     "disabled", 1,
                                     "revoked_tokens", (json_int_t) n[1],
                                     "deleted_tokens", (json_int_t) n[1],
                                     "pending_revocations",
                                     (json_int_t) n[2])));
}


/*
 * Applies the body's fields to conn; returns a sentence naming the field
 * and the problem, or NULL. Secrets are sealed here, bound to the project
 * and connector id.
 */
static const char *
ngx_astralform_connector_fields(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_uint_t creating)
{
    u_char      *p, *last, *comma;
    size_t       i;
    json_t      *v, *body, *s;
    ngx_str_t   *scope, str, word;
    const char  *key, *problem;

    body = ctx->body;

    json_object_foreach(body, key, v) {

        if (ngx_strcmp(key, "connector_slug") == 0) {
            if (!creating) {
                return "\"connector_slug\" cannot change; disable and "
                       "enable again";
            }

        } else if (ngx_strcmp(key, "id") == 0) {
            if (!creating) {
                return "\"id\" cannot change";
            }

            if (!json_is_string(v)) {
                return "\"id\" must be a string";
            }

            str.data = (u_char *) json_string_value(v);
            str.len = json_string_length(v);

            for (i = 0; i < str.len; i++) {
                if (!(isalnum(str.data[i]) || str.data[i] == '_'
                      || str.data[i] == '-'))
                {
                    break;
                }
            }

            if (str.len == 0 || str.len > 64 || i != str.len) {
                return "\"id\" must be 1 to 64 letters, digits, \"_\" or "
                       "\"-\" (pattern ^[A-Za-z0-9_-]{1,64}$)";
            }

            if (ngx_astralform_strdup(ctx->request->pool, &conn->id,
                                      (char *) str.data) != NGX_OK)
            {
                return "out of memory";
            }

        } else if (ngx_strcmp(key, "oauth_client_id") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0) {
                return "\"oauth_client_id\" must be a non-empty string";
            }

            if (ngx_astralform_strdup(ctx->request->pool, &conn->client_id,
                                      json_string_value(v)) != NGX_OK)
            {
                return "out of memory";
            }

        } else if (ngx_strcmp(key, "mcp_url") == 0) {
            if (!json_is_string(v)) {
                return "\"mcp_url\" must be a string";
            }

            if (ngx_astralform_strdup(ctx->request->pool, &conn->mcp_url,
                                      json_string_value(v)) != NGX_OK)
            {
                return "out of memory";
            }

            if (ngx_astralform_valid_url(&conn->mcp_url) != NGX_OK) {
                return "\"mcp_url\" must be an absolute http(s) URL";
            }

            /*
             * A project admin must not turn the gateway into a proxy to
             * any host: only origins the operator allowed.
             */
            if (ngx_astralform_url_in_origins(ctx->amcf->mcp_origins,
                                              &conn->mcp_url)
                != NGX_OK)
            {
                return "\"mcp_url\" is not on an origin allowed by "
                       "astralform_mcp_allowed_origin";
            }

        } else if (ngx_strcmp(key, "oauth_scopes") == 0) {
            conn->scopes = ngx_array_create(ctx->request->pool, 4,
                                            sizeof(ngx_str_t));
            if (conn->scopes == NULL) {
                return "out of memory";
            }

            if (json_is_string(v)) {
                /* "a,b, c" as operators type it */
                p = (u_char *) json_string_value(v);
                last = p + json_string_length(v);

                while (p < last) {
                    while (p < last && (*p == ' ' || *p == ',')) {
                        p++;
                    }

                    comma = p;
                    while (comma < last && *comma != ',' && *comma != ' ') {
                        comma++;
                    }

                    if (comma > p) {
                        word.data = p;
                        word.len = comma - p;

                        scope = ngx_array_push(conn->scopes);
                        if (scope == NULL) {
                            return "out of memory";
                        }

                        scope->data = ngx_pstrdup(ctx->request->pool, &word);
                        scope->len = word.len;
                        if (scope->data == NULL) {
                            return "out of memory";
                        }
                    }

                    p = comma;
                }

            } else if (json_is_array(v)) {
                json_array_foreach(v, i, s) {
                    if (!json_is_string(s) || json_string_length(s) == 0) {
                        return "\"oauth_scopes\" must hold non-empty "
                               "strings";
                    }

                    scope = ngx_array_push(conn->scopes);
                    if (scope == NULL
                        || ngx_astralform_strdup(ctx->request->pool, scope,
                                                 json_string_value(s))
                           != NGX_OK)
                    {
                        return "out of memory";
                    }
                }

            } else {
                return "\"oauth_scopes\" must be a comma-separated string "
                       "or an array of strings";
            }

        } else if (ngx_strcmp(key, "require_auth") == 0) {
            if (!json_is_boolean(v)) {
                return "\"require_auth\" must be true or false";
            }
            conn->require_auth = json_is_true(v);

        } else if (ngx_strcmp(key, "allow_end_user_auth") == 0) {
            if (!json_is_boolean(v)) {
                return "\"allow_end_user_auth\" must be true or false";
            }
            conn->allow_end_user_auth = json_is_true(v);

        } else if (ngx_strcmp(key, "oauth_client_secret") != 0
                   && ngx_strcmp(key, "api_key") != 0)
        {
            return "the body has a field this endpoint does not know";
        }
    }

    /* secrets last: their AAD names the final connector id */

    problem = ngx_astralform_seal_field(ctx, conn, "oauth_client_secret",
                                        &conn->sealed_secret);
    if (problem != NULL) {
        return problem;
    }

    problem = ngx_astralform_seal_field(ctx, conn, "api_key",
                                        &conn->sealed_api_key);
    if (problem != NULL) {
        return problem;
    }

    switch (conn->def->type) {

    case NGX_ASTRALFORM_OAUTH:
        if (conn->client_id.len == 0 || conn->sealed_secret.len == 0) {
            return "an oauth connector needs \"oauth_client_id\" and "
                   "\"oauth_client_secret\"";
        }
        break;

    case NGX_ASTRALFORM_REMOTE_MCP:
        if (conn->mcp_url.len == 0
            || (creating && json_object_get(body, "id") == NULL))
        {
            return "a remote_mcp connector needs \"mcp_url\" and \"id\"";
        }
        break;

    default: /* NGX_ASTRALFORM_API_KEY */
        if (conn->sealed_api_key.len == 0 && !conn->allow_end_user_auth) {
            return "an api_key connector needs \"api_key\" unless end "
                   "users bring their own (\"allow_end_user_auth\": true)";
        }
    }

    return NULL;
}


static const char *
ngx_astralform_seal_field(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *field, ngx_str_t *dst)
{
    json_t     *v;
    ngx_str_t   aad, plain;

    v = json_object_get(ctx->body, field);
    if (v == NULL) {
        return NULL;
    }

    if (json_is_null(v)) {
        ngx_str_null(dst);
        return NULL;
    }

    if (!json_is_string(v) || json_string_length(v) == 0) {
        return ngx_strcmp(field, "api_key") == 0
               ? "\"api_key\" must be a non-empty string"
               : "\"oauth_client_secret\" must be a non-empty string";
    }

    plain.data = (u_char *) json_string_value(v);
    plain.len = json_string_length(v);

    if (ngx_astralform_aad(ctx->request->pool, &aad, &ctx->project->id,
                           &conn->id, field, NULL) != NGX_OK
        || ngx_astralform_seal(ctx->request->pool, &ctx->amcf->keys, &aad,
                               &plain, dst) != NGX_OK)
    {
        return "the secret could not be sealed";
    }

    return NULL;
}


/* the JSON kept in Redis: secrets only as sealed blobs */
static json_t *
ngx_astralform_connector_stored(ngx_astralform_connector_t *conn)
{
    json_t      *json, *scopes;
    ngx_str_t   *s;
    ngx_uint_t   i;

    json = json_pack("{s:s%, s:b, s:b}",
                     "connector_slug", conn->def->slug.data,
                     conn->def->slug.len,
                     "require_auth", (int) conn->require_auth,
                     "allow_end_user_auth", (int) conn->allow_end_user_auth);
    if (json == NULL) {
        return NULL;
    }

    if (conn->client_id.len) {
        json_object_set_new(json, "oauth_client_id",
                            ngx_astralform_json_string(&conn->client_id));
    }

    if (conn->sealed_secret.len) {
        json_object_set_new(json, "oauth_client_secret",
                            ngx_astralform_json_string(&conn->sealed_secret));
    }

    if (conn->sealed_api_key.len) {
        json_object_set_new(json, "api_key",
                            ngx_astralform_json_string(&conn->sealed_api_key));
    }

    if (conn->mcp_url.len) {
        json_object_set_new(json, "mcp_url",
                            ngx_astralform_json_string(&conn->mcp_url));
    }

    if (conn->scopes != NULL) {
        scopes = json_array();
        s = conn->scopes->elts;

        for (i = 0; i < conn->scopes->nelts; i++) {
            json_array_append_new(scopes, ngx_astralform_json_string(&s[i]));
        }

        json_object_set_new(json, "oauth_scopes", scopes);
    }

    return json;
}


static ngx_int_t
ngx_astralform_connector_save(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *cmd,
    ngx_astralform_redis_pt handler)
{
    char       *text;
    json_t     *json;
    ngx_str_t   argv[4];
    ngx_int_t   rc;

    json = ngx_astralform_connector_stored(conn);
    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0].data = (u_char *) cmd;
    argv[0].len = ngx_strlen(cmd);
    argv[2] = conn->id;
    argv[3].data = (u_char *) text;
    argv[3].len = ngx_strlen(text);

    if (ngx_astralform_key(ctx, &argv[1], "connectors", NULL) != NGX_OK) {
        ngx_free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_astralform_redis(ctx, handler, 4, argv);
    ngx_free(text);

    rc = ngx_astralform_wait(ctx);

    return rc;
}


/*
 * Writes conn back after a secret was re-sealed with the current key, only
 * over the JSON it was read from (fire and forget: a lost race re-seals on
 * the next read).
 */
void
ngx_astralform_connector_reseal(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    char       *text;
    json_t     *json;
    ngx_str_t   key, value;

    if (conn->from_config || conn->stored.len == 0) {
        return;
    }

    json = ngx_astralform_connector_stored(conn);
    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL) {
        return;
    }

    value.data = (u_char *) text;
    value.len = ngx_strlen(text);

    if (ngx_astralform_key(ctx, &key, "connectors", NULL) == NGX_OK) {
        (void) ngx_astralform_hash_cas(ctx, &key, &conn->id, &conn->stored,
                                       &value, NULL, NULL);
    }

    ngx_free(text);
}


/* a step that may still be waiting: finish now unless it waits */
static void
ngx_astralform_finish_with(ngx_astralform_ctx_t *ctx, ngx_int_t rc)
{
    if (rc != NGX_DONE) {
        ngx_astralform_finish(ctx, rc);
    }
}


ngx_int_t
ngx_astralform_agents_handler(ngx_astralform_ctx_t *ctx)
{
    if (!ngx_astralform_is_admin(ctx)) {
        return ngx_astralform_admin_required(ctx);
    }

    /* an id no X-Astralform-Agent header could carry would never apply */
    if (!ngx_astralform_valid_identity(&ctx->seg[4])) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "an agent id is 1 to 128 letters, "
                                         "digits or \"_-.@:\"");
    }

    ctx->agent = ctx->seg[4];

    return ngx_astralform_load_project(ctx, 1,
               ctx->request->method == NGX_HTTP_GET
               ? ngx_astralform_agents_get : ngx_astralform_agents_put);
}


static void
ngx_astralform_agents_get(ngx_astralform_ctx_t *ctx)
{
    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 ngx_astralform_assignment_json(ctx)));
}


static void
ngx_astralform_agents_put(ngx_astralform_ctx_t *ctx)
{
    char        *text;
    u_char       known[512];
    size_t       i;
    json_t      *list, *v;
    ngx_str_t    argv[4], id, *item;

    list = json_object_get(ctx->body, "connectors");

    if (!json_is_array(list) && !json_is_null(list)) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "invalid_request",
                                      "\"connectors\" must be an array of "
                                      "connector ids (or null to remove "
                                      "the assignment)"));
        return;
    }

    ctx->assignment = NULL;
    ctx->assignment_set = 0;

    if (json_is_array(list)) {
        ctx->assignment = ngx_array_create(ctx->request->pool,
                                           json_array_size(list) + 1,
                                           sizeof(ngx_str_t));
        if (ctx->assignment == NULL) {
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
        ctx->assignment_set = 1;

        json_array_foreach(list, i, v) {
            if (!json_is_string(v)) {
                ngx_astralform_finish(ctx,
                    ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request",
                                              "\"connectors\" must hold "
                                              "connector ids (strings)"));
                return;
            }

            id.data = (u_char *) json_string_value(v);
            id.len = json_string_length(v);

            if (ngx_astralform_find_connector(ctx, &id) == NULL) {
                ngx_astralform_finish(ctx,
                    ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                              "unknown_connector",
                                              "the project has no "
                                              "connector \"%V\"; it has: "
                                              "%s", &id,
                                              ngx_astralform_ids(ctx, known,
                                                  sizeof(known), 0)));
                return;
            }

            item = ngx_array_push(ctx->assignment);
            if (item == NULL) {
                ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }
            *item = id;
        }
    }

    if (ngx_astralform_key(ctx, &argv[1], "agents", NULL) != NGX_OK) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[2] = ctx->agent;

    if (list == NULL || json_is_null(list)) {
        ngx_str_set(&argv[0], "HDEL");
        (void) ngx_astralform_redis(ctx, ngx_astralform_agents_saved, 3,
                                    argv);

    } else {
        text = json_dumps(list, JSON_COMPACT);
        if (text == NULL) {
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_str_set(&argv[0], "HSET");
        argv[3].data = (u_char *) text;
        argv[3].len = ngx_strlen(text);

        (void) ngx_astralform_redis(ctx, ngx_astralform_agents_saved, 4,
                                    argv);
        ngx_free(text);
    }

    ngx_astralform_finish_with(ctx, ngx_astralform_wait(ctx));
}


static void
ngx_astralform_agents_saved(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ctx->pending--;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 ngx_astralform_assignment_json(ctx)));
}


static json_t *
ngx_astralform_assignment_json(ngx_astralform_ctx_t *ctx)
{
    json_t      *list;
    ngx_str_t   *id;
    ngx_uint_t   i;

    if (ctx->assignment == NULL) {
        return json_pack("{s:o, s:n, s:s}",
                         "agent", ngx_astralform_json_string(&ctx->agent),
                         "connectors", "source", "none");
    }

    list = json_array();
    id = ctx->assignment->elts;

    for (i = 0; i < ctx->assignment->nelts; i++) {
        json_array_append_new(list, ngx_astralform_json_string(&id[i]));
    }

    return json_pack("{s:o, s:o, s:s}",
                     "agent", ngx_astralform_json_string(&ctx->agent),
                     "connectors", list,
                     "source", ctx->assignment_set ? "api" : "config");
}


/*
 * "a", "b", ...: the catalog's slugs, or the project's connector ids, for
 * a message that says what would have been right
 */
static u_char *
ngx_astralform_ids(ngx_astralform_ctx_t *ctx, u_char *buf, size_t size,
    ngx_uint_t catalog)
{
    u_char                      *p, *last;
    ngx_str_t                   *id;
    ngx_uint_t                   i, n;
    ngx_astralform_def_t        *def;
    ngx_astralform_connector_t  *conn;

    p = buf;
    last = buf + size - 1;

    def = ctx->amcf->catalog.defs.elts;
    conn = ctx->connectors.elts;
    n = catalog ? ctx->amcf->catalog.defs.nelts : ctx->connectors.nelts;

    for (i = 0; i < n; i++) {
        id = catalog ? &def[i].slug : &conn[i].id;
        p = ngx_slprintf(p, last, "%s\"%V\"", i ? ", " : "", id);
    }

    if (n == 0) {
        p = ngx_slprintf(p, last, "none");
    }

    *p = '\0';

    return buf;
}


ngx_int_t
ngx_astralform_tools_list_handler(ngx_astralform_ctx_t *ctx)
{
    return ngx_astralform_load_project(ctx, 1, ngx_astralform_tools_list);
}


static void
ngx_astralform_tools_list(ngx_astralform_ctx_t *ctx)
{
    json_t                      *list, *tools;
    ngx_uint_t                   i;
    ngx_astralform_connector_t  *conn;

    list = json_array();
    conn = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (!ngx_astralform_connector_visible(ctx, &conn[i])
            || conn[i].def->type == NGX_ASTRALFORM_REMOTE_MCP)
        {
            continue;
        }

        tools = ngx_astralform_connector_tools(ctx, &conn[i]);
        json_array_extend(list, tools);
        json_decref(tools);
    }

    ctx->result = list;

    /* remote MCP servers add theirs, then the list goes out */
    ngx_astralform_mcp_list_tools(ctx, ngx_astralform_tools_list_send);
}


static void
ngx_astralform_tools_list_send(ngx_astralform_ctx_t *ctx)
{
    json_t  *list;

    list = ctx->result;
    ctx->result = NULL;

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 json_pack("{s:o}", "tools", list)));
}
