/*
 * End-user OAuth: connect sessions, the authorize and callback endpoints,
 * code exchange and refresh per the catalog's provider style, revocation.
 */

#ifndef _NGX_ASTRALFORM_OAUTH_H_INCLUDED_
#define _NGX_ASTRALFORM_OAUTH_H_INCLUDED_


#include "ngx_astralform.h"
#include "ngx_astralform_tokens.h"


/* rc: NGX_OK with url set, or NGX_ERROR (store unavailable) */
typedef void (*ngx_astralform_url_pt)(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_str_t *url);


/*
 * Stores a connect session for (ctx->project, conn, ctx->user, return_url
 * or NULL) with astralform_session_ttl and hands back the single-purpose
 * authorization URL: astralform_public_url +
 * /v1/connectors/oauth/authorize?session=...
 */
void ngx_astralform_oauth_connect_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *return_url,
    ngx_astralform_url_pt handler);

/*
 * Refreshes ctx->user's token of conn (tok is the record the caller read).
 * Collapses concurrent refreshes (a Redis lock with an owner and a lease;
 * the record is re-read once the lock is held; the write is a CAS).
 * rc: NGX_OK with the fresh record; NGX_DECLINED when refresh failed for
 * good and the record was deleted (answer auth_required); NGX_ERROR when
 * the store or the provider is unavailable for now.
 */
void ngx_astralform_oauth_refresh(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_astralform_token_pt handler);

typedef struct ngx_astralform_revocation_s  ngx_astralform_revocation_t;

typedef void (*ngx_astralform_revocation_pt)(ngx_astralform_revocation_t *rv);


/* one token to revoke at the provider */
struct ngx_astralform_revocation_s {
    ngx_pool_t                   *pool;         /* the request lives here */
    ngx_log_t                    *log;
    ngx_astralform_def_t         *def;
    ngx_str_t                     client_id;
    ngx_str_t                     secret;       /* may be empty */
    ngx_str_t                     access_token;
    ngx_str_t                     refresh_token;
    ngx_msec_t                    timeout;
    ngx_astralform_revocation_pt  done;
    void                         *data;

    /* NGX_OK revoked, NGX_DECLINED refused for good, NGX_AGAIN later */
    ngx_int_t                     rc;
    ngx_uint_t                    status;
};


/*
 * Starts the revocation; rv->done(rv) follows, later, unless NGX_ERROR
 * (nothing could be sent: a local failure, or a secret the style needs is
 * missing) or the pool is destroyed first.
 */
ngx_int_t ngx_astralform_oauth_revoke(ngx_astralform_revocation_t *rv);

/*
 * NGX_OK when url starts with exactly an astralform_return_origin (then
 * nothing, or a path, query or fragment); NGX_DECLINED otherwise.
 */
ngx_int_t ngx_astralform_oauth_return_url_ok(ngx_astralform_main_conf_t *amcf,
    ngx_str_t *url);


#endif /* _NGX_ASTRALFORM_OAUTH_H_INCLUDED_ */
