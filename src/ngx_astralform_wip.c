/* Work in progress: replaced by the tool-call, OAuth and MCP files. */

#include "ngx_astralform.h"
#include "ngx_astralform_mcp.h"

static ngx_int_t
ngx_astralform_wip(ngx_astralform_ctx_t *ctx)
{
    return ngx_astralform_send_error(ctx, 501, "not_implemented",
                                     "not implemented yet");
}

ngx_int_t ngx_astralform_tools_call_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
ngx_int_t ngx_astralform_connections_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
ngx_int_t ngx_astralform_oauth_authorize_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
ngx_int_t ngx_astralform_oauth_callback_handler(ngx_astralform_ctx_t *ctx)
{ return ngx_astralform_wip(ctx); }
void ngx_astralform_revoke_tokens(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, redisReply *tokens) {}
void ngx_astralform_mcp_list_tools(ngx_astralform_ctx_t *ctx,
    ngx_astralform_step_pt done) { done(ctx); }
