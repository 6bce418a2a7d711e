/*
 * Project state in Redis: the key layout, and loading a project's enabled
 * connectors and agent assignments for a request.
 *
 * Every key is "<prefix>{<project>}:<kind>[:<sub>]"; the hash tag keeps a
 * project's keys in one Redis Cluster slot, so scripts may touch several.
 *
 *   {P}:connectors          hash  id -> connector JSON (API-enabled ones;
 *                                 secrets inside are sealed blobs)
 *   {P}:agents              hash  agent id -> JSON array of connector ids
 *   {P}:tokens:<C>          hash  user id -> sealed token record, so that
 *                                 disabling C finds every token of it
 *   {P}:session:<S>         string, TTL: a connect session (OAuth issue)
 *   {P}:sessions            sorted set, TTL: pending session ids -> expiry
 *                                 (ms), for astralform_max_pending_sessions
 *   {P}:state:<STATE>       string, TTL: an OAuth state, consumed once
 *   {P}:lock:<C>:<U>        string, lease: the refresh lock of one token
 *   {P}:refresh_failed:<C>:<U>    string, TTL: a refresh of the token
 *                                 failed: no new one before it expires
 *   {P}:refresh_failures:<C>:<U>  string, TTL: failed refreshes in a row
 */


#include "ngx_astralform.h"


static ngx_int_t ngx_astralform_redis_config(ngx_astralform_ctx_t *ctx,
    ngx_astralform_redis_pt handler, ngx_uint_t argc, ngx_str_t *argv);
static void ngx_astralform_connectors_reply(redisReply *reply, void *data);
static void ngx_astralform_cas_ignore(redisReply *reply, void *data);
static void ngx_astralform_assignment_reply(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_connector_parse(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, redisReply *id, redisReply *value);
static void ngx_astralform_config_assignment(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_pstr(ngx_pool_t *pool, ngx_str_t *dst,
    json_t *json, const char *key);
static json_t *ngx_astralform_str_array(ngx_array_t *a);


ngx_int_t
ngx_astralform_key(ngx_astralform_ctx_t *ctx, ngx_str_t *out,
    const char *kind, ngx_str_t *sub)
{
    size_t      len;
    ngx_str_t  *prefix, *pid;

    prefix = &ctx->amcf->prefix;
    pid = &ctx->project->id;

    len = prefix->len + pid->len + ngx_strlen(kind) + sizeof("{}:") - 1
          + (sub ? sub->len + 1 : 0);

    out->data = ngx_pnalloc(ctx->request->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (sub != NULL) {
        out->len = ngx_sprintf(out->data, "%V{%V}:%s:%V", prefix, pid, kind,
                               sub) - out->data;
    } else {
        out->len = ngx_sprintf(out->data, "%V{%V}:%s", prefix, pid, kind)
                   - out->data;
    }

    return NGX_OK;
}


/* sends one command for this request; its reply goes to handler(ctx) */
ngx_int_t
ngx_astralform_redis(ngx_astralform_ctx_t *ctx,
    ngx_astralform_redis_pt handler, ngx_uint_t argc, ngx_str_t *argv)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_astralform_redis_send(r->pool, r->connection->log, handler, ctx,
                                  argc, argv)
        == NULL)
    {
        ctx->failed = 1;
        return NGX_ERROR;
    }

    ctx->pending++;

    return NGX_OK;
}


/*
 * After a batch of ngx_astralform_redis() calls: NGX_DONE while replies
 * are awaited (ctx->next runs after the last), or the 503 answer when
 * nothing could be sent.
 */
ngx_int_t
ngx_astralform_wait(ngx_astralform_ctx_t *ctx)
{
    if (ctx->pending) {
        return NGX_DONE;
    }

    return ngx_astralform_send_error(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "store_unavailable",
                                     "the token store is unavailable, "
                                     "try again shortly");
}


/* one reply of a batch is in: run the next step after the last one */
void
ngx_astralform_step_done(ngx_astralform_ctx_t *ctx)
{
    if (--ctx->pending) {
        return;
    }

    if (ctx->failed) {
        ctx->failed = 0;
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    ctx->next(ctx);
}


/* HSET only if the field still holds what was read ("" for nothing) */
static const char  ngx_astralform_cas_lua[] =
    "local cur = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if (cur or '') ~= ARGV[2] then return 0 end "
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) "
    "return 1";


/*
 * Compare-and-set of one hash field: the reply is 1 when written, 0 when
 * another writer came first. A NULL handler means fire and forget.
 */
ngx_int_t
ngx_astralform_hash_cas(ngx_astralform_ctx_t *ctx, ngx_str_t *key,
    ngx_str_t *field, ngx_str_t *expect, ngx_str_t *value,
    ngx_astralform_redis_pt handler, void *data)
{
    ngx_str_t  argv[7];

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_cas_lua;
    argv[1].len = sizeof(ngx_astralform_cas_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[3] = *key;
    argv[4] = *field;
    argv[5] = *expect;
    argv[6] = *value;

    if (ngx_astralform_redis_send(ctx->request->pool,
                                  ctx->request->connection->log,
                                  handler ? handler
                                          : ngx_astralform_cas_ignore,
                                  data, 7, argv)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_astralform_cas_ignore(redisReply *reply, void *data)
{
    /* best effort: the next reader retries */
}


ngx_int_t
ngx_astralform_load_project(ngx_astralform_ctx_t *ctx,
    ngx_uint_t with_assignment, ngx_astralform_step_pt next)
{
    ngx_str_t                    argv[3];
    ngx_uint_t                   i;
    ngx_astralform_connector_t  *conn, *src;

    if (ngx_array_init(&ctx->connectors, ctx->request->pool,
                       ctx->project->connectors.nelts + 4,
                       sizeof(ngx_astralform_connector_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    src = ctx->project->connectors.elts;

    for (i = 0; i < ctx->project->connectors.nelts; i++) {
        conn = ngx_array_push(&ctx->connectors);
        if (conn == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        *conn = src[i];
    }

    ctx->next = next;

    /*
     * Held while the reads are sent: one answered from the configuration
     * cache runs its handler at once, and must not run ctx->next before
     * the other reads are out.
     */
    ctx->pending++;

    ngx_str_set(&argv[0], "HGETALL");
    if (ngx_astralform_key(ctx, &argv[1], "connectors", NULL) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_astralform_redis_config(ctx, ngx_astralform_connectors_reply, 2,
                                    argv)
        == NGX_OK
        && with_assignment && ctx->agent.len)
    {
        ngx_str_set(&argv[0], "HGET");
        if (ngx_astralform_key(ctx, &argv[1], "agents", NULL) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        argv[2] = ctx->agent;

        (void) ngx_astralform_redis_config(ctx,
                                           ngx_astralform_assignment_reply,
                                           3, argv);
    }

    if (ctx->failed && ctx->pending == 1) {
        /* nothing is in flight: answered now, as ngx_astralform_wait() */
        ctx->pending = 0;
        return ngx_astralform_wait(ctx);
    }

    /* the hold: ctx->next runs here if every read was answered already */
    ngx_astralform_step_done(ctx);

    return NGX_DONE;
}


/* like ngx_astralform_redis(), for a configuration read the cache may hold */
static ngx_int_t
ngx_astralform_redis_config(ngx_astralform_ctx_t *ctx,
    ngx_astralform_redis_pt handler, ngx_uint_t argc, ngx_str_t *argv)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    /* counted first: a cached answer completes its step before returning */
    ctx->pending++;

    if (ngx_astralform_redis_cached(r->pool, r->connection->log, handler,
                                    ctx, argc, argv)
        == NGX_ERROR)
    {
        ctx->pending--;
        ctx->failed = 1;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_astralform_connectors_reply(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    size_t                       i;
    ngx_astralform_connector_t  *conn;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ctx->failed = 1;
        ngx_astralform_step_done(ctx);
        return;
    }

    for (i = 0; i + 1 < reply->elements; i += 2) {
        conn = ngx_array_push(&ctx->connectors);
        if (conn == NULL) {
            ctx->failed = 1;
            break;
        }

        if (ngx_astralform_connector_parse(ctx, conn, reply->element[i],
                                           reply->element[i + 1])
            != NGX_OK)
        {
            ctx->connectors.nelts--;
        }
    }

    ngx_astralform_step_done(ctx);
}


static void
ngx_astralform_assignment_reply(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    size_t        i;
    json_t       *json, *v;
    ngx_str_t    *id;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ctx->failed = 1;
        ngx_astralform_step_done(ctx);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_astralform_config_assignment(ctx);
        ngx_astralform_step_done(ctx);
        return;
    }

    json = json_loadb(reply->str, reply->len, 0, NULL);

    ctx->assignment = ngx_array_create(ctx->request->pool, 4,
                                       sizeof(ngx_str_t));

    if (json_is_array(json) && ctx->assignment != NULL) {
        ctx->assignment_set = 1;

        json_array_foreach(json, i, v) {
            id = ngx_array_push(ctx->assignment);
            if (id == NULL
                || ngx_astralform_strdup(ctx->request->pool, id,
                                         json_string_value(v))
                   != NGX_OK)
            {
                ctx->failed = 1;
                break;
            }
        }
    }

    json_decref(json);

    ngx_astralform_step_done(ctx);
}


/*
 * Without an assignment in Redis, the agent is assigned the config
 * connectors whose agents= name it; when none does, it sees them all.
 */
static void
ngx_astralform_config_assignment(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t                   *agent, *id;
    ngx_uint_t                   i, j;
    ngx_astralform_connector_t  *conn;

    conn = ctx->project->connectors.elts;

    for (i = 0; i < ctx->project->connectors.nelts; i++) {
        if (conn[i].agents == NULL) {
            continue;
        }

        agent = conn[i].agents->elts;

        for (j = 0; j < conn[i].agents->nelts; j++) {
            if (agent[j].len != ctx->agent.len
                || ngx_strncmp(agent[j].data, ctx->agent.data,
                               ctx->agent.len) != 0)
            {
                continue;
            }

            if (ctx->assignment == NULL) {
                ctx->assignment = ngx_array_create(ctx->request->pool, 4,
                                                   sizeof(ngx_str_t));
                if (ctx->assignment == NULL) {
                    ctx->failed = 1;
                    return;
                }
            }

            id = ngx_array_push(ctx->assignment);
            if (id == NULL) {
                ctx->failed = 1;
                return;
            }

            *id = conn[i].id;
        }
    }
}


static ngx_int_t
ngx_astralform_connector_parse(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, redisReply *id, redisReply *value)
{
    json_t      *json, *v;
    size_t       i;
    ngx_str_t    slug, *scope;
    ngx_pool_t  *pool;

    pool = ctx->request->pool;
    ngx_memzero(conn, sizeof(ngx_astralform_connector_t));

    if (id->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    json = json_loadb(value->str, value->len, 0, NULL);
    if (!json_is_object(json)) {
        json_decref(json);
        return NGX_ERROR;
    }

    /* as stored: a re-seal writes only over what was read */
    conn->stored.data = ngx_pnalloc(pool, value->len);
    if (conn->stored.data == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }
    conn->stored.len = value->len;
    ngx_memcpy(conn->stored.data, value->str, value->len);

    slug.data = (u_char *) ngx_astralform_json_value(json, "connector_slug");
    slug.len = slug.data ? ngx_strlen(slug.data) : 0;

    conn->def = ngx_astralform_catalog_find(&ctx->amcf->catalog, &slug);

    if (conn->def == NULL) {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: project \"%V\" has connector \"%*s\" of "
                      "slug \"%V\" the catalog no longer has",
                      &ctx->project->id, (size_t) id->len, id->str, &slug);
        json_decref(json);
        return NGX_ERROR;
    }

    conn->id.data = ngx_pnalloc(pool, id->len);
    if (conn->id.data == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }
    conn->id.len = id->len;
    ngx_memcpy(conn->id.data, id->str, id->len);

    if (ngx_astralform_pstr(pool, &conn->client_id, json, "oauth_client_id")
        != NGX_OK
        || ngx_astralform_pstr(pool, &conn->sealed_secret, json,
                               "oauth_client_secret") != NGX_OK
        || ngx_astralform_pstr(pool, &conn->sealed_api_key, json, "api_key")
           != NGX_OK
        || ngx_astralform_pstr(pool, &conn->mcp_url, json, "mcp_url")
           != NGX_OK)
    {
        json_decref(json);
        return NGX_ERROR;
    }

    conn->require_auth = !json_is_false(json_object_get(json,
                                                        "require_auth"));
    conn->allow_end_user_auth = !json_is_false(
                                json_object_get(json, "allow_end_user_auth"));

    v = json_object_get(json, "oauth_scopes");

    if (json_is_array(v)) {
        conn->scopes = ngx_array_create(pool, json_array_size(v) + 1,
                                        sizeof(ngx_str_t));
        if (conn->scopes == NULL) {
            json_decref(json);
            return NGX_ERROR;
        }

        for (i = 0; i < json_array_size(v); i++) {
            scope = ngx_array_push(conn->scopes);
            if (scope == NULL
                || ngx_astralform_strdup(pool, scope,
                       json_string_value(json_array_get(v, i))) != NGX_OK)
            {
                json_decref(json);
                return NGX_ERROR;
            }
        }
    }

    json_decref(json);

    return NGX_OK;
}


ngx_astralform_connector_t *
ngx_astralform_find_connector(ngx_astralform_ctx_t *ctx, ngx_str_t *id)
{
    ngx_uint_t                   i;
    ngx_astralform_connector_t  *conn;

    conn = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (conn[i].id.len == id->len
            && ngx_strncmp(conn[i].id.data, id->data, id->len) == 0)
        {
            return &conn[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_astralform_connector_not_found(ngx_astralform_ctx_t *ctx, ngx_str_t *id)
{
    return ngx_astralform_send_error(ctx, NGX_HTTP_NOT_FOUND,
                                     "connector_not_found",
                                     "the project has no connector \"%V\"",
                                     id);
}


/* whether the request's agent may see and call the connector's tools */
ngx_uint_t
ngx_astralform_connector_visible(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    ngx_str_t   *id;
    ngx_uint_t   i;

    if (ctx->assignment == NULL) {
        return 1;
    }

    id = ctx->assignment->elts;

    for (i = 0; i < ctx->assignment->nelts; i++) {
        if (id[i].len == conn->id.len
            && ngx_strncmp(id[i].data, conn->id.data, id[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the API's view of an enabled connector: never a secret */
json_t *
ngx_astralform_connector_json(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    size_t                 i;
    json_t                *json, *scopes, *tools, *tool;
    ngx_astralform_def_t  *def;

    def = conn->def;

    if (conn->scopes != NULL) {
        scopes = ngx_astralform_str_array(conn->scopes);

    } else if (def->oauth != NULL
               && json_is_array(json_object_get(def->oauth,
                                                "default_scopes")))
    {
        scopes = json_deep_copy(json_object_get(def->oauth,
                                                "default_scopes"));

    } else {
        scopes = json_array();
    }

    tools = json_array();

    json_array_foreach(def->tools, i, tool) {
        json_array_append(tools, json_object_get(tool, "name"));
    }

    json = json_pack("{s:o, s:s%, s:s%, s:s, s:O?, s:b, s:b, s:b, s:o, "
                     "s:o, s:b, s:b, s:o, s:s, s:o}",
                     "id", ngx_astralform_json_string(&conn->id),
                     "connector_slug", def->slug.data, def->slug.len,
                     "name", def->name.data, def->name.len,
                     "type", ngx_astralform_type_name(def->type),
                     "category", json_object_get(def->json, "category"),
                     "is_enabled", 1,
                     "require_auth", (int) conn->require_auth,
                     "allow_end_user_auth", (int) conn->allow_end_user_auth,
                     "oauth_client_id",
                     conn->client_id.len
                         ? ngx_astralform_json_string(&conn->client_id)
                         : json_null(),
                     "oauth_scopes", scopes,
                     "has_secret",
                     (int) (conn->client_secret.len
                            || conn->sealed_secret.len),
                     "has_api_key",
                     (int) (conn->api_key.len || conn->sealed_api_key.len),
                     "mcp_url",
                     conn->mcp_url.len
                         ? ngx_astralform_json_string(&conn->mcp_url)
                         : json_null(),
                     "source", conn->from_config ? "config" : "api",
                     "tools", tools);

    if (json != NULL && conn->agents != NULL) {
        json_object_set_new(json, "agents",
                            ngx_astralform_str_array(conn->agents));
    }

    return json;
}


/* the tool definitions an agent sees for one catalog connector */
json_t *
ngx_astralform_connector_tools(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    size_t   i;
    json_t  *list, *tool;

    list = json_array();

    json_array_foreach(conn->def->tools, i, tool) {
        json_array_append_new(list, json_pack("{s:O, s:O, s:O, s:o}",
            "name", json_object_get(tool, "name"),
            "description", json_object_get(tool, "description"),
            "input_schema", json_object_get(tool, "input_schema"),
            "connector", ngx_astralform_json_string(&conn->id)));
    }

    return list;
}


/* the additional authenticated data that binds a sealed blob to its owner */
ngx_int_t
ngx_astralform_aad(ngx_pool_t *pool, ngx_str_t *out, ngx_str_t *project,
    ngx_str_t *connector, const char *what, ngx_str_t *user)
{
    ngx_str_t  none = ngx_null_string;

    if (user == NULL) {
        user = &none;
    }

    out->data = ngx_pnalloc(pool, sizeof("astralform|||||") + project->len
                                  + connector->len + ngx_strlen(what)
                                  + user->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    /* lengths-free is safe: ids cannot hold "|" */
    out->len = ngx_sprintf(out->data, "astralform|%V|%V|%s|%V", project,
                           connector, what, user) - out->data;

    return NGX_OK;
}


ngx_int_t
ngx_astralform_strdup(ngx_pool_t *pool, ngx_str_t *dst, const char *src)
{
    if (src == NULL) {
        ngx_str_null(dst);
        return NGX_OK;
    }

    dst->len = ngx_strlen(src);
    dst->data = ngx_pnalloc(pool, dst->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, dst->len + 1);

    return NGX_OK;
}


ngx_int_t
ngx_astralform_json_strings(ngx_pool_t *pool, json_t *json,
    ngx_astralform_json_str_t *fields)
{
    if (!json_is_object(json)) {
        return NGX_ERROR;
    }

    for ( /* void */ ; fields->key != NULL; fields++) {
        if (ngx_astralform_strdup(pool, fields->dst,
                                  ngx_astralform_json_value(json,
                                                            fields->key))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


json_t *
ngx_astralform_json_string(ngx_str_t *s)
{
    return json_stringn((const char *) s->data, s->len);
}


static ngx_int_t
ngx_astralform_pstr(ngx_pool_t *pool, ngx_str_t *dst, json_t *json,
    const char *key)
{
    return ngx_astralform_strdup(pool, dst,
                                 ngx_astralform_json_value(json, key));
}


static json_t *
ngx_astralform_str_array(ngx_array_t *a)
{
    json_t      *list;
    ngx_str_t   *s;
    ngx_uint_t   i;

    list = json_array();
    s = a->elts;

    for (i = 0; i < a->nelts; i++) {
        json_array_append_new(list, ngx_astralform_json_string(&s[i]));
    }

    return list;
}


/*
 * A context for work that outlives the request that started it (a
 * refresh, a revocation drain): its "request" is only a pool and a log,
 * which is all the store, sealing and outbound HTTP use.
 */
ngx_astralform_ctx_t *
ngx_astralform_ctx_detached(ngx_pool_t *pool, ngx_astralform_main_conf_t *amcf,
    ngx_astralform_project_t *project)
{
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_astralform_ctx_t  *ctx;

    ctx = ngx_pcalloc(pool, sizeof(ngx_astralform_ctx_t));
    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));

    if (ctx == NULL || r == NULL || c == NULL) {
        return NULL;
    }

    c->fd = (ngx_socket_t) -1;
    c->log = pool->log;
    r->pool = pool;
    r->connection = c;

    ctx->request = r;
    ctx->amcf = amcf;
    ctx->project = project;

    return ctx;
}


ngx_astralform_project_t *
ngx_astralform_project_find(ngx_astralform_main_conf_t *amcf, ngx_str_t *id)
{
    ngx_uint_t                 i;
    ngx_astralform_project_t  *project;

    project = amcf->projects.elts;

    for (i = 0; i < amcf->projects.nelts; i++) {
        if (project[i].id.len == id->len
            && ngx_strncmp(project[i].id.data, id->data, id->len) == 0)
        {
            return &project[i];
        }
    }

    return NULL;
}


/* a deep copy of a connector into pool (the catalog entry is shared) */
ngx_int_t
ngx_astralform_connector_copy(ngx_pool_t *pool,
    ngx_astralform_connector_t *dst, ngx_astralform_connector_t *src)
{
    ngx_str_t   *s, *d;
    ngx_uint_t   i;

    *dst = *src;

    if (ngx_astralform_str_copy(pool, &dst->id, &src->id) != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->client_id, &src->client_id)
           != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->client_secret,
                                   &src->client_secret) != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->api_key, &src->api_key)
           != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->sealed_secret,
                                   &src->sealed_secret) != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->sealed_api_key,
                                   &src->sealed_api_key) != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->mcp_url, &src->mcp_url)
           != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->stored, &src->stored)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (src->scopes == NULL) {
        return NGX_OK;
    }

    dst->scopes = ngx_array_create(pool, src->scopes->nelts + 1,
                                   sizeof(ngx_str_t));
    if (dst->scopes == NULL) {
        return NGX_ERROR;
    }

    s = src->scopes->elts;

    for (i = 0; i < src->scopes->nelts; i++) {
        d = ngx_array_push(dst->scopes);
        if (d == NULL || ngx_astralform_str_copy(pool, d, &s[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_astralform_str_copy(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
{
    dst->data = ngx_pnalloc(pool, src->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    /* an empty string may have no data at all (memcpy from NULL is UB) */
    if (src->len) {
        ngx_memcpy(dst->data, src->data, src->len);
    }

    dst->data[src->len] = '\0';
    dst->len = src->len;

    return NGX_OK;
}
