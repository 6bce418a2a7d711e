/*
 * JSON-RPC 2.0 as MCP uses it, for both sides of the gateway: the MCP
 * client of remote servers (ngx_astralform_mcp_client.c) and the MCP
 * servers (ngx_astralform_mcp_server.c). The error codes, the protocol
 * revisions each side speaks, the messages built and the check of a
 * message received.
 */

#ifndef _NGX_ASTRALFORM_JSONRPC_H_INCLUDED_
#define _NGX_ASTRALFORM_JSONRPC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


#define NGX_ASTRALFORM_JSONRPC_PARSE_ERROR      -32700
#define NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST  -32600
#define NGX_ASTRALFORM_JSONRPC_NO_METHOD        -32601
#define NGX_ASTRALFORM_JSONRPC_INVALID_PARAMS   -32602
#define NGX_ASTRALFORM_JSONRPC_INTERNAL         -32603
#define NGX_ASTRALFORM_JSONRPC_CANCELLED        -32800
#define NGX_ASTRALFORM_MCP_URL_ELICITATION      -32042


typedef enum {
    NGX_ASTRALFORM_JSONRPC_REQUEST = 1,
    NGX_ASTRALFORM_JSONRPC_NOTIFICATION,
    NGX_ASTRALFORM_JSONRPC_RESPONSE             /* a result or an error */
} ngx_astralform_jsonrpc_kind_e;


/* one message, its members borrowed from the JSON it was read from */
typedef struct {
    ngx_astralform_jsonrpc_kind_e  kind;
    json_t                        *id;          /* NULL: none, or not valid;
                                                   null in an error that
                                                   names no request */
    const char                    *method;      /* request, notification */
    json_t                        *params;      /* NULL, object or array */
    json_t                        *result;      /* response */
    json_t                        *error;       /* response: code, message */
    const char                    *invalid;     /* why it is not a message */
} ngx_astralform_jsonrpc_t;


/*
 * Checks one message (a batch is the caller's business): NGX_OK with rpc
 * filled in, or NGX_ERROR with rpc->invalid saying why (and rpc->id when
 * the message had a usable one, for the error answer).
 */
ngx_int_t ngx_astralform_jsonrpc_parse(json_t *json,
    ngx_astralform_jsonrpc_t *rpc);

/* a request id: a string or an integer */
ngx_uint_t ngx_astralform_jsonrpc_valid_id(json_t *id);

/* a request, or a notification when id is NULL (id and params stolen) */
json_t *ngx_astralform_jsonrpc_request(json_t *id, const char *method,
    json_t *params);

/*
 * The answers to a request whose id is id (borrowed; NULL: null); result
 * and data are stolen, message is masked in place where it is not UTF-8.
 */
json_t *ngx_astralform_jsonrpc_result(json_t *id, json_t *result);
json_t *ngx_astralform_jsonrpc_error(json_t *id, ngx_int_t code,
    u_char *message, size_t len, json_t *data);


/* the MCP revisions the servers speak, the latest first */
extern ngx_str_t  ngx_astralform_mcp_server_versions[];

/* the revisions the client takes from a remote server, the one it asks
 * for first */
extern ngx_str_t  ngx_astralform_mcp_client_versions[];

/* the entry of versions (ending with a null string) equal to v, or NULL */
ngx_str_t *ngx_astralform_mcp_version(ngx_str_t *versions, u_char *data,
    size_t len);


#endif /* _NGX_ASTRALFORM_JSONRPC_H_INCLUDED_ */
