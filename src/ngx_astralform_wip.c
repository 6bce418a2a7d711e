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

