/*
 * End users' credentials in Redis, sealed (see ngx_astralform_tokens.h).
 */


#include "ngx_astralform.h"
#include "ngx_astralform_tokens.h"
#include "ngx_astralform_record.h"


typedef struct {
    ngx_astralform_ctx_t        *ctx;
    ngx_astralform_connector_t  *conn;
    ngx_astralform_token_pt      handler;
    ngx_astralform_token_t      *tok;
    ngx_uint_t                   cas;
} ngx_astralform_token_op_t;


static void ngx_astralform_token_got(redisReply *reply, void *data);
static void ngx_astralform_token_stored(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_token_read(ngx_pool_t *pool,
    ngx_str_t *plain, ngx_astralform_token_t *tok);
static ngx_int_t ngx_astralform_token_cas(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *expect, ngx_str_t *blob,
    ngx_astralform_redis_pt handler, void *data);


void
ngx_astralform_token_get(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_pt handler)
{
    ngx_str_t                   argv[3];
    ngx_astralform_token_op_t  *op;

    op = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_token_op_t));
    if (op == NULL) {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    op->ctx = ctx;
    op->conn = conn;
    op->handler = handler;

    ngx_str_set(&argv[0], "HGET");
    argv[2] = ctx->user;

    if (ngx_astralform_key(ctx, &argv[1], "tokens", &conn->id) != NGX_OK
        || ngx_astralform_redis_send(ctx->request->pool,
                                     ctx->request->connection->log,
                                     ngx_astralform_token_got, op, 3, argv)
           == NULL)
    {
        handler(ctx, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_token_got(redisReply *reply, void *data)
{
    ngx_astralform_token_op_t *op = data;

    ngx_str_t  blob;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        op->handler(op->ctx, NGX_ERROR, NULL);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        op->handler(op->ctx, NGX_DECLINED, NULL);
        return;
    }

    blob.data = (u_char *) reply->str;
    blob.len = reply->len;

    ngx_astralform_token_use(op->ctx, op->conn, &blob, op->handler);
}


/*
 * Opens a record read from Redis (blob: the reply's bytes, or NULL when
 * nothing is stored) and hands it to handler; a record sealed with an
 * older key is re-sealed with the current one.
 */
void
ngx_astralform_token_use(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *blob,
    ngx_astralform_token_pt handler)
{
    ngx_str_t                copy, none;
    ngx_uint_t               stale;
    ngx_astralform_token_t  *tok;

    if (blob == NULL) {
        handler(ctx, NGX_DECLINED, NULL);
        return;
    }

    tok = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_token_t));
    copy.data = ngx_pnalloc(ctx->request->pool, blob->len);
    if (tok == NULL || copy.data == NULL) {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    copy.len = blob->len;
    ngx_memcpy(copy.data, blob->data, blob->len);

    if (ngx_astralform_token_open(ctx, conn, &ctx->user, &copy, tok, &stale)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: the stored credential of user \"%V\" for "
                      "connector \"%V\" does not open; treated as missing",
                      &ctx->user, &conn->id);
        handler(ctx, NGX_DECLINED, NULL);
        return;
    }

    if (stale) {
        /* sealed with an older key: re-seal with the current one */
        ngx_str_null(&none);
        if (ngx_astralform_token_seal(ctx, conn, &ctx->user, tok, &none)
            == NGX_OK)
        {
            (void) ngx_astralform_token_cas(ctx, conn, &copy, &none,
                                            NULL, NULL);
        }
    }

    handler(ctx, NGX_OK, tok);
}


void
ngx_astralform_token_put(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_str_t *expect, ngx_astralform_token_pt handler)
{
    ngx_str_t                   blob, key;
    ngx_astralform_token_op_t  *op;

    op = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_token_op_t));
    if (op == NULL
        || ngx_astralform_token_seal(ctx, conn, &ctx->user, tok, &blob)
           != NGX_OK)
    {
        handler(ctx, NGX_ERROR, NULL);
        return;
    }

    op->ctx = ctx;
    op->conn = conn;
    op->handler = handler;
    op->tok = tok;
    tok->blob = blob;

    if (expect != NULL) {
        op->cas = 1;

        if (ngx_astralform_token_cas(ctx, conn, expect, &blob,
                                     ngx_astralform_token_stored, op)
            != NGX_OK)
        {
            handler(ctx, NGX_ERROR, NULL);
        }
        return;
    }

    /* a new credential takes a place of astralform_max_credentials */
    if (ngx_astralform_key(ctx, &key, "tokens", &conn->id) != NGX_OK
        || ngx_astralform_quota_hset(ctx, &key, &ctx->user, &blob,
                                     ngx_astralform_token_stored, op)
           != NGX_OK)
    {
        handler(ctx, NGX_ERROR, NULL);
    }
}


static void
ngx_astralform_token_stored(redisReply *reply, void *data)
{
    ngx_astralform_token_op_t *op = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        op->handler(op->ctx, NGX_ERROR, NULL);
        return;
    }

    /* the quota script answers -1 when the project is full */
    if (!op->cas && reply->integer < 0) {
        op->handler(op->ctx, NGX_BUSY, NULL);
        return;
    }

    /* the CAS script answers 0 when another writer came first */
    op->handler(op->ctx, op->cas && reply->integer == 0 ? NGX_DECLINED
                                                         : NGX_OK, op->tok);
}


static ngx_int_t
ngx_astralform_token_cas(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *expect, ngx_str_t *blob,
    ngx_astralform_redis_pt handler, void *data)
{
    ngx_str_t  key;

    if (ngx_astralform_key(ctx, &key, "tokens", &conn->id) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_astralform_hash_cas(ctx, &key, &ctx->user, expect, blob,
                                   handler, data);
}


ngx_int_t
ngx_astralform_token_seal(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *user,
    ngx_astralform_token_t *tok, ngx_str_t *blob)
{
    char       *text;
    json_t     *json;
    ngx_str_t   aad, plain;
    ngx_int_t   rc;

    if (tok->is_api_key) {
        json = json_pack("{s:s, s:s%}", "type", "api_key",
                         "api_key", tok->api_key.data, tok->api_key.len);

    } else {
        json = json_pack("{s:s, s:s%, s:I, s:I}", "type", "oauth",
                         "access_token", tok->access_token.data,
                         tok->access_token.len,
                         "expires_at", (json_int_t) tok->expires_at,
                         "obtained_at", (json_int_t) tok->obtained_at);

        if (json != NULL && tok->refresh_token.len) {
            json_object_set_new(json, "refresh_token",
                ngx_astralform_json_string(&tok->refresh_token));
        }

        if (json != NULL && tok->scope.len) {
            json_object_set_new(json, "scope",
                                ngx_astralform_json_string(&tok->scope));
        }

        if (json != NULL && tok->token_type.len) {
            json_object_set_new(json, "token_type",
                                ngx_astralform_json_string(&tok->token_type));
        }

        if (json != NULL && tok->account_id.len) {
            json_object_set_new(json, "account_id",
                                ngx_astralform_json_string(&tok->account_id));
        }
    }

    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL) {
        return NGX_ERROR;
    }

    plain.data = (u_char *) text;
    plain.len = ngx_strlen(text);

    rc = ngx_astralform_aad(ctx->request->pool, &aad, &ctx->project->id,
                            &conn->id, "token", user);
    if (rc == NGX_OK) {
        rc = ngx_astralform_seal(ctx->request->pool, &ctx->amcf->keys, &aad,
                                 &plain, blob);
    }

    ngx_explicit_memzero(text, plain.len);
    ngx_free(text);

    return rc;
}


ngx_int_t
ngx_astralform_token_open(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *user, ngx_str_t *blob,
    ngx_astralform_token_t *tok, ngx_uint_t *stale)
{
    ngx_str_t    aad, plain;
    ngx_pool_t  *pool;

    pool = ctx->request->pool;

    if (ngx_astralform_aad(pool, &aad, &ctx->project->id, &conn->id, "token",
                           user) != NGX_OK
        || ngx_astralform_open(pool, &ctx->amcf->keys, &aad, blob, &plain,
                               stale) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memzero(tok, sizeof(ngx_astralform_token_t));
    tok->blob = *blob;

    if (ngx_astralform_token_read(pool, &plain, tok) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tok->is_api_key ? tok->api_key.len == 0
                        : tok->access_token.len == 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The record's fields, read in place (they point into the plaintext, which
 * the pool wipes); a record the flat reader declines goes to jansson.
 */

static ngx_int_t
ngx_astralform_token_read(ngx_pool_t *pool, ngx_str_t *plain,
    ngx_astralform_token_t *tok)
{
    json_t                         *json;
    int64_t                         expires_at, obtained_at;
    ngx_str_t                       type;
    const char                     *jtype;
    ngx_astralform_record_field_t   record[] = {
        { "type", &type, NULL },
        { "access_token", &tok->access_token, NULL },
        { "refresh_token", &tok->refresh_token, NULL },
        { "api_key", &tok->api_key, NULL },
        { "scope", &tok->scope, NULL },
        { "token_type", &tok->token_type, NULL },
        { "account_id", &tok->account_id, NULL },
        { "expires_at", NULL, &expires_at },
        { "obtained_at", NULL, &obtained_at },
        { NULL, NULL, NULL }
    };
    ngx_astralform_json_str_t       fields[] = {
        { "access_token", NULL }, { "refresh_token", NULL },
        { "api_key", NULL }, { "scope", NULL }, { "token_type", NULL },
        { "account_id", NULL }, { NULL, NULL }
    };

    ngx_str_null(&type);
    expires_at = 0;
    obtained_at = 0;

    if (ngx_astralform_record_read(plain->data, plain->len, record)
        == NGX_OK)
    {
        tok->is_api_key = (type.len == sizeof("api_key") - 1
                           && ngx_strncmp(type.data, "api_key", type.len)
                              == 0);
        tok->expires_at = (time_t) expires_at;
        tok->obtained_at = (time_t) obtained_at;
        return NGX_OK;
    }

    /* the flat reader left a record it declines untouched */
    json = json_loadb((char *) plain->data, plain->len, 0, NULL);
    if (!json_is_object(json)) {
        json_decref(json);
        return NGX_ERROR;
    }

    jtype = ngx_astralform_json_value(json, "type");
    tok->is_api_key = (jtype != NULL && ngx_strcmp(jtype, "api_key") == 0);

    tok->expires_at = (time_t) json_integer_value(json_object_get(json,
                                                          "expires_at"));
    tok->obtained_at = (time_t) json_integer_value(json_object_get(json,
                                                          "obtained_at"));

    fields[0].dst = &tok->access_token;
    fields[1].dst = &tok->refresh_token;
    fields[2].dst = &tok->api_key;
    fields[3].dst = &tok->scope;
    fields[4].dst = &tok->token_type;
    fields[5].dst = &tok->account_id;

    if (ngx_astralform_json_strings(pool, json, fields) != NGX_OK) {
        json_decref(json);
        return NGX_ERROR;
    }

    json_decref(json);

    return NGX_OK;
}


ngx_int_t
ngx_astralform_connector_secret(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *what, ngx_str_t *out)
{
    ngx_str_t   *plain, *sealed, aad, blob;
    ngx_uint_t   stale;

    if (ngx_strcmp(what, "api_key") == 0) {
        plain = &conn->api_key;
        sealed = &conn->sealed_api_key;
    } else {
        plain = &conn->client_secret;
        sealed = &conn->sealed_secret;
    }

    if (plain->len) {
        *out = *plain;
        return NGX_OK;
    }

    if (sealed->len == 0) {
        return NGX_DECLINED;
    }

    if (ngx_astralform_aad(ctx->request->pool, &aad, &ctx->project->id,
                           &conn->id, what, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_astralform_open(ctx->request->pool, &ctx->amcf->keys, &aad,
                            sealed, out, &stale) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "astralform: the %s of connector \"%V\" does not open "
                      "with the configured keys", what, &conn->id);
        return NGX_ERROR;
    }

    /* sealed with an older key: store it sealed with the current one */
    if (stale
        && ngx_astralform_seal(ctx->request->pool, &ctx->amcf->keys, &aad,
                               out, &blob) == NGX_OK)
    {
        *sealed = blob;
        ngx_astralform_connector_reseal(ctx, conn);
    }

    return NGX_OK;
}


ngx_uint_t
ngx_astralform_token_expiring(ngx_astralform_ctx_t *ctx,
    ngx_astralform_token_t *tok)
{
    time_t  skew, life;

    if (tok->is_api_key || tok->expires_at == 0) {
        return 0;
    }

    skew = (time_t) (ctx->amcf->refresh_skew / 1000);

    /*
     * A token that lives shorter than the skew would look expiring from
     * its first second: it is renewed in the second half of its life.
     */

    life = tok->expires_at - tok->obtained_at;

    if (tok->obtained_at > 0 && life > 0 && skew > life / 2) {
        skew = life / 2;
    }

    return tok->expires_at <= ngx_time() + skew;
}


/* a copy of tok whose strings live in pool */
ngx_int_t
ngx_astralform_token_copy(ngx_pool_t *pool, ngx_astralform_token_t *dst,
    ngx_astralform_token_t *src)
{
    *dst = *src;

    if (ngx_astralform_str_copy(pool, &dst->access_token, &src->access_token)
        != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->refresh_token,
                                   &src->refresh_token) != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->api_key, &src->api_key)
           != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->scope, &src->scope) != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->token_type, &src->token_type)
           != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->account_id, &src->account_id)
           != NGX_OK
        || ngx_astralform_str_copy(pool, &dst->blob, &src->blob) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* wipes the secrets of a token opened in a pool about to go */
void
ngx_astralform_token_wipe(ngx_astralform_token_t *tok)
{
    ngx_explicit_memzero(tok->access_token.data, tok->access_token.len);
    ngx_explicit_memzero(tok->refresh_token.data, tok->refresh_token.len);
    ngx_explicit_memzero(tok->api_key.data, tok->api_key.len);
}
