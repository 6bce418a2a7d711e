/*
 * The agents' MCP server, /v1/projects/{pid}/mcp: the connector tools of
 * one agent for one end user.
 *
 * tools/list and tools/call run the HTTP rows' own handlers (GET /tools,
 * POST /tools/call) and turn their answers into MCP ones, so both doors
 * share every rule: visibility, argument checks, refresh, error mapping,
 * scrubbing. An end user who has not connected gets the connect link: as
 * URLElicitationRequiredError (-32042) when the client declared URL
 * elicitation, else as a tool error whose text carries the link.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_mcp_server.h"


static ngx_str_t *ngx_astralform_mcp_request_agent(
    ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_mcp_agent_list(ngx_astralform_mcp_t *mcp);
static ngx_int_t ngx_astralform_mcp_agent_listed(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json);
static json_t *ngx_astralform_mcp_agent_tool(ngx_astralform_ctx_t *ctx,
    json_t *tool);
static ngx_int_t ngx_astralform_mcp_agent_call(ngx_astralform_mcp_t *mcp,
    json_t *params);
static ngx_int_t ngx_astralform_mcp_agent_called(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json);
static ngx_int_t ngx_astralform_mcp_connect_prompt(ngx_astralform_mcp_t *mcp,
    json_t *json);


static ngx_astralform_mcp_server_t  ngx_astralform_mcp_agent_server = {
    "agent",
    "Astralform connectors",
    "The tools of the services this end user connected. When a tool "
    "answers that the user must connect an account, show them the link "
    "and retry the same call once they are done.",
    ngx_astralform_mcp_agent_list,
    ngx_astralform_mcp_agent_call
};


ngx_int_t
ngx_astralform_mcp_agent_handler(ngx_astralform_ctx_t *ctx)
{
    ctx->agent = *ngx_astralform_mcp_request_agent(ctx);

    return ngx_astralform_mcp_serve(ctx, &ngx_astralform_mcp_agent_server);
}


/*
 * The agent of this request, as the HTTP rows take it. The one place to
 * change when keys bound to agents (astralform_agent) decide it.
 */
static ngx_str_t *
ngx_astralform_mcp_request_agent(ngx_astralform_ctx_t *ctx)
{
    return &ctx->agent;
}


static ngx_int_t
ngx_astralform_mcp_agent_list(ngx_astralform_mcp_t *mcp)
{
    mcp->ctx->answer = ngx_astralform_mcp_agent_listed;

    return ngx_astralform_tools_list_handler(mcp->ctx);
}


static ngx_int_t
ngx_astralform_mcp_agent_listed(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json)
{
    size_t                 i;
    json_t                *tools, *tool, *list;
    ngx_int_t              rc;
    ngx_astralform_mcp_t  *mcp;

    mcp = ctx->door;

    if (status != NGX_HTTP_OK) {
        rc = ngx_astralform_mcp_error(mcp, NGX_ASTRALFORM_JSONRPC_INTERNAL,
                                      json_incref(json), "%s",
                                      ngx_astralform_json_value(json,
                                                                "message")
                                      ?: "the tools could not be listed");
        json_decref(json);
        return rc;
    }

    list = json_array();
    tools = json_object_get(json, "tools");

    json_array_foreach(tools, i, tool) {
        json_array_append_new(list, ngx_astralform_mcp_agent_tool(ctx, tool));
    }

    json_decref(json);

    return ngx_astralform_mcp_result(mcp, json_pack("{s:o}", "tools", list));
}


/* a GET /tools entry as an MCP tool: title and annotations added */
static json_t *
ngx_astralform_mcp_agent_tool(ngx_astralform_ctx_t *ctx, json_t *tool)
{
    u_char                      *p, title[256], *last;
    size_t                       i;
    json_t                      *def_tool, *t, *annotations;
    ngx_str_t                    id, name;
    const char                  *method;
    ngx_astralform_connector_t  *conn;

    id.data = (u_char *) ngx_astralform_json_value(tool, "connector");
    id.len = id.data ? ngx_strlen(id.data) : 0;
    name.data = (u_char *) ngx_astralform_json_value(tool, "name");
    name.len = name.data ? ngx_strlen(name.data) : 0;

    conn = ngx_astralform_find_connector(ctx, &id);
    def_tool = NULL;

    if (conn != NULL) {
        json_array_foreach(conn->def->tools, i, t) {
            if (ngx_strcmp(ngx_astralform_json_value(t, "name") ?: "",
                           name.data) == 0)
            {
                def_tool = t;
                break;
            }
        }
    }

    method = def_tool ? ngx_astralform_json_value(def_tool, "method") : NULL;

    /* "github_list_repos" of GitHub: "GitHub: list repos" */
    if (def_tool != NULL && conn != NULL
        && name.len > conn->def->slug.len + 1)
    {
        last = ngx_slprintf(title, title + sizeof(title), "%V: %*s",
                            &conn->def->name,
                            name.len - conn->def->slug.len - 1,
                            name.data + conn->def->slug.len + 1);
    } else {
        last = ngx_slprintf(title, title + sizeof(title), "%V", &name);
    }

    for (p = title; p < last; p++) {
        if (*p == '_') {
            *p = ' ';
        }
    }

    annotations = json_pack("{s:s%, s:b}", "title", title,
                            (size_t) (last - title), "openWorldHint", 1);

    if (method != NULL && annotations != NULL) {
        json_object_set_new(annotations, "readOnlyHint",
                            json_boolean(ngx_strcmp(method, "GET") == 0));
        json_object_set_new(annotations, "destructiveHint",
                            json_boolean(ngx_strcmp(method, "DELETE")
                                         == 0));
    }

    return json_pack("{s:O, s:s%, s:O?, s:O, s:o}",
                     "name", json_object_get(tool, "name"),
                     "title", title, (size_t) (last - title),
                     "description", json_object_get(tool, "description"),
                     "inputSchema", json_object_get(tool, "input_schema"),
                     "annotations", annotations);
}


static ngx_int_t
ngx_astralform_mcp_agent_call(ngx_astralform_mcp_t *mcp, json_t *params)
{
    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;

    /* the POST /tools/call body: {"name", "arguments"} */
    json_decref(ctx->body);
    ctx->body = json_incref(params);
    ctx->answer = ngx_astralform_mcp_agent_called;

    ngx_astralform_mcp_watch_cancel(mcp);

    return ngx_astralform_tools_call_handler(ctx);
}


static ngx_int_t
ngx_astralform_mcp_agent_called(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json)
{
    json_t                *result;
    ngx_int_t              rc;
    const char            *code;
    ngx_astralform_mcp_t  *mcp;

    mcp = ctx->door;

    if (status == NGX_HTTP_OK) {
        result = ngx_astralform_mcp_tool_result(json_object_get(json,
                                                                "result"),
                                                0);
        json_decref(json);
        return ngx_astralform_mcp_result(mcp, result);
    }

    code = ngx_astralform_json_value(json, "error");
    code = code ? code : "";

    if (ngx_strcmp(code, "unknown_tool") == 0) {
        rc = ngx_astralform_mcp_error(mcp,
                                      NGX_ASTRALFORM_JSONRPC_INVALID_PARAMS,
                                      NULL, "Unknown tool: %V", &ctx->tool);
        json_decref(json);
        return rc;
    }

    if (ngx_strcmp(code, "auth_required") == 0
        && json_is_string(json_object_get(json, "authorization_url")))
    {
        rc = ngx_astralform_mcp_connect_prompt(mcp, json);
        json_decref(json);
        return rc;
    }

    return ngx_astralform_mcp_result(mcp,
                                     ngx_astralform_mcp_tool_error(status,
                                                                   json));
}


static ngx_int_t
ngx_astralform_mcp_connect_prompt(ngx_astralform_mcp_t *mcp, json_t *json)
{
    u_char      text[2048], *last;
    json_t     *url;
    ngx_str_t   eid;
    const char  *message;

    url = json_object_get(json, "authorization_url");
    message = ngx_astralform_json_value(json, "message");

    if (mcp->url_elicitation) {
        if (ngx_astralform_random_token(mcp->ctx->request->pool, &eid, 16)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_astralform_mcp_error(mcp,
                   NGX_ASTRALFORM_MCP_URL_ELICITATION,
                   json_pack("{s:[{s:s, s:s%, s:O, s:s}]}",
                             "elicitations",
                             "mode", "url",
                             "elicitationId", eid.data, eid.len,
                             "url", url,
                             "message", "Connect your account to let the "
                                        "agent use it, then come back"),
                   "This request requires connecting an account: %s",
                   message);
    }

    last = ngx_slprintf(text, text + sizeof(text),
                        "auth_required: %s\n\nThe user must connect their "
                        "account first. Show them this link to open in a "
                        "browser: %s\nOnce they have connected, retry the "
                        "same call.", message, json_string_value(url));

    return ngx_astralform_mcp_result(mcp,
               json_pack("{s:[{s:s, s:s%}], s:b}",
                         "content", "type", "text",
                         "text", text, (size_t) (last - text),
                         "isError", 1));
}


json_t *
ngx_astralform_mcp_tool_result(json_t *json, ngx_uint_t is_error)
{
    char    *text;
    json_t  *result;

    if (json_is_string(json)) {
        return json_pack("{s:[{s:s, s:O}], s:b}",
                         "content", "type", "text", "text", json,
                         "isError", (int) is_error);
    }

    text = json_dumps(json ? json : json_null(),
                      JSON_COMPACT|JSON_ENCODE_ANY
                      |JSON_REAL_PRECISION(15));
    if (text == NULL) {
        return NULL;
    }

    result = json_pack("{s:[{s:s, s:s}], s:b}",
                       "content", "type", "text", "text", text,
                       "isError", (int) is_error);
    ngx_free(text);

    if (result != NULL && json_is_object(json)) {
        json_object_set(result, "structuredContent", json);
    }

    return result;
}


/* the gateway's error object, as the tool's error result (json released) */
json_t *
ngx_astralform_mcp_tool_error(ngx_uint_t status, json_t *json)
{
    json_t  *result;

    if (json != NULL) {
        json_object_set_new(json, "status", json_integer(status));
    }

    result = ngx_astralform_mcp_tool_result(json, 1);
    json_decref(json);

    return result;
}
