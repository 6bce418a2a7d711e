/*
 * JSON-RPC 2.0 messages (https://www.jsonrpc.org/specification) as the
 * MCP client and the MCP servers send and receive them.
 */


#include "ngx_astralform_jsonrpc.h"


#define NGX_ASTRALFORM_MCP_2025_11_25  ngx_string("2025-11-25")
#define NGX_ASTRALFORM_MCP_2025_06_18  ngx_string("2025-06-18")
#define NGX_ASTRALFORM_MCP_2025_03_26  ngx_string("2025-03-26")
#define NGX_ASTRALFORM_MCP_2024_11_05  ngx_string("2024-11-05")


ngx_str_t  ngx_astralform_mcp_server_versions[] = {
    NGX_ASTRALFORM_MCP_2025_11_25,
    NGX_ASTRALFORM_MCP_2025_06_18,
    NGX_ASTRALFORM_MCP_2025_03_26,
    ngx_null_string
};


/*
 * The messages the client uses (initialize, tools/list, tools/call) are
 * the same in these; the first is the one it asks for.
 */
ngx_str_t  ngx_astralform_mcp_client_versions[] = {
    NGX_ASTRALFORM_MCP_2025_06_18,
    NGX_ASTRALFORM_MCP_2025_03_26,
    NGX_ASTRALFORM_MCP_2024_11_05,
    ngx_null_string
};


ngx_int_t
ngx_astralform_jsonrpc_parse(json_t *json, ngx_astralform_jsonrpc_t *rpc)
{
    json_t  *id, *method, *version, *code, *message;

    ngx_memzero(rpc, sizeof(ngx_astralform_jsonrpc_t));

    version = json_object_get(json, "jsonrpc");

    if (!json_is_object(json) || !json_is_string(version)
        || ngx_strcmp(json_string_value(version), "2.0") != 0)
    {
        rpc->invalid = "not a JSON-RPC 2.0 message";
        return NGX_ERROR;
    }

    id = json_object_get(json, "id");
    method = json_object_get(json, "method");

    if (id != NULL && !ngx_astralform_jsonrpc_valid_id(id)
        && !(json_is_null(id) && method == NULL))
    {
        rpc->invalid = "the id must be a string or an integer";
        return NGX_ERROR;
    }

    rpc->id = id;

    if (method != NULL) {
        if (!json_is_string(method)) {
            rpc->invalid = "the method must be a string";
            return NGX_ERROR;
        }

        rpc->params = json_object_get(json, "params");

        if (rpc->params != NULL && !json_is_object(rpc->params)
            && !json_is_array(rpc->params))
        {
            rpc->params = NULL;
            rpc->invalid = "the params must be an object or an array";
            return NGX_ERROR;
        }

        rpc->method = json_string_value(method);
        rpc->kind = id ? NGX_ASTRALFORM_JSONRPC_REQUEST
                       : NGX_ASTRALFORM_JSONRPC_NOTIFICATION;
        return NGX_OK;
    }

    /* a response: the id of its request, a result or an error */

    rpc->result = json_object_get(json, "result");
    rpc->error = json_object_get(json, "error");

    if (id == NULL || (rpc->result == NULL) == (rpc->error == NULL)
        || (json_is_null(id) && rpc->error == NULL))
    {
        rpc->result = NULL;
        rpc->error = NULL;
        rpc->invalid = "neither a request (no method) nor a response (an "
                       "id and either a result or an error)";
        return NGX_ERROR;
    }

    code = json_object_get(rpc->error, "code");
    message = json_object_get(rpc->error, "message");

    if (rpc->error != NULL
        && (!json_is_object(rpc->error) || !json_is_integer(code)
            || !json_is_string(message)))
    {
        rpc->error = NULL;
        rpc->invalid = "the error must be an object with an integer code "
                       "and a string message";
        return NGX_ERROR;
    }

    rpc->kind = NGX_ASTRALFORM_JSONRPC_RESPONSE;

    return NGX_OK;
}


ngx_uint_t
ngx_astralform_jsonrpc_valid_id(json_t *id)
{
    return json_is_string(id) || json_is_integer(id);
}


json_t *
ngx_astralform_jsonrpc_request(json_t *id, const char *method,
    json_t *params)
{
    return json_pack("{s:s, s:o*, s:s, s:o*}", "jsonrpc", "2.0", "id", id,
                     "method", method, "params", params);
}


json_t *
ngx_astralform_jsonrpc_result(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0",
                     "id", id ? id : json_null(), "result", result);
}


/*
 * A message quoting bytes of the peer may not be UTF-8: those bytes are
 * masked with "?", in place.
 */
json_t *
ngx_astralform_jsonrpc_error(json_t *id, ngx_int_t code, u_char *message,
    size_t len, json_t *data)
{
    u_char  *p;
    json_t  *text;

    text = json_stringn((char *) message, len);

    if (text == NULL) {
        for (p = message; p < message + len; p++) {
            if (*p >= 0x80 || *p < 0x20) {
                *p = '?';
            }
        }

        text = json_stringn((char *) message, len);
    }

    return json_pack("{s:s, s:O, s:{s:I, s:o, s:o*}}", "jsonrpc", "2.0",
                     "id", id ? id : json_null(),
                     "error", "code", (json_int_t) code, "message", text,
                     "data", data);
}


ngx_str_t *
ngx_astralform_mcp_version(ngx_str_t *versions, u_char *data, size_t len)
{
    ngx_str_t  *v;

    for (v = versions; v->len; v++) {
        if (v->len == len && ngx_strncmp(v->data, data, len) == 0) {
            return v;
        }
    }

    return NULL;
}
