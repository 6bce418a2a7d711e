/*
 * Token refresh, collapsed across requests, workers and instances:
 *
 *   {P}:lock:<C>:<U> with an owner and a lease; re-read under the lock;
 *   compare-and-set write; a grant that is dead for good deletes the record
 *   (unless it was replaced meanwhile)
 *
 * A request that finds the lock held polls the record until a new token
 * shows up, trying the lock again at each look, and gives up once a holder
 * that died has had its lease run out and the next one a full turn.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


#define NGX_ASTRALFORM_OAUTH_LEASE       10000
#define NGX_ASTRALFORM_OAUTH_POLL        50


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
        || ngx_astralform_oauth_pdup(pool, &blob, reply->str, reply->len)
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

    if (!ngx_astralform_oauth_str_eq(&tok->access_token,
                                     &rf->tok->access_token))
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
    rf->ex.conn = rf->conn;
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
