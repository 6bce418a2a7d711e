/*
 * Remote MCP connectors: the gateway as an MCP client of streamable-HTTP
 * servers (initialize, Mcp-Session-Id, JSON or text/event-stream answers).
 */

#ifndef _NGX_ASTRALFORM_MCP_CLIENT_H_INCLUDED_
#define _NGX_ASTRALFORM_MCP_CLIENT_H_INCLUDED_


#include "ngx_astralform.h"


/*
 * Appends the tools of every visible remote_mcp connector of ctx to the
 * JSON array ctx->result, named "<connector id>_<tool name>", then calls
 * done(ctx) (possibly before returning). A server that fails is skipped
 * and logged, so one dead server does not hide the other tools.
 */
void ngx_astralform_mcp_list_tools(ngx_astralform_ctx_t *ctx,
    ngx_astralform_step_pt done);

/*
 * Calls tool (the server's own name, without the prefix) on conn's server
 * and answers the request: 200 {"tool","connector","result"} with the
 * server's CallToolResult, or a mapped error (provider_error,
 * provider_timeout). Returns NGX_DONE, or an HTTP status on a local error.
 */
ngx_int_t ngx_astralform_mcp_call_tool(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *tool, json_t *arguments);

/*
 * Closes at the server (DELETE with Mcp-Session-Id) the sessions that
 * every worker of every instance keeps for conn, after the request if need
 * be: the connector was disabled.
 */
void ngx_astralform_mcp_close_sessions(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);


#endif /* _NGX_ASTRALFORM_MCP_CLIENT_H_INCLUDED_ */
