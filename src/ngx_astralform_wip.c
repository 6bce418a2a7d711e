/* Work in progress: replaced by the tool-call, OAuth and MCP files. */

#include "ngx_astralform.h"
#include "ngx_astralform_mcp.h"
#include "ngx_astralform_oauth.h"

static ngx_int_t
ngx_astralform_wip(ngx_astralform_ctx_t *ctx)
{
    return ngx_astralform_send_error(ctx, 501, "not_implemented",
                                     "not implemented yet");
}

ngx_int_t ngx_astralform_connections_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
ngx_int_t ngx_astralform_oauth_authorize_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
ngx_int_t ngx_astralform_oauth_callback_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
void ngx_astralform_revoke_tokens(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, redisReply *tokens) {}
/* OAuth issue: replaced by ngx_astralform_oauth.c */
void ngx_astralform_oauth_connect_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *return_url,
    ngx_astralform_url_pt handler) { handler(ctx, NGX_ERROR, NULL); }
void ngx_astralform_oauth_refresh(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_astralform_token_pt handler) { handler(ctx, NGX_ERROR, NULL); }
