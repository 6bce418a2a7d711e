/*
 * The admins' MCP server, /v1/mcp: the project's connectors managed as
 * tools. Every tool takes project_id, which must be the admin key's
 * project, and runs the HTTP row that does the same thing (its handler,
 * with the path, method and body the row would have), so the two doors
 * share one implementation: checks, sealing, revocation, and answers that
 * never carry a secret.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_mcp_server.h"


typedef ngx_int_t (*ngx_astralform_admin_run_pt)(ngx_astralform_ctx_t *ctx,
    json_t *args);


typedef struct {
    const char                   *name;
    const char                   *title;
    const char                   *description;
    const char                   *schema;       /* JSON text */
    ngx_uint_t                    read_only;
    ngx_astralform_admin_run_pt   run;
} ngx_astralform_admin_tool_t;


static ngx_int_t ngx_astralform_mcp_admin_list(ngx_astralform_mcp_t *mcp);
static ngx_int_t ngx_astralform_mcp_admin_call(ngx_astralform_mcp_t *mcp,
    json_t *params);
static ngx_int_t ngx_astralform_mcp_admin_answered(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json);
static ngx_int_t ngx_astralform_mcp_admin_refuse(ngx_astralform_mcp_t *mcp,
    ngx_uint_t status, const char *code, const char *message);
static ngx_int_t ngx_astralform_admin_row(ngx_astralform_ctx_t *ctx,
    ngx_uint_t method, json_t *args, const char *id_arg, const char *tail,
    ngx_int_t *rc);
static ngx_int_t ngx_astralform_admin_catalog(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_connector_row(
    ngx_astralform_ctx_t *ctx, json_t *args, ngx_uint_t method,
    const char *id_arg);
static ngx_int_t ngx_astralform_admin_list(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_enable(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_update(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_disable(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_assign(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_status(ngx_astralform_ctx_t *ctx,
    json_t *args);
static ngx_int_t ngx_astralform_admin_id(json_t *args, const char *name,
    ngx_str_t *dst);


#define NGX_ASTRALFORM_PID_SCHEMA                                            \
    "\"project_id\":{\"type\":\"string\",\"description\":"                   \
    "\"The project's id (the admin key's project).\"}"

#define NGX_ASTRALFORM_SETTINGS_SCHEMA                                       \
    "\"oauth_client_id\":{\"type\":\"string\",\"description\":"              \
    "\"OAuth client id of the project's app at the provider.\"},"            \
    "\"oauth_client_secret\":{\"type\":\"string\",\"description\":"          \
    "\"OAuth client secret; stored encrypted, never shown again.\"},"        \
    "\"api_key\":{\"type\":\"string\",\"description\":"                      \
    "\"Service API key of an api_key connector; stored encrypted.\"},"       \
    "\"mcp_url\":{\"type\":\"string\",\"description\":"                      \
    "\"Streamable HTTP URL of a remote_mcp connector.\"},"                   \
    "\"oauth_scopes\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":"          \
    "\"array\",\"items\":{\"type\":\"string\"}}],\"description\":"           \
    "\"Scopes: \\\"a,b\\\" or [\\\"a\\\",\\\"b\\\"].\"},"                    \
    "\"require_auth\":{\"type\":\"boolean\",\"description\":"                \
    "\"Calls need the end user's own credential (default true).\"},"         \
    "\"allow_end_user_auth\":{\"type\":\"boolean\",\"description\":"         \
    "\"End users may connect their own account (default true).\"}"


static ngx_astralform_admin_tool_t  ngx_astralform_admin_tools[] = {

    { "astralform_connector_catalog", "Connector catalog",
      "List the connectors the gateway can enable (slug, name, type, "
      "category, tools).",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA "},"
      "\"required\":[\"project_id\"],\"additionalProperties\":false}",
      1, ngx_astralform_admin_catalog },

    { "astralform_list_connectors", "List enabled connectors",
      "List the project's enabled connectors and their status "
      "(credentials are reported as has_secret / has_api_key, never shown).",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA "},"
      "\"required\":[\"project_id\"],\"additionalProperties\":false}",
      1, ngx_astralform_admin_list },

    { "astralform_enable_connector", "Enable a connector",
      "Enable a catalog connector for the project. oauth needs "
      "oauth_client_id and oauth_client_secret; api_key needs api_key "
      "unless end users bring their own; remote_mcp needs id and mcp_url. "
      "Ask the user for credentials: never invent them.",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA ","
      "\"connector_slug\":{\"type\":\"string\",\"description\":"
      "\"Catalog slug: slack, notion, github, ...\"},"
      "\"id\":{\"type\":\"string\",\"description\":"
      "\"Connector id in the project (default: the slug).\"},"
      NGX_ASTRALFORM_SETTINGS_SCHEMA "},"
      "\"required\":[\"project_id\",\"connector_slug\"],"
      "\"additionalProperties\":false}",
      0, ngx_astralform_admin_enable },

    { "astralform_update_project_connector", "Update a connector",
      "Change an enabled connector's credentials, scopes or auth "
      "settings; give only the fields to change.",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA ","
      "\"connector_id\":{\"type\":\"string\",\"description\":"
      "\"The connector's id in the project.\"},"
      NGX_ASTRALFORM_SETTINGS_SCHEMA "},"
      "\"required\":[\"project_id\",\"connector_id\"],"
      "\"additionalProperties\":false}",
      0, ngx_astralform_admin_update },

    { "astralform_disable_connector", "Disable a connector",
      "Disable a connector: removes it and revokes every end-user token "
      "of it (reported as revoked_tokens). Confirm with the user first.",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA ","
      "\"connector_id\":{\"type\":\"string\",\"description\":"
      "\"The connector's id in the project.\"}},"
      "\"required\":[\"project_id\",\"connector_id\"],"
      "\"additionalProperties\":false}",
      0, ngx_astralform_admin_disable },

    { "astralform_assign_connectors", "Assign connectors to an agent",
      "Set the connectors an agent may use (it then sees only their "
      "tools); connectors null removes the assignment.",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA ","
      "\"agent_id\":{\"type\":\"string\",\"description\":"
      "\"The agent's id (as in X-Astralform-Agent).\"},"
      "\"connectors\":{\"type\":[\"array\",\"null\"],\"items\":"
      "{\"type\":\"string\"},\"description\":\"Connector ids.\"}},"
      "\"required\":[\"project_id\",\"agent_id\",\"connectors\"],"
      "\"additionalProperties\":false}",
      0, ngx_astralform_admin_assign },

    { "astralform_connector_status", "Troubleshoot a connector",
      "Check a connector for an agent and an end user: is_enabled, "
      "assigned, authenticated (with require_auth and token expiry), each "
      "with a hint saying what to do.",
      "{\"type\":\"object\",\"properties\":{" NGX_ASTRALFORM_PID_SCHEMA ","
      "\"connector_id\":{\"type\":\"string\"},"
      "\"agent_id\":{\"type\":\"string\"},"
      "\"user_id\":{\"type\":\"string\"}},"
      "\"required\":[\"project_id\",\"connector_id\"],"
      "\"additionalProperties\":false}",
      1, ngx_astralform_admin_status },

    { NULL, NULL, NULL, NULL, 0, NULL }
};


static ngx_astralform_mcp_server_t  ngx_astralform_mcp_admin_server = {
    "admin",
    "Astralform admin",
    "Manage a project's connectors: enable, list, update, assign to "
    "agents, disable, troubleshoot. Secrets go in and never come out; ask "
    "the user for every credential instead of inventing one.",
    ngx_astralform_mcp_admin_list,
    ngx_astralform_mcp_admin_call
};


ngx_int_t
ngx_astralform_mcp_admin_handler(ngx_astralform_ctx_t *ctx)
{
    if (!ngx_astralform_is_admin(ctx)) {
        return ngx_astralform_admin_required(ctx);
    }

    return ngx_astralform_mcp_serve(ctx, &ngx_astralform_mcp_admin_server);
}


static ngx_int_t
ngx_astralform_mcp_admin_list(ngx_astralform_mcp_t *mcp)
{
    json_t                       *list, *schema;
    ngx_astralform_admin_tool_t  *t;

    list = json_array();

    for (t = ngx_astralform_admin_tools; t->name; t++) {
        schema = json_loads(t->schema, 0, NULL);

        json_array_append_new(list,
            json_pack("{s:s, s:s, s:s, s:o, s:{s:s, s:b, s:b, s:b}}",
                      "name", t->name, "title", t->title,
                      "description", t->description,
                      "inputSchema", schema ? schema : json_object(),
                      "annotations", "title", t->title,
                      "readOnlyHint", (int) t->read_only,
                      "destructiveHint",
                      t->run == ngx_astralform_admin_disable,
                      "openWorldHint", 0));
    }

    return ngx_astralform_mcp_result(mcp, json_pack("{s:o}", "tools", list));
}


static ngx_int_t
ngx_astralform_mcp_admin_call(ngx_astralform_mcp_t *mcp, json_t *params)
{
    json_t                       *args;
    ngx_str_t                     pid;
    const char                   *name;
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_admin_tool_t  *t;

    ctx = mcp->ctx;
    name = ngx_astralform_json_value(params, "name");

    for (t = ngx_astralform_admin_tools; t->name; t++) {
        if (ngx_strcmp(t->name, name) == 0) {
            break;
        }
    }

    if (t->name == NULL) {
        return ngx_astralform_mcp_error(mcp,
                                        NGX_ASTRALFORM_JSONRPC_INVALID_PARAMS,
                                        NULL, "Unknown tool: %s", name);
    }

    args = json_object_get(params, "arguments");

    if (args != NULL && !json_is_object(args)) {
        return ngx_astralform_mcp_error(mcp,
                                        NGX_ASTRALFORM_JSONRPC_INVALID_PARAMS,
                                        NULL, "arguments must be an object");
    }

    if (ngx_astralform_admin_id(args, "project_id", &pid) != NGX_OK
        || pid.len == 0)
    {
        return ngx_astralform_mcp_admin_refuse(mcp, NGX_HTTP_BAD_REQUEST,
                   "invalid_request", "\"project_id\" is required");
    }

    /* other projects do not exist for this key */
    if (pid.len != ctx->project->id.len
        || ngx_strncmp(pid.data, ctx->project->id.data, pid.len) != 0)
    {
        return ngx_astralform_mcp_admin_refuse(mcp, NGX_HTTP_NOT_FOUND,
                   "project_not_found",
                   "no such project: give the admin key's project_id");
    }

    ctx->answer = ngx_astralform_mcp_admin_answered;

    return t->run(ctx, args);
}


static ngx_int_t
ngx_astralform_mcp_admin_answered(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json)
{
    json_t  *result;

    if (status >= NGX_HTTP_OK && status < NGX_HTTP_SPECIAL_RESPONSE) {
        result = ngx_astralform_mcp_tool_result(json, 0);
        json_decref(json);

    } else {
        result = ngx_astralform_mcp_tool_error(status, json);
    }

    return ngx_astralform_mcp_result(ctx->door, result);
}


static ngx_int_t
ngx_astralform_mcp_admin_refuse(ngx_astralform_mcp_t *mcp, ngx_uint_t status,
    const char *code, const char *message)
{
    return ngx_astralform_mcp_result(mcp,
               ngx_astralform_mcp_tool_error(status,
                   json_pack("{s:s, s:s}", "error", code,
                             "message", message)));
}


/*
 * Makes the request the HTTP row /v1/projects/{pid}/connectors[/{id}] or
 * /agents/{id}/connectors would be: the handlers read the method and the
 * path segments. The body is args without the ids the path carries.
 * NGX_DECLINED: answered already, with *rc what finishes the request.
 */
static ngx_int_t
ngx_astralform_admin_row(ngx_astralform_ctx_t *ctx, ngx_uint_t method,
    json_t *args, const char *id_arg, const char *tail, ngx_int_t *rc)
{
    ngx_str_t  id;

    ctx->request->method = method;

    ngx_str_set(&ctx->seg[0], "v1");
    ngx_str_set(&ctx->seg[1], "projects");
    ctx->seg[2] = ctx->project->id;
    if (tail != NULL) {
        ngx_str_set(&ctx->seg[3], "agents");

    } else {
        ngx_str_set(&ctx->seg[3], "connectors");
    }

    ctx->nseg = 4;

    if (id_arg != NULL) {
        if (ngx_astralform_admin_id(args, id_arg, &id) != NGX_OK
            || id.len == 0)
        {
            *rc = ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request",
                                            "\"%s\" is required", id_arg);
            return NGX_DECLINED;
        }

        ctx->seg[ctx->nseg++] = id;
    }

    if (tail != NULL) {
        ngx_str_set(&ctx->seg[ctx->nseg], "connectors");
        ctx->nseg++;
    }

    json_decref(ctx->body);
    ctx->body = args ? json_copy(args) : json_object();
    if (ctx->body == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    json_object_del(ctx->body, "project_id");
    if (id_arg != NULL) {
        json_object_del(ctx->body, id_arg);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_admin_catalog(ngx_astralform_ctx_t *ctx, json_t *args)
{
    return ngx_astralform_catalog_handler(ctx);
}


/* the connectors rows: list (GET), enable (POST), update, disable */
static ngx_int_t
ngx_astralform_admin_connector_row(ngx_astralform_ctx_t *ctx, json_t *args,
    ngx_uint_t method, const char *id_arg)
{
    ngx_int_t  rc;

    if (ngx_astralform_admin_row(ctx, method, args, id_arg, NULL, &rc)
        != NGX_OK)
    {
        return rc;
    }

    return ngx_astralform_connectors_handler(ctx);
}


static ngx_int_t
ngx_astralform_admin_list(ngx_astralform_ctx_t *ctx, json_t *args)
{
    return ngx_astralform_admin_connector_row(ctx, args, NGX_HTTP_GET, NULL);
}


static ngx_int_t
ngx_astralform_admin_enable(ngx_astralform_ctx_t *ctx, json_t *args)
{
    return ngx_astralform_admin_connector_row(ctx, args, NGX_HTTP_POST, NULL);
}


static ngx_int_t
ngx_astralform_admin_update(ngx_astralform_ctx_t *ctx, json_t *args)
{
    return ngx_astralform_admin_connector_row(ctx, args, NGX_HTTP_PATCH, "connector_id");
}


static ngx_int_t
ngx_astralform_admin_disable(ngx_astralform_ctx_t *ctx, json_t *args)
{
    return ngx_astralform_admin_connector_row(ctx, args, NGX_HTTP_DELETE, "connector_id");
}


static ngx_int_t
ngx_astralform_admin_assign(ngx_astralform_ctx_t *ctx, json_t *args)
{
    ngx_int_t  rc;

    if (ngx_astralform_admin_row(ctx, NGX_HTTP_PUT, args, "agent_id",
                                 "connectors", &rc)
        != NGX_OK)
    {
        return rc;
    }

    if (json_object_get(ctx->body, "connectors") == NULL) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"connectors\" is required: an "
                                         "array of connector ids, or null");
    }

    return ngx_astralform_agents_handler(ctx);
}


static ngx_int_t
ngx_astralform_admin_status(ngx_astralform_ctx_t *ctx, json_t *args)
{
    if (ngx_astralform_admin_id(args, "connector_id", &ctx->connector_id)
        != NGX_OK
        || ngx_astralform_admin_id(args, "agent_id", &ctx->agent) != NGX_OK
        || ngx_astralform_admin_id(args, "user_id", &ctx->user) != NGX_OK
        || ctx->connector_id.len == 0
        || (ctx->agent.len && !ngx_astralform_valid_identity(&ctx->agent))
        || (ctx->user.len && !ngx_astralform_valid_identity(&ctx->user)))
    {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "give connector_id, and optionally "
                                         "agent_id and user_id (1 to 128 "
                                         "letters, digits or \"._:@-\")");
    }

    return ngx_astralform_diagnose(ctx);
}


/* an optional string argument (absent: empty); NGX_ERROR if not a string */
static ngx_int_t
ngx_astralform_admin_id(json_t *args, const char *name, ngx_str_t *dst)
{
    json_t  *v;

    ngx_str_null(dst);

    v = json_object_get(args, name);
    if (v == NULL || json_is_null(v)) {
        return NGX_OK;
    }

    if (!json_is_string(v)) {
        return NGX_ERROR;
    }

    dst->data = (u_char *) json_string_value(v);
    dst->len = json_string_length(v);

    return NGX_OK;
}
