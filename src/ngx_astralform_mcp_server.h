/*
 * The gateway as an MCP server (streamable HTTP): the transport and the
 * sessions (ngx_astralform_mcp_server.c), and the two servers on it, the
 * agents' (ngx_astralform_mcp_agent.c) and the admins'
 * (ngx_astralform_mcp_admin.c). The gateway as an MCP client of remote
 * servers is ngx_astralform_mcp_client.c, apart.
 */

#ifndef _NGX_ASTRALFORM_MCP_SERVER_H_INCLUDED_
#define _NGX_ASTRALFORM_MCP_SERVER_H_INCLUDED_


#include "ngx_astralform.h"
#include "ngx_astralform_jsonrpc.h"



typedef struct ngx_astralform_mcp_s  ngx_astralform_mcp_t;


typedef struct {
    const char                   *kind;          /* "agent", "admin" */
    const char                   *title;
    const char                   *instructions;
    ngx_int_t                   (*tools_list)(ngx_astralform_mcp_t *mcp);
    ngx_int_t                   (*tools_call)(ngx_astralform_mcp_t *mcp,
                                              json_t *params);
} ngx_astralform_mcp_server_t;


/* one JSON-RPC request on its way through a server */
struct ngx_astralform_mcp_s {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_mcp_server_t  *server;
    json_t                       *message;       /* owned */
    json_t                       *id;            /* in message */
    ngx_str_t                     session_id;
    ngx_str_t                     session_key;
    json_t                       *session;       /* owned: the stored state */
    ngx_str_t                     cancel_key;
    ngx_event_t                   cancel_ev;
    unsigned                      url_elicitation:1;
    unsigned                      answered:1;
};


/* serves one HTTP request of the endpoint */
ngx_int_t ngx_astralform_mcp_serve(ngx_astralform_ctx_t *ctx,
    ngx_astralform_mcp_server_t *server);

/* the answer to the request: result (released) or an error */
ngx_int_t ngx_astralform_mcp_result(ngx_astralform_mcp_t *mcp,
    json_t *result);
ngx_int_t ngx_astralform_mcp_error(ngx_astralform_mcp_t *mcp,
    ngx_int_t code, json_t *data, const char *fmt, ...);

/* a tool result: text content, structuredContent when json is an object */
json_t *ngx_astralform_mcp_tool_result(json_t *json, ngx_uint_t is_error);

/* a handler's answer that is not 2xx, as a tool error result */
json_t *ngx_astralform_mcp_tool_error(ngx_uint_t status, json_t *json);

/* watches for notifications/cancelled of this request while it runs */
void ngx_astralform_mcp_watch_cancel(ngx_astralform_mcp_t *mcp);


#endif /* _NGX_ASTRALFORM_MCP_SERVER_H_INCLUDED_ */
