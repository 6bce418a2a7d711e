/*
 * Quotas: bounds on what one project may store in the shared Redis, so
 * that one tenant's agent key cannot fill it for every other.
 *
 *   astralform_max_credentials       end users' stored credentials (tokens
 *                                    and own API keys) of a project, over
 *                                    all its connectors
 *   astralform_max_pending_sessions  connect sessions not yet opened nor
 *                                    expired, per project
 *   astralform_max_value_size        one caller-given value (an end user's
 *                                    API key, a return_url)
 *
 * The counts live in Redis and are checked by the script that writes, so
 * they hold across workers and instances and two writers cannot both take
 * the last place. Credentials are counted where they are stored (the HLEN
 * of every {P}:tokens:<C> hash: nothing to drift); sessions in a sorted set
 * {P}:sessions of session id -> expiry (Redis time, in ms), trimmed by the
 * same script and left by a session when it is opened.
 */


#include "ngx_astralform.h"


typedef struct {
    const char                   *what;
    const char                   *directive;
    size_t                        offset;     /* in the main conf */
} ngx_astralform_quota_t;


static void ngx_astralform_quota_ignore(redisReply *reply, void *data);


/* by NGX_ASTRALFORM_QUOTA_* */
static ngx_astralform_quota_t  ngx_astralform_quotas[] = {
    { "end-user credentials", "astralform_max_credentials",
      offsetof(ngx_astralform_main_conf_t, max_credentials) },
    { "pending connect sessions", "astralform_max_pending_sessions",
      offsetof(ngx_astralform_main_conf_t, max_pending_sessions) }
};


/*
 * HSET KEYS[1] ARGV[1] ARGV[2] when the field is there already (a
 * replacement) or the project holds fewer than ARGV[3] credentials in
 * KEYS[1..n]; the reply is HSET's, or -1 when the quota is full.
 */
static const char  ngx_astralform_quota_hset_lua[] =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then "
    "  local n = 0 "
    "  for i = 1, #KEYS do n = n + redis.call('HLEN', KEYS[i]) end "
    "  if n >= tonumber(ARGV[3]) then return -1 end "
    "end "
    "return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])";


/*
 * SET KEYS[1] ARGV[1] PX ARGV[2] when fewer than ARGV[3] sessions of the
 * project are pending in KEYS[2]; then the session ARGV[4] is pending
 * until it expires. The reply is 1, or 0 when the quota is full. Redis's
 * clock, not the instance's: every instance counts the same sessions.
 */
static const char  ngx_astralform_quota_session_lua[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local ttl = tonumber(ARGV[2]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) "
    "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl) "
    "redis.call('ZADD', KEYS[2], now + ttl, ARGV[4]) "
    "redis.call('PEXPIRE', KEYS[2], ttl) "
    "return 1";


/*
 * Stores a new or replaced credential: key is {P}:tokens:<C>, field the
 * user. Needs the project's connectors loaded (ngx_astralform_load_project)
 * to count what every connector holds.
 */
ngx_int_t
ngx_astralform_quota_hset(ngx_astralform_ctx_t *ctx, ngx_str_t *key,
    ngx_str_t *field, ngx_str_t *value, ngx_astralform_redis_pt handler,
    void *data)
{
    ngx_str_t                   *argv, *k;
    ngx_uint_t                   i, n, nkeys;
    ngx_pool_t                  *pool;
    ngx_astralform_connector_t  *conn;

    pool = ctx->request->pool;
    conn = ctx->connectors.elts;

    /* EVAL script numkeys KEYS[1] others... field value max */
    argv = ngx_palloc(pool, (ctx->connectors.nelts + 7) * sizeof(ngx_str_t));
    if (argv == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_quota_hset_lua;
    argv[1].len = sizeof(ngx_astralform_quota_hset_lua) - 1;
    argv[3] = *key;

    n = 4;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (conn[i].def->type == NGX_ASTRALFORM_REMOTE_MCP) {
            continue;
        }

        k = &argv[n];

        if (ngx_astralform_key(ctx, k, "tokens", &conn[i].id) != NGX_OK) {
            return NGX_ERROR;
        }

        if (k->len == key->len && ngx_strncmp(k->data, key->data, k->len) == 0)
        {
            continue;
        }

        n++;
    }

    nkeys = n - 3;

    argv[2].data = ngx_pnalloc(pool, NGX_INT_T_LEN);
    argv[n + 2].data = ngx_pnalloc(pool, NGX_INT_T_LEN);
    if (argv[2].data == NULL || argv[n + 2].data == NULL) {
        return NGX_ERROR;
    }

    argv[2].len = ngx_sprintf(argv[2].data, "%ui", nkeys) - argv[2].data;
    argv[n] = *field;
    argv[n + 1] = *value;
    argv[n + 2].len = ngx_sprintf(argv[n + 2].data, "%ui",
                                  ctx->amcf->max_credentials)
                      - argv[n + 2].data;

    if (ngx_astralform_redis_send(pool, ctx->request->connection->log,
                                  handler, data, n + 3, argv)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* stores a connect session {P}:session:<sid> for astralform_session_ttl */
ngx_int_t
ngx_astralform_quota_session(ngx_astralform_ctx_t *ctx, ngx_str_t *sid,
    ngx_str_t *value, ngx_astralform_redis_pt handler, void *data)
{
    ngx_str_t    argv[9];
    ngx_pool_t  *pool;

    pool = ctx->request->pool;

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_quota_session_lua;
    argv[1].len = sizeof(ngx_astralform_quota_session_lua) - 1;
    ngx_str_set(&argv[2], "2");
    argv[5] = *value;
    argv[6].data = ngx_pnalloc(pool, NGX_INT_T_LEN);
    argv[7].data = ngx_pnalloc(pool, NGX_INT_T_LEN);
    argv[8] = *sid;

    if (argv[6].data == NULL || argv[7].data == NULL
        || ngx_astralform_key(ctx, &argv[3], "session", sid) != NGX_OK
        || ngx_astralform_key(ctx, &argv[4], "sessions", NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    argv[6].len = ngx_sprintf(argv[6].data, "%M", ctx->amcf->session_ttl)
                  - argv[6].data;
    argv[7].len = ngx_sprintf(argv[7].data, "%ui",
                              ctx->amcf->max_pending_sessions)
                  - argv[7].data;

    if (ngx_astralform_redis_send(pool, ctx->request->connection->log,
                                  handler, data, 9, argv)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the session was opened: it no longer counts (best effort) */
void
ngx_astralform_quota_session_done(ngx_astralform_ctx_t *ctx, ngx_str_t *sid)
{
    ngx_str_t  argv[3];

    ngx_str_set(&argv[0], "ZREM");
    argv[2] = *sid;

    if (ngx_astralform_key(ctx, &argv[1], "sessions", NULL) != NGX_OK) {
        return;
    }

    (void) ngx_astralform_redis_send(ctx->request->pool,
                                     ctx->request->connection->log,
                                     ngx_astralform_quota_ignore, NULL, 3,
                                     argv);
}


static void
ngx_astralform_quota_ignore(redisReply *reply, void *data)
{
    /* a left-over member expires with its score */
}


void
ngx_astralform_quota_log(ngx_astralform_ctx_t *ctx, ngx_uint_t which)
{
    ngx_astralform_quota_t  *q;

    q = &ngx_astralform_quotas[which];

    ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                  "astralform: project \"%V\" reached \"%s %ui\"",
                  &ctx->project->id, q->directive,
                  *(ngx_uint_t *) ((char *) ctx->amcf + q->offset));
}


ngx_int_t
ngx_astralform_quota_exceeded(ngx_astralform_ctx_t *ctx, ngx_uint_t which)
{
    ngx_uint_t               max;
    ngx_astralform_quota_t  *q;

    q = &ngx_astralform_quotas[which];
    max = *(ngx_uint_t *) ((char *) ctx->amcf + q->offset);

    ngx_astralform_quota_log(ctx, which);

    return ngx_astralform_send_error_with(ctx, NGX_HTTP_TOO_MANY_REQUESTS,
               json_pack("{s:s, s:I}", "limit", q->directive, "max",
                         (json_int_t) max),
               "quota_exceeded",
               "the project holds %ui %s, its limit: remove some, or raise "
               "\"%s\" in nginx.conf", max, q->what, q->directive);
}


ngx_int_t
ngx_astralform_value_too_large(ngx_astralform_ctx_t *ctx, const char *member)
{
    return ngx_astralform_send_error_with(ctx,
               NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
               json_pack("{s:s, s:I}", "limit", "astralform_max_value_size",
                         "max", (json_int_t) ctx->amcf->max_value_size),
               "value_too_large",
               "\"%s\" is longer than %uz bytes (astralform_max_value_size)",
               member, ctx->amcf->max_value_size);
}
