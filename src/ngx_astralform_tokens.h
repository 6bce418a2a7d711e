/*
 * End users' credentials: one sealed record per (project, connector, user)
 * in the hash {P}:tokens:<connector>, field <user>, AAD naming all three.
 *
 * The record is JSON, sealed whole:
 *   {"type":"oauth", "access_token":..., "refresh_token":..., "expires_at":N
 *    (unix seconds, 0 = never), "scope":"a b", "token_type":"bearer",
 *    "account_id":..., "obtained_at":N}
 *   {"type":"api_key", "api_key":...}
 */

#ifndef _NGX_ASTRALFORM_TOKENS_H_INCLUDED_
#define _NGX_ASTRALFORM_TOKENS_H_INCLUDED_


#include "ngx_astralform.h"


typedef struct {
    ngx_str_t                    access_token;
    ngx_str_t                    refresh_token;
    ngx_str_t                    api_key;
    ngx_str_t                    scope;
    ngx_str_t                    token_type;
    ngx_str_t                    account_id;
    time_t                       expires_at;     /* 0: does not expire */
    time_t                       obtained_at;
    ngx_str_t                    blob;           /* as stored: for CAS */
    unsigned                     is_api_key:1;
} ngx_astralform_token_t;


/*
 * rc: NGX_OK (tok filled), NGX_DECLINED (nothing stored for the user, or a
 * record that does not open: treated as missing), NGX_ERROR (the store is
 * unavailable).
 */
typedef void (*ngx_astralform_token_pt)(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_astralform_token_t *tok);


/* reads and opens ctx->user's record for conn; re-seals an old-key blob */
void ngx_astralform_token_get(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_pt handler);

/* opens a record already read (blob NULL: none stored); as token_get */
void ngx_astralform_token_use(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *blob,
    ngx_astralform_token_pt handler);

/*
 * Seals tok and stores it. With expect (the blob read before), the write is
 * a compare-and-set: rc NGX_DECLINED when the stored blob changed since.
 * Without, a credential the user did not have yet must fit the project's
 * astralform_max_credentials (the connectors loaded): rc NGX_BUSY if not.
 */
void ngx_astralform_token_put(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_str_t *expect, ngx_astralform_token_pt handler);

/* the record as sealed JSON text, and back */
ngx_int_t ngx_astralform_token_seal(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *user,
    ngx_astralform_token_t *tok, ngx_str_t *blob);
ngx_int_t ngx_astralform_token_open(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *user, ngx_str_t *blob,
    ngx_astralform_token_t *tok, ngx_uint_t *stale);

/* the usable secret of a connector (config: plain; API: opened) */
ngx_int_t ngx_astralform_connector_secret(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *what, ngx_str_t *out);

/*
 * whether the token needs a refresh now: expiry within the skew, capped at
 * half the token's lifetime
 */
ngx_uint_t ngx_astralform_token_expiring(ngx_astralform_ctx_t *ctx,
    ngx_astralform_token_t *tok);

ngx_int_t ngx_astralform_token_copy(ngx_pool_t *pool,
    ngx_astralform_token_t *dst, ngx_astralform_token_t *src);
void ngx_astralform_token_wipe(ngx_astralform_token_t *tok);

/* connections.c: one connection row (tok NULL: nothing stored) */
json_t *ngx_astralform_connection_json(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok);


#endif /* _NGX_ASTRALFORM_TOKENS_H_INCLUDED_ */
