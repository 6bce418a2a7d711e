/*
 * Durable revocation at the provider of tokens deleted here.
 *
 * A deletion (disabling a connector, a user's disconnect) moves the
 * tokens, sealed as they were (AAD: project, connector, user), out of the
 * live hash into a batch, in the same script: a RENAME of the whole hash,
 * so that no single command is long at any size. Then:
 *
 *   {P}:revoke_batches        zset  batch -> when it may be worked next (ms,
 *                                   Redis' clock): due, or its lease
 *   {P}:revoke_batch:<B>      hash  meta (connector, slug, client id, the
 *                                   sealed client secret), passes, t:<user>
 *                                   (failed tries)
 *   {P}:revoke_tokens:<B>     hash  user -> the sealed token record
 *   {P}:revocations:<C>       hash  total, revoked, failed: the progress
 *
 * Every worker of every instance looks for a due batch of each project
 * once a second. Claiming one sets its score to the end of a lease, which
 * the worker renews while it works; a worker that dies leaves the batch to
 * the next one after the lease. The batch is read with HSCAN, a chunk at a
 * time, a few revocations in flight; each chunk's outcomes are written
 * back in one short script: revoked and refused-for-good entries leave the
 * hash, the others count a try. After a pass, a batch with entries left is
 * due again after a backoff; an entry that failed NGX_ASTRALFORM_REVOKE_TRIES
 * times is given up (and counted failed).
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_revocations.h"


#define NGX_ASTRALFORM_REVOKE_TICK       1000
#define NGX_ASTRALFORM_REVOKE_LEASE      "30000"
#define NGX_ASTRALFORM_REVOKE_RENEW      10000
#define NGX_ASTRALFORM_REVOKE_CHUNK      "64"
#define NGX_ASTRALFORM_REVOKE_RUNNING    8
#define NGX_ASTRALFORM_REVOKE_TRIES      "5"
#define NGX_ASTRALFORM_REVOKE_MAX_JOBS   240


typedef struct ngx_astralform_drain_s  ngx_astralform_drain_t;


typedef struct {
    ngx_str_t                     user;
    ngx_astralform_revocation_t   rv;
    ngx_astralform_drain_t       *drain;
    u_char                        outcome;      /* 'r', 'f', 'a'; 0 */
} ngx_astralform_revoke_job_t;


/* one batch claimed by this worker */
struct ngx_astralform_drain_s {
    ngx_pool_t                   *pool;
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_connector_t    conn;
    ngx_str_t                     id;
    ngx_str_t                     tokens;
    ngx_str_t                     batch;
    ngx_str_t                     batches;
    ngx_str_t                     counters;
    ngx_str_t                     cursor;
    ngx_pool_t                   *chunk;        /* of the jobs in flight */
    ngx_array_t                  *jobs;
    ngx_str_t                     secret;       /* opened for the chunk */
    ngx_uint_t                    next;
    ngx_uint_t                    running;
    ngx_event_t                   renew;
    ngx_connection_t              dummy;
};


typedef struct {
    ngx_astralform_main_conf_t   *amcf;
    ngx_event_t                   timer;
    ngx_connection_t              dummy;
    ngx_uint_t                    project;      /* the next to look at */
    ngx_uint_t                    looked;       /* this tick */
    ngx_astralform_drain_t       *drain;        /* the batch in hand */
} ngx_astralform_drainer_t;


static void ngx_astralform_revocations_tick(ngx_event_t *ev);
static void ngx_astralform_revocations_look(void);
static void ngx_astralform_revocations_claimed(redisReply *reply,
    void *data);
static ngx_int_t ngx_astralform_drain_init(ngx_astralform_drain_t *d,
    redisReply *id, redisReply *meta);
static void ngx_astralform_drain_scan(ngx_astralform_drain_t *d);
static void ngx_astralform_drain_scanned(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_drain_jobs(ngx_astralform_drain_t *d,
    redisReply *fields);
static void ngx_astralform_drain_pump(ngx_astralform_drain_t *d);
static void ngx_astralform_drain_done(ngx_astralform_revocation_t *rv);
static void ngx_astralform_drain_settle(ngx_astralform_drain_t *d);
static void ngx_astralform_drain_settled(redisReply *reply, void *data);
static void ngx_astralform_drain_passed(redisReply *reply, void *data);
static void ngx_astralform_drain_renew(ngx_event_t *ev);
static void ngx_astralform_drain_hand_back(ngx_astralform_drain_t *d);
static void ngx_astralform_drain_handed(redisReply *reply, void *data);
static void ngx_astralform_drain_release(ngx_astralform_drain_t *d);
static void ngx_astralform_drain_wipe(ngx_astralform_drain_t *d);
static void ngx_astralform_revocations_ignore(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_reply_copy(ngx_pool_t *pool, ngx_str_t *dst,
    redisReply *reply);
static void ngx_astralform_revocations_progress(redisReply *reply,
    void *data);


static ngx_astralform_drainer_t  ngx_astralform_drainer;


/* the first due batch, leased to the caller: {id, meta} or nil */
static const char  ngx_astralform_claim_lua[] =
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, "
    "                       'LIMIT', 0, 1) "
    "if #ids == 0 then return false end "
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ids[1]) "
    "local meta = redis.call('HGET', ARGV[2] .. 'revoke_batch:' .. ids[1], "
    "                        'meta') "
    "return {ids[1], meta or ''}";


/*
 * A chunk's outcomes: KEYS tokens, batch, counters, batches; ARGV id,
 * lease, tries, then user, outcome pairs ('r' revoked, 'f' failed for
 * good, 'a' again later). Answers the entries left.
 */
static const char  ngx_astralform_settle_lua[] =
    "local revoked, failed = 0, 0 "
    "for i = 4, #ARGV, 2 do "
    "  local u, r = ARGV[i], ARGV[i + 1] "
    "  if r == 'a' and redis.call('HINCRBY', KEYS[2], 't:' .. u, 1) "
    "                  >= tonumber(ARGV[3]) then "
    "    r = 'f' "
    "  end "
    "  if r ~= 'a' then "
    "    if redis.call('HDEL', KEYS[1], u) == 1 then "
    "      if r == 'r' then revoked = revoked + 1 "
    "      else failed = failed + 1 end "
    "    end "
    "    redis.call('HDEL', KEYS[2], 't:' .. u) "
    "  end "
    "end "
    "if revoked > 0 then "
    "  redis.call('HINCRBY', KEYS[3], 'revoked', revoked) "
    "end "
    "if failed > 0 then redis.call('HINCRBY', KEYS[3], 'failed', failed) end "
    "local t = redis.call('TIME') "
    "redis.call('ZADD', KEYS[4], 'XX', "
    "           t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]), "
    "           ARGV[1]) "
    "return redis.call('HLEN', KEYS[1])";


/* after a pass: done, or due again after a backoff that grows per pass */
static const char  ngx_astralform_pass_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then "
    "  redis.call('ZREM', KEYS[4], ARGV[1]) "
    "  redis.call('DEL', KEYS[2]) "
    "  return 0 "
    "end "
    "local n = redis.call('HINCRBY', KEYS[2], 'passes', 1) "
    "local t = redis.call('TIME') "
    "redis.call('ZADD', KEYS[4], 'XX', t[1] * 1000 "
    "           + math.floor(t[2] / 1000) + math.min(60000, 500 * 2 ^ n), "
    "           ARGV[1]) "
    "return 1";


/* the lease, longer */
static const char  ngx_astralform_lease_lua[] =
    "local t = redis.call('TIME') "
    "return redis.call('ZADD', KEYS[1], 'XX', t[1] * 1000 "
    "                  + math.floor(t[2] / 1000) + tonumber(ARGV[1]), "
    "                  ARGV[2])";


ngx_int_t
ngx_astralform_spool_init(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_spool_t *spool)
{
    char                  *text;
    json_t                *meta;
    ngx_pool_t            *pool;
    ngx_astralform_def_t  *def;

    pool = ctx->request->pool;
    def = conn->def;

    if (def->type == NGX_ASTRALFORM_OAUTH && def->revoke_url.len) {
        ngx_str_set(&spool->revocable, "1");

    } else {
        ngx_str_set(&spool->revocable, "0");
    }

    /* the client secret goes sealed as it is (AAD: project, connector) */

    meta = json_pack("{s:s%, s:s%, s:s%, s:s%}",
                     "connector", conn->id.data, conn->id.len,
                     "slug", def->slug.data, def->slug.len,
                     "client_id",
                     conn->client_id.len ? (char *) conn->client_id.data : "",
                     conn->client_id.len,
                     "secret",
                     conn->sealed_secret.len
                         ? (char *) conn->sealed_secret.data : "",
                     conn->sealed_secret.len);

    text = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_decref(meta);

    if (text == NULL) {
        return NGX_ERROR;
    }

    if (ngx_astralform_strdup(pool, &spool->meta, text) != NGX_OK) {
        ngx_free(text);
        return NGX_ERROR;
    }

    ngx_free(text);

    if (ngx_astralform_random_token(pool, &spool->id, 12) != NGX_OK
        || ngx_astralform_key(ctx, &spool->tokens, "revoke_tokens",
                              &spool->id) != NGX_OK
        || ngx_astralform_key(ctx, &spool->batch, "revoke_batch", &spool->id)
           != NGX_OK
        || ngx_astralform_key(ctx, &spool->batches, "revoke_batches", NULL)
           != NGX_OK
        || ngx_astralform_key(ctx, &spool->counters, "revocations",
                              &conn->id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_astralform_revocations_init_process(ngx_cycle_t *cycle)
{
    ngx_astralform_drainer_t  *dr = &ngx_astralform_drainer;

    ngx_memzero(dr, sizeof(ngx_astralform_drainer_t));

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    dr->amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                   ngx_astralform_module);

    dr->dummy.fd = (ngx_socket_t) -1;
    dr->timer.handler = ngx_astralform_revocations_tick;
    dr->timer.data = &dr->dummy;
    dr->timer.log = cycle->log;
    dr->timer.cancelable = 1;

    ngx_add_timer(&dr->timer, NGX_ASTRALFORM_REVOKE_TICK);

    return NGX_OK;
}


void
ngx_astralform_revocations_kick(void)
{
    ngx_astralform_drainer_t  *dr = &ngx_astralform_drainer;

    if (dr->amcf == NULL || dr->drain != NULL || ngx_exiting) {
        return;
    }

    if (dr->timer.timer_set) {
        ngx_del_timer(&dr->timer);
    }

    ngx_add_timer(&dr->timer, 1);
}


static void
ngx_astralform_revocations_tick(ngx_event_t *ev)
{
    ngx_astralform_drainer_t  *dr = &ngx_astralform_drainer;

    if (ngx_exiting || dr->drain != NULL) {
        return;
    }

    dr->looked = 0;

    ngx_astralform_revocations_look();
}


/* the next project in turn; after a round, the next tick */
static void
ngx_astralform_revocations_look(void)
{
    ngx_str_t                  argv[6];
    ngx_pool_t                *pool;
    ngx_astralform_drain_t    *d;
    ngx_astralform_project_t  *project;
    ngx_astralform_drainer_t  *dr = &ngx_astralform_drainer;

    if (dr->looked++ >= dr->amcf->projects.nelts || ngx_exiting) {
        if (!ngx_exiting) {
            ngx_add_timer(&dr->timer, NGX_ASTRALFORM_REVOKE_TICK);
        }
        return;
    }

    project = dr->amcf->projects.elts;
    project = &project[dr->project++ % dr->amcf->projects.nelts];

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        ngx_add_timer(&dr->timer, NGX_ASTRALFORM_REVOKE_TICK);
        return;
    }

    d = ngx_pcalloc(pool, sizeof(ngx_astralform_drain_t));
    if (d == NULL) {
        goto failed;
    }

    d->pool = pool;
    d->ctx = ngx_astralform_ctx_detached(pool, dr->amcf, project);

    if (d->ctx == NULL
        || ngx_astralform_key(d->ctx, &d->batches, "revoke_batches", NULL)
           != NGX_OK
        || ngx_astralform_key(d->ctx, &argv[5], "", NULL) != NGX_OK)
    {
        goto failed;
    }

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_claim_lua;
    argv[1].len = sizeof(ngx_astralform_claim_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[3] = d->batches;
    ngx_str_set(&argv[4], NGX_ASTRALFORM_REVOKE_LEASE);

    if (ngx_astralform_redis_send(pool, pool->log,
                                  ngx_astralform_revocations_claimed, d, 6,
                                  argv)
        != NULL)
    {
        return;
    }

failed:

    ngx_destroy_pool(pool);
    ngx_add_timer(&dr->timer, NGX_ASTRALFORM_REVOKE_TICK);
}


static void
ngx_astralform_revocations_claimed(redisReply *reply, void *data)
{
    ngx_astralform_drain_t *d = data;

    ngx_astralform_drainer_t  *dr = &ngx_astralform_drainer;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_destroy_pool(d->pool);

        if (reply == NULL) {
            ngx_add_timer(&dr->timer, NGX_ASTRALFORM_REVOKE_TICK);
            return;
        }

        ngx_astralform_revocations_look();
        return;
    }

    dr->drain = d;

    if (ngx_astralform_drain_init(d, reply->element[0], reply->element[1])
        != NGX_OK)
    {
        ngx_astralform_drain_release(d);
        return;
    }

    d->dummy.fd = (ngx_socket_t) -1;
    d->renew.handler = ngx_astralform_drain_renew;
    d->renew.data = &d->dummy;
    d->renew.log = d->pool->log;

    /*
     * Not cancelable: a worker that is shutting down finishes the chunk in
     * hand and hands the batch back, rather than leave it to the lease.
     */
    ngx_add_timer(&d->renew, NGX_ASTRALFORM_REVOKE_RENEW);

    ngx_str_set(&d->cursor, "0");

    ngx_astralform_drain_scan(d);
}


/* the connector as the batch recorded it: it may be gone by now */
static ngx_int_t
ngx_astralform_drain_init(ngx_astralform_drain_t *d, redisReply *id,
    redisReply *meta)
{
    json_t                      *json;
    ngx_str_t                    slug;
    ngx_uint_t                   i;
    ngx_pool_t                  *pool;
    ngx_astralform_connector_t  *conf;
    ngx_astralform_json_str_t    fields[] = {
        { "connector", NULL }, { "slug", NULL }, { "client_id", NULL },
        { "secret", NULL }, { NULL, NULL }
    };

    pool = d->pool;

    if (ngx_astralform_reply_copy(pool, &d->id, id) != NGX_OK) {
        return NGX_ERROR;
    }

    json = json_loadb(meta->str, meta->len, 0, NULL);

    fields[0].dst = &d->conn.id;
    fields[1].dst = &slug;
    fields[2].dst = &d->conn.client_id;
    fields[3].dst = &d->conn.sealed_secret;

    if (ngx_astralform_json_strings(pool, json, fields) != NGX_OK
        || d->conn.id.len == 0)
    {
        json_decref(json);
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "astralform: revocation batch \"%V\" has no readable "
                      "record", &d->id);
        return NGX_ERROR;
    }

    json_decref(json);

    d->conn.def = ngx_astralform_catalog_find(&d->ctx->amcf->catalog, &slug);

    /* a connector of nginx.conf: its secret is there, in the clear */

    if (d->conn.sealed_secret.len == 0) {
        conf = d->ctx->project->connectors.elts;

        for (i = 0; i < d->ctx->project->connectors.nelts; i++) {
            if (conf[i].id.len == d->conn.id.len
                && ngx_strncmp(conf[i].id.data, d->conn.id.data,
                               d->conn.id.len) == 0)
            {
                d->conn.client_secret = conf[i].client_secret;
            }
        }
    }

    if (ngx_astralform_key(d->ctx, &d->tokens, "revoke_tokens", &d->id)
        != NGX_OK
        || ngx_astralform_key(d->ctx, &d->batch, "revoke_batch", &d->id)
           != NGX_OK
        || ngx_astralform_key(d->ctx, &d->counters, "revocations",
                              &d->conn.id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_astralform_drain_scan(ngx_astralform_drain_t *d)
{
    ngx_str_t  argv[5];

    ngx_str_set(&argv[0], "HSCAN");
    argv[1] = d->tokens;
    argv[2] = d->cursor;
    ngx_str_set(&argv[3], "COUNT");
    ngx_str_set(&argv[4], NGX_ASTRALFORM_REVOKE_CHUNK);

    if (ngx_astralform_redis_send(d->pool, d->pool->log,
                                  ngx_astralform_drain_scanned, d, 5, argv)
        == NULL)
    {
        ngx_astralform_drain_release(d);
    }
}


static void
ngx_astralform_drain_scanned(redisReply *reply, void *data)
{
    ngx_astralform_drain_t *d = data;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        ngx_astralform_drain_release(d);
        return;
    }

    if (ngx_astralform_reply_copy(d->pool, &d->cursor, reply->element[0])
        != NGX_OK
        || ngx_astralform_drain_jobs(d, reply->element[1]) != NGX_OK)
    {
        ngx_astralform_drain_release(d);
        return;
    }

    ngx_astralform_drain_pump(d);
}


/* the chunk's entries, opened, in a pool of their own */
static ngx_int_t
ngx_astralform_drain_jobs(ngx_astralform_drain_t *d, redisReply *fields)
{
    size_t                        i;
    ngx_str_t                     user, blob, secret;
    ngx_int_t                     rc;
    ngx_pool_t                   *pool;
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_token_t        tok;
    ngx_astralform_revoke_job_t  *job;

    pool = ngx_create_pool(4096, d->pool->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    d->chunk = pool;
    d->next = 0;
    d->running = 0;

    ctx = ngx_astralform_ctx_detached(pool, d->ctx->amcf, d->ctx->project);
    d->jobs = ngx_array_create(pool, fields->elements / 2 + 1,
                               sizeof(ngx_astralform_revoke_job_t));

    if (ctx == NULL || d->jobs == NULL) {
        return NGX_ERROR;
    }

    ngx_str_null(&secret);
    rc = NGX_DECLINED;

    if (d->conn.def != NULL) {
        rc = ngx_astralform_connector_secret(ctx, &d->conn,
                                             "oauth_client_secret", &secret);
    }

    if (rc != NGX_OK) {
        ngx_str_null(&secret);
    }

    /* opened here, wiped with the chunk; a secret of nginx.conf is not */
    if (d->conn.client_secret.len == 0) {
        d->secret = secret;
    }

    for (i = 0; i + 1 < fields->elements
                && d->jobs->nelts < NGX_ASTRALFORM_REVOKE_MAX_JOBS; i += 2)
    {
        if (fields->element[i]->type != REDIS_REPLY_STRING
            || fields->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        job = ngx_array_push(d->jobs);
        if (job == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(job, sizeof(ngx_astralform_revoke_job_t));
        job->drain = d;

        if (ngx_astralform_reply_copy(pool, &job->user, fields->element[i])
            != NGX_OK
            || ngx_astralform_reply_copy(pool, &blob, fields->element[i + 1])
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        user = job->user;

        if (d->conn.def == NULL
            || ngx_astralform_token_open(ctx, &d->conn, &user, &blob, &tok,
                                         NULL)
               != NGX_OK)
        {
            /* nothing we can send: given up, and said so below */
            job->outcome = 'f';
            continue;
        }

        if (tok.is_api_key) {
            /* nothing to revoke at a provider */
            job->outcome = 'r';
            continue;
        }

        job->rv.pool = pool;
        job->rv.log = pool->log;
        job->rv.def = d->conn.def;
        job->rv.client_id = d->conn.client_id;
        job->rv.secret = secret;
        job->rv.access_token = tok.access_token;
        job->rv.refresh_token = tok.refresh_token;
        job->rv.timeout = d->ctx->amcf->revoke_timeout;
        job->rv.done = ngx_astralform_drain_done;
        job->rv.data = job;
    }

    return NGX_OK;
}


/* keeps a few revocations in flight; settles the chunk after the last */
static void
ngx_astralform_drain_pump(ngx_astralform_drain_t *d)
{
    ngx_astralform_revoke_job_t  *job;

    job = d->jobs->elts;

    while (d->next < d->jobs->nelts
           && d->running < NGX_ASTRALFORM_REVOKE_RUNNING)
    {
        if (job[d->next].outcome == 0) {
            if (ngx_astralform_oauth_revoke(&job[d->next].rv) == NGX_OK) {
                d->running++;

            } else {
                job[d->next].outcome = 'f';
            }
        }

        d->next++;
    }

    if (d->running == 0 && d->next == d->jobs->nelts) {
        ngx_astralform_drain_settle(d);
    }
}


static void
ngx_astralform_drain_done(ngx_astralform_revocation_t *rv)
{
    ngx_astralform_drain_t       *d;
    ngx_astralform_revoke_job_t  *job;

    job = rv->data;
    d = job->drain;

    job->outcome = rv->rc == NGX_OK ? 'r'
                   : rv->rc == NGX_DECLINED ? 'f' : 'a';

    d->running--;

    ngx_astralform_drain_pump(d);
}


static void
ngx_astralform_drain_settle(ngx_astralform_drain_t *d)
{
    ngx_str_t                    *argv;
    ngx_uint_t                    i, n, failed;
    ngx_astralform_revoke_job_t  *job;

    job = d->jobs->elts;
    n = d->jobs->nelts;
    failed = 0;

    if (n == 0) {
        ngx_astralform_drain_settled(NULL, d);
        return;
    }

    argv = ngx_palloc(d->chunk, (10 + 2 * n) * sizeof(ngx_str_t));
    if (argv == NULL) {
        ngx_astralform_drain_release(d);
        return;
    }

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_settle_lua;
    argv[1].len = sizeof(ngx_astralform_settle_lua) - 1;
    ngx_str_set(&argv[2], "4");
    argv[3] = d->tokens;
    argv[4] = d->batch;
    argv[5] = d->counters;
    argv[6] = d->batches;
    argv[7] = d->id;
    ngx_str_set(&argv[8], NGX_ASTRALFORM_REVOKE_LEASE);
    ngx_str_set(&argv[9], NGX_ASTRALFORM_REVOKE_TRIES);

    for (i = 0; i < n; i++) {
        argv[10 + 2 * i] = job[i].user;
        argv[11 + 2 * i].data = &job[i].outcome;
        argv[11 + 2 * i].len = 1;

        if (job[i].outcome == 'f') {
            failed++;
        }
    }

    if (failed) {
        ngx_log_error(NGX_LOG_WARN, d->pool->log, 0,
                      "astralform: %ui tokens of connector \"%V\" cannot be "
                      "revoked at the provider (deleted here)", failed,
                      &d->conn.id);
    }

    if (ngx_astralform_redis_send(d->chunk, d->pool->log,
                                  ngx_astralform_drain_settled, d,
                                  10 + 2 * n, argv)
        == NULL)
    {
        ngx_astralform_drain_release(d);
    }
}


static void
ngx_astralform_drain_settled(redisReply *reply, void *data)
{
    ngx_astralform_drain_t *d = data;

    ngx_str_t  argv[9];

    if (d->jobs->nelts && (reply == NULL || reply->type != REDIS_REPLY_INTEGER))
    {
        /* the outcomes are lost: the entries stay, for the next pass */
        ngx_astralform_drain_release(d);
        return;
    }

    ngx_astralform_drain_wipe(d);
    ngx_destroy_pool(d->chunk);
    d->chunk = NULL;
    d->jobs = NULL;

    if (ngx_exiting) {
        ngx_astralform_drain_hand_back(d);
        return;
    }

    if (d->cursor.len != 1 || d->cursor.data[0] != '0') {
        ngx_astralform_drain_scan(d);
        return;
    }

    /* a pass is over */

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_pass_lua;
    argv[1].len = sizeof(ngx_astralform_pass_lua) - 1;
    ngx_str_set(&argv[2], "4");
    argv[3] = d->tokens;
    argv[4] = d->batch;
    argv[5] = d->counters;
    argv[6] = d->batches;
    argv[7] = d->id;

    if (ngx_astralform_redis_send(d->pool, d->pool->log,
                                  ngx_astralform_drain_passed, d, 8, argv)
        == NULL)
    {
        ngx_astralform_drain_release(d);
    }
}


static void
ngx_astralform_drain_passed(redisReply *reply, void *data)
{
    ngx_astralform_drain_t *d = data;

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER
        && reply->integer == 0)
    {
        ngx_log_error(NGX_LOG_INFO, d->pool->log, 0,
                      "astralform: revocation batch \"%V\" of connector "
                      "\"%V\" is done", &d->id, &d->conn.id);
    }

    ngx_astralform_drain_release(d);
}


static void
ngx_astralform_drain_renew(ngx_event_t *ev)
{
    ngx_str_t                argv[6];
    ngx_astralform_drain_t  *d;

    d = (ngx_astralform_drain_t *)
            ((u_char *) ev - offsetof(ngx_astralform_drain_t, renew));

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_lease_lua;
    argv[1].len = sizeof(ngx_astralform_lease_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[3] = d->batches;
    ngx_str_set(&argv[4], NGX_ASTRALFORM_REVOKE_LEASE);
    argv[5] = d->id;

    (void) ngx_astralform_redis_send(d->pool, d->pool->log,
                                     ngx_astralform_revocations_ignore, d, 6,
                                     argv);

    ngx_add_timer(&d->renew, NGX_ASTRALFORM_REVOKE_RENEW);
}


/* the worker is leaving: the batch is due again at once, for another */
static void
ngx_astralform_drain_hand_back(ngx_astralform_drain_t *d)
{
    ngx_str_t  argv[6];

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_lease_lua;
    argv[1].len = sizeof(ngx_astralform_lease_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[3] = d->batches;
    ngx_str_set(&argv[4], "0");
    argv[5] = d->id;

    if (ngx_astralform_redis_send(d->pool, d->pool->log,
                                  ngx_astralform_drain_handed, d, 6, argv)
        == NULL)
    {
        ngx_astralform_drain_release(d);
    }
}


static void
ngx_astralform_drain_handed(redisReply *reply, void *data)
{
    ngx_astralform_drain_release(data);
}


/* lets go of the batch (its lease ends it) and looks for more work */
static void
ngx_astralform_drain_release(ngx_astralform_drain_t *d)
{
    ngx_astralform_drainer_t  *dr = &ngx_astralform_drainer;

    if (d->renew.timer_set) {
        ngx_del_timer(&d->renew);
    }

    if (d->chunk != NULL) {
        ngx_astralform_drain_wipe(d);
        ngx_destroy_pool(d->chunk);
    }

    ngx_destroy_pool(d->pool);

    dr->drain = NULL;

    if (!ngx_exiting) {
        if (dr->timer.timer_set) {
            ngx_del_timer(&dr->timer);
        }

        ngx_add_timer(&dr->timer, 1);
    }
}


static void
ngx_astralform_drain_wipe(ngx_astralform_drain_t *d)
{
    ngx_uint_t                    i;
    ngx_astralform_revoke_job_t  *job;

    if (d->jobs == NULL) {
        return;
    }

    job = d->jobs->elts;

    for (i = 0; i < d->jobs->nelts; i++) {
        ngx_explicit_memzero(job[i].rv.access_token.data,
                             job[i].rv.access_token.len);
        ngx_explicit_memzero(job[i].rv.refresh_token.data,
                             job[i].rv.refresh_token.len);
    }

    ngx_explicit_memzero(d->secret.data, d->secret.len);
    ngx_str_null(&d->secret);
}


static void
ngx_astralform_revocations_ignore(redisReply *reply, void *data)
{
}


static ngx_int_t
ngx_astralform_reply_copy(ngx_pool_t *pool, ngx_str_t *dst,
    redisReply *reply)
{
    ngx_str_t  s;

    s.data = (u_char *) reply->str;
    s.len = reply->len;

    return ngx_astralform_str_copy(pool, dst, &s);
}


/* GET /v1/projects/{pid}/connectors/{id}/revocations */
ngx_int_t
ngx_astralform_revocations_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t  argv[2];

    if (!ngx_astralform_is_admin(ctx)) {
        return ngx_astralform_admin_required(ctx);
    }

    if (!ngx_astralform_valid_identity(&ctx->seg[4])) {
        return ngx_astralform_connector_not_found(ctx, &ctx->seg[4]);
    }

    ngx_str_set(&argv[0], "HGETALL");

    if (ngx_astralform_key(ctx, &argv[1], "revocations", &ctx->seg[4])
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_astralform_redis(ctx, ngx_astralform_revocations_progress, 2,
                                argv);

    return ngx_astralform_wait(ctx);
}


static void
ngx_astralform_revocations_progress(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    size_t      i;
    ngx_int_t   n, total, revoked, failed;
    redisReply  *name, *value;

    ctx->pending--;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    total = 0;
    revoked = 0;
    failed = 0;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        name = reply->element[i];
        value = reply->element[i + 1];

        if (name->type != REDIS_REPLY_STRING
            || value->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        n = ngx_atoi((u_char *) value->str, value->len);
        if (n == NGX_ERROR) {
            continue;
        }

        if (name->len == 5 && ngx_strncmp(name->str, "total", 5) == 0) {
            total = n;

        } else if (name->len == 7
                   && ngx_strncmp(name->str, "revoked", 7) == 0)
        {
            revoked = n;

        } else if (name->len == 6
                   && ngx_strncmp(name->str, "failed", 6) == 0)
        {
            failed = n;
        }
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
            json_pack("{s:o, s:I, s:I, s:I, s:I}",
                      "connector", ngx_astralform_json_string(&ctx->seg[4]),
                      "total", (json_int_t) total,
                      "revoked", (json_int_t) revoked,
                      "failed", (json_int_t) failed,
                      "pending",
                      (json_int_t) ngx_max(total - revoked - failed, 0))));
}
