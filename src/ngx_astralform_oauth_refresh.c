/*
 * Token refresh, collapsed across requests, workers and instances:
 *
 *   {P}:lock:<C>:<U> with an owner and a lease; re-read under the lock;
 *   compare-and-set write; a grant that is dead for good deletes the record
 *   (unless it was replaced meanwhile)
 *
 * Once the provider has been asked, its answer must be stored: with
 * rotation, the refresh token sent is spent. So a refresh runs detached
 * from the request that started it, in a pool of its own, with its own
 * timeout (astralform_refresh_timeout): the client going away, a slow
 * token endpoint or a stalled Redis do not lose the new tokens. The write
 * is retried with backoff until stored or the timeout, the lease renewed
 * while the holder works, and the lock released on every exit.
 *
 * A request that finds the lock held polls the record every 50 ms until a
 * new token shows up, trying the lock again at each look; a holder that
 * failed leaves {P}:refresh_failed:<C>:<U> for a moment, so its waiters
 * give up at once instead of each asking the provider again.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


#define NGX_ASTRALFORM_OAUTH_LEASE       10000
#define NGX_ASTRALFORM_OAUTH_RENEW       3000
#define NGX_ASTRALFORM_OAUTH_POLL        50
#define NGX_ASTRALFORM_OAUTH_FAILED_TTL  2000
#define NGX_ASTRALFORM_OAUTH_BACKOFF     100
#define NGX_ASTRALFORM_OAUTH_BACKOFF_MAX 2000
#define NGX_ASTRALFORM_OAUTH_UNLOCKS     5


typedef struct ngx_astralform_refresh_s  ngx_astralform_refresh_t;

typedef void (*ngx_astralform_reread_pt)(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);


/* the request waiting for a refresh, in the request's pool */
typedef struct {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_token_pt       handler;
    ngx_astralform_refresh_t     *rf;           /* NULL once answered */
} ngx_astralform_refresh_waiter_t;


struct ngx_astralform_refresh_s {
    ngx_pool_t                   *pool;         /* all of this */
    ngx_astralform_ctx_t         *ctx;          /* detached */
    ngx_astralform_connector_t    conn;
    ngx_astralform_refresh_waiter_t  *waiter;   /* NULL: the client left */
    ngx_astralform_token_t       *tok;          /* the latest read */
    ngx_str_t                     lock;
    ngx_str_t                     failed;
    ngx_str_t                     owner;
    ngx_msec_t                    deadline;     /* of waiting */
    ngx_msec_t                    store_deadline;
    ngx_msec_t                    backoff;
    ngx_uint_t                    unlocks;
    ngx_event_t                   timer;        /* poll, retry */
    ngx_event_t                   renew;        /* the lease */
    ngx_connection_t              dummy;        /* ev->data of the timers */
    ngx_astralform_exchange_t     ex;
    ngx_astralform_reread_pt      reread;
    unsigned                      locked:1;
    unsigned                      failing:1;
};


static ngx_int_t ngx_astralform_refresh_init(ngx_astralform_refresh_t *rf,
    ngx_astralform_ctx_t *ctx, ngx_astralform_connector_t *conn,
    ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_lock(ngx_astralform_refresh_t *rf);
static void ngx_astralform_refresh_locked(redisReply *reply, void *data);
static void ngx_astralform_refresh_wake(ngx_event_t *ev);
static void ngx_astralform_refresh_renew(ngx_event_t *ev);
static void ngx_astralform_refresh_read(ngx_astralform_refresh_t *rf,
    ngx_astralform_reread_pt next);
static void ngx_astralform_refresh_got(redisReply *reply, void *data);
static void ngx_astralform_refresh_polled(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_failed(redisReply *reply, void *data);
static void ngx_astralform_refresh_held(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_exchanged(ngx_astralform_exchange_t *ex);
static void ngx_astralform_refresh_store(ngx_event_t *ev);
static void ngx_astralform_refresh_stored(redisReply *reply, void *data);
static void ngx_astralform_refresh_retry(ngx_astralform_refresh_t *rf,
    ngx_event_handler_pt handler);
static void ngx_astralform_refresh_settled(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_dead(ngx_astralform_refresh_t *rf);
static void ngx_astralform_refresh_deleted(redisReply *reply, void *data);
static void ngx_astralform_refresh_finish(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_answer(ngx_astralform_refresh_t *rf,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_refresh_unlock(ngx_event_t *ev);
static void ngx_astralform_refresh_unlocked(redisReply *reply, void *data);
static void ngx_astralform_refresh_destroy(ngx_astralform_refresh_t *rf);
static void ngx_astralform_refresh_ignore(redisReply *reply, void *data);
static void ngx_astralform_refresh_gone(void *data);


/*
 * DEL only if the caller still owns the lock; a holder that failed marks
 * the failure for its waiters (ARGV[2] = its lifetime, "0": none)
 */
static const char  ngx_astralform_unlock_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  redis.call('DEL', KEYS[1]) "
    "end "
    "if ARGV[2] ~= '0' then "
    "  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) "
    "end "
    "return 1";


/*
 * SET NX the lock unless a holder has just failed: a waiter that found
 * no failure mark may otherwise take the lock the failed holder has just
 * let go of, and ask the provider again (0: failed, nil: held)
 */
static const char  ngx_astralform_lock_lua[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then "
    "  return 0 "
    "end "
    "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])";


/* PEXPIRE only if the caller still owns the lock */
static const char  ngx_astralform_renew_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "end "
    "return 0";


/* HDEL only if the field still holds the dead record */
static const char  ngx_astralform_forget_lua[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
    "  return redis.call('HDEL', KEYS[1], ARGV[1]) "
    "end "
    "return 0";


void
ngx_astralform_oauth_refresh(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_astralform_token_pt handler)
{
    ngx_pool_t                       *pool;
    ngx_pool_cleanup_t               *cln;
    ngx_astralform_refresh_t         *rf;
    ngx_astralform_refresh_waiter_t  *w;

    w = ngx_pcalloc(ctx->request->pool,
                    sizeof(ngx_astralform_refresh_waiter_t));
    cln = ngx_pool_cleanup_add(ctx->request->pool, 0);
    pool = ngx_create_pool(4096, ngx_cycle->log);

    if (w == NULL || cln == NULL || pool == NULL) {
        if (pool != NULL) {
            ngx_destroy_pool(pool);
        }

        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    rf = ngx_pcalloc(pool, sizeof(ngx_astralform_refresh_t));

    if (rf == NULL) {
        ngx_destroy_pool(pool);
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    rf->pool = pool;

    if (ngx_astralform_refresh_init(rf, ctx, conn, tok) != NGX_OK) {
        ngx_astralform_refresh_destroy(rf);
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    w->ctx = ctx;
    w->handler = handler;
    w->rf = rf;
    rf->waiter = w;

    cln->handler = ngx_astralform_refresh_gone;
    cln->data = w;

    if (tok->is_api_key || tok->refresh_token.len == 0
        || !ngx_astralform_oauth_flag(conn->def, "refresh", 1))
    {
        /* nothing to renew it with: the provider's 401 was final */
        ngx_astralform_refresh_dead(rf);
        return;
    }

    ngx_astralform_refresh_lock(rf);
}


/* the request's state, copied: the refresh may outlive the request */
static ngx_int_t
ngx_astralform_refresh_init(ngx_astralform_refresh_t *rf,
    ngx_astralform_ctx_t *ctx, ngx_astralform_connector_t *conn,
    ngx_astralform_token_t *tok)
{
    ngx_str_t              sub;
    ngx_pool_t            *pool;
    ngx_msec_t             timeout;
    ngx_astralform_ctx_t  *dctx;

    pool = rf->pool;

    rf->dummy.fd = (ngx_socket_t) -1;
    rf->timer.data = &rf->dummy;
    rf->timer.log = pool->log;
    rf->timer.cancelable = 1;

    /* not cancelable: a graceful exit waits for the refresh to finish */
    rf->renew.handler = ngx_astralform_refresh_renew;
    rf->renew.data = &rf->dummy;
    rf->renew.log = pool->log;

    dctx = ngx_astralform_ctx_detached(pool, ctx->amcf, ctx->project);
    rf->tok = ngx_pcalloc(pool, sizeof(ngx_astralform_token_t));

    if (dctx == NULL || rf->tok == NULL
        || ngx_astralform_str_copy(pool, &dctx->user, &ctx->user) != NGX_OK
        || ngx_astralform_connector_copy(pool, &rf->conn, conn) != NGX_OK
        || ngx_astralform_token_copy(pool, rf->tok, tok) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rf->ctx = dctx;

    /*
     * Waiters give up once a holder has had its whole time and the next
     * one a lease: a holder that died leaves its lock to the lease.
     */

    timeout = ctx->amcf->refresh_timeout;
    rf->ex.timeout = timeout;
    rf->deadline = ngx_current_msec + timeout
                   + 2 * NGX_ASTRALFORM_OAUTH_LEASE;

    sub.len = rf->conn.id.len + 1 + dctx->user.len;
    sub.data = ngx_pnalloc(pool, sub.len);

    if (sub.data == NULL
        || ngx_astralform_random_token(pool, &rf->owner, 16) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_sprintf(sub.data, "%V:%V", &rf->conn.id, &dctx->user);

    if (ngx_astralform_key(dctx, &rf->lock, "lock", &sub) != NGX_OK
        || ngx_astralform_key(dctx, &rf->failed, "refresh_failed", &sub)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_astralform_refresh_lock(ngx_astralform_refresh_t *rf)
{
    u_char     lease[NGX_INT_T_LEN];
    ngx_str_t  argv[7];

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_lock_lua;
    argv[1].len = sizeof(ngx_astralform_lock_lua) - 1;
    ngx_str_set(&argv[2], "2");
    argv[3] = rf->lock;
    argv[4] = rf->failed;
    argv[5] = rf->owner;
    argv[6].data = lease;
    argv[6].len = ngx_sprintf(lease, "%M",
                              (ngx_msec_t) NGX_ASTRALFORM_OAUTH_LEASE)
                  - lease;

    if (ngx_astralform_redis_send(rf->pool, rf->pool->log,
                                  ngx_astralform_refresh_locked, rf, 7, argv)
        == NULL)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_refresh_locked(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    /* an integer: a holder has just failed, no use asking again now */
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR
        || reply->type == REDIS_REPLY_INTEGER)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    if (reply->type == REDIS_REPLY_STATUS) {
        rf->locked = 1;
        ngx_add_timer(&rf->renew, NGX_ASTRALFORM_OAUTH_RENEW);

        /* a sibling may have finished between our read and the lock */
        ngx_astralform_refresh_read(rf, ngx_astralform_refresh_held);
        return;
    }

    /* a sibling holds it: wait for its result, while someone waits */

    if (rf->waiter == NULL) {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - rf->deadline) >= 0) {
        ngx_log_error(NGX_LOG_ERR, rf->pool->log, 0,
                      "astralform: gave up waiting for the token refresh of "
                      "user \"%V\" for connector \"%V\"", &rf->ctx->user,
                      &rf->conn.id);
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    rf->timer.handler = ngx_astralform_refresh_wake;
    ngx_add_timer(&rf->timer, NGX_ASTRALFORM_OAUTH_POLL);
}


static void
ngx_astralform_refresh_wake(ngx_event_t *ev)
{
    ngx_astralform_refresh_t  *rf;

    rf = (ngx_astralform_refresh_t *)
             ((u_char *) ev - offsetof(ngx_astralform_refresh_t, timer));

    if (rf->waiter == NULL) {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    ngx_astralform_refresh_read(rf, ngx_astralform_refresh_polled);
}


static void
ngx_astralform_refresh_renew(ngx_event_t *ev)
{
    u_char                     lease[NGX_INT_T_LEN];
    ngx_str_t                  argv[6];
    ngx_astralform_refresh_t  *rf;

    rf = (ngx_astralform_refresh_t *)
             ((u_char *) ev - offsetof(ngx_astralform_refresh_t, renew));

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_renew_lua;
    argv[1].len = sizeof(ngx_astralform_renew_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[3] = rf->lock;
    argv[4] = rf->owner;
    argv[5].data = lease;
    argv[5].len = ngx_sprintf(lease, "%M",
                              (ngx_msec_t) NGX_ASTRALFORM_OAUTH_LEASE)
                  - lease;

    /* a lost renewal is made good by the next one */
    (void) ngx_astralform_redis_send(rf->pool, rf->pool->log,
                                     ngx_astralform_refresh_ignore, rf, 6,
                                     argv);

    ngx_add_timer(&rf->renew, NGX_ASTRALFORM_OAUTH_RENEW);
}


/* the stored record, then next(rf, rc, tok) as token_get() would answer */
static void
ngx_astralform_refresh_read(ngx_astralform_refresh_t *rf,
    ngx_astralform_reread_pt next)
{
    ngx_str_t  argv[3];

    rf->reread = next;

    ngx_str_set(&argv[0], "HGET");
    argv[2] = rf->ctx->user;

    if (ngx_astralform_key(rf->ctx, &argv[1], "tokens", &rf->conn.id)
        != NGX_OK
        || ngx_astralform_redis_send(rf->pool, rf->pool->log,
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
    ngx_astralform_token_t  *tok;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        rf->reread(rf, NGX_ERROR, NULL);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        rf->reread(rf, NGX_DECLINED, NULL);
        return;
    }

    tok = ngx_pcalloc(rf->pool, sizeof(ngx_astralform_token_t));
    if (tok == NULL
        || ngx_astralform_oauth_pdup(rf->pool, &blob, reply->str, reply->len)
           != NGX_OK)
    {
        rf->reread(rf, NGX_ERROR, NULL);
        return;
    }

    if (ngx_astralform_token_open(rf->ctx, &rf->conn, &rf->ctx->user, &blob,
                                  tok, NULL)
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
    ngx_str_t  argv[2];

    if (rc != NGX_OK) {
        ngx_astralform_refresh_finish(rf, rc, NULL);
        return;
    }

    if (!ngx_astralform_oauth_str_eq(&tok->access_token,
                                     &rf->tok->access_token))
    {
        ngx_astralform_refresh_finish(rf, NGX_OK, tok);
        return;
    }

    /* the same token, maybe re-sealed: its blob is the one to compare */
    rf->tok = tok;

    /* did the holder just fail? then it is no use asking again now */

    ngx_str_set(&argv[0], "EXISTS");
    argv[1] = rf->failed;

    if (ngx_astralform_redis_send(rf->pool, rf->pool->log,
                                  ngx_astralform_refresh_failed, rf, 2, argv)
        == NULL)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_refresh_failed(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER
        || reply->integer != 0)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

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

    if (!ngx_astralform_oauth_str_eq(&tok->access_token,
                                     &rf->tok->access_token))
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
    rf->ex.conn = &rf->conn;
    rf->ex.refresh = 1;
    rf->ex.done = ngx_astralform_refresh_exchanged;
    rf->ex.data = rf;

    if (params == NULL
        || ngx_astralform_oauth_exchange_start(&rf->ex, params) != NGX_OK)
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
    ngx_str_t                  blob;
    ngx_astralform_token_t    *tok, *old;
    ngx_astralform_refresh_t  *rf;

    rf = ex->data;

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

    if (ngx_astralform_token_seal(rf->ctx, &rf->conn, &rf->ctx->user, tok,
                                  &blob)
        != NGX_OK)
    {
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    tok->blob = blob;

    /* the provider has spent the old refresh token: store, come what may */

    rf->store_deadline = ngx_current_msec + rf->ctx->amcf->refresh_timeout;
    rf->backoff = NGX_ASTRALFORM_OAUTH_BACKOFF;

    ngx_astralform_refresh_store(&rf->timer);
}


/* compare-and-set: written only over the record the refresh used */
static void
ngx_astralform_refresh_store(ngx_event_t *ev)
{
    ngx_str_t                  key;
    ngx_astralform_refresh_t  *rf;

    rf = (ngx_astralform_refresh_t *)
             ((u_char *) ev - offsetof(ngx_astralform_refresh_t, timer));

    if (ngx_astralform_key(rf->ctx, &key, "tokens", &rf->conn.id) != NGX_OK
        || ngx_astralform_hash_cas(rf->ctx, &key, &rf->ctx->user,
                                   &rf->tok->blob, &rf->ex.tok.blob,
                                   ngx_astralform_refresh_stored, rf)
           != NGX_OK)
    {
        ngx_astralform_refresh_retry(rf, ngx_astralform_refresh_store);
    }
}


static void
ngx_astralform_refresh_stored(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_refresh_retry(rf, ngx_astralform_refresh_store);
        return;
    }

    if (reply->integer == 0) {
        /* another writer came first, or a lost reply was ours */
        ngx_astralform_refresh_read(rf, ngx_astralform_refresh_settled);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rf->pool->log, 0,
                  "astralform: refreshed the token of user \"%V\" for "
                  "connector \"%V\"", &rf->ctx->user, &rf->conn.id);

    ngx_astralform_refresh_finish(rf, NGX_OK, &rf->ex.tok);
}


/* the store is unavailable: again after a backoff, until the deadline */
static void
ngx_astralform_refresh_retry(ngx_astralform_refresh_t *rf,
    ngx_event_handler_pt handler)
{
    if ((ngx_msec_int_t) (ngx_current_msec - rf->store_deadline) >= 0) {
        ngx_log_error(NGX_LOG_ERR, rf->pool->log, 0,
                      "astralform: could not store the refreshed token of "
                      "user \"%V\" for connector \"%V\": the store stayed "
                      "unavailable for \"astralform_refresh_timeout\"",
                      &rf->ctx->user, &rf->conn.id);
        ngx_astralform_refresh_finish(rf, NGX_ERROR, NULL);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rf->pool->log, 0,
                   "astralform refresh: store unavailable, again in %M ms",
                   rf->backoff);

    rf->timer.handler = handler;
    ngx_add_timer(&rf->timer, rf->backoff);

    rf->backoff = ngx_min(2 * rf->backoff, NGX_ASTRALFORM_OAUTH_BACKOFF_MAX);
}


/* after a refusal or a lost write: what is stored, if it is new */
static void
ngx_astralform_refresh_settled(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    if (rc == NGX_ERROR && rf->ex.rc == NGX_OK && rf->store_deadline) {
        /* the write's outcome is unknown until the store answers */
        ngx_astralform_refresh_retry(rf, ngx_astralform_refresh_store);
        return;
    }

    if (rc != NGX_OK) {
        ngx_astralform_refresh_finish(rf, rc, NULL);
        return;
    }

    if (!ngx_astralform_oauth_str_eq(&tok->access_token,
                                     &rf->tok->access_token))
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
    ngx_str_t  argv[6];

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_forget_lua;
    argv[1].len = sizeof(ngx_astralform_forget_lua) - 1;
    ngx_str_set(&argv[2], "1");
    argv[4] = rf->ctx->user;
    argv[5] = rf->tok->blob;

    if (ngx_astralform_key(rf->ctx, &argv[3], "tokens", &rf->conn.id)
        != NGX_OK
        || ngx_astralform_redis_send(rf->pool, rf->pool->log,
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

    ngx_log_error(NGX_LOG_WARN, rf->pool->log, 0,
                  "astralform: the token of user \"%V\" for connector \"%V\" "
                  "cannot be renewed; deleted", &rf->ctx->user,
                  &rf->conn.id);

    ngx_astralform_refresh_finish(rf, NGX_DECLINED, NULL);
}


/* answers the waiting request, if any, then lets go of the lock */
static void
ngx_astralform_refresh_finish(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    if (rf->timer.timer_set) {
        ngx_del_timer(&rf->timer);
    }

    ngx_astralform_refresh_answer(rf, rc, tok);

    if (!rf->locked) {
        ngx_astralform_refresh_destroy(rf);
        return;
    }

    rf->failing = (rc == NGX_ERROR);

    ngx_astralform_refresh_unlock(&rf->timer);
}


static void
ngx_astralform_refresh_answer(ngx_astralform_refresh_t *rf, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    ngx_pool_t                       *pool;
    ngx_astralform_token_t           *copy;
    ngx_astralform_refresh_waiter_t  *w;

    w = rf->waiter;

    if (w == NULL) {
        return;
    }

    rf->waiter = NULL;
    w->rf = NULL;

    copy = NULL;

    if (tok != NULL) {
        pool = w->ctx->request->pool;
        copy = ngx_palloc(pool, sizeof(ngx_astralform_token_t));

        if (copy == NULL
            || ngx_astralform_token_copy(pool, copy, tok) != NGX_OK)
        {
            rc = NGX_ERROR;
            copy = NULL;
        }
    }

    w->handler(w->ctx, rc, copy);
}


static void
ngx_astralform_refresh_unlock(ngx_event_t *ev)
{
    u_char                     ttl[NGX_INT_T_LEN];
    ngx_str_t                  argv[7];
    ngx_astralform_refresh_t  *rf;

    rf = (ngx_astralform_refresh_t *)
             ((u_char *) ev - offsetof(ngx_astralform_refresh_t, timer));

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_unlock_lua;
    argv[1].len = sizeof(ngx_astralform_unlock_lua) - 1;
    ngx_str_set(&argv[2], "2");
    argv[3] = rf->lock;
    argv[4] = rf->failed;
    argv[5] = rf->owner;
    argv[6].data = ttl;
    argv[6].len = ngx_sprintf(ttl, "%M",
                              rf->failing
                              ? (ngx_msec_t) NGX_ASTRALFORM_OAUTH_FAILED_TTL
                              : (ngx_msec_t) 0)
                  - ttl;

    if (ngx_astralform_redis_send(rf->pool, rf->pool->log,
                                  ngx_astralform_refresh_unlocked, rf, 7,
                                  argv)
        == NULL)
    {
        ngx_astralform_refresh_unlocked(NULL, rf);
    }
}


static void
ngx_astralform_refresh_unlocked(redisReply *reply, void *data)
{
    ngx_astralform_refresh_t *rf = data;

    if (reply == NULL && ++rf->unlocks < NGX_ASTRALFORM_OAUTH_UNLOCKS) {
        /* waiters would sit out the lease: try a little longer */
        rf->timer.handler = ngx_astralform_refresh_unlock;
        ngx_add_timer(&rf->timer,
                      (ngx_msec_t) NGX_ASTRALFORM_OAUTH_BACKOFF
                      << rf->unlocks);
        return;
    }

    rf->locked = 0;

    ngx_astralform_refresh_destroy(rf);
}


static void
ngx_astralform_refresh_destroy(ngx_astralform_refresh_t *rf)
{
    if (rf->timer.timer_set) {
        ngx_del_timer(&rf->timer);
    }

    if (rf->renew.timer_set) {
        ngx_del_timer(&rf->renew);
    }

    if (rf->waiter != NULL) {
        rf->waiter->rf = NULL;
        rf->waiter = NULL;
    }

    if (rf->tok != NULL) {
        ngx_astralform_token_wipe(rf->tok);
    }

    ngx_astralform_token_wipe(&rf->ex.tok);

    /* pending Redis replies and transfers are cancelled with the pool */
    ngx_destroy_pool(rf->pool);
}


static void
ngx_astralform_refresh_ignore(redisReply *reply, void *data)
{
}


/* the request went away: the refresh goes on, with nobody to answer */
static void
ngx_astralform_refresh_gone(void *data)
{
    ngx_astralform_refresh_waiter_t  *w = data;

    if (w->rf != NULL) {
        w->rf->waiter = NULL;
        w->rf = NULL;
    }
}
