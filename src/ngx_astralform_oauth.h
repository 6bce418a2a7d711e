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

/*
 * NGX_OK when url starts with exactly an astralform_return_origin (then
 * nothing, or a path, query or fragment); NGX_DECLINED otherwise.
 */
ngx_int_t ngx_astralform_oauth_return_url_ok(ngx_astralform_main_conf_t *amcf,
    ngx_str_t *url);


#endif /* _NGX_ASTRALFORM_OAUTH_H_INCLUDED_ */
